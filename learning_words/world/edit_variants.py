"""Oracle edits of the ground-truth world: each object redrawn with one attribute changed.

Drawn negatives ablate generator units, which may change anything in the mask. The renders' world
(L0) knows every scene's parameters, so the same renderer can draw, for each object, the scene with
exactly one attribute of that object changed (the attribute and the new value drawn at random, a
draw kept only when the redrawn scene's description differs from the positive's in that one
attribute of that one object), and a null variant: the object moved a little, with a caption that
stays word for word the same. The train step picks among them on the device (learner/oracle.py).
Only numpy: this runs on data-preparation hosts.
"""
import numpy as np

from learning_words.data import audio
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.world import captions, scenes as scenes_lib

NULL_SHIFTS = (0.15, -0.15, 0.25, -0.25, 0.35, -0.35)  # lateral moves (x in [-1, 1]) tried in turn


def _objects(scene: dict) -> list:
  """A description's objects as sorted (shape, color, size, material) tuples."""
  return sorted(tuple(o[a] for a in ATTRIBUTES) for o in scene["objects"])


def _slot_words(params, i: int, k: int) -> tuple:
  return tuple(VOCAB[a][int(params[a][i, k])] for a in ATTRIBUTES)


def _redraw(params, rows, slots, change, resolution):
  """Renders and describes copies of scenes `rows` with `change(p, j)` applied to copy j."""
  p = {key: np.asarray(v)[rows].copy() for key, v in params.items()}
  for j in range(len(rows)):
    change(p, j, slots[j])
  maps = scenes_lib.render(p, resolution)
  return maps["image"], scenes_lib.describe(p, maps["object_id"])


def object_masks(object_id: np.ndarray, slots: int) -> np.ndarray:
  """uint8 [N,K,R,R]: 1 where slot k's object is visible (object_id [N,R,R], 0 = background)."""
  return (object_id[:, None] == np.arange(1, slots + 1)[None, :, None, None]).astype(np.uint8)


def one_attribute_variants(params, maps, descriptions, resolution: int, seed: int, ids,
                           tries: int = 8) -> tuple:
  """(variants uint8 [N,K,R,R,3], valid bool [N,K], changed attribute index int8 [N,K], -1 where
  none) of the scenes `params` (scenes.sample_scenes of pair `ids`), their maps and
  descriptions (scenes.render, scenes.describe): for
  each visible object, the scene with one attribute of it changed. A draw (attribute, new value)
  is kept when the redrawn scene names the same objects except that one attribute of that one;
  up to `tries` draws per object (a bigger object can hide another), else the slot is invalid."""
  n, slots = np.asarray(params["valid"]).shape
  res = int(resolution)
  variants = np.zeros((n, slots, res, res, 3), np.uint8)
  valid = np.zeros((n, slots), bool)
  changed = np.full((n, slots), -1, np.int8)
  todo = _visible_slots(params, maps["object_id"])
  rngs = {(i, k): np.random.default_rng([seed, int(ids[i]), k, 1]) for i, k in todo}
  for _ in range(tries):
    if not todo:
      break
    draws = []
    for i, k in todo:
      rng = rngs[(i, k)]
      a = int(rng.integers(len(ATTRIBUTES)))
      old = int(params[ATTRIBUTES[a]][i, k])
      new = int(rng.integers(len(VOCAB[ATTRIBUTES[a]]) - 1))
      draws.append((a, new + (new >= old)))

    def change(p, j, k):
      a, value = draws[j]
      p[ATTRIBUTES[a]][j, k] = value

    rows = np.array([i for i, _ in todo])
    images, described = _redraw(params, rows, [k for _, k in todo], change, res)
    left = []
    for j, (i, k) in enumerate(todo):
      a, value = draws[j]
      expected = list(_objects(descriptions[i]))
      old = _slot_words(params, i, k)
      expected.remove(old)
      expected.append(old[:a] + (VOCAB[ATTRIBUTES[a]][value],) + old[a + 1:])
      if _objects(described[j]) == sorted(expected):
        variants[i, k], valid[i, k], changed[i, k] = images[j], True, a
      else:
        left.append((i, k))
    todo = left
  return variants, valid, changed


def _visible_slots(params, object_id) -> list:
  """[(scene i, slot k)] of the objects with at least one visible pixel (object_id [N,R,R])."""
  shown = object_masks(object_id, np.asarray(params["valid"]).shape[1]).any(axis=(2, 3))
  return [tuple(map(int, ik)) for ik in np.argwhere(shown & np.asarray(params["valid"]))]


def null_variants(params, maps, descriptions, resolution: int, seed: int, ids,
                  relation_prob: float) -> tuple:
  """(variants uint8 [N,K,R,R,3], valid bool [N,K]): each visible object moved sideways (the
  first of NULL_SHIFTS that changes pixels and leaves the pair's caption word for word the same:
  the caption is rewritten with the pair's own random stream, as the data build writes it).
  maps: the positives' scenes.render output (image, object_id)."""
  n, slots = np.asarray(params["valid"]).shape
  res = int(resolution)
  variants = np.zeros((n, slots, res, res, 3), np.uint8)
  valid = np.zeros((n, slots), bool)
  todo = _visible_slots(params, maps["object_id"])
  text = lambda i, scene: captions.caption(scene, np.random.default_rng([seed, int(ids[i])]),
                                           relation_prob)
  original = {i: text(i, descriptions[i]) for i in {i for i, _ in todo}}
  for shift in NULL_SHIFTS:
    if not todo:
      break

    def change(p, j, k):
      p["x"][j, k] = np.clip(p["x"][j, k] + shift, -1.0, 1.0)

    rows = np.array([i for i, _ in todo])
    images, described = _redraw(params, rows, [k for _, k in todo], change, res)
    left = []
    for j, (i, k) in enumerate(todo):
      same = text(i, described[j]) == original[i]
      if same and np.any(images[j] != maps["image"][i]):
        variants[i, k], valid[i, k] = images[j], True
      else:
        left.append((i, k))
    todo = left
  return variants, valid


def variant_arrays(params, maps, descriptions, resolution: int, seed: int, ids,
                   relation_prob: float) -> dict:
  """Every per-pair array the oracle negatives need, row i for pair ids[i]: `variants`,
  `variant_valid`, `changed` (one_attribute_variants), `null_variants`, `null_valid`
  (null_variants) and `object_masks` (uint8 [N,K,R,R]: each slot's visible pixels)."""
  variants, valid, changed = one_attribute_variants(params, maps, descriptions, resolution, seed,
                                                    ids)
  nulls, null_valid = null_variants(params, maps, descriptions, resolution, seed, ids,
                                    relation_prob)
  slots = np.asarray(params["valid"]).shape[1]
  return {"variants": variants, "variant_valid": valid.astype(np.uint8), "changed": changed,
          "null_variants": nulls, "null_valid": null_valid.astype(np.uint8),
          "object_masks": object_masks(maps["object_id"], slots)}


def word_frames(tags, times, slots_of: list, slots: int) -> np.ndarray:
  """int16 [K, 4, 2]: for object slot k and attribute a (ATTRIBUTES order), the log-mel frames
  [start, end) of the first caption word naming that attribute of that object; -1 where no word
  does or the synthesiser gave it no time. tags: captions.tagged_caption's per-word (object index,
  attribute) or None; times [W, 2]: speech.speak_timed's seconds; slots_of: the slot of each object
  index (scenes.describe_with_slots)."""
  out = np.full((slots, len(ATTRIBUTES), 2), -1, np.int16)
  for tag, (start, end) in zip(tags, np.asarray(times, np.float64)):
    if tag is None or np.isnan(start):
      continue
    k, a = slots_of[tag[0]], ATTRIBUTES.index(tag[1])
    if out[k, a, 0] < 0:
      out[k, a] = (int(np.floor(start * audio.FRAMES_PER_SECOND)),
                   int(np.ceil(end * audio.FRAMES_PER_SECOND)))
  return out


def semantic_negatives(world_cfg, seed: int, ids, count: int = 4, streams: int = 16) -> tuple:
  """(negatives uint8 [N,count,R,R,3], found bool [N,count], changed attribute int8 [N,count],
  changed object slot int8 [N,count]; -1 where not found) of
  the renders of pair `ids` (any order): per scene, `count` distinct images in each of which one
  attribute of one visible object changed (the semantic test's negatives, exact by construction).
  Each of up to `streams` draws edits one random visible object (one_attribute_variants with its
  own random stream); draws that repeat an earlier image are dropped."""
  ids = np.asarray(ids)
  first, last = int(ids.min()), int(ids.max())
  span = np.arange(first, last + 1)
  maps, descriptions, params = scenes_lib.render_scenes(
      len(span), seed, world_cfg.resolution, world_cfg.min_objects, world_cfg.max_objects,
      start=first + int(world_cfg.num_train) + int(world_cfg.num_val))
  rows = ids - first
  maps = {k: v[rows] for k, v in maps.items()}
  params = {k: np.asarray(v)[rows] for k, v in params.items()}
  descriptions = [descriptions[r] for r in rows]
  n, res = len(ids), int(world_cfg.resolution)
  out = np.zeros((n, count, res, res, 3), np.uint8)
  found = np.zeros((n, count), bool)
  changed = np.full((n, count), -1, np.int8)
  slots = np.full((n, count), -1, np.int8)
  for stream in range(streams):
    if found.all():
      break
    variants, valid, attr = one_attribute_variants(params, maps, descriptions, res,
                                                   seed * 1000 + 17 + stream, ids)
    pick = np.random.default_rng([seed, stream, 2]).random(valid.shape)
    slot = np.argmax(np.where(valid, pick, -1.0), axis=1)
    for i in np.nonzero(valid.any(axis=1) & ~found.all(axis=1))[0]:
      image = variants[i, slot[i]]
      have = int(found[i].sum())
      if any(np.array_equal(image, out[i, j]) for j in range(have)):
        continue
      out[i, have], found[i, have], changed[i, have] = image, True, attr[i, slot[i]]
      slots[i, have] = slot[i]
  return out, found, changed, slots
