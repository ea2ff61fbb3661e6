"""`--mode=invert`: a latent for each render, so the frozen generator can redraw it (the ladder's
L1 and L2, world/pairs.py).

The shipped generator came from a VAE-GAN whose encoder was not shipped, so latents are found by
optimisation rather than by an encoder: per render, the best of `starts` prior draws, then Adam on
z minimising the mean absolute pixel error of G(z) against the render, object pixels weighted
1 + fg_weight (unweighted, the grey floor dominates and small objects vanish from G(z*)). Optimisation minimises each
render's own error (an encoder trained against the frozen generator would add its amortisation
gap) and costs one jitted loop per batch at 32 px. The generator pixel-normalises z at its first
layer, so only z's direction matters; latents are returned rescaled to the prior's norm sqrt(Z)
(the edited negatives see the same activations either way). Each render's final error is kept,
and the stage writes WORKDIR/data/latents/<name>/{latents.npy, errors.npy, invert.json,
invert.png (renders above their redrawings)}.
"""
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from learning_words.common import figures, jsonio
from learning_words.models.segmenter import to_float
from learning_words.world import pairs


def pixel_error(images, targets, weights=None):
  """Mean absolute error per image: images, targets [B,R,R,3] in [-1, 1] -> [B]; weights
  [B,R,R] (optional): a weighted mean over the pixels."""
  err = jnp.mean(jnp.abs(images - targets), axis=3)
  if weights is None:
    return jnp.mean(err, axis=(1, 2))
  return jnp.sum(err * weights, axis=(1, 2)) / jnp.sum(weights, axis=(1, 2))


@functools.partial(nnx.jit, static_argnames=("steps", "starts"))
def invert_batch(g, targets, weights, key, *, steps: int, starts: int, lr: float):
  """(latents [B,Z], errors [B]) for targets [B,R,R,3] in [-1, 1] with pixel weights [B,R,R]:
  the best of `starts` prior draws, then `steps` Adam steps on every latent at once (the summed
  loss keeps them independent: each latent's gradient is its own image's). errors: the plain
  (unweighted) mean absolute error of the result."""
  b, z_dim = targets.shape[0], g.sizes[0]
  draws = jax.random.normal(key, (starts, b, z_dim))
  err0 = jax.lax.map(lambda z: pixel_error(g(z), targets, weights), draws)  # [starts, B]
  z = draws[jnp.argmin(err0, axis=0), jnp.arange(b)]
  opt = optax.adam(lr)
  loss = lambda z: jnp.sum(pixel_error(g(z), targets, weights))

  def step(carry, _):
    z, state = carry
    updates, state = opt.update(jax.grad(loss)(z), state)
    return (optax.apply_updates(z, updates), state), None

  (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, length=steps)
  z = z * jnp.sqrt(z_dim / jnp.sum(jnp.square(z), axis=1, keepdims=True))
  return jax.lax.stop_gradient(z), pixel_error(g(z), targets)


def invert(g, images: np.ndarray, *, steps: int, starts: int, lr: float, batch: int, seed: int,
           foreground=None, fg_weight: float = 0.0,
           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """(latents [N,Z], errors [N]) of uint8 images [N,R,R,3], in batches of `batch` (the last one
  padded, so the loop compiles once). foreground [N,R,R] bool: object pixels, weighted 1 +
  fg_weight in the loss (small objects on a large grey floor would otherwise hardly count)."""
  zs, errs = [], []
  key = jax.random.key(seed)
  if foreground is None:
    foreground = np.zeros(images.shape[:3], bool)
  weights = 1.0 + float(fg_weight) * np.asarray(foreground, np.float32)
  for start in tqdm(range(0, len(images), batch), desc="invert", disable=not progress,
                    dynamic_ncols=True):
    part, w = images[start:start + batch], weights[start:start + batch]
    pad = batch - len(part)
    if pad:
      part = np.concatenate([part, np.repeat(part[-1:], pad, 0)])
      w = np.concatenate([w, np.repeat(w[-1:], pad, 0)])
    z, err = invert_batch(g, to_float(jnp.asarray(part)), jnp.asarray(w),
                          jax.random.fold_in(key, start), steps=steps, starts=starts, lr=lr)
    zs.append(np.asarray(z)[:batch - pad])
    errs.append(np.asarray(err)[:batch - pad])
  return np.concatenate(zs), np.concatenate(errs)


def invert_renders(config, out_dir: str, g) -> str:
  """Finds the latents of the renders of every pair id (train, val and test of config.data) and
  writes them to `out_dir`; returns it."""
  d, w = config.data, config.world
  ids = np.arange(d.num_train + d.num_val + d.num_test)
  start = time.time()
  images, _, foreground = pairs.render_pairs_images(w, config.seed, ids, with_foreground=True)
  latents, errors = invert(g, images, steps=int(w.invert_steps), starts=int(w.invert_starts),
                           lr=float(w.invert_lr), batch=int(w.invert_batch), seed=config.seed,
                           foreground=foreground, fg_weight=float(w.invert_fg_weight))
  os.makedirs(out_dir, exist_ok=True)
  np.save(os.path.join(out_dir, "errors.npy"), errors)
  splits = {"train": (0, d.num_train), "val": (d.num_train, d.num_val),
            "test": (d.num_train + d.num_val, d.num_test)}
  jsonio.write_json(os.path.join(out_dir, "invert.json"), {
      "renders": len(ids), "steps": int(w.invert_steps), "starts": int(w.invert_starts),
      "lr": float(w.invert_lr), "fg_weight": float(w.invert_fg_weight), "seconds": round(time.time() - start, 1),
      "mean_abs_error": {s: float(errors[a:a + n].mean()) for s, (a, n) in splits.items()},
      "error_quantiles": {q: float(np.quantile(errors, q)) for q in (0.1, 0.5, 0.9)}})
  n = min(16, len(ids))
  drawn = pairs.draw_images(g, latents[:n])
  figures.save_png(os.path.join(out_dir, "invert.png"),
                   figures.make_grid(np.concatenate([images[:n], drawn]), cols=n, scale=2))
  np.save(os.path.join(out_dir, "latents.npy"), latents)  # last: its presence marks the stage done
  return out_dir
