"""colour_match: the soft palette histogram against a per-pixel loop and hand-made batches."""
import math

import jax.numpy as jnp
import numpy as np

from learning_words import colour_match
from learning_words.world import scenes

CHROMATIC = [c for c in scenes.COLORS if c != "gray"]


def _loop_histogram(images, tau):
  pal = [np.array(scenes.COLOR_RGB[c], float) / sum(scenes.COLOR_RGB[c]) for c in CHROMATIC]
  h, total = np.zeros(len(pal)), 0.0
  for img in images:
    for px in img.reshape(-1, 3):
      x = (px + 1.0) / 2.0
      s2 = (max(x) - min(x)) ** 2
      ch = x / (sum(x) + 1e-3)
      e = [math.exp(-np.sum((ch - p) ** 2) / tau) for p in pal]
      h += s2 * np.array(e) / sum(e)
      total += s2
  return h / total


def _solid(colour, n=2, side=4):
  rgb = np.array(scenes.COLOR_RGB[colour], np.float32) / 127.5 - 1.0
  return np.broadcast_to(rgb, (n, side, side, 3))


def test_histogram_matches_a_per_pixel_loop():
  images = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 3, 3)).astype(np.float32)
  for tau in (0.003, 0.05):
    np.testing.assert_allclose(colour_match.colour_histogram(jnp.asarray(images), tau),
                               _loop_histogram(images, tau), rtol=1e-4, atol=1e-6)


def test_palette_colours_land_in_their_own_bin_and_grey_counts_nothing():
  for k, colour in enumerate(CHROMATIC):
    h = np.asarray(colour_match.colour_histogram(jnp.asarray(_solid(colour))))
    assert h.argmax() == k and h[k] > 0.95, (colour, h)
  assert np.asarray(colour_match.colour_histogram(jnp.asarray(_solid("gray")))).sum() < 1e-3
  blue, red = jnp.asarray(_solid("blue")), jnp.asarray(_solid("red"))
  hist = colour_match.colour_histogram
  assert float(colour_match.colour_tv(blue, hist(blue))) == 0.0
  assert float(colour_match.colour_tv(blue, hist(red))) > 0.95


def test_gradient_moves_images_towards_the_real_batch_colours():
  import jax
  import optax
  x = jnp.asarray(np.random.default_rng(1).uniform(-0.6, 0.6, size=(2, 4, 4, 3)), jnp.float32)
  blue = jnp.asarray(_solid("blue"))
  tx = optax.adam(0.05)
  opt = tx.init(x)
  loss = lambda x: colour_match.colour_tv(x, colour_match.colour_histogram(blue))
  first = float(loss(x))
  for _ in range(60):
    g = jax.grad(loss)(x)
    upd, opt = tx.update(g, opt)
    x = optax.apply_updates(x, upd)
  assert float(loss(x)) < 0.5 * first
  assert np.asarray(colour_match.colour_histogram(x)).argmax() == CHROMATIC.index("blue")
