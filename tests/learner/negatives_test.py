"""Negatives: peak / heat map / geodesic component / resizing / unit selection against loops and
scipy, and draw_negatives on a tiny random generator (locality, acceptance schedule, one trace)."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import ndimage

from learning_words.learner import negatives
from learning_words.models import generator as gen_lib

SIZES = (8, 8, 8, 8)  # 16 px; layer4 is 8x8 with 8 units


def test_peak_and_heat_map_match_loop():
  rng = np.random.default_rng(0)
  mm = rng.normal(size=(4, 3, 5, 7)).astype(np.float32)
  mm[2, 1, 1, 6] = 50.0  # beyond sample 2's valid frames: must be ignored
  n_frames = np.array([7, 3, 2, 1])
  t, y, x = negatives.peak(jnp.asarray(mm), jnp.asarray(n_frames))
  heat = np.asarray(negatives.heat_map(jnp.asarray(mm), jnp.asarray(n_frames)))
  for b in range(4):
    best, arg = -np.inf, None
    for i in range(3):
      for j in range(5):
        for f in range(n_frames[b]):
          if mm[b, i, j, f] > best:
            best, arg = mm[b, i, j, f], (f, i, j)
    assert (int(t[b]), int(y[b]), int(x[b])) == arg
    want = np.array([[max(mm[b, i, j, :n_frames[b]]) for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(heat[b], want / want.max(), rtol=1e-6)
    assert heat[b, arg[1], arg[2]] == 1.0


def serpentine(side: int) -> np.ndarray:
  """A one-pixel path winding through rows 0, 2, 4, ... joined at alternate ends."""
  m = np.zeros((side, side), bool)
  m[::2] = True
  for i in range(1, side, 2):
    m[i, side - 1 if i % 4 == 1 else 0] = True
  return m


def geodesic_steps(region: np.ndarray, start) -> int:
  """Breadth-first depth (8-connectivity) of region from start: the dilations it needs."""
  depth = np.full(region.shape, -1)
  depth[start] = 0
  frontier = [start]
  while frontier:
    nxt = []
    for i, j in frontier:
      for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
          a, c = i + di, j + dj
          inside = 0 <= a < region.shape[0] and 0 <= c < region.shape[1]
          if inside and region[a, c] and depth[a, c] < 0:
            depth[a, c] = depth[i, j] + 1
            nxt.append((a, c))
    frontier = nxt
  return int(depth.max())


def test_peak_component_equals_scipy_label():
  rng = np.random.default_rng(1)
  side, n = 12, 40
  maps = rng.random((n, side, side)) < rng.uniform(0.3, 0.7, size=(n, 1, 1))
  maps[0] = serpentine(side)
  heat = np.where(maps, rng.uniform(0.96, 1.0, maps.shape), rng.uniform(0, 0.9, maps.shape))
  ys, xs = np.zeros(n, int), np.zeros(n, int)
  for b in range(n):  # a peak pixel inside each map (any pixel of sample b's thresholded set)
    on = np.argwhere(heat[b] > 0.95 * heat[b].max())
    ys[b], xs[b] = on[rng.integers(len(on))]
  ys[0], xs[0] = 0, 0  # the serpentine's end: the far end is ~ side^2 / 2 steps away
  assert geodesic_steps(maps[0], (0, 0)) > 2 * side
  got = np.asarray(negatives.peak_component(jnp.asarray(heat, jnp.float32),
                                            (jnp.asarray(ys), jnp.asarray(xs))))
  for b in range(n):
    labels, _ = ndimage.label(heat[b] > 0.95 * heat[b].max(), structure=np.ones((3, 3)))
    np.testing.assert_array_equal(got[b], labels == labels[ys[b], xs[b]], err_msg=f"map {b}")
  np.testing.assert_array_equal(got[0], maps[0])


def test_peak_component_per_sample_threshold_and_lone_peak():
  heat = np.array([[[1.0, 0.8, 0.6], [0.0, 0.0, 0.7], [0.9, 0.0, 0.0]]] * 3, np.float32)
  thr = jnp.asarray([0.95, 0.75, 0.55])
  zero = jnp.zeros(3, jnp.int32)
  got = np.asarray(negatives.peak_component(jnp.asarray(heat), (zero, zero), thr))
  np.testing.assert_array_equal(got[0], [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(got[1], [[1, 1, 0], [0, 0, 0], [0, 0, 0]])  # 0.9 is not connected
  np.testing.assert_array_equal(got[2], [[1, 1, 1], [0, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize("src,dst", [(4, 16), (3, 8), (16, 4), (6, 4), (8, 8)])
def test_resize_mask_matches_loop(src, dst):
  rng = np.random.default_rng(src * 100 + dst)
  mask = rng.random((3, src, src)) < 0.2
  got = np.asarray(negatives.resize_mask(jnp.asarray(mask), dst))
  assert set(np.unique(got)) <= {0.0, 1.0}
  scale = src / dst
  for b in range(3):
    for i in range(dst):
      for j in range(dst):
        if dst >= src:  # nearest: the source pixel under the target pixel's centre
          want = mask[b, int((i + 0.5) * scale), int((j + 0.5) * scale)]
        else:  # any source pixel overlapping the target cell [i*scale, (i+1)*scale)
          rows = [r for r in range(src) if r < (i + 1) * scale and r + 1 > i * scale]
          cols = [c for c in range(src) if c < (j + 1) * scale and c + 1 > j * scale]
          want = mask[b][np.ix_(rows, cols)].any()
        assert got[b, i, j] == want, (b, i, j)


def test_select_units_random_rate():
  sel = np.asarray(negatives.select_units_random(jax.random.key(0), 200, 64, 0.3))
  assert sel.shape == (200, 64) and set(np.unique(sel)) <= {0.0, 1.0}
  assert abs(sel.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / sel.size)
  assert abs(sel.mean(0) - 0.3).max() < 0.15 and abs(sel.mean(1) - 0.3).max() < 0.25
  assert len({row.tobytes() for row in sel}) > 190  # samples draw independently


def test_select_units_ranked_matches_loop():
  rng = np.random.default_rng(2)
  ranking = np.stack([rng.permutation(16) for _ in range(5)]).astype(np.int32)
  cluster = rng.integers(0, 5, size=7)
  select = jax.jit(negatives.select_units_ranked)
  for count in (0, 6, 16):  # a traced count: one trace
    got = np.asarray(select(ranking, cluster, count))
    want = np.zeros((7, 16))
    for b in range(7):
      for unit in ranking[cluster[b], :count]:
        want[b, unit] = 1
    np.testing.assert_array_equal(got, want)


# --- draw_negatives on a tiny random generator ---------------------------------------------------

def make_cfg(**kw):
  base = dict(layer="layer4", candidates=3, mode="random", p=0.5, p_step=0.1, units=3,
              units_step=2, threshold=0.95, threshold_step=0.01, heat_threshold=0.95)
  base.update(kw)
  return types.SimpleNamespace(**base)


def planted_matchmaps(seed, b=4, side=4, frames=6):
  """Matchmaps whose peak component is the peak plus one 0.97 neighbour; a disconnected 0.99 cell
  elsewhere and a 0.8 neighbour (in for heat thresholds below 0.8) stay out at 0.95."""
  rng = np.random.default_rng(seed)
  mm = rng.uniform(0, 0.5, size=(b, side, side, frames)).astype(np.float32)
  peaks = []
  for i in range(b):
    y, x, t = rng.integers(1, side - 1), rng.integers(1, side - 1), rng.integers(frames)
    mm[i, y, x, t], mm[i, y, x - 1, t], mm[i, y - 1, x, t] = 2.0, 1.94, 1.6
    mm[i, (y + 2) % side, (x + 2) % side, 0] = 1.98
    peaks.append((y, x))
  return jnp.asarray(mm), jnp.full((b,), frames), peaks


@pytest.fixture(scope="module")
def gen():
  g = gen_lib.Generator(SIZES, rngs=nnx.Rngs(0))
  return nnx.split(g)


def jit_draw(gen, cfg, traces=None):
  graphdef, state = gen

  @jax.jit
  def draw(state, z, mm, n_frames, key, ranking, cluster):
    if traces is not None:
      traces.append(1)
    g = nnx.merge(graphdef, state)
    x = g.features(z, [cfg.layer])[cfg.layer]
    return negatives.draw_negatives(g, z, x, g.render_from(cfg.layer, x), mm, n_frames, key, cfg,
                                    ranking, cluster)
  return lambda *a: draw(state, *a)


def test_random_mode_traces_once_and_edits_inside_the_mask(gen):
  traces, cfg = [], make_cfg(threshold=0.0)
  draw = jit_draw(gen, cfg, traces)
  g = nnx.merge(*gen)
  for seed in (0, 1):
    z = jax.random.normal(jax.random.key(seed), (4, SIZES[0]))
    mm, n_frames, peaks = planted_matchmaps(seed)
    neg, masks, stats = draw(z, mm, n_frames, jax.random.key(seed), None, None)
    pos = np.asarray(g(z))
    neg, masks = np.asarray(neg), np.asarray(masks)
    assert neg.shape == (4, 16, 16, 3) and masks.shape == (4, 16, 16)
    for b, (y, x) in enumerate(peaks):  # peak cell + 0.97 neighbour, each 4x4 px at 16 px
      want = np.zeros((4, 4), bool)
      want[y, x] = want[y, x - 1] = True
      np.testing.assert_array_equal(masks[b], np.kron(want, np.ones((4, 4))))
    change = np.abs(neg - pos).mean(-1)
    inside, outside = change[masks > 0].mean(), change[masks == 0].mean()
    assert inside > 4 * outside, (inside, outside)
    assert float(stats["accepted_rate"]) == 1.0 and float(stats["mean_candidate"]) == 0.0
    np.testing.assert_allclose(float(stats["mean_strength"]), 0.5)
    np.testing.assert_allclose(float(stats["mask_area"]), 2 / 16)
    assert float(stats["mean_change"]) > 0
  assert len(traces) == 1


def test_random_mode_none_accepted_returns_the_strongest(gen):
  cfg = make_cfg(threshold=1e9)
  z = jax.random.normal(jax.random.key(3), (4, SIZES[0]))
  mm, n_frames, _ = planted_matchmaps(3)
  _, _, stats = jit_draw(gen, cfg)(z, mm, n_frames, jax.random.key(0), None, None)
  assert float(stats["accepted_rate"]) == 0.0 and float(stats["mean_candidate"]) == 2.0
  np.testing.assert_allclose(float(stats["mean_strength"]), 0.7, rtol=1e-6)


def oracle_candidates(g, z, masks_layer, ranking, cluster, counts):
  """Each candidate's image, rendered by a full generator pass with a loop-built ablation."""
  b = z.shape[0]
  out = []
  for k, count in enumerate(counts):
    a = np.zeros((b, 8, 8, 8), np.float32)
    for i in range(b):
      a[i][..., ranking[cluster[i], :count]] = masks_layer[k][i][..., None]
    out.append(np.asarray(g(z, {"layer4": (jnp.asarray(a), jnp.zeros(8))})))
  return out


def test_cluster_mode_first_acceptable_candidate_wins(gen):
  g = nnx.merge(*gen)
  rng = np.random.default_rng(4)
  ranking = np.stack([rng.permutation(8) for _ in range(3)]).astype(np.int32)
  cluster = np.array([0, 2, 1, 2, 0, 1])
  z = jax.random.normal(jax.random.key(4), (6, SIZES[0]))
  mm, n_frames, peaks = planted_matchmaps(4, b=6)
  counts = [2, 4, 6]
  mask_layer = np.zeros((6, 8, 8), np.float32)
  for i, (y, x) in enumerate(peaks):
    mask_layer[i, 2 * y:2 * y + 2, 2 * x - 2:2 * x + 2] = 1
  pos = np.asarray(g(z))
  cands = oracle_candidates(g, z, [mask_layer] * 3, ranking, cluster, counts)
  mask_img = np.kron(mask_layer, np.ones((2, 2)))[..., None]
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  imagenet = lambda v: ((v + 1) / 2 - mean) / std  # the change is measured on encoder inputs
  change = np.array([[np.linalg.norm((imagenet(c[i]) - imagenet(pos[i])) * mask_img[i])
                      / np.linalg.norm(imagenet(pos[i]) * mask_img[i]) for i in range(6)]
                     for c in cands])
  threshold = float(np.median(change))
  cfg = make_cfg(mode="cluster", units=2, units_step=2, threshold=threshold, threshold_step=0.0)
  neg, masks, stats = jit_draw(gen, cfg)(z, mm, n_frames, jax.random.key(0), ranking, cluster)
  ok = change >= threshold
  choice = np.where(ok.any(0), ok.argmax(0), 2)
  assert 0 < ok.any(0).mean() and len(set(choice)) > 1  # the test exercises several outcomes
  for i in range(6):
    np.testing.assert_allclose(np.asarray(neg)[i], cands[choice[i]][i], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(masks), mask_img[..., 0])
  np.testing.assert_allclose(float(stats["accepted_rate"]), ok.any(0).mean())
  np.testing.assert_allclose(float(stats["mean_strength"]), np.mean(np.array(counts)[choice]))


def test_cluster_mode_lowers_heat_threshold_per_candidate(gen):
  g = nnx.merge(*gen)
  ranking = np.tile(np.arange(8, dtype=np.int32), (2, 1))
  cluster = np.array([1, 0, 1, 0])
  z = jax.random.normal(jax.random.key(5), (4, SIZES[0]))
  mm, n_frames, peaks = planted_matchmaps(5)
  cfg = make_cfg(mode="cluster", threshold=1e9, heat_threshold_step=0.1)  # heat 0.95, 0.85, 0.75
  neg, masks, stats = jit_draw(gen, cfg)(z, mm, n_frames, jax.random.key(0), ranking, cluster)
  assert float(stats["accepted_rate"]) == 0.0 and float(stats["mean_strength"]) == 7.0
  last = np.zeros((4, 8, 8), np.float32)  # the last candidate's mask adds the 0.8 neighbour
  for i, (y, x) in enumerate(peaks):
    for cy, cx in ((y, x), (y, x - 1), (y - 1, x)):
      last[i, 2 * cy:2 * cy + 2, 2 * cx:2 * cx + 2] = 1
  np.testing.assert_array_equal(np.asarray(masks), np.kron(last, np.ones((2, 2))))
  want = oracle_candidates(g, z, [last], ranking, cluster, [7])[0]
  np.testing.assert_allclose(np.asarray(neg), want, atol=1e-5)


def test_schedule_and_bad_mode():
  s, a, h = negatives.candidate_schedule(make_cfg(candidates=4, p=0.9, p_step=0.05), 8)
  np.testing.assert_allclose(s, [0.9, 0.95, 1.0, 1.0])
  np.testing.assert_allclose(a, [0.95, 0.94, 0.93, 0.92], rtol=1e-6)
  np.testing.assert_allclose(h, 0.95)
  s, _, _ = negatives.candidate_schedule(make_cfg(mode="cluster", units=3, units_step=3), 8)
  np.testing.assert_array_equal(s, [3, 6, 8])
  with pytest.raises(ValueError, match="mode"):
    negatives.candidate_schedule(make_cfg(mode="gradient"), 8)
