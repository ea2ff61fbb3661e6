"""`--mode=invert`: a latent for each render, so the frozen generator can redraw it (the ladder's
L1 and L2, world/pairs.py).

The shipped generator came from a VAE-GAN whose encoder was not shipped. A new encoder is trained
against the frozen generator (`world.invert_encoder_steps`; 0: none): on the GAN's own training
renders (scene ids below every pair's, so no pair's render is seen), G(E(x)) must redraw x (mean
absolute pixel error, object pixels weighted 1 + fg_weight: unweighted, the grey floor dominates
and small objects vanish), and on prior draws E(G(z)) must point where z does (cosine; it keeps the
codes in the prior's region). Its codes then start `invert_steps` Adam steps on each render's own
error; without an encoder they start from the best of `starts` prior draws. On the shipped 32 px
generator the encoder's codes redraw the renders' objects better than 100 Adam steps from the best
prior draw did (object-pixel error 0.23 against 0.28; overall 0.038 against 0.036), and a
refinement costs seconds per step per batch on a CPU, so the quickstart's worlds use the encoder
alone (docs/findings.md, the ladder).

The generator pixel-normalises z at its first layer, so only z's direction matters; latents are
returned rescaled to the prior's norm sqrt(Z) (the edited negatives see the same activations either
way). Each render's final error is kept, and the stage writes WORKDIR/data/latents/<name>/
{latents.npy, errors.npy, invert.json (errors, the encoder's loss curve), invert.png (renders
above their redrawings)}.
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

from learning_words.common import assets, checkpoints, figures, files, jsonio
from learning_words.models import discriminator as disc_lib
from learning_words.models.segmenter import to_float
from learning_words.world import pairs, scenes as scenes_lib


def pixel_error(images, targets, weights=None):
  """Mean absolute error per image: images, targets [B,R,R,3] in [-1, 1] -> [B]; weights
  [B,R,R] (optional): a weighted mean over the pixels."""
  err = jnp.mean(jnp.abs(images - targets), axis=3)
  if weights is None:
    return jnp.mean(err, axis=(1, 2))
  return jnp.sum(err * weights, axis=(1, 2)) / jnp.sum(weights, axis=(1, 2))


def to_prior_norm(z):
  """z [B,Z] rescaled to the prior's norm sqrt(Z) (the generator sees only its direction)."""
  return z * jnp.sqrt(z.shape[1] / jnp.sum(jnp.square(z), axis=1, keepdims=True))


def make_encoder(gan_cfg, seed: int) -> disc_lib.Discriminator:
  """images [B,R,R,3] in [-1, 1] -> codes [B,Z]: the discriminator's trunk (gan.d_sizes), as the
  VAE-GAN's encoder was, without the minibatch-std channel (each code is its own image's)."""
  return disc_lib.Discriminator(gan_cfg.d_sizes, rngs=nnx.Rngs(seed), out=int(gan_cfg.sizes[0]),
                                stddev=False)


@nnx.jit
def encoder_step(e, opt, g, x, w, key, latent_weight):
  """One Adam step of the encoder against the frozen generator; returns (loss, redraw error).
  x [B,R,R,3] renders in [-1, 1], w [B,R,R] their pixel weights."""
  z = jax.random.normal(key, (x.shape[0], g.sizes[0]))
  drawn = jax.lax.stop_gradient(g(z))

  def loss_fn(e):
    redraw = jnp.mean(pixel_error(g(to_prior_norm(e(x))), x, w))
    code = e(drawn)
    cos = jnp.sum(code * z, 1) / (jnp.linalg.norm(code, axis=1) * jnp.linalg.norm(z, axis=1))
    return redraw + latent_weight * jnp.mean(1.0 - cos), redraw

  (loss, redraw), grads = nnx.value_and_grad(loss_fn, has_aux=True)(e)
  opt.update(e, grads)
  return loss, redraw


def train_encoder(g, gan_cfg, images: np.ndarray, foreground: np.ndarray, *, steps: int,
                  batch: int, lr: float, latent_weight: float, fg_weight: float, seed: int,
                  progress: bool = True) -> tuple[disc_lib.Discriminator, list]:
  """(encoder, [(step, loss, redraw error)] every 100 steps) trained on uint8 renders
  [N,R,R,3] with object pixels foreground [N,R,R]; batches depend only on (seed, step)."""
  e = make_encoder(gan_cfg, seed)
  opt = nnx.Optimizer(e, optax.adam(lr), wrt=nnx.Param)
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  curve = []
  for step in tqdm(range(steps), desc="invert encoder", disable=not progress,
                   dynamic_ncols=True):
    idx = rng.integers(0, len(images), batch)
    w = 1.0 + float(fg_weight) * np.asarray(foreground[idx], np.float32)
    loss, redraw = encoder_step(e, opt, g, to_float(jnp.asarray(images[idx])), jnp.asarray(w),
                                jax.random.fold_in(key, step), float(latent_weight))
    if step % 100 == 0 or step == steps - 1:
      curve.append((step, float(loss), float(redraw)))
  return e, curve


def encode(e, images: np.ndarray, batch: int = 256) -> np.ndarray:
  """Codes [N,Z] (at the prior's norm) of uint8 images [N,R,R,3]."""
  run = nnx.jit(lambda e, x: to_prior_norm(e(to_float(x))))
  return np.concatenate([np.asarray(run(e, jnp.asarray(images[i:i + batch])))
                         for i in range(0, len(images), batch)])


@functools.partial(nnx.jit, static_argnames=("steps", "starts"))
def invert_batch(g, targets, weights, key, init, *, steps: int, starts: int, lr: float):
  """(latents [B,Z], errors [B]) for targets [B,R,R,3] in [-1, 1] with pixel weights [B,R,R]:
  from `init` [B,Z] (None: the best of `starts` prior draws), `steps` Adam steps on every latent
  at once (the summed loss keeps them independent: each latent's gradient is its own image's).
  errors: the plain (unweighted) mean absolute error of the result."""
  b, z_dim = targets.shape[0], g.sizes[0]
  if init is None:
    draws = jax.random.normal(key, (starts, b, z_dim))
    err0 = jax.lax.map(lambda z: pixel_error(g(z), targets, weights), draws)  # [starts, B]
    z = draws[jnp.argmin(err0, axis=0), jnp.arange(b)]
  else:
    z = init
  opt = optax.adam(lr)
  loss = lambda z: jnp.sum(pixel_error(g(z), targets, weights))

  def step(carry, _):
    z, state = carry
    updates, state = opt.update(jax.grad(loss)(z), state)
    return (optax.apply_updates(z, updates), state), None

  (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, length=steps)
  z = to_prior_norm(z)
  return jax.lax.stop_gradient(z), pixel_error(g(z), targets)


def invert(g, images: np.ndarray, *, steps: int, starts: int, lr: float, batch: int, seed: int,
           foreground=None, fg_weight: float = 0.0, init=None,
           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """(latents [N,Z], errors [N]) of uint8 images [N,R,R,3], in batches of `batch` (the last one
  padded, so the loop compiles once). foreground [N,R,R] bool: object pixels, weighted 1 +
  fg_weight in the loss (small objects on a large grey floor would otherwise hardly count).
  init [N,Z]: where each latent starts (an encoder's codes; None: the best of `starts` draws)."""
  zs, errs = [], []
  key = jax.random.key(seed)
  if foreground is None:
    foreground = np.zeros(images.shape[:3], bool)
  weights = 1.0 + float(fg_weight) * np.asarray(foreground, np.float32)
  for start in tqdm(range(0, len(images), batch), desc="invert", disable=not progress,
                    dynamic_ncols=True):
    parts = [images[start:start + batch], weights[start:start + batch]]
    if init is not None:
      parts.append(np.asarray(init, np.float32)[start:start + batch])
    pad = batch - len(parts[0])
    if pad:
      parts = [np.concatenate([p, np.repeat(p[-1:], pad, 0)]) for p in parts]
    z0 = None if init is None else jnp.asarray(parts[2])
    z, err = invert_batch(g, to_float(jnp.asarray(parts[0])), jnp.asarray(parts[1]),
                          jax.random.fold_in(key, start), z0, steps=steps, starts=starts, lr=lr)
    zs.append(np.asarray(z)[:batch - pad])
    errs.append(np.asarray(err)[:batch - pad])
  return np.concatenate(zs), np.concatenate(errs)


def inverter(config, g, existing: str | None, trained: str, progress: bool = True):
  """(encoder, its loss curve) for the frozen generator g: restored from `existing` (the shipped
  or an earlier trained inverter), else trained on the GAN's renders and saved to `trained`
  (None, []: world.invert_encoder_steps is 0)."""
  w = config.world
  if int(w.invert_encoder_steps) <= 0:
    return None, []
  if existing:
    key = f"inverter {tuple(config.gan.d_sizes)!r} {int(config.gan.sizes[0])}"
    return checkpoints.restore_weights(lambda: make_encoder(config.gan, config.seed), existing,
                                       key=key), []
  start = time.time()
  n = min(int(w.invert_encoder_renders), int(w.num_train))  # the GAN's training renders
  arrays, _, _ = scenes_lib.render_scenes(n, config.seed, w.resolution, w.min_objects,
                                          w.max_objects, start=0)
  e, curve = train_encoder(g, config.gan, arrays["image"], arrays["object_id"] > 0,
                           steps=int(w.invert_encoder_steps), batch=int(w.invert_encoder_batch),
                           lr=float(w.invert_encoder_lr),
                           latent_weight=float(w.invert_latent_weight),
                           fg_weight=float(w.invert_fg_weight), seed=config.seed,
                           progress=progress)
  checkpoints.save_weights(trained, e)
  jsonio.write_json(os.path.join(trained, "curve.json"), {
      "curve": curve, "renders": n, "train_seconds": round(time.time() - start, 1)})
  return e, curve


def ship_inverter(config, trained: str, generator_dir: str) -> str:
  """Ships a trained inverter as the package's, tied to the generator it was trained against."""
  return assets.ship("inverter", trained, config, {
      "generator_fingerprint": checkpoints.fingerprint_folders(generator_dir),
      "d_sizes": list(config.gan.d_sizes),
      "steps": int(config.world.invert_encoder_steps),
      "command": "python -m learning_words.main --config=configs/quickstart.py --workdir=WORKDIR "
                 "--mode=invert --config.world.pairs=inverted_parsed, then --mode=ship_inverter",
      **jsonio.read_json(os.path.join(trained, "curve.json"))})


def invert_renders(config, out_dir: str, g, inverter_dirs: tuple) -> str:
  """Finds the latents of the renders of every pair id (train, val and test of config.data) and
  writes them to `out_dir`; returns it. inverter_dirs: workdir.inverter_dir's (existing, trained)."""
  d, w = config.data, config.world
  ids = np.arange(d.num_train + d.num_val + d.num_test)
  start = time.time()
  images, _, foreground = pairs.render_pairs_images(w, config.seed, ids, with_foreground=True)
  e, curve = inverter(config, g, *inverter_dirs)
  init = None if e is None else encode(e, images)
  latents, errors = invert(g, images, steps=int(w.invert_steps), starts=int(w.invert_starts),
                           lr=float(w.invert_lr), batch=int(w.invert_batch), seed=config.seed,
                           foreground=foreground, fg_weight=float(w.invert_fg_weight), init=init)
  files.write_npy(os.path.join(out_dir, "errors.npy"), errors)
  splits = {"train": (0, d.num_train), "val": (d.num_train, d.num_val),
            "test": (d.num_train + d.num_val, d.num_test)}
  jsonio.write_json(os.path.join(out_dir, "invert.json"), {
      "renders": len(ids), "steps": int(w.invert_steps), "starts": int(w.invert_starts),
      "lr": float(w.invert_lr), "fg_weight": float(w.invert_fg_weight),
      "encoder_steps": int(w.invert_encoder_steps), "encoder_curve": curve,
      "seconds": round(time.time() - start, 1),
      "mean_abs_error": {s: float(errors[a:a + n].mean()) for s, (a, n) in splits.items()},
      "error_quantiles": {q: float(np.quantile(errors, q)) for q in (0.1, 0.5, 0.9)}})
  n = min(16, len(ids))
  drawn = pairs.draw_images(g, latents[:n])
  figures.save_png(os.path.join(out_dir, "invert.png"),
                   figures.make_grid(np.concatenate([images[:n], drawn]), cols=n, scale=2))
  files.write_npy(os.path.join(out_dir, "latents.npy"), latents)  # last: its presence marks the stage done
  return out_dir
