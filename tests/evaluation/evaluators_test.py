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
    assert got[f"I_r{k}"] == np.mean(r < k)  # speech -> image (the reference's I_r)
    # image -> speech (the reference's A_r): rank of caption i in row i, ties against the query
    # (plain loop).
    ranks = [sum(1 for j in range(n) if j != i and s[i, j] >= s[i, i]) for i in range(n)]
    assert got[f"A_r{k}"] == np.mean(np.array(ranks) < k)
  assert got["score"] == 0.5 * (got["A_r5"] + got["I_r5"])


# ---------------------------------------------------------------------------
# Attributes (Table 1).


def label_maps(pixels_per_image, res=32):
  """Hand-built segmenter maps: image i gets pixels_per_image[i] = {word: n} as n labelled pixels
  of that word (row-major from the top-left, one attribute head per word), background elsewhere."""
  maps = {a: np.zeros((len(pixels_per_image), res, res), np.int32) for a in ATTRS}
  for i, words in enumerate(pixels_per_image):
    for word, n in words.items():
      a = attributes.CATEGORY[word]
      flat = maps[a][i].reshape(-1)
      flat[:n] = 1 + vocabulary.VOCAB[a].index(word)
  return maps


def test_pixel_thresholds_scale_with_the_image_area():
  assert attributes.pixel_thresholds(128) == {"min": 100, "max": 700, "max_size": 20_000,
                                              "absent": 10}
  t = attributes.pixel_thresholds(32)  # 1/16 of the pixels
  assert t == pytest.approx({"min": 6.25, "max": 43.75, "max_size": 1250, "absent": 0.625})


def test_reference_protocol_and_matched_counts_by_hand():
  # 32 px: "with" 7..43 pixels (size words up to 1250), "without" 0 pixels.
  red = [10, 0, 3, 50, 20, 0, 7, 0, 6]  # with: 0, 4, 6; without: 1, 5, 7; 2, 3, 8 skipped
  blue = [0, 9, 0, 0, 0, 0, 0, 0, 0]  # with: 1; without: 0, 2, 3, ...
  large = [100, 0, 0, 3, 0, 0, 0, 0, 0]  # with: 0 (3 pixels: skipped)
  images = [{"red": r, "blue": b, "large": g} for r, b, g in zip(red, blue, large)]
  maps = label_maps(images)
  pixels = attributes.attribute_pixels(maps)
  w = attributes.WORDS.index
  np.testing.assert_array_equal(pixels[:, w("red")], red)
  np.testing.assert_array_equal(pixels[:, w("blue")], blue)
  np.testing.assert_array_equal(pixels[:, w("large")], large)
  assert pixels[:, w("gray")].sum() == 0
  with_, without = attributes.protocol_images(pixels[:, w("red")], "color", 32, 500)
  assert with_.tolist() == [0, 4, 6] and without.tolist() == [1, 5, 7]
  assert [x.tolist() for x in attributes.protocol_images(pixels[:, w("red")], "color", 32, 2)] \
      == [[0, 4], [1, 5]]  # the first n of each in test-list order
  with_l, without_l = attributes.protocol_images(pixels[:, w("large")], "size", 32, 500)
  assert with_l.tolist() == [0] and without_l.tolist() == [1, 2, 4, 5, 6, 7, 8]
  # Red's scores: 0.9 vs 0.5 (win), 0.3 vs 0.3 (tie), 0.2 vs 0.8 (loss).
  scores = np.array([0.9, 0.5, 0.0, 0.0, 0.3, 0.3, 0.2, 0.8, 0.0])
  assert attributes.paired_wins(scores, with_, without) == (1.0, 3)
  assert attributes.paired_wins(scores, with_, without, tie_credit=0.5) == (1.5, 3)
  # Object counts: with 0 (1 object), 4 (2), 6 (2); without 1 (1), 5 (1), 7 (2).
  counts = np.array([1, 1, 0, 0, 2, 1, 2, 2, 0])
  # 0 vs {1, 5}: 0.9 > 0.5, 0.9 > 0.3 (2 wins); 4 vs {7}: 0.3 < 0.8; 6 vs {7}: 0.2 < 0.8.
  assert attributes.matched_wins(scores, counts, with_, without) == (2.0, 4)
  # The pairs' images, as listed above (the intervals resample the "with" images).
  assert [x.tolist() for x in attributes.paired_images(with_, without)] == [[0, 4, 6], [1, 5, 7]]
  assert [x.tolist() for x in attributes.matched_images(counts, with_, without)] == [
      [0, 0, 4, 6], [1, 5, 7, 7]]
  # Categories pool their words' pairs: colour = (1 + 1) / (3 + 1), not the words' mean.
  words = {"red": {"wins": 1.0, "pairs": 3}, "blue": {"wins": 1.0, "pairs": 1},
           "large": {"wins": 0.0, "pairs": 1}, "cube": {"wins": 0.0, "pairs": 0}}
  got = attributes.pool_categories(words)
  assert got["categories"]["color"] == pytest.approx(0.5)
  assert got["categories"]["size"] == 0.0 and np.isnan(got["categories"]["shape"])
  assert np.isnan(got["categories"]["material"]) and got["n_pairs"] == 5
  assert got["mean"] == pytest.approx(0.25)  # colour and size only


def test_a_count_only_model_is_at_chance_when_counts_are_matched():
  """Similarity = -object count, whatever the word: images with the word hold more objects, so
  the reference's pairing scores it below 0.5; pairs of equal count are all ties (0.5 credit)."""
  counts = np.array([2, 1, 3, 1, 2, 2, 1, 3])
  with_, without = np.array([0, 2, 4, 7]), np.array([1, 3, 5, 6])
  scores = -counts.astype(float)
  wins, pairs = attributes.paired_wins(scores, with_, without, tie_credit=0.5)
  assert wins / pairs == pytest.approx(0.5 / 4)  # pairs (2|1) (3|1) (2|2) (3|1): one tie
  wins, pairs = attributes.matched_wins(scores, counts, with_, without, tie_credit=0.5)
  assert pairs == 2 and wins / pairs == 0.5  # 0 and 4 against 5 (two objects each)

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
  # A caption ties with all 6 images (rank 5: speech -> image, I_r); an image ranks the captions
  # by their own scores (distinct), so the true captions' ranks are 0..5 once each (A_r).
  assert {k: res["retrieval"][k] for k in ("A_r1", "A_r5", "A_r10", "I_r1", "I_r5", "I_r10")} == {
      "I_r1": 0.0, "I_r5": 0.0, "I_r10": 1.0, "A_r1": 1 / n, "A_r5": 5 / n, "A_r10": 1.0}
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
  # The fake segmenter's cube fills the centre (64 of 256 px at 16 px): above the colour and
  # shape words' "with" range (1.6 to 10.9 px), in every image for the size word: no pair anywhere.
  for name in ("attributes", "attributes_matched"):
    att = res[name]
    assert att["n_images"] == n and att["chance"] == 0.5 and att["features"] == "pre-ReLU"
    assert att["voices"] == ["en-us"] and att["n_pairs"] == 0 and np.isnan(att["mean"])
    assert att["words"]["large"]["n_with"] == n and att["words"]["large"]["n_without"] == 0
    assert att["words"]["red"]["n_with"] == 0 and att["words"]["small"]["n_without"] == n
    # An empty test says why, and none of its numbers pretends to measure anything.
    assert att["empty"].startswith(f"no pair: of the {n} pool images, none had")
    assert np.isnan(att["word_ranking_spearman"]) and np.isnan(att["image_variance_share"])
  # Constant image features: every cell matches alike and the peak is the first cell, (0, 0),
  # on the border and off the fake cube (the centre's 4x4 of the 8x8 grid: chance 0.25).
  loc = res["localisation"]
  assert loc["n_pairs"] == n and loc["similarity"] == "dot"
  for d in (loc, loc["by_similarity"]["dot"], loc["by_similarity"]["cosine"]):
    assert d["on_object"] == 0.0 and d["on_border"] == 1.0
    assert d["chance_on_object"] == 0.25 and d["chance_on_border"] == 28 / 64
  assert loc["items"]["on_object"] == [0] * n
  point = res["word_pointing"]  # only "large" has "with" images (all 6), none hit
  assert point["n"] == n and point["words"]["large"]["score"] == 0.0
  assert point["categories"]["size"] == 0.0 and point["chance"] == 0.25
  assert np.isnan(point["categories"]["color"])
  eff = res["edit_effect"]
  # A constant heat map: every cell passes the heat threshold, so each mask is the whole grid,
  # a quarter of it on the cube.
  assert eff["captions"] == n and eff["peak"]["mask_area"] == 1.0
  assert eff["peak"]["mask_on_object"] == 0.25 and eff["peak"]["object_masks"] == 0.0
  assert np.isnan(eff["peak"]["accepted_object_masks"])
  if eff["peak"]["accepted"] > 0:  # constant features score every image alike
    assert eff["peak"]["specificity"]["own"] == eff["peak"]["specificity"]["other"] == 0.0

  # The fake segmenter reads one cube per image, the same shape, size and material everywhere:
  # a probe fitted on one class can only say it, and is right (colour varies with brightness).
  probe = res["probe"]
  assert probe["n_objects"] == n and probe["labels"] == "segmenter" and probe["n_fit_objects"] > 0
  for row in (probe, probe["random"], probe["pixels"]):
    assert [row["categories"][a] for a in ("shape", "size", "material")] == [1.0, 1.0, 1.0]
    assert 0.0 <= row["categories"]["color"] <= 1.0
  assert probe["chance"]["shape"] == 1.0 and len(probe["items"]["correct"]) == n
  # Pairwise semantic accuracy: every image scores alike, so every pair ties and none is won.
  assert sem["pairwise"] == 0.0 and sem["pairwise_ties"] == 1.0

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
  # kept apart from the best checkpoint's numbers, which it does not replace
  latest_folder = os.path.join(workdir, "runs", "rig", "eval_latest")
  assert json.load(open(os.path.join(latest_folder, "retrieval.json")))["step"] == 2
  assert json.load(open(os.path.join(folder, "retrieval.json")))["step"] == 1
  assert wd.eval_folder("R", "latest") == os.path.join("R", "eval_latest")
  assert wd.eval_folder("R", "620") == os.path.join("R", "eval_step620")
  # A kept step by its number: the step's own weights (step 1's image embedding is constant).
  rig = os.path.join(workdir, "runs", "rig")
  models, step = wd.load_encoders(c, rig, "1")
  assert step == 1 and np.all(np.asarray(models.image.embed.kernel[...]) == 0)
  with pytest.raises(errors.MissingError, match=r"no checkpoint at step 3; kept steps: \[1, 2\]"):
    wd.load_encoders(c, rig, "3")
  # A checkpoint folder's path (--config.evals.checkpoint=PATH): that step, whatever run_folder.
  models, step = wd.load_encoders(c, "/nowhere", os.path.join(rig, "checkpoints", "1"))
  assert step == 1 and np.all(np.asarray(models.image.embed.kernel[...]) == 0)
  with pytest.raises(errors.ConfigError, match="checkpoint folder's path"):
    wd.load_encoders(c, rig, os.path.join(rig, "checkpoints"))

  # Deterministic for the seed: without the cache, the same negatives and the same numbers.
  first = _without_seconds(json.load(open(os.path.join(latest_folder, "eval.json"))))
  with np.load(cache) as f:
    saved = {k: f[k] for k in f.files}
  os.remove(cache)
  runner.evaluate_runs(c, workdir, ["rig"], which="latest")["rig"]
  assert _without_seconds(json.load(open(os.path.join(latest_folder, "eval.json")))) == first
  with np.load(cache) as f:
    assert sorted(f.files) == sorted(saved)
    for k in saved:
      np.testing.assert_array_equal(f[k], saved[k])

  # A rerun pipeline (reuse) keeps the stored evaluation of the same checkpoint and evaluators,
  # without computing or writing anything; one of another step, split or evaluator list is not
  # taken for it.
  stored_path = os.path.join(latest_folder, "eval.json")
  stamp = os.stat(stored_path).st_mtime_ns
  kept = runner.evaluate_runs(c, workdir, ["rig"], which="latest", reuse=True)["rig"]
  assert os.stat(stored_path).st_mtime_ns == stamp and kept == json.load(open(stored_path))
  data_dir = kept["dataset"]
  stored = lambda c: runner.stored_evaluation(c, workdir, "rig", "latest", c.evals.names, data_dir)
  assert stored(c) == kept
  other = c.copy_and_resolve_references()
  other.evals.split = "val"
  assert stored(other) is None
  fewer = {k: v for k, v in kept["results"].items() if k != "probe"}
  for changed in ({"step": 1}, {"results": fewer}):
    with open(stored_path, "w") as f:
      json.dump({**kept, **changed}, f)
    assert stored(c) is None


def _without_seconds(d):
  return {k: _without_seconds(v) if isinstance(v, dict) else v for k, v in d.items()
          if k != "seconds"}


def test_semantic_negatives_come_from_the_package_when_its_key_matches(tmp_path, monkeypatch):
  """A shipped negatives file with the same key is copied into the cache and not searched for; any
  other key is built. Each shipped file's name is the hash of the settings stored in it."""
  import hashlib  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  from learning_words.common import assets  # pylint: disable=g-import-not-at-top
  shipped = os.path.join(assets.ASSETS_DIR, "semantic_negatives")
  names = [f for f in os.listdir(shipped) if f.endswith(".npz")]
  assert names
  for name in names:
    with np.load(os.path.join(shipped, name)) as f:
      info = json.loads(str(f["settings"]))
    assert name == f"semantic_{hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]}.npz"

  package = tmp_path / "assets"
  (package / "semantic_negatives").mkdir(parents=True)
  monkeypatch.setattr(assets, "ASSETS_DIR", str(package))
  info = {"seed": 3, "z_index": [1, 2]}
  key = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]
  np.savez(package / "semantic_negatives" / f"semantic_{key}.npz", settings=json.dumps(info),
           found=np.ones((2, 4), bool))
  monkeypatch.setattr(semantic, "settings", lambda ctx, z: info)
  built = []
  monkeypatch.setattr(semantic, "build_negatives",
                      lambda ctx, z: built.append(z) or {"found": np.zeros((2, 4), bool)})
  ctx = types.SimpleNamespace(cache_dir=str(tmp_path / "cache"))
  out, path = semantic.load_or_build(ctx, [1, 2])
  assert not built and out["found"].all() and os.path.isfile(path)
  info = {"seed": 4, "z_index": [1, 2]}  # another key: searched for
  out, _ = semantic.load_or_build(ctx, [1, 2])
  assert built and not out["found"].any()
