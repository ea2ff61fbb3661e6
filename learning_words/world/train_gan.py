"""`--mode=train_gan`: trains the Progressive GAN generator on the rendered scenes.

Objective: non-saturating logistic GAN loss with lazy R1 on real images, Adam (b1 0, b2 0.99) and
an EMA of the generator's weights (the EMA generator is the one that draws). Optionally a VAE-GAN
reconstruction path (`gan.recon_weight > 0`): an encoder maps a real scene to q(z|x), the same
generator reconstructs it (L1) and a KL term keeps q close to N(0, I) -- it teaches colours and
shapes in far fewer steps than the adversarial loss alone, without changing the generator.
The reconstruction path only trains the generator where the encoder puts its codes, which can be
a small part of the prior (the first shipped generator's posterior was a narrow cone, and its
prior samples dropped blue and cyan while its reconstructions drew every colour); the optional
colour term (`gan.colour_weight > 0`) matches the prior drawings' soft (colour, saturation)
histogram to the renders' one (colour_match.py; a fixed feature, not a learned network).

Writes GAN_DIR/{checkpoints/, tensorboard/, samples/, progress.json} and, at the end,
GAN_DIR/generator_ema (the weights later stages draw with).

Batches are drawn from the in-memory training renders by indices that depend only on (seed, step),
so a resumed run sees exactly the batches the uninterrupted one would.
"""
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from learning_words.common import (assets, batching, checkpoints, errors, figures, jsonio,
                                   mesh as mesh_lib, periodic, writers)
from learning_words.data import clevr_scenes
from learning_words.models import discriminator as disc_lib
from learning_words.models import generator as gen_lib
from learning_words.world import colour_match


class GenEnc(nnx.Module):
  """What the generator optimizer trains: the generator and (VAE-GAN) the encoder."""

  def __init__(self, cfg, rngs):
    self.g = gen_lib.Generator(cfg.sizes, rngs=rngs)
    z_dim = cfg.sizes[0]
    self.e = (disc_lib.Discriminator(cfg.d_sizes, rngs=rngs, out=2 * z_dim, stddev=False)
              if cfg.recon_weight > 0 else None)


class GanState(nnx.Module):
  """Everything a GAN checkpoint holds."""

  def __init__(self, cfg, seed: int):
    rngs = nnx.Rngs(seed)
    self.gen = GenEnc(cfg, rngs)
    self.d = disc_lib.Discriminator(cfg.d_sizes, rngs=rngs)
    self.g_ema = nnx.clone(self.gen.g)
    tx = lambda: optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2)
    self.opt_g = nnx.Optimizer(self.gen, tx(), wrt=nnx.Param)
    self.opt_d = nnx.Optimizer(self.d, tx(), wrt=nnx.Param)


def encode(e, x, z_dim):
  """Encoder -> (mu, logvar) [B, z_dim] each; logvar bounded for stability."""
  out = e(x)
  return out[:, :z_dim], jnp.clip(out[:, z_dim:], -8.0, 4.0)


def losses_d(d, real, fake, rec, cfg, r1: bool):
  """Discriminator loss terms: logistic on real vs fakes (prior samples and reconstructions)."""
  fakes = fake if rec is None else jnp.concatenate([fake, rec])
  terms = {"d_real": jax.nn.softplus(-d(real)).mean(), "d_fake": jax.nn.softplus(d(fakes)).mean()}
  if r1:
    grad = jax.grad(lambda x: d(x).sum())(real)
    terms["r1"] = 0.5 * cfg.r1_gamma * cfg.r1_every * jnp.sum(jnp.square(grad), (1, 2, 3)).mean()
  return terms


def losses_g(gen, d, real, z, eps, cfg, colour_target):
  """Generator (and encoder) loss terms. colour_target: [K, S] the renders' colour histogram."""
  fake = gen.g(z)
  terms = {"g_adv": jax.nn.softplus(-d(fake)).mean()}
  if cfg.colour_weight > 0:
    terms["colour_tv"] = cfg.colour_weight * colour_match.colour_tv(fake, colour_target)
  if gen.e is not None:
    mu, logvar = encode(gen.e, real, cfg.sizes[0])
    rec = gen.g(mu + jnp.exp(0.5 * logvar) * eps)
    terms["g_adv_rec"] = jax.nn.softplus(-d(rec)).mean()
    terms["recon_l1"] = cfg.recon_weight * jnp.abs(rec - real).mean()
    kl = 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar, axis=1).mean()
    terms["kl"] = cfg.kl_weight * kl / np.prod(real.shape[1:])  # per pixel, like the L1 term
  return terms


def train_step(s: GanState, real, key, cfg, r1: bool, colour_target):
  """One D update then one G(/E) update; returns the loss terms. colour_target: [K, S] (see
  renders_colour_histogram)."""
  b, z_dim = real.shape[0], cfg.sizes[0]
  kz, ke = jax.random.split(key)
  z = jax.random.normal(kz, (b, z_dim))
  eps = jax.random.normal(ke, (b, z_dim))
  fake = jax.lax.stop_gradient(s.gen.g(z))
  rec = None
  if s.gen.e is not None:
    mu, logvar = encode(s.gen.e, real, z_dim)
    rec = jax.lax.stop_gradient(s.gen.g(mu + jnp.exp(0.5 * logvar) * eps))

  def d_loss(d):
    terms = losses_d(d, real, fake, rec, cfg, r1)
    return sum(terms.values()), terms

  (_, d_terms), d_grads = nnx.value_and_grad(d_loss, has_aux=True)(s.d)
  s.opt_d.update(s.d, d_grads)

  def g_loss(gen):
    terms = losses_g(gen, s.d, real, z, eps, cfg, colour_target)
    return sum(terms.values()), terms

  (_, g_terms), g_grads = nnx.value_and_grad(g_loss, has_aux=True)(s.gen)
  s.opt_g.update(s.gen, g_grads)
  # EMA with a warm-up (decay ramps from 0.1 towards ema_decay) so early samples mean something.
  step = s.opt_g.step[...].astype(jnp.float32)
  decay = jnp.minimum(cfg.ema_decay, (1.0 + step) / (10.0 + step))
  ema = jax.tree.map(lambda e, g: decay * e + (1.0 - decay) * g,
                     nnx.state(s.g_ema, nnx.Param), nnx.state(s.gen.g, nnx.Param))
  nnx.update(s.g_ema, ema)
  return {**d_terms, **g_terms}


@functools.partial(jax.jit, static_argnames="n")
def renders_colour_histogram(images, n: int = 2048):
  """The colour-matching target: the soft (colour, saturation band) histogram [K, S] of the first
  n renders (uint8 [N, R, R, 3]). Computed once per training session, not checkpointed."""
  return colour_match.colour_histogram(images[:n].astype(jnp.float32) / 127.5 - 1.0)


def train_chunk(s: GanState, images, idx, key, first_step, colour_target, cfg, r1_first: bool):
  """Steps first_step .. first_step + L - 1 in one call (L = len(idx)): no host round trip per step.

  images: [N, R, R, 3] uint8 on the device (replicated); idx: [L, B] the batches' image indices
  (batch axis sharded); colour_target: [K, S] renders_colour_histogram(images). Only the first
  step may take the lazy R1 term (`r1_first`), so a chunk ends where the next R1 step begins.
  Returns the last step's loss terms.
  """
  real = lambda i: images[i].astype(jnp.float32) / 127.5 - 1.0
  terms = train_step(s, real(idx[0]), jax.random.fold_in(key, first_step), cfg, r1_first,
                     colour_target)
  if len(idx) == 1:
    return terms
  graphdef, state = nnx.split(s)

  def body(state, inputs):
    i, step = inputs
    m = nnx.merge(graphdef, state)
    t = train_step(m, real(i), jax.random.fold_in(key, step), cfg, False, colour_target)
    return nnx.state(m), t

  steps = first_step + 1 + jnp.arange(len(idx) - 1)
  state, terms = jax.lax.scan(body, state, (idx[1:], steps))
  nnx.update(s, state)
  return jax.tree.map(lambda t: t[-1], terms)


def chunk_end(step: int, every: int, total: int) -> int:
  """Where the chunk starting at `step` ends: the next multiple of `every`, or the end of
  training."""
  return min((step // every + 1) * every, total)


def steps_per_call(cfg) -> int:
  """Steps per jitted call: up to the next R1 step on accelerators, one on CPU, where XLA runs
  the convolutions inside a scan's loop far slower (measured at 32 px: 75 s against 0.9 s a
  step)."""
  return 1 if jax.default_backend() == "cpu" else cfg.r1_every


def write_progress(gan_dir: str, step: int, session: str, session_seconds: float):
  """gan/progress.json: steps done and training wall time summed over resumed sessions (one entry
  per train_gan call, keyed by its start time, rewritten at each checkpoint of that call)."""
  path = os.path.join(gan_dir, "progress.json")
  prog = jsonio.read_json(path, {"step": 0, "seconds": 0.0, "sessions": {}})
  prog["sessions"][session] = session_seconds
  prog["seconds"] = round(sum(prog["sessions"].values()), 1)
  prog["step"] = step
  jsonio.write_json(path, prog)


def ship_generator(config, gan_dir: str, world_report_json: str) -> str:
  """Ships GAN_DIR's EMA generator as the package's default, with its provenance (training
  steps and wall time, and the world report's numbers)."""
  prog = jsonio.read_json(os.path.join(gan_dir, "progress.json"))
  report = jsonio.read_json(world_report_json)
  return assets.ship("generator", os.path.join(gan_dir, "generator_ema"), config, {
      "sizes": list(config.gan.sizes), "gan_config": config.gan.to_dict(),
      "command": "python -m learning_words.main --config=configs/quickstart.py --workdir=WORKDIR "
                 "--mode=train_gan --config.gan.retrain=True",
      "steps": prog.get("step"), "train_seconds": prog.get("seconds"),
      "train_sessions": prog.get("sessions"), "note": prog.get("note"),
      "world_report": {k: report.get(k)
                       for k in ("parsed_fraction", "tv", "edits", "gates_passed")},
  })


def train_gan(config, gan_dir: str, scenes_dir: str) -> str:
  """Trains (or resumes) the GAN in `gan_dir` to `config.gan.steps` on the renders of
  `scenes_dir`; returns the EMA generator's folder."""
  cfg = config.gan
  if gen_lib.resolution_of(cfg.sizes) != config.world.resolution:
    raise errors.ConfigError(f"--config.gan.sizes draw {gen_lib.resolution_of(cfg.sizes)} px "
                             f"images but --config.world.resolution is {config.world.resolution}")
  images = clevr_scenes.load_arrays(scenes_dir, "train")["image"]
  logging.info("train_gan: %d training renders %s", len(images), images.shape[1:])
  mesh = mesh_lib.make_mesh()
  s = GanState(cfg, config.seed)
  manager = checkpoints.make_manager(os.path.join(gan_dir, "checkpoints"))
  start = checkpoints.restore(manager, {"state": s})
  mesh_lib.replicate(s, mesh)
  chunk_fn = nnx.jit(functools.partial(train_chunk, cfg=cfg), static_argnames="r1_first")
  # The renders live on the device (replicated), batches are gathered there by index.
  images_dev = jax.make_array_from_callback(images.shape, NamedSharding(mesh, P()),
                                            lambda i: images[i])
  colour_target = renders_colour_histogram(images_dev)
  idx_sharding = NamedSharding(mesh, P(None, "data"))
  host = jax.process_index()
  writer = writers.Writer(os.path.join(gan_dir, "tensorboard"), host == 0)
  z_fixed = jnp.asarray(gen_lib.standard_z(64, cfg.sizes[0], seed=1))
  key = jax.random.key(config.seed)
  bar = tqdm(total=cfg.steps, initial=start, desc="train_gan", disable=host != 0,
             dynamic_ncols=True)
  step_rate = writers.StepRate(start)
  session_start = time.time()
  crossed = lambda every, a, b: periodic.itstime(b, every, cfg.steps, prev=a)
  step, every = start, steps_per_call(cfg)
  while step < cfg.steps:
    done = chunk_end(step, every, cfg.steps)
    idx = np.stack([batching.batch_indices(config.seed, t, len(images), cfg.batch_size)
                    for t in range(step, done)]).astype(np.int32)
    idx = jax.make_array_from_callback(idx.shape, idx_sharding, lambda i, idx=idx: idx[i])
    terms = chunk_fn(s, images_dev, idx, key, step, colour_target,
                     r1_first=step % cfg.r1_every == 0)
    bar.update(done - step)
    if crossed(cfg.log_every, step, done):
      terms = {k: float(v) for k, v in terms.items()}
      rate = step_rate(done)
      writer.write_scalars(done, {**terms, "steps_per_s": rate})
      bar.set_postfix(d=f"{terms['d_real'] + terms['d_fake']:.3f}", g=f"{terms['g_adv']:.3f}",
                      it_s=f"{rate:.2f}")
    if crossed(cfg.sample_every, step, done):
      grid = figures.make_grid(figures.to_uint8(s.g_ema(z_fixed)), cols=8, scale=2)
      if host == 0:
        figures.save_png(os.path.join(gan_dir, "samples", f"step_{done:07d}.png"), grid)
        figures.save_png(os.path.join(gan_dir, "samples", "latest.png"), grid)
      writer.write_images(done, {"samples": grid})
    if crossed(cfg.checkpoint_every, step, done):
      checkpoints.save(manager, done, {"state": s})
      writer.flush()  # the events so far reach the workdir (a bucket's copy too)
      if host == 0:
        write_progress(gan_dir, done, f"{session_start:.3f}", time.time() - session_start)
    step = done
  bar.close()
  manager.wait_until_finished()
  writer.close()
  out = os.path.join(gan_dir, "generator_ema")
  checkpoints.save_weights(out, s.g_ema)
  return out
