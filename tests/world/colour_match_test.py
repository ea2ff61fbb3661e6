"""colour_match: the soft (colour, saturation) histogram against a per-pixel loop and hand-made
batches."""
import math

import jax.numpy as jnp
import numpy as np

from learning_words.world import colour_match
from learning_words.data import vocabulary

CHROMATIC = [c for c in vocabulary.COLORS if c != "gray"]


def _loop_histogram(images, tau, tau_sat=0.005, bands=(0.1, 0.25, 0.4, 0.55, 0.7)):
  pal = [np.array(vocabulary.COLOR_RGB[c], float) / sum(vocabulary.COLOR_RGB[c]) for c in CHROMATIC]
  h, total = np.zeros((len(pal), len(bands))), 0.0
  for img in images:
    for px in img.reshape(-1, 3):
      x = (px + 1.0) / 2.0
      sat = max(x) - min(x)
      ch = x / (sum(x) + 1e-3)
      e = [math.exp(-np.sum((ch - p) ** 2) / tau) for p in pal]
      b = [math.exp(-(sat - c) ** 2 / tau_sat) for c in bands]
      h += sat ** 2 * np.outer(np.array(e) / sum(e), np.array(b) / sum(b))
      total += sat ** 2
  return h / total


def _solid(colour, n=2, side=4, dull=0.0):
  """A batch of one palette colour, mixed with its own grey level by `dull` (0 = as rendered)."""
  rgb = np.array(vocabulary.COLOR_RGB[colour], np.float32)
  rgb = (1.0 - dull) * rgb + dull * rgb.mean()
  rgb = rgb / 127.5 - 1.0
  return np.broadcast_to(rgb, (n, side, side, 3))


def test_histogram_matches_a_per_pixel_loop():
  images = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 3, 3)).astype(np.float32)
  for tau in (0.003, 0.05):
    np.testing.assert_allclose(colour_match.colour_histogram(jnp.asarray(images), tau),
                               _loop_histogram(images, tau), rtol=1e-4, atol=1e-6)


def test_palette_colours_land_in_their_own_bin_and_grey_counts_nothing():
  for k, colour in enumerate(CHROMATIC):
    h = np.asarray(colour_match.colour_histogram(jnp.asarray(_solid(colour)))).sum(-1)
    assert h.argmax() == k and h[k] > 0.95, (colour, h)
  assert np.asarray(colour_match.colour_histogram(jnp.asarray(_solid("gray")))).sum() < 1e-3
  blue, red = jnp.asarray(_solid("blue")), jnp.asarray(_solid("red"))
  hist = colour_match.colour_histogram
  assert float(colour_match.colour_tv(blue, hist(blue))) == 0.0
  assert float(colour_match.colour_tv(blue, hist(red))) > 0.95


def test_a_dull_colour_lands_in_its_hue_but_a_lower_saturation_band():
  # Yellow (255, 238, 51) has saturation 0.8; mixed halfway with its grey it keeps its hue
  # (chromaticity) and drops to 0.4: same colour row, different band, so the two are far apart.
  bright, dull = (jnp.asarray(_solid("yellow", dull=d)) for d in (0.0, 0.5))
  hb, hd = (np.asarray(colour_match.colour_histogram(x)) for x in (bright, dull))
  k = CHROMATIC.index("yellow")
  assert hb.sum(-1)[k] > 0.95 and hd.sum(-1)[k] > 0.95
  assert hb[k].argmax() == len(colour_match.SAT_BANDS) - 1
  assert colour_match.SAT_BANDS[hd[k].argmax()] == 0.4
  assert float(colour_match.colour_tv(dull, hb)) > 0.9


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
  assert np.asarray(colour_match.colour_histogram(x)).sum(-1).argmax() == CHROMATIC.index("blue")
