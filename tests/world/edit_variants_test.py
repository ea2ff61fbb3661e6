"""The oracle edits of the renders' world, checked against the renderer itself: each one-attribute
variant is the renderer's drawing of the scene with exactly that attribute of that object changed
(every other label unchanged), and each null variant is the object moved with the caption that the
data build stored left word for word the same. Then the renders' dataset with its edits trains an
`oracle` run through the real loader and jitted step."""
import jax
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from learning_words.common import errors, mesh as mesh_lib
from learning_words.data import input_pipeline
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import intervals, runner, semantic
from learning_words.learner import train
from learning_words.models import encoders
from learning_words.models import generator as gen_lib
from learning_words.world import build_data, captions, edit_variants, pairs, scenes


def _config():
  c = tiny.get_config()
  c.world.pairs = "renders"
  c.world.edit_variants = True
  c.data.positives = "stored"
  c.data.num_train, c.data.num_val, c.data.num_test = 8, 4, 4
  return c


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(config, dataset folder, the train split's records, its scenes' params) of the tiny renders
  world with its edits, built by the data build."""
  c = _config()
  root = str(tmp_path_factory.mktemp("data"))
  folder = build_data.build_synthetic(c, root, root, None, None, None, "fp")
  src = input_pipeline.open_source(folder, "train")
  recs = src.__getitems__(list(range(len(src))))
  ids = np.arange(c.data.num_train)
  _, _, params = pairs.render_pairs(c.world, c.seed, ids)
  return c, folder, recs, params


def _scene_row(params, i):
  return {k: np.asarray(v)[i:i + 1].copy() for k, v in params.items()}


def _records_with_positives(built):
  """(record, its pair id, the renderer's maps of its scene) for each train record."""
  c, _, recs, params = built
  for r in recs:
    i = int(r["id"])
    yield r, i, scenes.render(_scene_row(params, i), c.world.resolution)


def test_each_variant_is_the_renderer_drawing_one_attribute_of_one_object_changed(built):
  c, _, recs, params = built
  checked = 0
  for r, i, positive in _records_with_positives(built):
    np.testing.assert_array_equal(r["image"], positive["image"][0])
    for k in range(c.world.max_objects):
      visible = bool((positive["object_id"][0] == k + 1).any())
      np.testing.assert_array_equal(r["object_masks"][k], positive["object_id"][0] == k + 1)
      assert bool(r["variant_valid"][k]) == visible  # every visible object gets its edit here
      if not visible:
        continue
      a = int(r["changed"][k])
      attr = ATTRIBUTES[a]
      old = int(params[attr][i, k])
      matches = []
      for value in range(len(VOCAB[attr])):  # the renderer with each other value of that attribute
        if value == old:
          continue
        p = _scene_row(params, i)
        p[attr][0, k] = value
        edited = scenes.render(p, c.world.resolution)
        if np.array_equal(edited["image"][0], r["variants"][k]):
          matches.append((value, edited))
      assert len(matches) >= 1, (i, k, attr)
      value, edited = matches[0]
      same = edited["object_id"][0] == positive["object_id"][0]
      on_k = same & (positive["object_id"][0] == k + 1)
      for other in ATTRIBUTES:  # labels: only `attr` changes, and only on object k
        ours, theirs = edited[other][0], positive[other][0]
        if other == attr:
          assert np.all(ours[on_k] == value + 1) and np.all(theirs[on_k] == old + 1)
          np.testing.assert_array_equal(ours[same & ~on_k], theirs[same & ~on_k])
        else:
          np.testing.assert_array_equal(ours[same], theirs[same])
      checked += 1
  assert checked >= len(recs)  # at least one object per record


def test_null_variants_leave_the_stored_caption_word_for_word(built):
  c, _, recs, params = built
  checked = 0
  for r, i, positive in _records_with_positives(built):
    for k in np.nonzero(r["null_valid"])[0]:
      assert not np.array_equal(r["null_variants"][k], positive["image"][0])
      found = None
      for shift in edit_variants.NULL_SHIFTS:  # which move drew it: the renderer's own drawing
        p = _scene_row(params, i)
        p["x"][0, k] = np.clip(p["x"][0, k] + shift, -1.0, 1.0)
        moved = scenes.render(p, c.world.resolution)
        if np.array_equal(moved["image"][0], r["null_variants"][k]):
          found = scenes.describe(p, moved["object_id"])[0]
          break
      assert found is not None
      text = captions.caption(found, np.random.default_rng([c.seed, i]), c.world.relation_prob)
      stored = r["text"].decode() if isinstance(r["text"], bytes) else str(r["text"])
      assert text == stored  # the caption the build spoke for the positive
      checked += 1
  assert checked >= len(recs) // 2


def test_an_oracle_run_trains_on_the_stored_edits(built, tmp_path):
  c, folder, _, _ = built
  c.loss.kind = "negatives_edited"
  c.negatives.mode = "oracle"
  c.loss.edited_score = "word"  # the edited term on the changed word's frames
  c.loss.edited_invariance = 1.0  # and the frames naming nothing of the object held still
  c.loss.edited_cells = "edited"  # each frame's best cell on the edited object
  c.data.batch_size, c.train.val_pairs, c.train.epochs = 2, 2, 1
  g = gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0))
  out = train.train_loop(c, str(tmp_path / "oracle"), folder, g, max_steps=2,
                         devices=jax.devices()[:2])  # the edits sharded over two devices
  assert np.isfinite(out["loss"]) and out["loss"] > 0
  c.loss.edited_score = "misa"  # the object's cells need a frame read-out: one clear error
  with pytest.raises(errors.ConfigError, match="edited_cells"):
    train.train_loop(c, str(tmp_path / "cells"), folder, g, max_steps=1, devices=jax.devices()[:2])
  c.loss.edited_cells = "all"  # the held-still term needs the word timings: one clear error
  with pytest.raises(errors.ConfigError, match="edited_invariance"):
    train.train_loop(c, str(tmp_path / "still"), folder, g, max_steps=1, devices=jax.devices()[:2])
  c.loss.kind = "regular"  # an experiment's regular arms share the options: they are ignored
  assert np.isfinite(train.train_loop(c, str(tmp_path / "regular"), folder, g, max_steps=1,
                                      devices=jax.devices()[:2])["loss"])
  c.loss.kind = "negatives_edited"
  c.loss.edited_score, c.loss.edited_invariance = "word", 0.0
  c.negatives.mode = "random"  # drawn negatives need a latent: one clear error
  with pytest.raises(Exception, match="data.positives=generator"):
    train.train_loop(c, str(tmp_path / "drawn"), folder, g, max_steps=1, devices=jax.devices()[:2])


def test_every_objects_edit_gets_its_own_word_term(built):
  """negatives.oracle_objects='all': the step's edited term is the mean, over every sample's valid
  object slots whose changed word is spoken within the crop, of -log sigmoid((own - edited) / T)
  on that word's frames, each frame's best cell among the object's cells: a plain loop."""
  c, folder = built[0].copy_and_resolve_references(), built[1]
  c.loss.kind, c.negatives.mode, c.negatives.oracle_objects = "negatives_edited", "oracle", "all"
  c.loss.edited_score, c.loss.edited_cells = "word", "edited"
  c.loss.base, c.loss.edited_temperature, c.loss.edited_invariance = "softmax", 0.01, 0.0
  c.data.batch_size, c.data.train_frames = 8, 512  # the whole caption: every object's words
  src = input_pipeline.open_source(folder, "train")
  batch = next(iter(input_pipeline.make_loader(src, batch_size=8, frames=c.data.train_frames,
                                               train=True, seed=0)))
  state = train.TrainState(c, steps_per_epoch=2)
  models = state.models
  img, aud, frames = (np.asarray(x, np.float64) for x in encoders.embed(
      models, encoders.to_float(batch["image"]), batch["spec"], batch["n_frames"]))
  ratio, grid = models.audio.pooling_ratio, img.shape[1]
  side = batch["object_masks"].shape[-1] // grid
  terms, per_sample = [], []
  for b in range(8):
    per_sample.append(0)
    for k in range(c.world.max_objects):
      if not batch["variant_valid"][b, k]:
        continue
      neg = np.asarray(models.image(encoders.to_float(batch["variants"][b, k][None])),
                       np.float64)[0]
      cells = [(y, x) for y in range(grid) for x in range(grid)
               if batch["object_masks"][b, k, y * side:(y + 1) * side,
                                        x * side:(x + 1) * side].any()]
      start, end = batch["word_frames"][b, k, int(batch["changed"][b, k])]
      word = [t for t in range(aud.shape[1])
              if start // ratio <= t < -(-end // ratio) and t < frames[b] and start >= 0]
      if not cells or not word:
        continue
      best = lambda im, t: max(im[y, x] @ aud[b, t] for y, x in cells)
      gap = np.mean([best(neg, t) - best(img[b], t) for t in word])
      terms.append(np.logaddexp(0.0, gap / 0.01))
      per_sample[-1] += 1
  assert max(per_sample) >= 2, per_sample  # some sample contributes several edits
  step = train.make_step_fn(c, 1)
  logs = step(state, gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0)), None,
              input_pipeline.make_global(batch, mesh_lib.make_mesh(jax.devices()[:1])),
              jax.random.key(0))
  np.testing.assert_allclose(float(logs["edited"]), np.mean(terms), rtol=1e-4)


def test_word_frames_point_at_each_objects_attribute_words(built):
  """Every visible object's four attribute words have frames inside the recording, in the order
  the caption says them, on the word the scene's slot names (the WORDS table below is written by
  hand); objects not shown have none."""
  c, _, recs, params = built
  spoken = {"small": "small", "tiny": "small", "large": "large", "big": "large",
            "rubber": "rubber", "matte": "rubber", "metal": "metal", "metallic": "metal",
            "shiny": "metal", "cube": "cube", "block": "cube", "sphere": "sphere",
            "ball": "sphere", "cylinder": "cylinder"}
  for r, i, positive in _records_with_positives(built):
    frames = len(r["waveform"]) // 160 + 1
    text = r["text"].decode() if isinstance(r["text"], bytes) else str(r["text"])
    starts = []
    for k in range(c.world.max_objects):
      spans = r["word_frames"][k]
      if not (positive["object_id"][0] == k + 1).any():
        assert (spans == -1).all()
        continue
      assert (spans[:, 0] >= 0).all() and (spans[:, 1] > spans[:, 0]).all()
      assert (spans[:, 1] <= frames).all()
      starts.extend((int(s), ATTRIBUTES[a], k) for a, s in enumerate(spans[:, 0]))
    # the first mentions, in time order, are the tagged words in text order
    words = [w.rstrip(".") for w in text.split(" ")]
    for _, attribute, k in sorted(starts):
      value = VOCAB[attribute][int(params[attribute][i, k])]
      first = next(j for j, w in enumerate(words) if spoken.get(w, w) == value)
      words = words[first + 1:]


def test_semantic_test_on_the_renders_world(built):
  """Its negatives are distinct renderer drawings with one attribute of one object changed, and
  each caption's rank is the loop's: how many of its negatives score at least its positive."""
  c, folder, _, params = built
  data = input_pipeline.load_eval_arrays(folder, "train", c.data.eval_frames, 6)
  neg, found, changed, slots = edit_variants.semantic_negatives(c.world, c.seed, data["id"], 4)
  for row, i in enumerate(data["id"]):
    drawings = {}  # every one-attribute edit of every object, by the renderer
    for k in range(c.world.max_objects):
      if not params["valid"][i, k]:
        continue
      for a, attr in enumerate(ATTRIBUTES):
        for value in range(len(VOCAB[attr])):
          if value != params[attr][i, k]:
            p = _scene_row(params, int(i))
            p[attr][0, k] = value
            drawings.setdefault((a, k), []).append(
                scenes.render(p, c.world.resolution)["image"][0])
    kept = [neg[row, j] for j in range(4) if found[row, j]]
    for j, image in enumerate(kept):  # that attribute of that slot's object changed
      assert any(np.array_equal(image, d)
                 for d in drawings[(int(changed[row, j]), int(slots[row, j]))])
      assert not np.array_equal(image, data["image"][row])
      assert not any(np.array_equal(image, other) for other in kept[:j])
  models = encoders.Encoders(c.model, rngs=nnx.Rngs(0))
  models.eval()
  ctx = runner.make_context(c, models, gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(0)), data,
                            None, "")
  out = semantic.run(ctx)

  def best_cells(images):  # numpy: per valid frame, the max over cells of cell . frame
    img, aud, frames = (np.asarray(v, np.float64) for v in encoders.embed(
        models, encoders.to_float(images), data["spec"][row:row + 1],
        data["n_frames"][row:row + 1]))
    cells, steps = img[0].reshape(-1, img.shape[-1]), aud[0, :int(frames[0])]
    if c.model.cosine:
      cells = cells / np.linalg.norm(cells, axis=1, keepdims=True)
      steps = steps / np.linalg.norm(steps, axis=1, keepdims=True)
    return (cells @ steps.T).max(axis=0)

  misa = lambda images: best_cells(images).mean()

  complete = np.nonzero(found.all(axis=1))[0]
  assert out["items"]["caption"] == complete.tolist() and out["chance_r1"] == 0.2
  for row, rank in zip(complete, out["items"]["rank"]):
    pos = misa(data["image"][row:row + 1])
    loop = sum(misa(neg[row, j][None]) >= pos - 1e-6 for j in range(4))
    assert rank == loop
  # The same pairs on the frames of the changed word alone (encoder frames: log-mel // 8).
  ratio = models.audio.pooling_ratio
  wins = []
  for row in complete:
    own = best_cells(data["image"][row:row + 1])
    for j in range(4):
      start, end = data["word_frames"][row, slots[row, j], changed[row, j]]
      t = [f for f in range(len(own)) if start // ratio <= f < -(-end // ratio)]
      if start >= 0 and t:
        wins.append(own[t].mean() > best_cells(neg[row, j][None])[t].mean())
  assert out["pairwise_word_pairs"] == len(wins) > 0
  assert out["pairwise_word"] == pytest.approx(np.mean(wins))
  # its items, as the experiments' intervals read them: a run against itself differs by 0
  items = intervals.items_of({"semantic": out}, "semantic_pairwise_word")
  assert items is not None and sum(np.asarray(items[1]) >= 0) == len(wins)
  same = intervals.paired_difference([items], [items], "semantic_pairwise_word", n_resamples=50)
  assert same["diff"] == 0.0
