"""Drawing hard negatives: the positive image redrawn with a localized semantic edit.

Per sample (REFERENCE.md "Drawing a negative"): the matchmap's peak (t, y, x) locates where the
caption currently matches; the image heat map (max over valid frames, normalised by its max) is
thresholded and reduced to the connected component that contains the peak (geodesic dilation);
that mask, made binary at the intervention layer's resolution, times a per-unit selection ablates
generator units there (x * (1 - a) + a * r, r = 0) and the generator re-renders from that layer.

The reference retries one sample at a time with host round trips until the change inside the mask
is large enough. Here K candidate strengths (a fixed schedule of p or unit counts, with acceptance
thresholds lowered per candidate as the reference lowers them per retry) are drawn in ONE batched
generator call over [K * B] and the first acceptable candidate wins (else the strongest, the last).
As in the reference, the change is measured on the image encoder's input (ImageNet-normalised).
Everything is jittable and traced once per shape; there is no loop over the batch.
"""
import jax
import jax.numpy as jnp
import numpy as np

from learning_words.models import davenet


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


def select_units_random(key, batch: int, channels: int, p):
  """Each unit of each sample selected independently with probability p -> float {0,1} [B,C]."""
  return jax.random.bernoulli(key, p, (batch, channels)).astype(jnp.float32)


def select_units_ranked(ranking, cluster, count):
  """The top `count` units of each sample's cluster -> float {0,1} [B,C].

  ranking [n_clusters, C] int: units per cluster, best first; cluster [B] int; count may be traced.
  """
  order = jnp.asarray(ranking)[cluster]  # [B, C]
  b, c = order.shape
  chosen = jnp.broadcast_to((jnp.arange(c) < count).astype(jnp.float32), (b, c))
  return jnp.zeros((b, c), jnp.float32).at[jnp.arange(b)[:, None], order].set(chosen)


def candidate_schedule(cfg, channels: int):
  """Static per-candidate (strength, acceptance threshold, heat threshold), numpy [K] each.

  Strength is p (random mode) or a unit count (cluster mode). The reference's retries raise p
  (random) or add units and lower the heat threshold (cluster) while lowering the acceptance
  threshold; candidate k is retry k of that schedule.
  """
  k = np.arange(int(cfg.candidates))
  if cfg.mode == "random":
    strength = np.clip(cfg.p + cfg.p_step * k, 0.0, 1.0)
  elif cfg.mode == "cluster":
    strength = np.clip(cfg.units + cfg.units_step * k, 0, channels).astype(np.int32)
  else:
    raise ValueError(f"negatives mode must be 'random' or 'cluster', got {cfg.mode!r}")
  accept = cfg.threshold - cfg.threshold_step * k
  heat = cfg.heat_threshold - getattr(cfg, "heat_threshold_step", 0.0) * k
  return strength, accept.astype(np.float32), heat.astype(np.float32)


def candidate_units(key, strength, batch: int, channels: int, ranking, cluster):
  """Unit selections of every candidate -> float {0,1} [K,B,C].

  strength is a p per candidate (ranking None) or a unit count per candidate; cluster is [B] or,
  to try other clusters on later candidates, [K,B].
  """
  k = len(strength)
  if ranking is None:
    keys = jax.random.split(key, k)
    return jnp.stack([select_units_random(keys[i], batch, channels, float(strength[i]))
                      for i in range(k)])
  clusters = jnp.broadcast_to(jnp.asarray(cluster), (k, batch))
  return jnp.stack([select_units_ranked(ranking, clusters[i], int(strength[i])) for i in range(k)])


def relative_change(images, positives, masks):
  """||(neg - pos) * mask|| / ||pos * mask|| per image. images [...,R,R,3], masks [...,R,R].

  The ratio depends on the pixel space; draw_negatives passes ImageNet-normalised images, the
  space the reference's acceptance threshold (0.95) was set in.
  """
  m = masks[..., None]
  num = jnp.sqrt(jnp.sum(jnp.square((images - positives) * m), axis=(-3, -2, -1)))
  den = jnp.sqrt(jnp.sum(jnp.square(positives * m), axis=(-3, -2, -1)))
  return num / jnp.maximum(den, 1e-8)


def draw_negatives(g, z, x_layer, positives, mm, n_frames, key, cfg, ranking=None, cluster=None):
  """Edited negatives of a batch of positives -> (negatives [B,R,R,3], masks [B,R,R], stats).

  g: the frozen Generator; z [B,Z] (only used when x_layer is None); x_layer [B,h_l,w_l,C]: the
  positive pass's output at cfg.layer; positives [B,R,R,3] = G(z); mm [B,h,w,T]: matchmaps on the
  image-feature grid; n_frames [B] valid matchmap frames; ranking [n_clusters,C] and cluster [B]
  or [K,B] in cluster mode. cfg: layer, candidates, mode, p, p_step, units, units_step, threshold,
  threshold_step, heat_threshold (optional heat_threshold_step). masks are the chosen candidate's
  layer mask at image resolution. stats (scalars): accepted_rate, mean_candidate, mean_strength
  (chosen p or unit count), mean_change (chosen relative change), mask_area.
  """
  if x_layer is None:
    x_layer = g.features(z, [cfg.layer])[cfg.layer]
  if cfg.mode == "cluster" and (ranking is None or cluster is None):
    raise ValueError("cluster mode needs a unit ranking and each sample's cluster")
  b, hl, wl, c = x_layer.shape
  res = positives.shape[1]
  strength, accept, heat_thr = candidate_schedule(cfg, c)
  k = len(strength)

  _, y, x = peak(mm, n_frames)
  heat = heat_map(mm, n_frames)
  if np.all(heat_thr == heat_thr[0]):  # one mask per sample, shared by the candidates
    comp = peak_component(heat, (y, x), heat_thr[0])[None]
  else:  # one per (candidate, sample): later candidates use lower heat thresholds
    comp = peak_component(jnp.tile(heat, (k, 1, 1)), (jnp.tile(y, k), jnp.tile(x, k)),
                          jnp.repeat(jnp.asarray(heat_thr), b)).reshape((k,) + heat.shape)
  n = comp.shape[0]
  mask_layer = resize_mask(comp.reshape((n * b,) + heat.shape[1:]), hl)  # [n*B, hl, wl]
  mask_img = resize_mask(mask_layer, res).reshape(n, b, res, res)
  mask_layer = mask_layer.reshape(n, b, hl, wl)

  units = candidate_units(key, strength, b, c, ranking if cfg.mode == "cluster" else None, cluster)
  ablation = mask_layer[..., None] * units[:, :, None, None, :]  # [K, B, hl, wl, C]
  edited = (x_layer[None] * (1.0 - ablation)).reshape(k * b, hl, wl, c)  # r = 0
  images = g.render_from(cfg.layer, edited).reshape(k, b, res, res, 3)
  mask_img = jnp.broadcast_to(mask_img, (k, b, res, res))

  change = relative_change(davenet.normalize_images(images),
                           davenet.normalize_images(positives)[None], mask_img)  # [K, B]
  ok = change >= jnp.asarray(accept)[:, None]
  accepted = jnp.any(ok, axis=0)
  choice = jnp.where(accepted, jnp.argmax(ok, axis=0), k - 1)  # first acceptable, else the last

  def pick(v):  # [K, B, ...] -> [B, ...] at each sample's chosen candidate
    index = choice.reshape((1, b) + (1,) * (v.ndim - 2))
    return jnp.take_along_axis(v, index, axis=0)[0]

  negatives, masks = pick(images), pick(mask_img)
  stats = {
      "accepted_rate": jnp.mean(accepted.astype(jnp.float32)),
      "mean_candidate": jnp.mean(choice.astype(jnp.float32)),
      "mean_strength": jnp.mean(jnp.asarray(strength, jnp.float32)[choice]),
      "mean_change": jnp.mean(pick(change)),
      "mask_area": jnp.mean(masks),
  }
  return (jax.lax.stop_gradient(negatives), jax.lax.stop_gradient(masks),
          jax.tree.map(jax.lax.stop_gradient, stats))
