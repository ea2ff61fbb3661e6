"""Tests for learning_words.world.scenes: maps agree with the image, geometry, determinism."""

import numpy as np
import pytest

from learning_words.world import scenes
from learning_words.data import vocabulary

# The CLEVR palette, written out here rather than read from the module under test.
CLEVR_RGB = {
    'gray': (87, 87, 87), 'red': (173, 35, 35), 'blue': (42, 75, 215),
    'green': (29, 105, 20), 'brown': (129, 74, 25), 'purple': (129, 38, 192),
    'cyan': (41, 208, 208), 'yellow': (255, 238, 51),
}
NAMES = {
    'shape': ('cube', 'sphere', 'cylinder'),
    'color': ('gray', 'red', 'blue', 'green', 'brown', 'purple', 'cyan', 'yellow'),
    'size': ('small', 'large'),
    'material': ('rubber', 'metal'),
}
MAPS = ('shape', 'color', 'size', 'material')


@pytest.fixture(scope='module')
def rendered():
  """300 sampled scenes (3 to 10 objects) and their 32 px renders, shared by tests."""
  params = scenes.sample_scenes(300, seed=11, min_objects=3, max_objects=10)
  return params, scenes.render(params, 32)


def make_scene(*objects, slots=None):
  """Builds params by hand: each object is a dict with names and x, depth, angle."""
  slots = slots or len(objects)
  params = {key: np.zeros((1, slots), np.int32) for key in MAPS}
  params.update(valid=np.zeros((1, slots), bool), x=np.zeros((1, slots), np.float32),
                depth=np.zeros((1, slots), np.float32), angle=np.zeros((1, slots), np.float32))
  for k, obj in enumerate(objects):
    if obj is None:
      continue
    for key in MAPS:
      params[key][0, k] = NAMES[key].index(obj[key])
    params['valid'][0, k] = True
    params['x'][0, k], params['depth'][0, k] = obj['x'], obj['depth']
    params['angle'][0, k] = obj.get('angle', 0.3)
  return params


def make_object(shape='sphere', color='red', size='large', material='rubber', x=0.0,
                depth=0.5, angle=0.3):
  return dict(shape=shape, color=color, size=size, material=material, x=x, depth=depth,
              angle=angle)


def test_vocabulary_matches_clevr():
  assert vocabulary.SHAPES == NAMES['shape']
  assert vocabulary.COLORS == NAMES['color']
  assert vocabulary.SIZES == NAMES['size']
  assert vocabulary.MATERIALS == NAMES['material']
  assert vocabulary.ATTRIBUTES == MAPS
  assert {k: tuple(v) for k, v in vocabulary.COLOR_RGB.items()} == CLEVR_RGB
  assert vocabulary.VOCAB == NAMES


def test_sampled_scenes_are_well_formed(rendered):
  params, _ = rendered
  count = params['valid'].sum(1)
  assert count.min() >= 3 and count.max() <= 10
  # Valid slots come first; padding is zero.
  assert np.array_equal(params['valid'], np.arange(10) < count[:, None])
  for key in MAPS:
    values = params[key][params['valid']]
    assert values.min() >= 0 and values.max() < len(NAMES[key])
    assert set(values) == set(range(len(NAMES[key])))
  assert np.abs(params['x']).max() <= 1.0
  assert params['depth'].min() >= 0.0 and params['depth'].max() <= 1.0


def test_maps_agree_with_objects(rendered):
  params, out = rendered
  ids = out['object_id']
  for key in MAPS:
    assert out[key].dtype == np.uint8
    assert not out[key][ids == 0].any(), key
  for i in range(len(ids)):
    for k in range(10):
      mask = ids[i] == k + 1
      if not params['valid'][i, k]:
        assert not mask.any()
        continue
      for key in MAPS:
        assert (out[key][i][mask] == params[key][i, k] + 1).all(), (i, k, key)


def test_most_objects_are_visible(rendered):
  params, out = rendered
  pixels = np.stack([(out['object_id'] == k + 1).sum((1, 2)) for k in range(10)], 1)
  visible = pixels[params['valid']] > 0
  assert visible.mean() > 0.9


def test_rubber_objects_show_their_colour(rendered):
  params, out = rendered
  palette = np.array([CLEVR_RGB[name] for name in NAMES['color']], float)
  palette /= np.linalg.norm(palette, axis=1, keepdims=True)
  checked = 0
  for i in range(len(out['image'])):
    for k in np.nonzero(params['valid'][i] & (params['material'][i] == 0))[0]:
      mask = out['object_id'][i] == k + 1
      # Interior pixels (all 4 neighbours on the object) are free of edge blending.
      inner = mask.copy()
      inner[1:] &= mask[:-1]
      inner[:-1] &= mask[1:]
      inner[:, 1:] &= mask[:, :-1]
      inner[:, :-1] &= mask[:, 1:]
      if mask.sum() < 10 or not inner.any():
        continue
      mean = out['image'][i][inner].mean(0)
      # Shading scales brightness, so compare hues: the nearest palette direction.
      assert np.argmax(palette @ mean) == params['color'][i, k], (i, k, mean)
      checked += 1
  assert checked > 200


def test_nearer_object_occludes_farther_one():
  near = make_object('sphere', 'red', x=0.0, depth=0.1)
  far = make_object('cube', 'blue', x=0.15, depth=0.6)
  alone_near = scenes.render(make_scene(near), 32)['object_id'][0] == 1
  alone_far = scenes.render(make_scene(far), 32)['object_id'][0] == 1
  overlap = alone_near & alone_far
  assert overlap.sum() >= 5 and (alone_far & ~alone_near).sum() >= 5
  # Slot order must not matter: depth decides.
  for order in ((near, far), (far, near)):
    out = scenes.render(make_scene(*order), 32)
    ids = out['object_id'][0]
    n_id, f_id = (1, 2) if order[0] is near else (2, 1)
    assert np.array_equal(ids == n_id, alone_near)
    assert np.array_equal(ids == f_id, alone_far & ~alone_near)
    assert (out['color'][0][overlap] == 1 + NAMES['color'].index('red')).all()
    red, blue = np.array(CLEVR_RGB['red']), np.array(CLEVR_RGB['blue'])
    mean = out['image'][0][overlap].mean(0)
    assert np.linalg.norm(mean - red) < np.linalg.norm(mean - blue)


@pytest.mark.parametrize('shape', ['cube', 'sphere', 'cylinder'])
def test_farther_objects_are_smaller_and_higher(shape):
  rows = []
  sizes = []
  for depth in (0.05, 0.5, 0.95):
    ids = scenes.render(make_scene(make_object(shape, depth=depth)), 64)['object_id'][0]
    r, _ = np.nonzero(ids == 1)
    sizes.append(len(r))
    rows.append(r.mean())
  assert sizes[0] > sizes[1] > sizes[2] > 0
  assert rows[0] > rows[1] > rows[2]


def test_large_is_bigger_than_small():
  for shape in NAMES['shape']:
    pixels = [(scenes.render(make_scene(make_object(shape, size=s)), 64)['object_id'] == 1).sum()
              for s in ('small', 'large')]
    ratio = np.sqrt(pixels[1] / pixels[0])
    assert 1.5 < ratio < 2.1, (shape, ratio)


def test_shapes_have_their_outlines():
  def mask_of(shape, material='rubber', angle=0.3):
    out = scenes.render(make_scene(make_object(shape, 'gray', material=material, x=0.0,
                                               depth=0.2, angle=angle)), 128)
    return out['object_id'][0] == 1, out['image'][0].astype(float).mean(-1)
  sphere, sphere_grey = mask_of('sphere')
  rows, cols = np.nonzero(sphere)
  height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
  assert abs(height / width - 1) < 0.1
  assert abs(sphere.sum() / (np.pi * height * width / 4) - 1) < 0.08  # a disc
  cylinder, _ = mask_of('cylinder')
  rows, cols = np.nonzero(cylinder)
  assert np.ptp(rows) > np.ptp(cols)  # upright body
  # A box's top face is lit from above: the upper part of the mask is the brightest.
  cube, grey = mask_of('cube')
  rows, _ = np.nonzero(cube)
  top = cube & (np.arange(128)[:, None] < np.percentile(rows, 15))
  bottom = cube & (np.arange(128)[:, None] > np.percentile(rows, 60))
  assert grey[top].mean() > grey[bottom].mean() + 10
  # Metal shows a specular highlight; rubber does not.
  metal, grey_metal = mask_of('sphere', 'metal')
  assert grey_metal[metal].max() > 200 > sphere_grey[sphere].max()


def test_edges_are_anti_aliased():
  params = make_scene(make_object('sphere', 'yellow', x=0.0, depth=0.3))
  out = scenes.render(params, 32)
  image = out['image'][0].astype(int)
  blank = scenes.render(make_scene(None), 32)['image'][0].astype(int)
  # Pixels the sphere covers by less than half stay background in the maps, yet are
  # tinted yellow (more red than the empty render; the shadow only darkens).
  tinted = (out['object_id'][0] == 0) & (image[..., 0] > blank[..., 0] + 5)
  assert tinted.any()


def test_same_seed_same_scenes():
  a = scenes.sample_scenes(20, seed=3, min_objects=2, max_objects=6)
  b = scenes.sample_scenes(20, seed=3, min_objects=2, max_objects=6)
  c = scenes.sample_scenes(20, seed=4, min_objects=2, max_objects=6)
  for key in a:
    assert np.array_equal(a[key], b[key])
  assert not all(np.array_equal(a[key], c[key]) for key in a)
  ra, rc = scenes.render(a, 32), scenes.render(c, 32)
  assert np.array_equal(ra['image'], scenes.render(b, 32)['image'])
  assert not np.array_equal(ra['image'], rc['image'])


def test_scene_depends_only_on_its_index():
  whole, desc_whole, params_whole = scenes.render_scenes(30, 5, 32, 1, 8, chunk=7)
  part, desc_part, params_part = scenes.render_scenes(10, 5, 32, 1, 8, start=20, chunk=1000)
  for key in whole:
    assert np.array_equal(whole[key][20:], part[key]), key
  for key in params_whole:
    assert np.array_equal(params_whole[key][20:], params_part[key]), key
  assert desc_whole[20:] == desc_part


@pytest.mark.parametrize('res', [16, 32, 128])
def test_resolutions(res):
  arrays, desc, params = scenes.render_scenes(3, 1, res, 3, 5)
  assert arrays['image'].shape == (3, res, res, 3) and arrays['image'].dtype == np.uint8
  for key in ('object_id',) + MAPS:
    assert arrays[key].shape == (3, res, res) and arrays[key].dtype == np.uint8
  assert arrays['object_id'].max() <= 5
  assert len(desc) == 3 and params['valid'].shape == (3, 5)


def test_describe_lists_visible_objects():
  arrays, described, params = scenes.render_scenes(8, 2, 24, 4, 9, chunk=3)
  ids = arrays['object_id']
  assert scenes.describe_with_slots(params, ids)[0] == described
  slots = scenes.describe_with_slots(params, ids)[1]
  for i, scene in enumerate(described):
    expected = []
    for k in range(9):
      cells = [(r, c) for r in range(24) for c in range(24) if ids[i, r, c] == k + 1]
      if not cells:
        continue
      expected.append({
          'shape': NAMES['shape'][params['shape'][i, k]],
          'color': NAMES['color'][params['color'][i, k]],
          'size': NAMES['size'][params['size'][i, k]],
          'material': NAMES['material'][params['material'][i, k]],
          'x': sum(c + 0.5 for _, c in cells) / len(cells) / 24,
          'y': sum(r + 0.5 for r, _ in cells) / len(cells) / 24,
          'pixels': len(cells)})
      expected[-1]['slot'] = k
    expected.sort(key=lambda o: o['x'])
    assert len(scene['objects']) == len(expected) >= 1
    for got, want, slot in zip(scene['objects'], expected, slots[i]):
      assert slot == want.pop('slot')  # describe_with_slots: the slot each listed object is
      assert got == pytest.approx(want)
