"""world/parse.py: ground-truth attribute maps -> the objects `scenes.describe` lists, and back
through captions."""
import numpy as np
import pytest
from scipy import ndimage

from learning_words.world import captions, scenes
from learning_words.world.parse import parse
from learning_words.data import vocabulary

ATTRS = vocabulary.ATTRIBUTES
RES = 32


def attributes_of(obj):
  return tuple(obj[a] for a in ATTRS)


@pytest.fixture(scope="module")
def rendered():
  arrays, described, params = scenes.render_scenes(150, 7, RES, 2, 5)
  return arrays, described, params


def classify(arrays, params, i, min_pixels=3):
  """Why scene i may legitimately differ from describe ('' when it may not), from its object ids."""
  ids = arrays["object_id"][i]
  visible = [k for k in np.unique(ids) if k > 0]
  for k in visible:
    pieces = ndimage.label(ids == k)[1]  # 4-connected
    if (ids == k).sum() < min_pixels:
      return "speck"
    if pieces > 1:
      return "split by an occluder"
  same = lambda a, b: all(params[x][i, a - 1] == params[x][i, b - 1] for x in ATTRS)
  for axis in (0, 1):
    a, b = ids, np.roll(ids, -1, axis)
    edge = (a > 0) & (b > 0) & (a != b)
    edge[(-1, slice(None)) if axis == 0 else (slice(None), -1)] = False
    if any(same(p, q) for p, q in zip(a[edge], b[edge])):
      return "touching twins"
  return ""


def test_parse_recovers_every_described_object(rendered):
  arrays, described, params = rendered
  parsed = parse({a: arrays[a] for a in ATTRS})
  assert len(parsed) == len(described)
  reasons = [classify(arrays, params, i) for i in range(len(described))]
  clean = [i for i, r in enumerate(reasons) if not r]
  assert len(clean) >= 0.8 * len(described), sorted(set(reasons))
  for i in clean:
    want, got = described[i]["objects"], parsed[i]["objects"]
    assert [attributes_of(o) for o in got] == [attributes_of(o) for o in want], i
    for g, w in zip(got, want):
      assert list(g) == list(w)  # same keys, same order
      assert g["pixels"] == w["pixels"]
      assert abs(g["x"] - w["x"]) * RES < 1e-6 and abs(g["y"] - w["y"]) * RES < 1e-6
  # Elsewhere every object parse reports is still a described one, centred within a pixel or so
  # of some described object with its attributes (merged twins sit between the two).
  for i in set(range(len(described))) - set(clean):
    for g in parsed[i]["objects"]:
      twins = [w for w in described[i]["objects"] if attributes_of(w) == attributes_of(g)]
      assert twins, (i, reasons[i])
      if reasons[i] != "touching twins":
        assert min(np.hypot(g["x"] - w["x"], g["y"] - w["y"]) for w in twins) * RES < 1.5


def make_pair(color_b):
  """Two small rubber spheres one behind the other, touching on screen; the front one's colour
  is color_b (an index)."""
  p = {"valid": np.ones((1, 2), bool), "shape": np.array([[1, 1]]),
       "color": np.array([[1, color_b]]),
       "size": np.zeros((1, 2), int), "material": np.zeros((1, 2), int),
       "x": np.array([[0.0, 0.12]], np.float32), "depth": np.array([[0.5, 0.25]], np.float32),
       "angle": np.zeros((1, 2), np.float32)}
  maps = scenes.render(p, RES)
  return p, maps, scenes.describe(p, maps["object_id"])[0]


def test_touching_objects_apart_unless_they_share_every_attribute():
  # Different colours: two objects, exactly as described.
  p, maps, want = make_pair(color_b=2)
  ids = maps["object_id"][0]
  assert (((ids[:, :-1] == 1) & (ids[:, 1:] == 2)).any()
          or ((ids[:, :-1] == 2) & (ids[:, 1:] == 1)).any())
  got = parse({a: maps[a][0] for a in ATTRS})  # [R,R] maps: one scene
  assert len(got) == 1 and got[0] == want
  # Same four attributes: the maps cannot tell them apart, so they come out as ONE object with
  # the pixels of both and the pixel-weighted centroid.
  p, maps, want = make_pair(color_b=1)
  (got,) = parse({a: maps[a] for a in ATTRS})
  assert len(want["objects"]) == 2 and len(got["objects"]) == 1
  merged, (a, b) = got["objects"][0], want["objects"]
  assert attributes_of(merged) == attributes_of(a) == attributes_of(b)
  assert merged["pixels"] == a["pixels"] + b["pixels"]
  for key in ("x", "y"):
    mean = (a[key] * a["pixels"] + b[key] * b["pixels"]) / merged["pixels"]
    assert merged[key] == pytest.approx(mean, abs=1e-9)


def test_min_pixels_drops_specks_and_absorbs_stray_labels():
  maps = {a: np.zeros((1, 12, 12), int) for a in ATTRS}
  def paint(rows, cols, values):
    for a, v in zip(ATTRS, values):
      maps[a][0, rows, cols] = v
  paint(slice(2, 6), slice(2, 6), (1, 2, 2, 1))      # a 16-pixel large red cube
  paint(slice(4, 6), slice(5, 6), (1, 2, 1, 1))      # 2 of its edge pixels labelled 'small'
  paint(slice(9, 11), slice(9, 10), (2, 3, 1, 2))    # an isolated 2-pixel speck
  (scene,) = parse(maps)
  assert [(attributes_of(o), o["pixels"]) for o in scene["objects"]] == [
      (("cube", "red", "large", "rubber"), 16)]  # speck dropped, stray pixels kept in the cube
  assert (scene["objects"][0]["x"] == pytest.approx(4 / 12)
          and scene["objects"][0]["y"] == pytest.approx(4 / 12))
  (loose,) = parse(maps, min_pixels=1)
  assert sorted((attributes_of(o), o["pixels"]) for o in loose["objects"]) == [
      (("cube", "red", "large", "rubber"), 14), (("cube", "red", "small", "rubber"), 2),
      (("sphere", "blue", "small", "metal"), 2)]
  assert parse({a: np.zeros((2, 8, 8), int) for a in ATTRS}) == [{"objects": []}] * 2


# Hand-written reverse synonyms (what a listener hears -> attribute value).
HEARD = {"cube": ("shape", "cube"), "block": ("shape", "cube"), "sphere": ("shape", "sphere"),
         "ball": ("shape", "sphere"), "cylinder": ("shape", "cylinder"),
         "large": ("size", "large"), "big": ("size", "large"), "small": ("size", "small"),
         "tiny": ("size", "small"), "metal": ("material", "metal"),
         "metallic": ("material", "metal"), "shiny": ("material", "metal"),
         "rubber": ("material", "rubber"), "matte": ("material", "rubber"),
         **{c: ("color", c) for c in ("gray", "red", "blue", "green", "brown", "purple", "cyan",
                                       "yellow")}}


def hear_objects(sentence):
  """Attribute tuples named in a caption's list sentence: an object ends at its shape noun,
  or after a trailing 'made of <material>'."""
  words, found, current, i = sentence.split(), [], {}, 0
  while i < len(words):
    if words[i] in HEARD:
      key, value = HEARD[words[i]]
      current[key] = value
      if key == "shape":
        if words[i + 1:i + 3] == ["made", "of"]:
          current.update([HEARD[words[i + 3]]])
          i += 3
        found.append(tuple(current.get(a) for a in ATTRS))
        current = {}
    i += 1
  return found


def test_parse_then_caption_names_every_recovered_object(rendered):
  arrays, _, _ = rendered
  parsed = parse({a: arrays[a] for a in ATTRS})
  rng = np.random.default_rng(3)
  for scene in parsed:
    text = captions.caption(scene, rng)
    heard = hear_objects(text.split(".")[0])
    assert sorted(heard) == sorted(attributes_of(o) for o in scene["objects"]), text
