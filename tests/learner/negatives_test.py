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


def scipy_peak_mask(heat, y, x, threshold=0.95, ring=True):
  """Oracle of the reference's mask: label the thresholded map (8-connected), take the peak's
  component, then one binary dilation with a 3x3 structure."""
  labels, _ = ndimage.label(heat > threshold * heat.max(), structure=np.ones((3, 3)))
  comp = labels == labels[y, x]
  return ndimage.binary_dilation(comp, structure=np.ones((3, 3))) if ring else comp


def test_peak_mask_is_component_plus_ring_as_scipy():
  rng = np.random.default_rng(5)
  side, n = 8, 30
  heat = rng.random((n, side, side)).astype(np.float32)
  heat[:10] = np.where(rng.random((10, side, side)) < 0.5, heat[:10] * 0.9, heat[:10])
  heat[3, :, :] = 0.1  # a lone peak in the corner: the ring is cut at the border (4 cells)
  heat[3, 0, 0] = 1.0
  ys, xs = np.zeros(n, int), np.zeros(n, int)
  for b in range(n):
    ys[b], xs[b] = np.unravel_index(np.argmax(heat[b]), heat[b].shape)
  for ring in (True, False):
    got = np.asarray(negatives.peak_mask(jnp.asarray(heat), (jnp.asarray(ys), jnp.asarray(xs)),
                                         0.95, ring))
    for b in range(n):
      np.testing.assert_array_equal(got[b], scipy_peak_mask(heat[b], ys[b], xs[b], 0.95, ring))
  assert got[3].sum() == 1 and np.asarray(negatives.peak_mask(
      jnp.asarray(heat[3:4]), (jnp.zeros(1, int), jnp.zeros(1, int))))[0].sum() == 4


def test_retry_schedule_matches_the_reference_rule_loop():
  coins = np.random.default_rng(6).random((7, 50))
  p, thr = negatives.retry_schedule(jnp.asarray(coins), 0.4, 0.05, 0.95, 0.01, 0.2)
  p, thr = np.asarray(p), np.asarray(thr)
  for b in range(50):
    pp, tt = 0.4, 0.95
    for k in range(7):
      np.testing.assert_allclose([p[k, b], thr[k, b]], [min(pp, 1.0), tt], atol=1e-6)
      if coins[k, b] < 0.2:  # the reference's failed try: 20% lower the threshold, else raise p
        tt -= 0.01
      else:
        pp += 0.05


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
  base = dict(layer="layer4", candidates=3, mode="random", ring=True, p=0.5, p_step=0.1, units=3,
              units_step=2, threshold=0.95, threshold_step=0.01, threshold_drop_prob=0.2,
              heat_threshold=0.95, heat_threshold_step=0.0, cluster_threshold_step=0.0)
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


def oracle_masks(mm, peaks, threshold=0.95, ring=True):
  """The reference's masks of planted matchmaps on their 4x4 grid (scipy oracle) [B,4,4]."""
  heat = np.asarray(mm).max(-1)
  return np.stack([scipy_peak_mask(heat[b], y, x, threshold, ring)
                   for b, (y, x) in enumerate(peaks)])


@pytest.fixture(scope="module")
def gen():
  g = gen_lib.Generator(SIZES, rngs=nnx.Rngs(0))
  return nnx.split(g)


def jit_draw(gen, cfg, traces=None, groups=1):
  graphdef, state = gen

  @jax.jit
  def draw(state, z, mm, n_frames, key, ranking, cluster):
    if traces is not None:
      traces.append(1)
    g = nnx.merge(graphdef, state)
    x = g.features(z, [cfg.layer])[cfg.layer]
    return negatives.draw_negatives(g, z, x, g.render_from(cfg.layer, x), mm, n_frames, key, cfg,
                                    ranking, cluster, groups)
  return lambda *a: draw(state, *a)


IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


def oracle_change(neg, pos, mask_img):
  """||(neg - pos) * mask|| / ||pos * mask|| on ImageNet-normalised images (numpy)."""
  norm = lambda v: ((v + 1) / 2 - IMAGENET[0]) / IMAGENET[1]
  m = mask_img[..., None]
  return np.linalg.norm((norm(neg) - norm(pos)) * m) / np.linalg.norm(norm(pos) * m)


@pytest.mark.parametrize("ring", [True, False])
def test_random_mode_traces_once_and_edits_inside_the_mask(gen, ring):
  traces, cfg = [], make_cfg(threshold=0.0, ring=ring)
  draw = jit_draw(gen, cfg, traces)
  g = nnx.merge(*gen)
  for seed in (0, 1):
    z = jax.random.normal(jax.random.key(seed), (4, SIZES[0]))
    mm, n_frames, peaks = planted_matchmaps(seed)
    neg, masks, accepted, stats = draw(z, mm, n_frames, jax.random.key(seed), None, None)
    pos = np.asarray(g(z))
    neg, masks = np.asarray(neg), np.asarray(masks)
    assert neg.shape == (4, 16, 16, 3) and masks.shape == (4, 16, 16)
    want = oracle_masks(mm, peaks, ring=ring)  # each 4x4 grid cell is 4x4 px at 16 px
    np.testing.assert_array_equal(masks, np.kron(want, np.ones((1, 4, 4))))
    change = np.abs(neg - pos).mean(-1)
    inside, outside = change[masks > 0].mean(), change[masks == 0].mean()
    assert inside > 4 * outside, (inside, outside)
    assert np.asarray(accepted).all() and float(stats["accepted_rate"]) == 1.0
    assert float(stats["mean_tries"]) == 1.0
    assert float(stats["renders"]) == 1.0  # one round: try 0 of every sample
    np.testing.assert_allclose(float(stats["mean_strength"]), 0.5)
    np.testing.assert_allclose(float(stats["mask_area"]), want.mean(), rtol=1e-6)
    assert float(stats["mean_change"]) > 0
  assert len(traces) == 1


def oracle_rounds(needed, k, slots):
  """Rounds of the work queue (first_acceptable) for samples that need needed[i] tries (their
  first acceptable try + 1, or k), `slots` renders a round shared in order among the pending
  samples: a plain loop over rounds and slots."""
  done_tries, rounds = [0] * len(needed), 0
  while any(d < n for d, n in zip(done_tries, needed)):
    pending = [i for i, (d, n) in enumerate(zip(done_tries, needed)) if d < n]
    got = [0] * len(needed)
    for slot in range(slots):
      got[pending[slot % len(pending)]] += 1
    done_tries = [min(d + g, k) for d, g in zip(done_tries, got)]
    rounds += 1
  return rounds


@pytest.mark.parametrize("groups", [1, 3])
def test_random_mode_matches_the_reference_retry_loop(gen, groups):
  """The work queue against the reference's per-sample loop (one generator call per try) with the
  same random draws: the same negatives, acceptance, tries and statistics, in one queue or in
  one per group of 4 samples; and as many rounds as a plain simulation of the queue takes."""
  g = nnx.merge(*gen)
  b, k = 12, 4
  z = jax.random.normal(jax.random.key(7), (b, SIZES[0]))
  mm, n_frames, peaks = planted_matchmaps(7, b=b)
  mask_grid = oracle_masks(mm, peaks)
  mask_layer = np.kron(mask_grid, np.ones((1, 2, 2), np.float32))  # 4x4 grid -> layer4's 8x8
  mask_img = np.kron(mask_grid, np.ones((1, 4, 4)))
  pos = np.asarray(g(z))
  key = jax.random.key(3)
  uniforms, coins = (np.asarray(v) for v in negatives.draw_tries(key, k, b, 8))

  def render(i, units):  # one sample, one try: a full generator pass with the ablation
    a = (mask_layer[i][..., None] * units[None, None, :])[None].astype(np.float32)
    return np.asarray(g(z[i:i + 1], {"layer4": (jnp.asarray(a), jnp.zeros(8))}))[0]

  # A threshold that some samples meet at once, some later and some never.
  first = np.array([oracle_change(render(i, (uniforms[0, i] < 0.3).astype(np.float32)), pos[i],
                                  mask_img[i]) for i in range(b)])
  cfg = make_cfg(candidates=k, p=0.3, p_step=0.05, threshold=float(np.quantile(first, 0.85)),
                 threshold_step=0.01, threshold_drop_prob=0.5)
  want_neg, want_ok, want_tries, want_p = [], [], [], []
  for i in range(b):
    p, thr = cfg.p, cfg.threshold
    for t in range(k):
      image = render(i, (uniforms[t, i] < min(p, 1.0)).astype(np.float32))
      if oracle_change(image, pos[i], mask_img[i]) >= thr:
        want_ok.append(True)
        break
      if t == k - 1:
        want_ok.append(False)
        break
      if coins[t, i] < cfg.threshold_drop_prob:
        thr -= cfg.threshold_step
      else:
        p += cfg.p_step
    want_neg.append(image)
    want_tries.append(t + 1)
    want_p.append(min(p, 1.0))
  neg, masks, accepted, stats = jit_draw(gen, cfg, groups=groups)(z, mm, n_frames, key, None, None)
  want_ok = np.array(want_ok)
  assert 0 < want_ok.mean() < 1 and len(set(want_tries)) > 2  # several outcomes exercised
  np.testing.assert_array_equal(np.asarray(accepted), want_ok)
  np.testing.assert_allclose(np.asarray(neg), np.stack(want_neg), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(masks), mask_img)
  np.testing.assert_allclose(float(stats["accepted_rate"]), want_ok.mean())
  np.testing.assert_allclose(float(stats["mean_tries"]), np.mean(np.array(want_tries)[want_ok]),
                             rtol=1e-6)
  np.testing.assert_allclose(float(stats["mean_strength"]), np.mean(want_p), rtol=1e-6)
  n = b // groups
  rounds = [oracle_rounds(want_tries[i:i + n], k, n) for i in range(0, b, n)]
  np.testing.assert_allclose(float(stats["renders"]), np.mean(rounds), rtol=1e-6)


def test_random_mode_none_accepted(gen):
  cfg = make_cfg(threshold=1e9)
  z = jax.random.normal(jax.random.key(3), (4, SIZES[0]))
  mm, n_frames, _ = planted_matchmaps(3)
  _, _, accepted, stats = jit_draw(gen, cfg)(z, mm, n_frames, jax.random.key(0), None, None)
  assert not np.asarray(accepted).any() and float(stats["accepted_rate"]) == 0.0
  assert float(stats["mean_tries"]) == 0.0
  assert float(stats["renders"]) == 3.0  # every try of every sample: K rounds of B


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
  mask_grid = oracle_masks(mm, peaks)
  mask_layer = np.kron(mask_grid, np.ones((1, 2, 2), np.float32))
  pos = np.asarray(g(z))
  cands = oracle_candidates(g, z, [mask_layer] * 3, ranking, cluster, counts)
  mask_img = np.kron(mask_grid, np.ones((1, 4, 4)))
  change = np.array([[oracle_change(c[i], pos[i], mask_img[i]) for i in range(6)] for c in cands])
  threshold = float(np.median(change))
  cfg = make_cfg(mode="cluster", units=2, units_step=2, threshold=threshold + 0.05,
                 cluster_threshold_step=0.05)  # the first check is at threshold
  neg, masks, accepted, stats = jit_draw(gen, cfg)(z, mm, n_frames, jax.random.key(0), ranking,
                                                   cluster)
  # later tries check lower thresholds: threshold - 0.05 k
  ok = change >= threshold - 0.05 * np.arange(3)[:, None]
  choice = np.where(ok.any(0), ok.argmax(0), 2)
  assert 0 < ok.any(0).mean() and len(set(choice)) > 1  # the test exercises several outcomes
  for i in range(6):
    np.testing.assert_allclose(np.asarray(neg)[i], cands[choice[i]][i], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(masks), mask_img)
  np.testing.assert_array_equal(np.asarray(accepted), ok.any(0))
  np.testing.assert_allclose(float(stats["mean_strength"]), np.mean(np.array(counts)[choice]))


def test_cluster_mode_grows_the_ablation_mask_and_checks_the_first(gen):
  g = nnx.merge(*gen)
  ranking = np.tile(np.arange(8, dtype=np.int32), (2, 1))
  cluster = np.array([1, 0, 1, 0])
  z = jax.random.normal(jax.random.key(5), (4, SIZES[0]))
  mm, n_frames, peaks = planted_matchmaps(5)
  pos = np.asarray(g(z))
  first = oracle_masks(mm, peaks, 0.95, ring=False)  # on a 4x4 grid the ring fills it
  last = oracle_masks(mm, peaks, 0.75, ring=False)  # heat 0.95, 0.85, 0.75: adds the 0.8 cell
  assert (last.sum((1, 2)) > first.sum((1, 2))).all()
  want = oracle_candidates(g, z, [np.kron(last, np.ones((1, 2, 2)))], ranking, cluster, [7])[0]
  # The change is measured inside the *first* mask (heat 0.95), not the grown one.
  change = np.array([oracle_change(want[i], pos[i], np.kron(first[i], np.ones((4, 4))))
                     for i in range(4)])
  cfg = make_cfg(mode="cluster", threshold=1e9, heat_threshold_step=0.1, ring=False)
  neg, masks, accepted, stats = jit_draw(gen, cfg)(z, mm, n_frames, jax.random.key(0), ranking,
                                                   cluster)
  assert not np.asarray(accepted).any() and float(stats["mean_strength"]) == 7.0
  np.testing.assert_array_equal(np.asarray(masks), np.kron(last, np.ones((1, 4, 4))))
  np.testing.assert_allclose(np.asarray(neg), want, atol=1e-5)
  np.testing.assert_allclose(float(stats["mean_change"]), change.mean(), rtol=1e-4)


def test_cluster_schedule_and_bad_mode(gen):
  counts, accept, heat = negatives.cluster_schedule(
      make_cfg(mode="cluster", candidates=4, units=3, units_step=3, heat_threshold_step=0.1,
               cluster_threshold_step=0.05), 8)
  np.testing.assert_array_equal(counts, [3, 6, 8, 8])
  np.testing.assert_allclose(accept, [0.90, 0.85, 0.80, 0.75], rtol=1e-6)
  np.testing.assert_allclose(heat, [0.95, 0.85, 0.75, 0.65], rtol=1e-6)
  z = jax.random.normal(jax.random.key(0), (4, SIZES[0]))
  mm, n_frames, _ = planted_matchmaps(0)
  with pytest.raises(ValueError, match="mode"):
    jit_draw(gen, make_cfg(mode="gradient"))(z, mm, n_frames, jax.random.key(0), None, None)


def test_random_location_control_moves_the_same_mask(gen):
  """negatives.location='random': each sample's mask is the peak's mask rolled by its drawn shift
  (same area and shape), and the edit lands there."""
  g = nnx.merge(*gen)
  cfg = make_cfg(threshold=0.0, location="random")
  z = jax.random.normal(jax.random.key(9), (4, SIZES[0]))
  mm, n_frames, peaks = planted_matchmaps(9)
  key = jax.random.key(4)
  neg, masks, _, stats = jit_draw(gen, cfg)(z, mm, n_frames, key, None, None)
  dy, dx = (np.asarray(v) for v in negatives.draw_shifts(jax.random.fold_in(key, 1), 4, 4, 4))
  at_peak = oracle_masks(mm, peaks)
  moved = np.stack([np.roll(at_peak[b], (dy[b], dx[b]), axis=(0, 1)) for b in range(4)])
  assert (dy != 0).any() or (dx != 0).any()
  np.testing.assert_array_equal(np.asarray(masks), np.kron(moved, np.ones((1, 4, 4))))
  np.testing.assert_allclose(float(stats["mask_area"]), at_peak.mean(), rtol=1e-6)
  change = np.abs(np.asarray(neg) - np.asarray(g(z))).mean(-1)
  inside = np.asarray(masks) > 0
  assert change[inside].mean() > 4 * change[~inside].mean()
  with pytest.raises(ValueError, match="location"):
    jit_draw(gen, make_cfg(location="corner"))(z, mm, n_frames, key, None, None)


def test_object_components_by_hand():
  cells = np.zeros((2, 4, 4), bool)
  cells[0, 0, 0] = cells[0, 1, 1] = True   # diagonal neighbours: one object (8-connected)
  cells[0, 3, 3] = True                    # a second one
  labels = negatives.object_components(cells)
  assert labels.dtype == np.int8 and labels[1].max() == 0
  assert labels[0, 0, 0] == labels[0, 1, 1] != labels[0, 3, 3] and labels[0, 3, 3] > 0
  assert (labels[0] > 0).sum() == 3


def test_object_shifts_land_on_another_object():
  """The shifted peak lies on another object's cell; with the peak on the only object, on that
  object; with no object, anywhere. Over many draws every allowed cell is reached (uniform)."""
  objects = np.zeros((3, 4, 4), np.int8)
  objects[0, 0, 0:2] = 1        # the peak's object
  objects[0, 2:4, 3] = 2        # the other: cells (2, 3) and (3, 3)
  objects[1, 1, 1] = 1          # one object, under the peak
  y, x = jnp.array([0, 1, 2]), jnp.array([1, 1, 2])
  seen = [set() for _ in range(3)]
  draw = jax.jit(negatives.object_shifts)
  for i in range(60):
    dy, dx = (np.asarray(v) for v in draw(jax.random.key(i), jnp.asarray(objects), (y, x)))
    for b in range(3):
      seen[b].add(((int(y[b]) + dy[b]) % 4, (int(x[b]) + dx[b]) % 4))
  assert seen[0] == {(2, 3), (3, 3)}
  assert seen[1] == {(1, 1)}
  assert len(seen[2]) > 12  # any of the 16 cells


def one_cell_objects():
  """(z, planted matchmaps, frames, peaks, objects [4,4,4], target cells): each image's only
  object is one cell, so the object control's shift is known."""
  z = jax.random.normal(jax.random.key(9), (4, SIZES[0]))
  mm, n_frames, peaks = planted_matchmaps(9)
  objects = np.zeros((4, 4, 4), np.int8)
  target = [(3, 3), (0, 0), (2, 1), (1, 3)]
  for b, (ty, tx) in enumerate(target):
    objects[b, ty, tx] = 1
  return z, mm, n_frames, peaks, objects, target


def test_object_location_control_moves_the_mask_onto_another_object(gen):
  """negatives.location='object': the peak's mask rolled so that its peak lands on another
  object's cell (the only other object here is one cell: the shift is known)."""
  cfg = make_cfg(threshold=0.0, location="object")
  z, mm, n_frames, peaks, objects, target = one_cell_objects()
  graphdef, state = gen

  @jax.jit
  def draw(state, z, mm, n, key, obj):
    g = nnx.merge(graphdef, state)
    return negatives.draw_negatives(g, z, None, g(z), mm, n, key, cfg, objects=obj)

  _, masks, _, _ = draw(state, z, mm, n_frames, jax.random.key(4), jnp.asarray(objects))
  g = nnx.merge(*gen)
  at_peak = oracle_masks(mm, peaks)
  moved = np.stack([np.roll(at_peak[b], (target[b][0] - peaks[b][0], target[b][1] - peaks[b][1]),
                            axis=(0, 1)) for b in range(4)])
  np.testing.assert_array_equal(np.asarray(masks), np.kron(moved, np.ones((1, 4, 4))))
  with pytest.raises(ValueError, match="object cells"):
    negatives.draw_negatives(g, z, None, g(z), mm, n_frames, jax.random.key(4), cfg)


def test_a_run_time_placement_gives_each_placements_mask_from_one_trace(gen):
  """placement (an argument, not the config): 0 / 1 / 2 give the peak's mask (scipy oracle), the
  mask rolled by the random control's drawn shift, and the mask moved onto the other object,
  traced once for all three."""
  cfg = make_cfg(threshold=0.0)
  z, mm, n_frames, peaks, objects, target = one_cell_objects()
  graphdef, state = gen
  traces = []

  @jax.jit
  def draw(state, z, mm, n, key, obj, placement):
    traces.append(1)
    g = nnx.merge(graphdef, state)
    return negatives.draw_negatives(g, z, None, g(z), mm, n, key, cfg, objects=obj,
                                    placement=placement)

  key = jax.random.key(4)
  at_peak = oracle_masks(mm, peaks)
  dy, dx = (np.asarray(v) for v in negatives.draw_shifts(jax.random.fold_in(key, 1), 4, 4, 4))
  want = [at_peak,
          np.stack([np.roll(at_peak[b], (dy[b], dx[b]), axis=(0, 1)) for b in range(4)]),
          np.stack([np.roll(at_peak[b], (target[b][0] - peaks[b][0], target[b][1] - peaks[b][1]),
                            axis=(0, 1)) for b in range(4)])]
  for index, cells in enumerate(want):
    _, masks, _, _ = draw(state, z, mm, n_frames, key, jnp.asarray(objects), jnp.int32(index))
    np.testing.assert_array_equal(np.asarray(masks), np.kron(cells, np.ones((1, 4, 4))))
  assert len(traces) == 1
