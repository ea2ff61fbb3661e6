"""The evaluation suite: its math against hand-computed answers and plain loops, the semantic
one-attribute filter on rendered scenes with ground truth, and `--mode=eval` end to end on a tiny
workdir whose best checkpoint is rigged so every score is known."""
import copy
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from learning_words import pipeline, workdir as wd
from learning_words.common import checkpoints, errors
from learning_words.evaluation import attributes, context as common, runner, semantic, suite
from learning_words.learner import recall, train
from learning_words.models import segmenter as seg_lib
from learning_words.models import generator as gen_lib
from learning_words.models.segmenter import Segmenter
from learning_words.world import parse, scenes
from learning_words.data import vocabulary

ATTRS = vocabulary.ATTRIBUTES


# ---------------------------------------------------------------------------
# Ranking and recall.


def test_positive_ranks_count_ties_against_the_positive():
  pos = np.array([5.0, 1.0, 2.0, 3.0])
  neg = np.array([[1.0, 2.0, 3.0],   # all below: rank 0
                  [2.0, 3.0, 4.0],   # all above: rank 3
                  [2.0, 1.0, 3.0],   # one tie, one above: rank 2
                  [3.0, 3.0, 3.0]])  # all tied: rank 3 (a constant model is never right)
  ranks = common.positive_ranks(pos, neg)
  assert ranks.tolist() == [0, 3, 2, 3]
  assert common.recall_at(ranks, (1, 3)) == {"r1": 0.25, "r3": 0.5}
  rng = np.random.default_rng(0)
  pos, neg = rng.integers(0, 4, 50).astype(float), rng.integers(0, 4, (50, 9)).astype(float)
  loop = [sum(1 for q in neg[i] if q >= pos[i]) for i in range(50)]
  assert common.positive_ranks(pos, neg).tolist() == loop


def test_retrieval_on_rigged_embeddings_gives_the_built_in_recall():
  # img_i is the one-hot e_i at one of 2x2 positions (zeros elsewhere); caption j's valid frames
  # all equal column j of a target S, so MISA(img_i, aud_j) = S[i, j] exactly. Column j puts
  # r_j = j % 12 impostor images above the true one: speech->image rank of caption j is r_j.
  n, t = 24, 5
  r = np.arange(n) % 12
  s = np.full((n, n), 0.5, np.float32)
  for j in range(n):
    s[j, j] = 1.0
    s[(j + 1 + np.arange(r[j])) % n, j] = 2.0
  img = np.zeros((n, 2, 2, n), np.float32)
  img[np.arange(n), np.arange(n) % 2, (np.arange(n) // 2) % 2, np.arange(n)] = 1.0
  frames = 1 + np.arange(n) % t
  aud = np.full((n, t, n), 100.0, np.float32)  # padded frames: large, must not count
  for j in range(n):
    aud[j, :frames[j]] = s[:, j]
  got = recall.retrieval_metrics(img, aud, frames, cosine=False)
  for k in (1, 5, 10):
    assert got[f"A_r{k}"] == np.mean(r < k)
    # image -> speech: rank of caption i in row i, ties against the query (plain loop).
    ranks = [sum(1 for j in range(n) if j != i and s[i, j] >= s[i, i]) for i in range(n)]
    assert got[f"I_r{k}"] == np.mean(np.array(ranks) < k)
  assert got["score"] == 0.5 * (got["A_r5"] + got["I_r5"])


# ---------------------------------------------------------------------------
# Attributes (Table 1).


def test_ordered_pair_fraction_matches_a_double_loop():
  assert attributes.ordered_pair_fraction([3.0], [1.0, 3.0, 5.0]) == 0.5  # (1 + 0.5 + 0) / 3
  assert attributes.ordered_pair_fraction([2.0, 2.0], [1.0]) == 1.0
  assert np.isnan(attributes.ordered_pair_fraction([], [1.0]))
  rng = np.random.default_rng(1)
  for size in ((7, 11), (40, 3), (1, 1)):
    pos, neg = rng.integers(0, 5, size[0]).astype(float), rng.integers(0, 5, size[1]).astype(float)
    loop = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    assert attributes.ordered_pair_fraction(pos, neg) == pytest.approx(loop / (len(pos) * len(neg)))


def test_presence_selection_and_category_means():
  assert len(attributes.WORDS) == 15 and attributes.WORDS[:3] == ("cube", "sphere", "cylinder")
  obj = lambda **kw: {"shape": "cube", "color": "red", "size": "small", "material": "metal", **kw}
  has = attributes.presence([{"objects": [obj(), obj(color="blue", shape="sphere")]},
                             {"objects": []}, {"objects": [obj(size="large")]}])
  on = lambda i: sorted(w for w, h in zip(attributes.WORDS, has[i]) if h)
  assert on(0) == sorted(["cube", "sphere", "red", "blue", "small", "metal"])
  assert on(1) == [] and on(2) == sorted(["cube", "red", "large", "metal"])
  mask = np.arange(30) % 3 == 0
  a = attributes.choose_images(mask, 4, np.random.default_rng(0))
  b = attributes.choose_images(mask, 4, np.random.default_rng(0))
  assert [x.tolist() for x in a] == [x.tolist() for x in b]  # seeded
  assert len(a[0]) == len(a[1]) == 4 and mask[a[0]].all() and not mask[a[1]].any()
  assert len(attributes.choose_images(mask, 50, np.random.default_rng(0))[0]) == 10  # up to n
  scores = {"gray": 0.6, "red": 0.8, "rubber": 0.5, "metal": 0.7, "large": float("nan"),
            "small": 0.9, "cube": 0.4}
  got = attributes.summarise(scores)
  assert got["categories"]["color"] == pytest.approx(0.7)  # the colours that have a score
  assert got["categories"]["material"] == pytest.approx(0.6)
  assert got["categories"]["size"] == pytest.approx(0.9)  # NaN left out
  assert got["categories"]["shape"] == pytest.approx(0.4)
  assert got["mean"] == pytest.approx((0.7 + 0.6 + 0.9 + 0.4) / 4)


# ---------------------------------------------------------------------------
# Semantic: the one-attribute filter on rendered scenes with ground-truth maps.

BASE = [dict(shape=0, color=1, size=1, material=0, x=-0.7, depth=0.2),
        dict(shape=1, color=2, size=0, material=1, x=0.0, depth=0.6),
        dict(shape=2, color=7, size=1, material=0, x=0.7, depth=0.3)]  # left to right


def _render(objects, res=32):
  """Ground-truth maps of one hand-built scene, and its parse (what the segmenter would read)."""
  p = {a: np.array([[o[a] for o in objects]]) for a in ATTRS}
  p.update(valid=np.ones((1, len(objects)), bool),
           angle=np.full((1, len(objects)), 0.3, np.float32),
           x=np.array([[o["x"] for o in objects]], np.float32),
           depth=np.array([[o["depth"] for o in objects]], np.float32))
  maps = scenes.render(p, res)
  return maps, parse.parse({a: maps[a] for a in ATTRS})[0]


def _edit(changes):
  objs = copy.deepcopy(BASE)
  for k, attr, value in changes:
    objs[k][attr] = value
  return objs


def test_one_attribute_filter_on_rendered_scenes():
  _, before = _render(BASE)
  assert [o["shape"] for o in before["objects"]] == ["cube", "sphere", "cylinder"]
  shift = 0.15
  # Every single-attribute change of every object is found, with its object and attribute.
  for k in range(3):
    for attr in ATTRS:
      for value in range(len(vocabulary.VOCAB[attr])):
        if value != BASE[k][attr]:
          _, after = _render(_edit([(k, attr, value)]))
          assert semantic.one_attribute_change(before, after, shift) == (k, attr), (k, attr, value)
  # Nothing changed, two attributes of one object, one attribute of two objects: rejected.
  assert semantic.one_attribute_change(before, _render(BASE)[1], shift) is None
  _, two_attrs = _render(_edit([(0, "color", 3), (0, "material", 1)]))
  assert semantic.attribute_changes(before, two_attrs, shift) == [(0, "color"), (0, "material")]
  assert semantic.one_attribute_change(before, two_attrs, shift) is None
  _, two_objects = _render(_edit([(0, "color", 3), (2, "shape", 0)]))
  assert semantic.one_attribute_change(before, two_objects, shift) is None
  # An object gone, or one that moved across the image, is not an attribute change.
  _, fewer = _render(BASE[:2])
  assert semantic.one_attribute_change(before, fewer, shift) is None
  _, moved = _render(_edit([(1, "x", -0.2), (1, "color", 4)]))
  assert semantic.one_attribute_change(before, moved, shift) == (1, "color")  # a small move
  _, far = _render(_edit([(1, "depth", 0.0), (1, "x", 0.5), (1, "color", 4)]))
  assert semantic.match_objects(before, far, shift) is None


def test_object_mask_is_the_rendered_object():
  maps, scene = _render(BASE)
  one = {a: maps[a][0] for a in ATTRS}
  for k, obj in enumerate(scene["objects"]):  # ordered left to right, as BASE
    np.testing.assert_array_equal(semantic.object_mask(one, obj), maps["object_id"][0] == k + 1)
  pixels = np.zeros((1, 16, 16), bool)
  pixels[0, 5, 9] = pixels[0, 6, 9] = True  # rows 5-6 -> cell 1 of 4; column 9 -> cell 2
  cells = semantic.to_layer_masks(pixels, 4)
  assert cells.shape == (1, 4, 4) and np.argwhere(cells[0]).tolist() == [[1, 2]]
  assert semantic.to_layer_masks(pixels, 16)[0].tolist() == pixels[0].tolist()


# ---------------------------------------------------------------------------
# --mode=eval end to end on a tiny workdir.


def _fake_predict(seg, images, batch_size=256):
  """Reads images (uint8 [B,R,R,3]) as one large rubber cube in the centre whose colour is the
  centre's brightness in 16-level steps: edits that change the brightness change one attribute."""
  del seg, batch_size
  images = np.asarray(images, np.float32)
  b, r = images.shape[:2]
  centre = (slice(None), slice(r // 4, 3 * r // 4), slice(r // 4, 3 * r // 4))
  level = np.clip((images[centre].mean(axis=(1, 2, 3)) - 64) // 16, 0, 7).astype(np.int32)
  maps = {a: np.zeros((b, r, r), np.int32) for a in ATTRS}
  for a, v in (("shape", 1), ("size", 2), ("material", 1)):
    maps[a][centre] = v
  maps["color"][centre] = (1 + level)[:, None, None]
  return maps


def _numpy_module(make, seed: int):
  """make()'s module with numpy weights (He-normal kernels, unit BatchNorm variances and scales,
  zeros elsewhere): no XLA compilation, which costs seconds per weight shape on a busy CPU."""
  module = nnx.eval_shape(make)
  rng = np.random.default_rng(seed)

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    if "'kernel'" in name:
      return jnp.asarray(rng.normal(0, np.sqrt(2 / np.prod(x.shape[:-1])), x.shape), x.dtype)
    return (jnp.ones if "'var'" in name or "'scale'" in name else jnp.zeros)(x.shape, x.dtype)

  nnx.update(module, jax.tree_util.tree_map_with_path(fill, nnx.state(module)))
  return module


def _config(official_root):
  c = tiny.get_config()
  c.data.source, c.data.official_dir = "official", official_root
  c.train.name = "rig"
  c.evals.split = "train"  # the fixture's largest split (6 pairs)
  return c


def _save_checkpoints(c, run_dir):
  """Step 1 (best, score 0.9): image features constant, so every image scores alike. Step 2
  (latest, score 0.1): random encoders."""
  manager = train.make_checkpoint_manager(os.path.join(run_dir, "checkpoints"), 2)
  state = _numpy_module(lambda: train.TrainState(c, steps_per_epoch=1), 0)
  save = lambda step, score: checkpoints.save(manager, step, {"models": state.models,
                                                               "opt": state.opt},
                                               metrics={"score": score})
  embed = state.models.image.embed
  kernel = embed.kernel[...]
  embed.kernel[...] = jnp.zeros_like(kernel)
  embed.bias[...] = jnp.ones_like(embed.bias[...])
  save(1, 0.9)
  embed.kernel[...] = kernel
  save(2, 0.1)
  manager.wait_until_finished()


def test_eval_mode_on_a_tiny_workdir(data_dir, official_layout, tmp_path, monkeypatch):
  workdir = str(tmp_path)
  c = _config(official_layout[0])
  os.symlink(os.path.dirname(os.path.dirname(os.path.dirname(data_dir))),
             os.path.join(workdir, "data"))
  assert os.path.realpath(wd.dataset_dir(c, workdir)) == os.path.realpath(data_dir)
  checkpoints.save_weights(os.path.join(workdir, "gan", "generator_ema"), _numpy_module(
      lambda: gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0)), 7))
  checkpoints.save_weights(os.path.join(workdir, "segmenter", "weights"), _numpy_module(
      lambda: Segmenter(c.segmenter.widths, rngs=nnx.Rngs(0)), 0))
  monkeypatch.setattr(seg_lib, "predict", _fake_predict)
  _save_checkpoints(c, os.path.join(workdir, "runs", "rig"))

  assert "eval" in pipeline.MODES
  best = pipeline.run_stage("eval", c, workdir)["rig"]
  folder = os.path.join(workdir, "runs", "rig", "eval")
  on_disk = json.load(open(os.path.join(folder, "eval.json")))
  assert on_disk["step"] == best["step"] == 1 and on_disk["checkpoint"] == "best"
  meta = ("evaluator", "run", "checkpoint", "step", "dataset", "split", "seed")
  for name in suite.EVALUATORS:
    per = json.load(open(os.path.join(folder, f"{name}.json")))
    assert per["evaluator"] == name and per["step"] == 1 and "skipped" not in per
    assert {k: v for k, v in per.items() if k not in meta} == on_disk["results"][name]
  res = best["results"]
  # Every image scores alike, and ties count against the positive: the answers are known.
  n = 6
  assert res["retrieval"]["n_pairs"] == n
  # A caption ties with all 6 images (rank 5); an image ranks the captions by their own scores
  # (distinct), so the true captions' ranks are 0..5 once each.
  assert {k: res["retrieval"][k] for k in ("A_r1", "A_r5", "A_r10", "I_r1", "I_r5", "I_r10")} == {
      "A_r1": 0.0, "A_r5": 0.0, "A_r10": 1.0, "I_r1": 1 / n, "I_r5": 5 / n, "I_r10": 1.0}
  assert res["edited_recall"]["n_captions"] == n and res["edited_recall"]["n_negatives"] == 9
  assert res["edited_recall"]["r1"] == res["edited_recall"]["r5"] == 0.0
  assert res["edited_recall"]["chance_r1"] == pytest.approx(0.1)
  sem = res["semantic"]
  assert sem["n_captions"] >= 1, sem  # the brightness edits give complete captions
  assert sem["r1"] == sem["r3"] == 0.0 and sem["mean_rank"] == 4.0
  # The fake segmenter can only read another colour; every accepted negative is counted once.
  assert sem["changed"] == {"shape": 0, "color": sem["tries"]["accepted"], "size": 0, "material": 0}
  assert sem["tries"]["accepted"] >= 4 * sem["n_captions"]
  assert sem["n_captions"] + sem["n_incomplete"] + sem["n_no_object"] == n
  assert sem["tries"]["max"] <= c.evals.semantic.max_tries
  att = res["attributes"]
  assert att["n_images"] == n and att["chance"] == 0.5
  for w in ("cube", "large", "rubber"):  # in every image: nothing to compare with
    assert att["words"][w]["n_without"] == 0 and np.isnan(att["words"][w]["score"])
  scored = [r["score"] for r in att["words"].values() if r["n_with"] and r["n_without"]]
  assert scored and all(s == 0.5 for s in scored)  # some colours are in some images only
  assert np.isnan(att["categories"]["shape"]) and np.isnan(att["categories"]["size"])
  assert att["categories"]["color"] == att["mean"] == 0.5  # the only category with a score
  # Held at equal object counts the ties remain: 0.5 wherever a category has such pairs.
  held = [v for v in att["categories_within_count"].values() if np.isfinite(v)]
  assert held and all(v == 0.5 for v in held) and att["mean_within_count"] == 0.5

  # The latest checkpoint: another step, the same cached semantic negatives.
  cache = sem["cache"]
  stamp = os.stat(cache).st_mtime_ns
  latest = runner.evaluate_runs(c, workdir, ["rig"], which="latest")["rig"]
  assert latest["step"] == 2 and os.stat(cache).st_mtime_ns == stamp
  assert latest["results"]["semantic"]["cache"] == cache
  assert latest["results"]["semantic"]["tries"] == sem["tries"]
  assert latest["results"]["semantic"]["n_captions"] == sem["n_captions"]
  for key in ("A_r1", "I_r10", "score"):
    assert 0.0 <= latest["results"]["retrieval"][key] <= 1.0
  assert 0.0 <= latest["results"]["edited_recall"]["r5"] <= 1.0
  assert json.load(open(os.path.join(folder, "retrieval.json")))["step"] == 2
  # A kept step by its number: the step's own weights (step 1's image embedding is constant).
  rig = os.path.join(workdir, "runs", "rig")
  models, step = wd.load_encoders(c, rig, "1")
  assert step == 1 and np.all(np.asarray(models.image.embed.kernel[...]) == 0)
  with pytest.raises(errors.MissingError, match=r"no checkpoint at step 3; kept steps: \[1, 2\]"):
    wd.load_encoders(c, rig, "3")

  # Deterministic for the seed: without the cache, the same negatives and the same numbers.
  first = _without_seconds(json.load(open(os.path.join(folder, "eval.json"))))
  with np.load(cache) as f:
    saved = {k: f[k] for k in f.files}
  os.remove(cache)
  runner.evaluate_runs(c, workdir, ["rig"], which="latest")["rig"]
  assert _without_seconds(json.load(open(os.path.join(folder, "eval.json")))) == first
  with np.load(cache) as f:
    assert sorted(f.files) == sorted(saved)
    for k in saved:
      np.testing.assert_array_equal(f[k], saved[k])


def _without_seconds(d):
  return {k: _without_seconds(v) if isinstance(v, dict) else v for k, v in d.items()
          if k != "seconds"}
