"""Cluster-guided negatives in training (official-layout fixture, tiny random generator):
compute_concepts is deterministic with a well-formed padded ranking, its feature pass is the step's
(encoders.embed + clustering.peak_product), the cluster choice matches a numpy oracle and never
picks a padded cluster, the drawn negatives follow the ranking, the cluster-mode step runs, traced
once across different concept arrays, and the loop recomputes on schedule and resumes from the
saved concept arrays."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import ndimage

from configs import tiny
from learning_words.common import mesh as mesh_lib
from learning_words.data import input_pipeline
from learning_words.learner import clustering, concepts, drawing, matchmap
from learning_words.learner import train
from learning_words.models import encoders, generator as gen_lib


def _config():
  c = tiny.get_config()
  c.loss.kind = "negatives_edited"
  c.negatives.mode = "cluster"
  c.data.batch_size = 2
  c.train.val_pairs = 2
  c.negatives.threshold = 0.2
  c.concepts.n_clusters = 2  # the live dimensions of embed_dim 8 cut in about 2
  c.concepts.min_size = 2    # clusters of >= 2 dimensions kept: at least one
  c.concepts.dissect_images = 6
  c.concepts.chunk = 4
  c.concepts.dissect_size = 16
  return c



@pytest.fixture(scope="module")
def setup(data_dir):
  """(config, state, generator, z table, training pairs) shared by the tests."""
  c = _config()
  g = gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(7))
  state = train.TrainState(c, steps_per_epoch=3)
  pairs = input_pipeline.load_eval_arrays(data_dir, "train", c.data.train_frames,
                                          c.concepts.max_points)
  z_table = jnp.asarray(gen_lib.standard_z(64, c.gan.sizes[0]))
  return c, state, g, z_table, pairs


def test_compute_concepts_is_deterministic_with_a_padded_ranking(setup):
  c, state, g, z_table, pairs = setup
  before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(state.models, nnx.BatchStat))]
  first = clustering.compute_concepts(state.models, g, z_table, pairs, c)
  second = clustering.compute_concepts(state.models, g, z_table, pairs, c)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  k = clustering.padded_clusters(c)
  units = gen_lib.layer_shapes(c.gan.sizes)[c.negatives.layer][2]
  assert k == 2  # min(n_clusters 2, embed_dim 8 // min_size 2)
  assert first.centroids.shape == (k, c.model.embed_dim)
  assert first.ranking.shape == (k, units) and first.ranking.dtype == np.int32
  for row in first.ranking:
    np.testing.assert_array_equal(np.sort(row), np.arange(units))
  kept = clustering.n_kept(first)
  assert 1 <= kept <= k
  for row in first.centroids[:kept]:  # indicators / n of >= min_size dimensions
    assert np.count_nonzero(row) >= c.concepts.min_size
    np.testing.assert_allclose(row.sum(), 1.0, rtol=1e-6)
  assert not np.any(first.centroids[kept:])
  # Evaluated in eval mode (batch statistics untouched), left in train mode.
  np.testing.assert_array_equal(before, [np.asarray(x) for x in jax.tree.leaves(
      nnx.state(state.models, nnx.BatchStat))])
  assert not state.models.audio.norm.use_running_average


def test_pair_points_are_the_steps_peak_products(setup):
  c, state, g, z_table, pairs = setup
  z, spec, n = z_table[pairs["z_index"][:2]], pairs["spec"][:2], pairs["n_frames"][:2]
  state.models.eval()
  try:
    got, points, ok = clustering.pair_points(state.models, g, z, spec, n,
                                             layer=c.negatives.layer, cosine=False)
    img, aud, frames = encoders.embed(
        state.models, encoders.draw_positives(g, z, c.negatives.layer)[0], spec, n)
  finally:
    state.models.train()
  want = clustering.peak_product(img, aud, matchmap.matchmap(img, aud), frames)  # tested by loop
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  img, aud, points, ok = (np.asarray(v) for v in (img, aud, points, ok))
  h, w = img.shape[1:3]
  for b in range(2):  # the reference's image points: runs of the time-mean matchmap (loop)
    mean = np.array([[np.mean([img[b, y, x] @ aud[b, t] for t in range(int(frames[b]))])
                      for x in range(w)] for y in range(h)]).reshape(-1)
    labels, count = ndimage.label(mean > 0.5 * mean.max(), structure=np.ones(3))
    centres = [int(np.array(np.where(labels == i + 1)).mean().round()) for i in range(count)]
    assert ok[b].sum() == count >= 1
    want = img[b].reshape(h * w, -1)[centres]
    np.testing.assert_allclose(points[b][ok[b]], want, rtol=1e-4, atol=1e-6)


def _arrays(rng, k=5, d=6, c=7, valid=3):
  centroids = np.zeros((k, d), np.float32)
  centroids[:valid] = rng.normal(size=(valid, d))
  return clustering.ConceptArrays(
      centroids, rng.normal(size=d).astype(np.float32),
      rng.uniform(0.5, 2.0, size=d).astype(np.float32),
      np.stack([rng.permutation(c) for _ in range(k)]).astype(np.int32))


def test_choose_clusters_matches_oracle_and_skips_padding():
  choose = jax.jit(clustering.choose_clusters, static_argnums=3)
  rng = np.random.default_rng(0)
  arrays = _arrays(rng)
  product = rng.normal(size=(64, 6)).astype(np.float32)
  got = np.asarray(choose(jax.random.key(0), product, arrays, 4))
  assert got.shape == (4, 64)
  for b in range(64):  # oracle: best clipped projection of the standardised feature, valid only
    scores = [min(max(((product[b] - arrays.mean) / arrays.std) @ arrays.centroids[j], 0), 4)
              for j in range(3)]
    assert got[0, b] == int(np.argmax(scores))
  assert np.all(got < 3)
  # No positive score anywhere: sample_clusters draws uniformly over all 5 rows; ours over the 3.
  negative = clustering.ConceptArrays(-np.abs(arrays.centroids), np.zeros(6, np.float32),
                                            np.ones(6, np.float32), arrays.ranking)
  drawn = np.asarray(choose(jax.random.key(1), np.abs(product), negative,
                                                      200))[1:]
  counts = np.bincount(drawn.ravel(), minlength=5)
  assert counts[3:].sum() == 0
  np.testing.assert_allclose(counts[:3] / counts.sum(), 1 / 3, atol=0.02)
  # No valid cluster: every draw is some row (all rows are the fallback ranking in training).
  empty = clustering.ConceptArrays(np.zeros((5, 6), np.float32), *arrays[1:])
  none = np.asarray(choose(jax.random.key(2), product, empty, 4))
  assert none.min() >= 0 and none.max() < 5


def test_cluster_step_runs_and_traces_once(setup, data_dir):
  c, _, g, z_table, pairs = setup
  src = input_pipeline.open_source(data_dir, "train")
  batch = next(iter(input_pipeline.make_loader(src, batch_size=2, frames=c.data.train_frames,
                                               train=True, seed=0)))
  mesh = mesh_lib.make_mesh(jax.devices()[:2])
  state = train.TrainState(c, steps_per_epoch=3)
  first = clustering.compute_concepts(state.models, g, z_table, pairs, c)
  rng = np.random.default_rng(3)
  other = clustering.ConceptArrays(  # different values, same shapes
      np.roll(first.centroids, 1, axis=0), first.mean + 1.0, first.std * 2.0,
      np.stack([rng.permutation(first.ranking.shape[1]) for _ in first.ranking]).astype(np.int32))
  mesh_lib.replicate(state, mesh)
  mesh_lib.replicate(g, mesh)
  traces = []

  def step(s, g, z, b, k, arrays):
    traces.append(1)  # runs at trace time only
    return train.train_step(s, g, z, b, k, c, concept_arrays=arrays)

  step = nnx.jit(step)
  global_batch = input_pipeline.make_global(batch, mesh)
  for i, arrays in enumerate((first, other)):
    logs = step(state, g, z_table, global_batch, jax.random.key(i),
                clustering.replicate(arrays, mesh))
    logs = {k: float(v) for k, v in logs.items()}
    assert all(np.isfinite(v) for v in logs.values()), logs
    assert {"loss", "neg/accepted_rate", "neg/mean_strength", "neg/mask_area"} <= set(logs)
    # Cluster mode: the strength is a unit count from the schedule (4, 6, 8, 8 of 8 units).
    assert c.negatives.units <= logs["neg/mean_strength"] <= 8
  assert len(traces) == 1
  with pytest.raises(ValueError, match="concept arrays"):
    train.train_step(state, g, z_table, global_batch, jax.random.key(0), c)


def test_draw_uses_the_ranking(setup):
  """Cluster mode ablates the ranked units: reversing every row of the ranking changes the
  negatives (4 of the 8 units at the first candidate: the other half)."""
  c, _, g, z_table, pairs = setup
  state = train.TrainState(c, steps_per_epoch=3)  # its batch statistics move: not the shared one
  arrays = clustering.compute_concepts(state.models, g, z_table, pairs, c)
  flipped = arrays._replace(ranking=arrays.ranking[:, ::-1].copy())

  @nnx.jit
  def negatives_of(models, g, z, spec, n_frames, ranking):
    positives, x_layer = encoders.draw_positives(g, z, c.negatives.layer)
    img, aud, frames = encoders.embed(models, positives, spec, n_frames)
    mm = matchmap.matchmap(img, aud)
    neg, _, _, stats = drawing.draw(g, z, x_layer, positives, img, aud, mm, frames, jax.random.key(0),
                               c, arrays._replace(ranking=ranking))
    return neg, stats

  args = (state.models, g, z_table[pairs["z_index"][:4]], pairs["spec"][:4], pairs["n_frames"][:4])
  neg, stats = negatives_of(*args, jnp.asarray(arrays.ranking))
  neg_flipped, _ = negatives_of(*args, jnp.asarray(flipped.ranking))
  assert np.all(np.isfinite(np.asarray(neg))) and float(stats["mask_area"]) > 0
  assert not np.allclose(neg, neg_flipped)


def test_train_loop_recomputes_on_schedule_and_resumes_from_saved_concepts(data_dir, tmp_path,
                                                                           monkeypatch):
  c = _config()
  c.concepts.every_epochs = 1  # 3 steps per epoch: concepts at steps 0 and 3
  calls = []
  compute = train._compute_concepts  # pylint: disable=protected-access

  def spy(writer, step, *args):
    calls.append(step)
    return compute(writer, step, *args)

  monkeypatch.setattr(train, "_compute_concepts", spy)
  run = lambda steps: train.train_loop(c, str(tmp_path / "run"), data_dir,
                                       gen_lib.Generator(c.gan.sizes, rngs=nnx.Rngs(7)),
                                       max_steps=steps, devices=jax.devices()[:2])
  metrics = run(4)
  assert calls == [0, 3]
  # the concept recomputations are a part of the run's profile
  assert metrics.pop("profile")["concepts_s"] > 0
  assert metrics and all(np.isfinite(v) for v in metrics.values())
  manager = train.make_checkpoint_manager(str(tmp_path / "run" / "checkpoints"), 2)
  saved = clustering.restore_saved(manager, 4)
  assert saved.ranking.shape == (clustering.padded_clusters(c), 8)
  assert clustering.n_kept(saved) >= 1
  calls.clear()
  run(5)  # resumed between recomputations: the saved arrays, no recomputation
  assert calls == []
