"""The train loop on the official-layout fixture with a tiny random generator: both loss kinds run,
kill-and-resume reproduces the uninterrupted run exactly, and the sharded step matches 1 device."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from learning_words.common import checkpoints, errors, jsonio, mesh as mesh_lib
from learning_words.data import input_pipeline
from learning_words.learner import drawing, train
from learning_words.models import encoders, generator as gen_lib
from learning_words.models.segmenter import Segmenter


def _config(kind):
  c = tiny.get_config()
  c.loss.kind = kind
  c.data.batch_size = 2
  c.train.val_pairs = 2
  c.negatives.threshold = 0.2
  return c



def _generator(c):
  return gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(7))


def _params(run_dir, c, data_dir, best=False):
  """The encoders' parameters of the latest (or best) checkpoint of a run."""
  state = train.TrainState(c, steps_per_epoch=3)
  manager = train.make_checkpoint_manager(os.path.join(run_dir, "checkpoints"), 2)
  checkpoints.restore(manager, {"models": state.models, "opt": state.opt},
                      step=manager.best_step() if best else None)
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(state.models, nnx.Param))]


@pytest.mark.parametrize("kind", ["negatives_edited"])
def test_kill_and_resume_reproduces_the_uninterrupted_run(kind, data_dir, tmp_path):
  # The random-object control, whose object cells a (random) segmenter reads, and validation's
  # localisation with them.
  c = _config(kind)
  c.negatives.location = "object"
  seg = Segmenter(c.segmenter.widths, rngs=nnx.Rngs(3))
  seg.eval()
  run = lambda name, **kw: train.train_loop(c, str(tmp_path / name), data_dir, _generator(c),
                                            devices=jax.devices()[:2], segmenter=seg, **kw)
  c.train.profile_steps = "1:3"  # a jax.profiler trace of steps 2-3
  full = run("full")
  c.train.profile_steps = ""
  # Where the time went: stages and the unclaimed rest add up to the wall time (written too).
  profile = full.pop("profile")
  assert profile == jsonio.read_json(str(tmp_path / "full" / "train_profile.json"))
  assert profile["steps"] == 6 and {"step_s", "loader_s", "validation_s", "checkpoint_s",
                                    "compile_s", "setup_s"} <= set(profile)
  parts = sum(v for k, v in profile.items() if k.endswith("_s") and k != "total_s")
  assert parts == pytest.approx(profile["total_s"], abs=0.01) and profile["other_s"] >= -0.01
  traces = [f for _, _, fs in os.walk(tmp_path / "full" / "profile") for f in fs]
  assert any(f.endswith(".xplane.pb") for f in traces)
  assert set(full) >= {"A_r1", "I_r5", "score", "peak_object", "peak_border"}
  assert all(np.isfinite(v) for v in full.values())
  assert 0 <= full["peak_object"] <= 1 and 0 <= full["peak_border"] <= 1
  with pytest.raises(errors.MissingError, match="segmenter"):
    train.object_table(_generator(c), jnp.zeros((4, c.gan.sizes[0])), c, None, None)
  run("killed", max_steps=4)
  resumed = run("killed")
  assert resumed.pop("profile")["steps"] == 2
  assert resumed == full
  # A finished run trains no more and builds nothing: it returns its stored last validation.
  again = run("full")
  assert again.pop("profile") == {"steps": 0} and again == full
  # One finished before results were stored validates its last checkpoint again (no loss), once.
  os.remove(tmp_path / "full" / train.RESULT_FILE)
  again = run("full")
  assert again.pop("profile")["steps"] == 0 and again == {**full, "loss": None}
  assert run("full") == {**full, "loss": None, "profile": {"steps": 0}}
  for a, b in zip(_params(str(tmp_path / "full"), c, data_dir),
                  _params(str(tmp_path / "killed"), c, data_dir)):
    np.testing.assert_array_equal(a, b)
  # --config.train.init_from: a new run's encoders start as the best checkpoint's, optimizer fresh.
  fresh = train.TrainState(c, steps_per_epoch=3)
  train.init_from_run(fresh, str(tmp_path / "full"))
  got = [np.asarray(x) for x in jax.tree.leaves(nnx.state(fresh.models, nnx.Param))]
  for a, b in zip(got, _params(str(tmp_path / "full"), c, data_dir, best=True)):
    np.testing.assert_array_equal(a, b)
  assert int(fresh.opt.step[...]) == 0


def _drawn_terms(c, state, g, z, batch, key):
  """Plain loops over what the step sees at `state` before its update (the same models,
  positives and draw key): per accepted sample with mask cells in view, the frames term
  (mean over valid frames of -log sigmoid((own - edited) / T) on the best cell among the mask's
  cells), the same on every cell, and the peak term (one -log sigmoid of the mean gap over the
  frames whose best cell anywhere lies on the mask's cells), with whether only some frames peak
  there. Softmax base with loss.edited_temperature = 0.01."""
  positives, x_layer = encoders.draw_positives(g, z, c.negatives.layer)
  img, aud, frames = encoders.embed(state.models, positives, batch["spec"], batch["n_frames"])
  mm = drawing.heat_matchmap(img, aud, c)
  neg, masks, accepted, _ = drawing.draw(g, z, x_layer, positives, img, aud, mm, frames,
                                         jax.random.split(key)[0], c)
  img, aud, img_neg = (np.asarray(x, np.float64) for x in (img, aud, state.models.image(neg)))
  if c.model.cosine:
    img, aud, img_neg = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (img, aud, img_neg))
  masks, accepted, frames = np.asarray(masks), np.asarray(accepted), np.asarray(frames)
  grid, side = img.shape[1], masks.shape[1] // img.shape[1]
  everywhere = [(y, x) for y in range(grid) for x in range(grid)]
  terms, terms_all, peak_terms, some_frames = [], [], [], []
  for b in range(len(accepted)):
    cells = [(y, x) for y, x in everywhere
             if masks[b, y * side:(y + 1) * side, x * side:(x + 1) * side].any()]
    if not accepted[b] or not cells:
      continue
    best = lambda im, t, cells: max(im[b, y, x] @ aud[b, t] for y, x in cells)
    valid = range(max(1, int(frames[b])))
    term = lambda cells: np.mean([np.logaddexp(
        0.0, (best(img_neg, t, cells) - best(img, t, cells)) / 0.01) for t in valid])
    terms.append(term(cells))
    terms_all.append(term(everywhere))
    peaks = [t for t in valid if best(img, t, cells) >= best(img, t, everywhere)]
    if peaks:
      gap = np.mean([best(img_neg, t, cells) - best(img, t, cells) for t in peaks])
      peak_terms.append(np.logaddexp(0.0, gap / 0.01))
      some_frames.append(len(peaks) < len(valid))
  return terms, terms_all, peak_terms, some_frames


def _drawn_config():
  c = _config("negatives_edited")
  c.data.batch_size = 4
  c.loss.edited_cells = "edited"
  c.loss.base, c.loss.edited_temperature = "softmax", 0.01  # -log sigmoid((pos - neg) / T)
  return c


def test_sharded_step_matches_one_device_and_the_cached_positives(data_dir):
  """1 device, 4 devices, and 4 devices reading the positives from train.cache_positives' cache:
  the same losses and parameters after two steps. The step runs loss.edited_score=peak on the
  drawn mask's cells (cosine matchmaps, where frames peak in different cells at these random
  weights): its first edited term equals the plain loop's (_drawn_terms)."""
  c = _drawn_config()
  c.negatives.location, c.loss.edited_score, c.model.cosine = "peak", "peak", True
  src = input_pipeline.open_source(data_dir, "train")
  batch = next(iter(input_pipeline.make_loader(src, batch_size=4, frames=c.data.train_frames,
                                               train=True, seed=0)))
  g = _generator(c)
  z_table = jnp.asarray(gen_lib.standard_z(64, c.gan.sizes[0]))
  results = []
  for n_dev, cached in ((1, False), (4, False), (4, True)):
    mesh = mesh_lib.make_mesh(jax.devices()[:n_dev])
    state = train.TrainState(c, steps_per_epoch=3)
    if n_dev == 1:
      _, _, peak_terms, some_frames = _drawn_terms(
          c, state, g, z_table[batch["z_index"]], {k: jnp.asarray(v) for k, v in batch.items()},
          jax.random.key(0))
      assert peak_terms and any(some_frames)  # some samples have frames peaking elsewhere
    mesh_lib.replicate(state, mesh)
    mesh_lib.replicate(g, mesh)
    c.train.cache_positives = cached
    cache = train.draw_positive_cache(g, z_table, c)
    if cached:  # the cache holds G(z) of every row and the intervention layer's activations
      np.testing.assert_allclose(cache.images[:5], g(z_table[:5]), rtol=1e-4, atol=1e-5)
      want = g.features(z_table[:5], [c.negatives.layer])[c.negatives.layer]
      np.testing.assert_allclose(cache.layer[:5], want, rtol=1e-4, atol=1e-5)
    else:
      assert cache is None
    step = nnx.jit(lambda s, g, z, b, k, cache: train.train_step(s, g, z, b, k, c, cache=cache))
    logs = [step(state, g, z_table, input_pipeline.make_global(batch, mesh), jax.random.key(i),
                 cache) for i in range(2)]
    if n_dev == 1:
      np.testing.assert_allclose(float(logs[0]["edited"]), np.mean(peak_terms), rtol=1e-4,
                                 atol=1e-5)
    results.append(([float(l["loss"]) for l in logs],
                    [np.asarray(x) for x in jax.tree.leaves(nnx.state(state.models, nnx.Param))]))
  (loss1, p1), *others = results
  for loss, p in others:
    np.testing.assert_allclose(loss1, loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(p1, p):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # float reassociation


def test_drawn_negatives_scored_frame_by_frame_on_their_edit_cells(data_dir):
  """loss.edited_score=frames with edited_cells=edited on drawn negatives: the step's edited term
  is, per accepted sample, the mean over valid frames of -log sigmoid((own - edited) / T) on the
  two images' best cell among the cells the drawn ablation mask touches (_drawn_terms' loop)."""
  c = _drawn_config()
  c.loss.edited_score = "frames"
  c.negatives.location = "random"  # the control's masks lie off the peak: their cells matter
  src = input_pipeline.open_source(data_dir, "train")
  batch = next(iter(input_pipeline.make_loader(src, batch_size=4, frames=c.data.train_frames,
                                               train=True, seed=0)))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  g = _generator(c)
  z_table = jnp.asarray(gen_lib.standard_z(64, c.gan.sizes[0]))
  key = jax.random.key(5)
  state = train.TrainState(c, steps_per_epoch=3)
  terms, terms_all, _, _ = _drawn_terms(c, state, g, z_table[batch["z_index"]], batch, key)
  assert terms  # at least one accepted negative with cells in view
  assert abs(np.mean(terms) - np.mean(terms_all)) > 1e-3  # the region matters here
  logs = nnx.jit(lambda s, g, z, b, k: train.train_step(s, g, z, b, k, c))(
      state, g, z_table, batch, key)
  np.testing.assert_allclose(float(logs["edited"]), np.mean(terms), rtol=1e-4, atol=1e-5)


def test_optimizers_first_update_by_hand():
  c = tiny.get_config().train
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.5, 0.25])}
  c.lr, c.weight_decay = 0.1, 0.01
  c.optimizer = "sgd"  # torch-style: weight decay added to the gradient, then momentum (0 at first)
  tx = train.make_optimizer(c, steps_per_epoch=10)
  upd, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(upd["w"],
                             -0.1 * (np.array([0.5, 0.25]) + 0.01 * np.array([1.0, -2.0])),
                             rtol=1e-6)
  c.optimizer = "adam"  # Adam's first step is lr * sign(gradient) (bias-corrected m / sqrt(v))
  tx = train.make_optimizer(c, steps_per_epoch=10)
  upd, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(upd["w"], [-0.1, -0.1], rtol=1e-5)
  c.optimizer = "rmsprop"
  with pytest.raises(ValueError, match="optimizer"):
    train.make_optimizer(c, steps_per_epoch=10)


def test_warmup_then_step_decay_by_hand():
  c = tiny.get_config().train
  c.lr, c.lr_decay_epochs, c.warmup_epochs = 0.2, 3, 0.5  # 10 steps per epoch: 5 warm-up steps
  lr = train.make_lr(c, steps_per_epoch=10)
  got = [float(lr(s)) for s in (0, 1, 4, 5, 29, 30, 60)]
  # Linear from 0 to 0.2 over 5 steps, then the decay schedule counted from the warm-up's end
  # (optax.join_schedules): / 10 after 30 more steps.
  np.testing.assert_allclose(got, [0.0, 0.04, 0.16, 0.2, 0.2, 0.2, 0.02], rtol=1e-6)
  c.warmup_epochs = 0
  assert float(train.make_lr(c, 10)(0)) == pytest.approx(0.2)


def test_stored_positives_refuse_edited_losses():
  c = tiny.get_config()
  c.data.positives = "stored"
  c.loss.kind = "negatives_edited"
  with pytest.raises(ValueError, match="positives=generator"):
    train.stored_positives(c)
  c.data.positives = "drawn"
  with pytest.raises(ValueError, match="data.positives"):
    train.stored_positives(c)


def test_the_largest_latent_row_is_read_once_per_dataset(data_dir, monkeypatch):
  # The fixed z table must reach the largest z_index of the train split: a plain loop over the
  # records is the oracle. The runs of one process share the reading.
  src = input_pipeline.open_source(data_dir, "train")
  want = max(int(src[k]["z_index"]) for k in range(len(src)))
  train._train_max_z_index.cache_clear()  # pylint: disable=protected-access
  assert train._train_max_z_index(data_dir, len(src)) == want  # pylint: disable=protected-access
  opened = []
  monkeypatch.setattr(input_pipeline, "open_source", lambda *a: opened.append(a))
  assert train._train_max_z_index(data_dir, len(src)) == want  # pylint: disable=protected-access
  assert opened == []
