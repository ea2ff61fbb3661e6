"""Drawing hard negatives: the positive image redrawn with a localized semantic edit.

Per sample (docs/differences.md): the matchmap's peak (t, y, x) locates where the
caption currently matches; the image heat map (max over valid frames, normalised by its max) is
thresholded and reduced to the connected component that contains the peak (geodesic dilation),
plus the reference's one unrestricted 3x3 ring (`peak_mask`). That mask, made binary at the
intervention layer's resolution, times a per-unit selection ablates generator units there
(x * (1 - a) + a * r, r = 0) and the generator re-renders from that layer.

The reference retries one sample at a time with host round trips until the change inside the mask
reaches a threshold, and never trains on a rejected negative. Here K tries, drawn by the
reference's retry rule (random mode: fresh units at p every try, the threshold lowered on a coin
flip, `retry_schedule`; cluster mode: more units and larger masks, `cluster_schedule`), are
drawn up front; the first acceptable try wins, and samples with none are flagged (`accepted`) so
that the loss leaves them out. Only the tries that can still matter are rendered: a work queue
(`first_acceptable`) renders B tries per batched generator call, for as many rounds as the
hardest samples need (3-4 in quickstart training), not K. As in the reference, the change is
measured on the image encoder's input (ImageNet-normalised). Everything is jittable and
traced once per shape; there is no loop over the batch.
"""
import jax
import jax.numpy as jnp
import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy import ndimage

from learning_words.models import davenet


def heat_cosine(config) -> bool:
  """Whether the matchmap that places the negatives' masks is a cosine one: config.negatives.heat
  is 'model' (the training similarity, config.model.cosine), 'dot' (the reference's, whatever the
  training similarity) or 'cosine'."""
  heat = config.negatives.get("heat", "model")
  if heat not in ("model", "dot", "cosine"):
    raise ValueError(f"--config.negatives.heat must be 'model', 'dot' or 'cosine', got {heat!r}")
  return bool(config.model.cosine) if heat == "model" else heat == "cosine"


def mask_invalid_frames(mm, n_frames):
  """mm [B,h,w,T] with frames t >= n_frames[b] set to -inf (at least one frame stays valid)."""
  t = mm.shape[-1]
  n = jnp.clip(jnp.asarray(n_frames), 1, t)
  valid = jnp.arange(t)[None, :] < n[:, None]  # [B, T]
  return jnp.where(valid[:, None, None, :], mm, -jnp.inf)


def peak(mm, n_frames):
  """Argmax of mm [B,h,w,T] over valid frames -> (t, y, x), int [B] each."""
  b, h, w, t = mm.shape
  flat = jnp.argmax(mask_invalid_frames(mm, n_frames).reshape(b, -1), axis=1)
  y, x, tt = jnp.unravel_index(flat, (h, w, t))
  return tt, y, x


def heat_map(mm, n_frames):
  """Max over valid frames of mm [B,h,w,T], divided per sample by its max -> [B,h,w].

  Matchmaps of ReLU features are >= 0; an all-zero (or negative) map is left unscaled.
  """
  heat = jnp.max(mask_invalid_frames(mm, n_frames), axis=-1)
  top = jnp.max(heat, axis=(1, 2), keepdims=True)
  return heat / jnp.where(top > 0, top, 1.0)


def dilate3x3(region):
  """Binary 3x3 dilation (8-connectivity) of region bool [B,h,w]."""
  grown = jax.lax.reduce_window(region.astype(jnp.float32), -jnp.inf, jax.lax.max,
                                (1, 3, 3), (1, 1, 1), "SAME")
  return grown > 0


def peak_component(heat, peak_yx, threshold=0.95):
  """The 8-connected component of (heat > threshold * max) that contains the peak -> bool [B,h,w].

  heat [B,h,w]; peak_yx = (y, x), int [B] each; threshold a scalar or one per sample [B].
  Geodesic dilation: grow from the peak pixel by 3x3 max-pools restricted to the thresholded map
  until nothing changes. A winding component can need up to h*w - 1 steps (far more than h + w),
  so the while loop is bounded by h*w. The peak pixel is always in the component.
  """
  b, h, w = heat.shape
  y, x = peak_yx
  top = jnp.max(heat, axis=(1, 2), keepdims=True)
  thr = jnp.reshape(jnp.asarray(threshold, heat.dtype), (-1, 1, 1))
  seed = ((jnp.arange(h)[None, :, None] == jnp.asarray(y)[:, None, None])
          & (jnp.arange(w)[None, None, :] == jnp.asarray(x)[:, None, None]))
  allowed = (heat > thr * top) | seed

  def unfinished(state):
    step, _, changed = state
    return changed & (step < h * w)

  def grow(state):
    step, region, _ = state
    bigger = dilate3x3(region) & allowed
    return step + 1, bigger, jnp.any(bigger != region)

  _, region, _ = jax.lax.while_loop(unfinished, grow, (jnp.int32(0), seed, jnp.bool_(True)))
  return region


def resize_matrix(src: int, dst: int) -> np.ndarray:
  """[dst, src] 0/1 matrix: target cell i takes source cells j (static, numpy).

  Upsampling: the one source cell containing the target cell's centre (nearest neighbour).
  Downsampling: every source cell the target cell overlaps (any overlap), so masks never shrink
  to fractions that the generator's pixel norm would undo.
  """
  i = np.arange(dst)[:, None]
  j = np.arange(src)[None, :]
  if dst >= src:
    return (j == np.floor((i + 0.5) * src / dst)).astype(np.float32)
  return ((j < (i + 1) * src / dst) & (j + 1 > i * src / dst)).astype(np.float32)


def resize_mask(mask, size: int):
  """Binary mask [B,h,w,...] -> float {0,1} [B,size,size,...] (trailing axes kept)."""
  h, w = mask.shape[1:3]
  ry = jnp.asarray(resize_matrix(h, size))
  rx = jnp.asarray(resize_matrix(w, size))
  out = jnp.einsum("yh,bhw...,xw->byx...", ry, mask.astype(jnp.float32), rx)
  return (out > 0).astype(jnp.float32)


def select_units_ranked(ranking, cluster, count):
  """The top `count` units of each sample's cluster -> float {0,1} [B,C].

  ranking [n_clusters, C] int: units per cluster, best first; cluster [B] int; count may be traced.
  """
  order = jnp.asarray(ranking)[cluster]  # [B, C]
  b, c = order.shape
  chosen = jnp.broadcast_to((jnp.arange(c) < count).astype(jnp.float32), (b, c))
  return jnp.zeros((b, c), jnp.float32).at[jnp.arange(b)[:, None], order].set(chosen)


def peak_mask(heat, peak_yx, threshold=0.95, ring: bool = True):
  """The reference's mask: the peak's component (peak_component) plus one unrestricted 3x3 ring.

  The reference's geodesic dilation returns its last *dilated* marker, not that marker's
  intersection with the thresholded map, so a one-cell peak becomes a 3x3 block. ring=False keeps
  the component alone (the ablation of that detail). bool [B,h,w].
  """
  comp = peak_component(heat, peak_yx, threshold)
  return dilate3x3(comp) if ring else comp


PLACEMENTS = ("peak", "random", "object")  # where a mask goes: the method, then both controls


def draw_shifts(key, batch: int, h: int, w: int):
  """Random (dy, dx) per sample, int [B] each, uniform over the grid: where the control moves
  each mask (negatives.location='random')."""
  k_y, k_x = jax.random.split(key)
  return (jax.random.randint(k_y, (batch,), 0, h), jax.random.randint(k_x, (batch,), 0, w))


def object_shifts(key, objects, peak_yx):
  """(dy [B], dx [B]) that move each peak onto a cell of another object: the random-object control
  (negatives.location='object').

  objects int [B,h,w]: each image's object components on the grid (0: background, k > 0: the
  k-th object), as object_components gives them. The target is uniform over the object cells not
  in the peak's own component; an image whose only object holds the peak draws from that
  object's cells, and one with no object cell from every cell (then it is the random control).
  """
  b, h, w = objects.shape
  y, x = peak_yx
  own = objects[jnp.arange(b), y, x]  # [B]: 0 when the peak is on background
  on = objects > 0
  other = on & (objects != own[:, None, None])
  pool = jnp.where(jnp.any(other, axis=(1, 2), keepdims=True), other,
                   jnp.where(jnp.any(on, axis=(1, 2), keepdims=True), on, True))
  noise = jax.random.gumbel(key, (b, h * w))
  target = jnp.argmax(jnp.where(pool.reshape(b, -1), noise, -jnp.inf), axis=1)
  ty, tx = jnp.unravel_index(target, (h, w))
  return ty - y, tx - x


def object_components(cells) -> np.ndarray:
  """Object cells bool [N,h,w] -> int8 [N,h,w]: 0 off, else the index (from 1) of the cell's
  8-connected component of object cells (objects that touch on the grid share one)."""
  cells = np.asarray(cells, bool)
  out = np.zeros(cells.shape, np.int8)
  for i, c in enumerate(cells):  # host-side, once per dataset
    out[i] = ndimage.label(c, structure=np.ones((3, 3)))[0]
  return out


def shift_masks(masks, shifts):
  """masks [..., B, h, w] rolled per sample by shifts (dy [B], dx [B]), wrapping at the edges, so
  every mask keeps its area and shape."""
  dy, dx = shifts
  roll = jax.vmap(lambda m, a, b: jnp.roll(m, (a, b), axis=(-2, -1)), in_axes=(-3, 0, 0),
                  out_axes=-3)
  return roll(masks, dy, dx)


def draw_tries(key, tries: int, batch: int, channels: int):
  """The random draws of random mode's tries: (uniforms [K,B,C] that select a unit where below
  the try's p, coins [K,B] that pick what a failed try changes). Fresh units every try."""
  k_units, k_coins = jax.random.split(key)
  return (jax.random.uniform(k_units, (tries, batch, channels)),
          jax.random.uniform(k_coins, (tries, batch)))


def retry_schedule(coins, p, p_step, threshold, threshold_step, drop_prob):
  """The reference's random-mode retry rule -> (p [K,B], acceptance threshold [K,B]) per try.

  Try 0 uses (p, threshold). After a failed try k, with chance drop_prob (coins[k] < drop_prob)
  the threshold falls by threshold_step, else p rises by p_step (its training loop keeps p at 0.5:
  p_step 0 there; its edited-recall evaluation raises it). The expected threshold after k failed
  tries is threshold - k * drop_prob * threshold_step.
  """
  coins = jnp.asarray(coins)
  drop = (coins < drop_prob).astype(jnp.float32)
  drops_before = jnp.cumsum(drop, axis=0) - drop  # [K,B]: drops among the earlier tries
  raises_before = jnp.arange(coins.shape[0], dtype=jnp.float32)[:, None] - drops_before
  return (jnp.clip(p + p_step * raises_before, 0.0, 1.0),
          threshold - threshold_step * drops_before)


def cluster_schedule(cfg, channels: int):
  """Cluster mode's static tries -> (unit count, acceptance threshold, heat threshold), numpy [K].

  As the reference: try k ablates units + k * units_step units inside the mask at heat threshold
  heat_threshold - k * heat_threshold_step, and its acceptance threshold is lowered by
  cluster_threshold_step once before the first check and once per retry (0.90, 0.85, ...).
  """
  k = np.arange(int(cfg.candidates))
  count = np.clip(cfg.units + cfg.units_step * k, 0, channels).astype(np.int32)
  accept = cfg.threshold - cfg.cluster_threshold_step * (k + 1)
  heat = cfg.heat_threshold - cfg.heat_threshold_step * k
  return count, accept.astype(np.float32), heat.astype(np.float32)


def candidate_units(ranking, cluster, counts):
  """Cluster mode's unit selections of every try -> float {0,1} [K,B,C].

  ranking [n_clusters, C]; cluster [B], or [K,B] to try other clusters on later tries; counts: the
  static unit count of each try.
  """
  k = len(counts)
  clusters = jnp.broadcast_to(jnp.asarray(cluster), (k,) + jnp.shape(cluster)[-1:])
  return jnp.stack([select_units_ranked(ranking, clusters[i], int(counts[i])) for i in range(k)])


def relative_change(images, positives, masks):
  """||(neg - pos) * mask|| / ||pos * mask|| per image. images [...,R,R,3], masks [...,R,R].

  The ratio depends on the pixel space; draw_negatives passes ImageNet-normalised images, the
  space the reference's acceptance threshold (0.95) was set in.
  """
  m = masks[..., None]
  num = jnp.sqrt(jnp.sum(jnp.square((images - positives) * m), axis=(-3, -2, -1)))
  den = jnp.sqrt(jnp.sum(jnp.square(positives * m), axis=(-3, -2, -1)))
  return num / jnp.maximum(den, 1e-8)


def first_acceptable(render, x_layer, ablate_layer, units, check_img, accept, positives,
                     groups: int = 1):
  """Each sample's first acceptable try, rendering only the tries that are still needed.

  Try k of sample i ablates units[k, i] inside ablate_layer[k, i] (a [1,...] mask serves every
  try) and is acceptable when its relative change inside check_img[k, i] reaches accept[k, i].
  The answer equals rendering all K tries and taking the first acceptable one, but a work queue
  renders B tries per round: the samples still pending share the B slots (with P of them pending,
  each gets its next ceil(B / P) or so tries), so after the first round (try 0 of everyone) the
  few hard samples take many tries at once. A round is one batched generator call; rounds repeat
  in a while loop until every sample has an acceptable try or has used all K.

  render: layer output [n,hl,wl,C] -> images [n,R,R,3]; x_layer [B,hl,wl,C]; ablate_layer
  [K|1,B,hl,wl]; units [K,B,C]; check_img [K|1,B,R,R]; accept [K,B]; positives [B,R,R,3].
  groups: the batch is cut into this many equal groups, each with its own queue (one per device,
  so that the queue's gathers stay on the device that holds the group).
  Returns (images [B,R,R,3]: the chosen try, or the last try where none was acceptable;
  choice int [B]; accepted bool [B]; change [B] of the returned image; renders: tries rendered
  per sample, a scalar, at most K).
  """
  k, b = accept.shape
  if b % groups:
    raise ValueError(f"a batch of {b} does not split into {groups} groups")
  n = b // groups

  def split(v, batch_axis):  # batch axis -> [groups, n] at the front
    v = jnp.moveaxis(v, batch_axis, 0)
    return v.reshape((groups, n) + v.shape[1:])

  def one_group(x, ablate, unit, check, thr, pos):  # every batch axis first, tries second
    pos_n = davenet.normalize_images(pos)

    def pending(state):
      next_try, done = state[0], state[1]
      return ~done & (next_try < k)

    def round_(state):
      next_try, done, choice, change, images, rounds = state
      todo = pending(state)
      count = jnp.maximum(jnp.sum(todo), 1)
      slot = jnp.arange(n)
      sample = jnp.argsort(~todo, stable=True)[slot % count]  # the pending samples first
      t = next_try[sample] + slot // count
      valid = todo[sample] & (t < k)
      tc = jnp.minimum(t, k - 1)
      mask = ablate[sample, jnp.minimum(tc, ablate.shape[1] - 1)]  # [n,hl,wl]
      out = render(x[sample] * (1.0 - mask[..., None] * unit[sample, tc][:, None, None, :]))
      c = relative_change(davenet.normalize_images(out), pos_n[sample],
                          check[sample, jnp.minimum(tc, check.shape[1] - 1)])
      ok = valid & (c >= thr[sample, tc])
      first = jnp.minimum(jax.ops.segment_min(jnp.where(ok, t, k), sample, n), k)  # [n]
      keep = valid & (jnp.where(ok, t == first[sample], (t == k - 1) & (first[sample] == k)))
      dest = jnp.where(keep, sample, n)  # one kept slot per sample at most; others dropped
      images = images.at[dest].set(out, mode="drop")
      change = change.at[dest].set(c, mode="drop")
      found = first < k
      reached = jax.ops.segment_max(jnp.where(valid, t + 1, 0), sample, n)
      return (jnp.maximum(next_try, reached), done | found, jnp.where(found, first, choice),
              change, images, rounds + 1)

    start = (jnp.zeros(n, jnp.int32), jnp.zeros(n, bool), jnp.full(n, k - 1, jnp.int32),
             jnp.zeros(n, pos.dtype), jnp.zeros_like(pos), jnp.int32(0))
    _, done, choice, change, images, rounds = jax.lax.while_loop(
        lambda s: jnp.any(pending(s)), round_, start)
    return images, choice, done, change, rounds

  images, choice, done, change, rounds = jax.vmap(one_group)(
      split(x_layer, 0), split(ablate_layer, 1), split(units, 1), split(check_img, 1),
      split(accept, 1), split(positives, 0))
  merge = lambda v: v.reshape((b,) + v.shape[2:])
  return (merge(images), merge(choice), merge(done), merge(change),
          jnp.mean(rounds.astype(jnp.float32)))


def draw_negatives(g, z, x_layer, positives, mm, n_frames, key, cfg, ranking=None, cluster=None,
                   groups: int = 1, objects=None, placement=None):
  """Edited negatives of a batch of positives -> (negatives [B,R,R,3], masks [B,R,R],
  accepted bool [B], stats).

  g: the frozen Generator; z [B,Z] (only used when x_layer is None); x_layer [B,h_l,w_l,C]: the
  positive pass's output at cfg.layer; positives [B,R,R,3] = G(z); mm [B,h,w,T]: matchmaps on the
  image-feature grid; n_frames [B] valid matchmap frames; ranking [n_clusters,C] and cluster [B]
  or [K,B] in cluster mode. cfg: layer, candidates (K tries), mode, ring, location ('peak';
  'random': the control, each sample's masks moved by a random wrapping shift; 'object': the
  control that moves them onto another object, object_shifts, given objects int [B,h,w]),
  heat_threshold, threshold; random mode: p, p_step, threshold_step, threshold_drop_prob
  (retry_schedule); cluster mode: units, units_step, heat_threshold_step, cluster_threshold_step
  (cluster_schedule).

  Each sample's negative is its first try whose change inside the acceptance mask reaches that
  try's threshold; `accepted` is False where none did (the negative is then the last try, for
  figures only: training gives such a sample no edited term, as the reference never trains on a
  rejected negative). masks: the chosen try's ablation mask at image resolution. stats (scalars):
  accepted_rate, mean_tries (tries an accepted sample took), mean_strength (chosen p or unit
  count), mean_change (chosen relative change), mask_area (the chosen ablation masks' mean),
  renders (tries rendered per sample, <= K). groups: see first_acceptable (the train step passes
  its device count). placement: an int (traced or not) indexing PLACEMENTS that replaces
  cfg.location, so that one compiled program serves the method and both controls (the
  evaluators'); given, objects are required.
  """
  if x_layer is None:
    x_layer = g.features(z, [cfg.layer])[cfg.layer]
  b, hl, wl, c = x_layer.shape
  res = positives.shape[1]
  k = int(cfg.candidates)
  ring = bool(getattr(cfg, "ring", True))
  _, y, x = peak(mm, n_frames)
  heat = heat_map(mm, n_frames)
  check = peak_mask(heat, (y, x), cfg.heat_threshold, ring)[None]  # [1,B,h,w]
  if cfg.mode == "random":
    uniforms, coins = draw_tries(key, k, b, c)
    strength, accept = retry_schedule(coins, cfg.p, cfg.p_step, cfg.threshold,
                                      cfg.threshold_step, cfg.threshold_drop_prob)
    units = (uniforms < strength[..., None]).astype(jnp.float32)
    ablate = check
  elif cfg.mode == "cluster":
    if ranking is None or cluster is None:
      raise ValueError("cluster mode needs a unit ranking and each sample's cluster")
    counts, accept_k, heat_k = cluster_schedule(cfg, c)
    units = candidate_units(ranking, cluster, counts)
    strength = jnp.broadcast_to(jnp.asarray(counts, jnp.float32)[:, None], (k, b))
    accept = jnp.broadcast_to(jnp.asarray(accept_k)[:, None], (k, b))
    # The ablation mask grows with the tries (lower heat thresholds); the change is checked
    # inside the first one, as the reference does.
    ablate = check if np.all(heat_k == cfg.heat_threshold) else peak_mask(
        jnp.tile(heat, (k, 1, 1)), (jnp.tile(y, k), jnp.tile(x, k)),
        jnp.repeat(jnp.asarray(heat_k), b), ring).reshape((k,) + heat.shape)
  else:
    raise ValueError(f"negatives mode must be 'random' or 'cluster', got {cfg.mode!r}")
  location = getattr(cfg, "location", "peak")
  shifts = None
  if placement is not None:  # each placement's shift, chosen at run time; (0, 0) at the peak
    if objects is None:
      raise ValueError("a run-time placement needs each image's object cells")
    r_y, r_x = draw_shifts(jax.random.fold_in(key, 1), b, *heat.shape[1:])
    o_y, o_x = object_shifts(jax.random.fold_in(key, 1), objects, (y, x))
    pick_shift = lambda r, o: jnp.where(placement == 1, r, jnp.where(placement == 2, o, 0))
    shifts = (pick_shift(r_y, o_y), pick_shift(r_x, o_x))
  elif location in ("random", "object"):  # the controls: the same masks (area, shape) elsewhere
    if location == "object" and objects is None:
      raise ValueError("negatives.location='object' needs each image's object cells")
    shifts = (draw_shifts(jax.random.fold_in(key, 1), b, *heat.shape[1:]) if location == "random"
              else object_shifts(jax.random.fold_in(key, 1), objects, (y, x)))
  elif location != "peak":
    raise ValueError(f"negatives location must be 'peak', 'random' or 'object', got {location!r}")
  if shifts is not None:
    same = ablate is check
    check = shift_masks(check, shifts)
    ablate = check if same else shift_masks(ablate, shifts)

  def to_layer_and_image(mask):  # [n,B,h,w] bool -> [n,B,hl,wl], [n,B,R,R] float {0,1}
    n = mask.shape[0]
    at_layer = resize_mask(mask.reshape((n * b,) + mask.shape[2:]), hl)
    return (at_layer.reshape(n, b, hl, wl),
            resize_mask(at_layer, res).reshape(n, b, res, res))

  ablate_layer, ablate_img = to_layer_and_image(ablate)
  check_img = ablate_img if ablate is check else to_layer_and_image(check)[1]
  render = lambda edited: g.render_from(cfg.layer, edited)
  negatives, choice, accepted, change, renders = first_acceptable(
      render, x_layer, ablate_layer, units, check_img, accept, positives, groups)

  def pick(v):  # [K or 1, B, ...] -> [B, ...] at each sample's chosen try
    index = jnp.minimum(choice, v.shape[0] - 1).reshape((1, b) + (1,) * (v.ndim - 2))
    return jnp.take_along_axis(v, index, axis=0)[0]

  masks = pick(ablate_img)
  n_ok = jnp.sum(accepted)
  stats = {
      "accepted_rate": jnp.mean(accepted.astype(jnp.float32)),
      "mean_tries": jnp.sum(jnp.where(accepted, choice + 1, 0)) / jnp.maximum(n_ok, 1),
      "mean_strength": jnp.mean(pick(strength)),
      "mean_change": jnp.mean(change),
      "mask_area": jnp.mean(masks),
      "renders": renders,
  }
  return (jax.lax.stop_gradient(negatives), jax.lax.stop_gradient(masks), accepted,
          jax.tree.map(jax.lax.stop_gradient, stats))
