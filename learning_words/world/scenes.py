"""CLEVR-like scenes: sampling, a vectorised numpy renderer and ground-truth maps.

Why: the synthetic Audio-CLEVR world needs images whose every pixel is labelled with
its object and that object's shape, colour, size and material, so that the GAN and the
attribute segmenter can be trained and captions can be written from what is visible.

Scenes are a struct of arrays padded to `max_objects` slots with a `valid` mask. The
camera is a level pinhole with a shifted lens (a view camera): the horizon lies above
the image, farther objects sit higher and are smaller, and vertical edges stay
vertical, which keeps every shape a few analytic 2-D primitives (discs, ellipses,
quads). Coverage comes from signed distances over one pixel (anti-aliasing); objects
are painted far to near, and a pixel's labels are those of the front-most object that
covers at least half of it, so the maps agree with the image by construction.

Only numpy is used here (no JAX): this runs on data-preparation hosts.
"""

from __future__ import annotations

import functools

import numpy as np

from learning_words.data.vocabulary import ATTRIBUTES, COLOR_RGB, COLORS, VOCAB

# Camera (world units; y up, z forward from the camera, which sits at (0, height, 0)).
_FOCAL = 1.9  # in image widths
_CAM_HEIGHT = 3.4
_HORIZON = -0.41  # image row of the horizon, in image heights (above the image)
_NEAR, _FAR = 5.0, 8.0  # ground depth range: depth 0 -> _NEAR, depth 1 -> _FAR
_LATERAL = 0.37  # x = +-1 lands at columns 0.5 +- _LATERAL (image widths)
_RADIUS = (0.23, 0.4)  # small, large: bounding radius of an object on the ground
_CUBE_HALF = 0.72  # cube half side / radius
_CYL_RADIUS = 0.82  # cylinder radius / radius (its height is twice its radius)
_SEPARATION = 0.9  # ground distance must exceed this * (sum of radii)
_TRIES = 24


def _unit(v):
  """Returns v / |v| as a tuple of Python floats (which keep float32 maths float32)."""
  v = np.asarray(v, np.float64)
  return tuple(float(c) for c in v / np.linalg.norm(v))


_LIGHT = _unit([-0.6, 0.8, -0.5])  # toward the light: left, above, camera side
_VIEW = _unit([0.0, 0.3, -1.0])  # toward the camera (roughly; it is above the scene)
_HALF = _unit(np.add(_LIGHT, _VIEW))  # Blinn half vector of the key light
# A low fill light that only metal reflects: it gives upright surfaces (cylinder bodies,
# cube sides) a highlight, which the high key light cannot reach.
_FILL = _unit(np.add(_unit([-0.5, 0.1, -0.86]), _VIEW))
# Per material (rubber, metal): ambient, diffuse and specular weights.
_AMBIENT = np.array([0.48, 0.24], np.float32)
_DIFFUSE = np.array([0.85, 0.55], np.float32)
_SPECULAR = np.array([0.0, 1.0], np.float32)
_RGB = np.array([COLOR_RGB[c] for c in COLORS], np.float32)
_PIXELS_PER_BATCH = 1 << 20  # scenes are rendered in batches of about this many pixels


# ---------------------------------------------------------------------------
# Sampling.


def _to_ground(x, depth):
  """Maps (lateral x in [-1,1], depth in [0,1]) to world ground coordinates (X, Z)."""
  z = _NEAR + np.asarray(depth) * (_FAR - _NEAR)
  return np.asarray(x) * _LATERAL * z / _FOCAL, z


def _place(x, depth, radius):
  """Picks one of _TRIES candidate positions per object, x and depth [N,K,_TRIES].

  Object k takes its first candidate whose ground distance to each earlier object
  exceeds _SEPARATION times the sum of their radii [N,K], or else the roomiest one.
  Returns the chosen (x, depth) [N,K].
  """
  gx, gz = _to_ground(x, depth)
  n, slots, _ = x.shape
  scene = np.arange(n)
  pick = np.zeros((n, slots), np.intp)
  px, pz = np.zeros((n, slots)), np.zeros((n, slots))
  px[:, 0], pz[:, 0] = gx[:, 0, 0], gz[:, 0, 0]
  for k in range(1, slots):
    dist = np.hypot(gx[:, k, :, None] - px[:, None, :k], gz[:, k, :, None] - pz[:, None, :k])
    need = _SEPARATION * (radius[:, k, None, None] + radius[:, None, :k])
    gap = (dist - need).min(axis=-1)
    fits = gap >= 0.0
    pick[:, k] = np.where(fits.any(axis=1), fits.argmax(axis=1), gap.argmax(axis=1))
    px[:, k], pz[:, k] = gx[scene, k, pick[:, k]], gz[scene, k, pick[:, k]]
  take = lambda v: np.take_along_axis(v, pick[..., None], axis=2)[..., 0]
  return take(x), take(depth)


def sample_scenes(num, seed, min_objects, max_objects, start=0):
  """Samples `num` scenes; scene i depends only on (seed, start + i).

  Returns a dict of arrays padded to max_objects slots: 'valid' [N,K] bool,
  'shape'/'color'/'size'/'material' [N,K] int (0-based), 'x' [N,K] lateral position
  in [-1,1], 'depth' [N,K] in [0,1] (0 = front), 'angle' [N,K] cube rotation (rad).
  Objects keep apart on the ground (_SEPARATION times the sum of radii) when they can.
  """
  if not 1 <= min_objects <= max_objects:
    raise ValueError(f'need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}')
  # Each scene draws a fixed number of uniforms from its own generator (the loop is
  # cheap); everything after that is vectorised over scenes.
  per_object = len(ATTRIBUTES) + 1 + 2 * _TRIES  # attributes, angle, candidate positions
  draws = np.empty((num, 1 + max_objects * per_object))
  for i in range(num):
    draws[i] = np.random.default_rng([seed, start + i]).random(draws.shape[1])
  count = min_objects + (draws[:, 0] * (max_objects - min_objects + 1)).astype(int)
  valid = np.arange(max_objects) < count[:, None]
  draws = draws[:, 1:].reshape(num, max_objects, per_object)
  out = {key: np.where(valid, (draws[..., j] * len(VOCAB[key])).astype(np.int32), 0)
         for j, key in enumerate(ATTRIBUTES)}
  tries = draws[..., len(ATTRIBUTES) + 1:].reshape(num, max_objects, _TRIES, 2)
  radius = np.asarray(_RADIUS)[out['size']]
  x, depth = _place(2.0 * tries[..., 0] - 1.0, tries[..., 1], radius)
  angle = draws[..., len(ATTRIBUTES)] * (np.pi / 2)
  out.update(valid=valid, x=np.where(valid, x, 0).astype(np.float32),
             depth=np.where(valid, depth, 0).astype(np.float32),
             angle=np.where(valid, angle, 0).astype(np.float32))
  return out


# ---------------------------------------------------------------------------
# 2-D primitives (pixel units) and shading.


def _project(x, y, z, res):
  """Projects world points to pixel (column, row) coordinates."""
  return res * (0.5 + _FOCAL * x / z), res * (_HORIZON + _FOCAL * (_CAM_HEIGHT - y) / z)


def _coverage(sdf):
  """Fraction of a pixel covered, from the signed distance (pixels) at its centre."""
  return np.clip(0.5 - sdf, 0.0, 1.0)


def _ellipse_sdf(px, py, cx, cy, a, b):
  """Approximate signed distance to an axis-aligned ellipse (first-order, exact on it)."""
  u, v = (px - cx) / a, (py - cy) / b
  k0 = np.sqrt(u * u + v * v)
  k1 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
  far = k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
  # Near the centre the ratio is 0/0; any distance well inside the ellipse will do.
  return np.where(k0 < 0.5, (k0 - 1.0) * np.minimum(a, b), far)


def _quad_sdf(px, py, corners):
  """Signed distance (exact inside, a lower bound outside) to a convex quad of 4 (col, row).

  The max over edge half-planes alone would grow thin spikes past acute corners (faces
  seen nearly edge-on); the quad's bounding box cuts them off.
  """
  xs, ys = [c[0] for c in corners], [c[1] for c in corners]
  area = (xs[0] - xs[2]) * (ys[1] - ys[3]) - (xs[1] - xs[3]) * (ys[0] - ys[2])
  sign = np.where(area >= 0, 1.0, -1.0).astype(np.float32)
  low_x, high_x = functools.reduce(np.minimum, xs), functools.reduce(np.maximum, xs)
  low_y, high_y = functools.reduce(np.minimum, ys), functools.reduce(np.maximum, ys)
  sdf = np.maximum(np.maximum(low_x - px, px - high_x), np.maximum(low_y - py, py - high_y))
  for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
    ex, ey = bx - ax, by - ay
    scale = sign / np.maximum(np.hypot(ex, ey), 1e-6)
    sdf = np.maximum(sdf, ((px - ax) * ey - (py - ay) * ex) * scale)
  return sdf


def _shade(nx, ny, nz, o):
  """Shades the object's colour at unit normals (nx, ny, nz) [...] -> [...,3].

  Rubber: Lambert plus a faint sheen. Metal: a darker body, sharp highlights of the key
  and fill lights, and a tinted reflection of the bright ceiling on upward faces.
  """
  nx, ny, nz = (np.asarray(v, np.float32) for v in (nx, ny, nz))
  lam = np.maximum(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0)
  spec = np.maximum(nx * _HALF[0] + ny * _HALF[1] + nz * _HALF[2], 0.0)
  fill = np.maximum(nx * _FILL[0] + ny * _FILL[1] + nz * _FILL[2], 0.0)
  s4 = (spec * spec) ** 2
  s32 = ((s4 * s4) ** 2) ** 2
  f32 = (((fill * fill) ** 2) ** 2) ** 4
  gloss = o['specular'] * (230.0 * s32 * s4 + 100.0 * f32 + 30.0 * s4) + 6.0 * s4
  sky = (o['specular'] * np.maximum(ny, 0.0) ** 2)[..., None] * (0.35 * o['rgb'] + 40.0)
  body = o['rgb'] * (o['ambient'] + o['diffuse'] * lam)[..., None]
  return body + gloss[..., None] + sky


# ---------------------------------------------------------------------------
# Shapes: each returns (alpha [n,R,R], colour [n,R,R,3]) for one object per scene.


def _draw_sphere(o, px, py, res):
  """A shaded disc."""
  cx, cy = _project(o['gx'], o['radius'], o['gz'], res)
  rho = res * _FOCAL * o['radius'] / o['gz']
  dx, dy = (px - cx) / rho, (py - cy) / rho
  d = np.sqrt(dx * dx + dy * dy)
  inv = 1.0 / np.maximum(d, 1.0)  # normals of the anti-aliased fringe stay unit length
  nz = -np.sqrt(np.maximum(1.0 - d * d, 0.0))
  colour = _shade(dx * inv, -dy * inv, nz, o)
  return _coverage((d - 1.0) * rho), colour


def _draw_cylinder(o, px, py, res):
  """A vertical body between two ellipses, with an elliptical top cap."""
  radius = _CYL_RADIUS * o['radius']
  height = 2.0 * radius
  cx, top = _project(o['gx'], height, o['gz'], res)
  _, bottom = _project(o['gx'], 0.0, o['gz'], res)
  half_w = res * _FOCAL * radius / o['gz']
  squash = res * _FOCAL * radius / o['gz'] ** 2  # vertical ellipse axis per unit of drop
  cap = _ellipse_sdf(px, py, cx, top, half_w, squash * (_CAM_HEIGHT - height))
  base = _ellipse_sdf(px, py, cx, bottom, half_w, squash * _CAM_HEIGHT)
  body = np.maximum(np.abs(px - cx) - half_w,
                    np.abs(py - 0.5 * (top + bottom)) - 0.5 * (bottom - top))
  alpha = _coverage(np.minimum(np.minimum(cap, base), body))
  nx = np.clip((px - cx) / half_w, -1.0, 1.0)
  side = _shade(nx, 0.0, -np.sqrt(1.0 - nx * nx), o)
  lid = _shade(0.0, 1.0, 0.0, o)
  on_cap = _coverage(cap)[..., None]
  return alpha, side + on_cap * (lid - side)


def _draw_cube(o, px, py, res):
  """A rotated box: its top face and the (at most two) side faces seen by the camera."""
  half = _CUBE_HALF * o['radius']
  gx, gz, angle = o['gx'], o['gz'], o['angle']
  phis = angle[None] + np.arange(4).reshape((4,) + (1,) * angle.ndim) * (np.pi / 2)
  facing = -gx * np.cos(phis) - gz * np.sin(phis) - half  # > 0: side faces the camera
  pick = np.argsort(-facing, axis=0)[:2]
  c, s = np.cos(angle), np.sin(angle)
  top = [_project(gx + half * (i * c - j * s), 2 * half, gz + half * (i * s + j * c), res)
         for i, j in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
  alpha = _coverage(_quad_sdf(px, py, top))
  colour = alpha[..., None] * _shade(0.0, 1.0, 0.0, o)
  for rank in range(2):
    phi = np.take_along_axis(phis, pick[rank:rank + 1], 0)[0]
    visible = np.take_along_axis(facing, pick[rank:rank + 1], 0)[0] > 0
    fx, fz = gx + half * np.cos(phi), gz + half * np.sin(phi)
    tx, tz = -half * np.sin(phi), half * np.cos(phi)
    quad = [_project(fx + sx * tx, y, fz + sx * tz, res)
            for sx, y in ((-1, 0.0), (1, 0.0), (1, 2 * half), (-1, 2 * half))]
    face = _coverage(_quad_sdf(px, py, quad)) * visible
    alpha = alpha + face
    colour = colour + face[..., None] * _shade(np.cos(phi), 0.0, np.sin(phi), o)
  # Faces tile the silhouette, so their coverages add up (and blend across shared edges).
  return np.minimum(alpha, 1.0), colour / np.maximum(alpha, 1e-6)[..., None]


_DRAW = (_draw_cube, _draw_sphere, _draw_cylinder)


# ---------------------------------------------------------------------------
# Rendering.


def _backdrop(res):
  """Gray studio backdrop [R,R,3]: brighter near the camera and toward the light."""
  row, col = (np.mgrid[0:res, 0:res] + 0.5) / res
  level = 104.0 + 44.0 * row ** 1.5 - 14.0 * col
  return level[..., None].astype(np.float32) * np.array([0.98, 1.0, 1.03], np.float32)


def _window(gx, gz, reach, height, res):
  """Returns pixel rows [m,h] and columns [m,w] of one window per object.

  Each window covers the screen box of the world box gx +- reach, gz +- reach,
  y in [0, height], plus an anti-aliasing margin. Why: an object covers a small part of
  the image, and drawing only there is several times faster. All windows share the
  largest size needed so the batch stays one array; they are shifted to lie inside.
  """
  gx, gz, reach, height = (np.ravel(v) for v in np.broadcast_arrays(gx, gz, reach, height))
  near, far = gz - reach, gz + reach
  rows = [_project(gx, y, z, res)[1] for y in (0.0, height) for z in (near, far)]
  cols = [_project(gx + side * reach, 0.0, z, res)[0] for side in (-1, 1) for z in (near, far)]
  ranges = []
  for values in (rows, cols):
    low = np.floor(functools.reduce(np.minimum, values)) - 2
    high = np.ceil(functools.reduce(np.maximum, values)) + 2
    size = int(np.clip((high - low).max(), 1, res))
    first = np.clip(low, 0, res - size).astype(np.intp)
    ranges.append(first[:, None] + np.arange(size))
  return ranges


def _centres(rows, cols):
  """Pixel-centre coordinates px [m,1,w] and py [m,h,1] of windows."""
  return (cols[:, None, :] + 0.5).astype(np.float32), (rows[:, :, None] + 0.5).astype(np.float32)


def _shadows(p, res):
  """Ground brightness factor [n,R,R] under soft shadows cast away from the light."""
  n, slots = p['valid'].shape
  darkness = np.zeros((n, res, res), np.float32)
  for k in range(slots):
    sel = np.nonzero(p['valid'][:, k])[0]
    if not sel.size:
      continue
    radius = p['radius'][sel, k][:, None, None]
    gx = p['gx'][sel, k][:, None, None] + 0.45 * radius
    gz = p['gz'][sel, k][:, None, None] + 0.4 * radius
    rows, cols = _window(gx, gz, 1.4 * radius, 0.0, res)
    px, py = _centres(rows, cols)
    cx, cy = _project(gx, 0.0, gz, res)
    a = res * _FOCAL * 1.05 * radius / gz
    b = a * _CAM_HEIGHT / gz
    dark = np.clip(0.5 - _ellipse_sdf(px, py, cx, cy, a, b) / (0.5 * b + 0.5), 0.0, 1.0)
    at = (sel[:, None, None], rows[:, :, None], cols[:, None, :])
    darkness[at] = np.maximum(darkness[at], dark)
  return 1.0 - 0.45 * darkness


def _render_batch(p, res):
  """Renders a batch of scenes: all scenes at once, one object slot at a time."""
  n, slots = p['valid'].shape
  p = dict(p, radius=np.asarray(_RADIUS, np.float32)[p['size']])
  p['gx'], p['gz'] = _to_ground(p['x'], p['depth'])
  for key, table in (('ambient', _AMBIENT), ('diffuse', _DIFFUSE), ('specular', _SPECULAR)):
    p[key] = table[p['material']]
  p['rgb'] = _RGB[p['color']]
  image = (_backdrop(res)[None] * _shadows(p, res)[..., None]).reshape(-1, 3)
  object_id = np.zeros(n * res * res, np.uint8)
  # Painter's order: far to near, so nearer objects cover farther ones.
  order = np.argsort(np.where(p['valid'], -p['gz'], np.inf), axis=1, kind='stable')
  for rank in range(slots):
    slot = order[:, rank]
    obj = {key: value[np.arange(n), slot] for key, value in p.items()}
    for index, draw in enumerate(_DRAW):
      sel = np.nonzero(obj['valid'] & (obj['shape'] == index))[0]
      if not sel.size:
        continue
      o = {key: value[sel].reshape((-1, 1, 1) + value.shape[1:]) for key, value in obj.items()}
      rows, cols = _window(o['gx'], o['gz'], 1.05 * o['radius'], 2.0 * o['radius'], res)
      alpha, colour = draw(o, *_centres(rows, cols), res)
      at = ((sel[:, None, None] * res + rows[:, :, None]) * res + cols[:, None, :]).ravel()
      below = image[at]
      image[at] = below + alpha.reshape(-1, 1) * (colour.reshape(-1, 3) - below)
      below_id = object_id[at].reshape(alpha.shape)
      object_id[at] = np.where(alpha >= 0.5, slot[sel, None, None] + 1, below_id).ravel()
  out = {'image': np.clip(np.round(image), 0, 255).astype(np.uint8).reshape(n, res, res, 3),
         'object_id': object_id.reshape(n, res, res)}
  flat = object_id.reshape(n, res * res).astype(np.intp)
  for key in ATTRIBUTES:
    table = np.concatenate([np.zeros((n, 1), np.intp), p[key] + 1], axis=1)
    out[key] = np.take_along_axis(table, flat, 1).reshape(n, res, res).astype(np.uint8)
  return out


def render(params, resolution):
  """Renders scenes from `sample_scenes` (or built by hand with the same keys).

  Returns 'image' [N,R,R,3] uint8, 'object_id' [N,R,R] uint8 (0 background, k + 1 for
  slot k) and 'shape', 'color', 'size', 'material' [N,R,R] uint8 (1 + index, 0 for
  background), all agreeing pixel for pixel.
  """
  res = int(resolution)
  if not 8 <= res <= 512:
    raise ValueError(f'resolution must be in [8, 512], got {resolution}')
  params = {key: np.asarray(value) for key, value in params.items()}
  n = params['valid'].shape[0]
  step = max(1, _PIXELS_PER_BATCH // (res * res))
  parts = [_render_batch({k: v[i:i + step] for k, v in params.items()}, res)
           for i in range(0, max(n, 1), step)]
  return {key: np.concatenate([part[key] for part in parts])[:n] for key in parts[0]}


def describe(params, object_id):
  """Lists each scene's visible objects (>= 1 pixel in object_id), left to right.

  Each object: {'shape','color','size','material': word, 'x','y': centroid of its
  visible pixel centres in [0,1] (x = column / R, y = row / R, larger y = nearer),
  'pixels': count}. Uses only what the maps show, like a segmenter-based parse.
  """
  return describe_with_slots(params, object_id)[0]


def describe_with_slots(params, object_id):
  """(describe's scenes, per scene the slot index of each listed object, in the same order)."""
  n, res, _ = object_id.shape
  slots = params['valid'].shape[1]
  flat = (object_id.reshape(n, -1).astype(np.intp)
          + (slots + 1) * np.arange(n)[:, None]).ravel()
  rows, cols = np.divmod(np.arange(res * res), res)
  size = n * (slots + 1)
  count = np.bincount(flat, minlength=size).reshape(n, -1)
  col_sum = np.bincount(flat, np.tile(cols + 0.5, n), size).reshape(n, -1)
  row_sum = np.bincount(flat, np.tile(rows + 0.5, n), size).reshape(n, -1)
  scenes, slots_of = [], []
  for i in range(n):
    objects = []
    for k in np.nonzero(count[i, 1:])[0]:
      c = count[i, k + 1]
      obj = {key: VOCAB[key][params[key][i, k]] for key in ATTRIBUTES}
      obj.update(x=float(col_sum[i, k + 1] / c / res), y=float(row_sum[i, k + 1] / c / res),
                 pixels=int(c))
      objects.append((obj, int(k)))
    objects.sort(key=lambda ok: ok[0]['x'])
    scenes.append({'objects': [o for o, _ in objects]})
    slots_of.append([k for _, k in objects])
  return scenes, slots_of


def render_scenes(num, seed, resolution, min_objects, max_objects, start=0, chunk=1000,
                  progress=False):
  """Samples, renders and describes scenes start..start+num-1 in chunks.

  Returns (arrays as from `render`, descriptions as from `describe`, params as from
  `sample_scenes`); the result does not depend on `chunk`.
  """
  bar = None
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm.tqdm(total=num, desc=f'render {resolution}px', unit='scene')
  arrays, descriptions, params = [], [], []
  for begin in range(0, num, chunk):
    size = min(chunk, num - begin)
    p = sample_scenes(size, seed, min_objects, max_objects, start=start + begin)
    maps = render(p, resolution)
    arrays.append(maps)
    descriptions.extend(describe(p, maps['object_id']))
    params.append(p)
    if bar is not None:
      bar.update(size)
  if bar is not None:
    bar.close()
  if not arrays:  # num == 0: still return correctly shaped empty arrays
    params = [sample_scenes(0, seed, min_objects, max_objects, start)]
    arrays = [render(params[0], resolution)]
  join = lambda parts: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return join(arrays), descriptions, join(params)
