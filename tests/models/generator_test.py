"""Generator: shapes and layer names, interventions, the reference's z rows (its training:
tests/world/train_gan_test.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learning_words.models import generator as gen_lib


@pytest.mark.parametrize("sizes,res", [((8, 16, 8), 8), ((16, 16, 16, 8, 8), 32),
                                       ((8, 8, 8, 8, 4, 4, 4), 128)])
def test_shapes_and_layer_names(sizes, res):
  g = gen_lib.Generator(sizes, rngs=nnx.Rngs(0))
  z = jnp.ones((2, sizes[0]))
  assert g(z).shape == (2, res, res, 3)
  names = [f"layer{i}" for i in range(1, 2 * (len(sizes) - 1) + 1)]
  feats = g.features(z, names)
  assert list(feats) == names
  for i, name in enumerate(names):
    side = 4 * 2 ** (i // 2)  # two layers per resolution, starting at 4x4
    assert feats[name].shape == (2, side, side, sizes[1 + i // 2])
  out = np.asarray(g(z * 50))
  assert out.min() >= -1 and out.max() <= 1


def test_intervention_identity_and_zeroing():
  sizes = (8, 8, 8, 4)
  g = gen_lib.Generator(sizes, rngs=nnx.Rngs(1))
  z = jax.random.normal(jax.random.key(0), (3, 8))
  base = g(z)
  a0 = jnp.zeros((3, 8, 8, 8))
  np.testing.assert_array_equal(g(z, {"layer4": (a0, jnp.zeros(8))}), base)
  # a = 1 on a block of positions and units, r = 0: exactly those activations become zero.
  a = np.zeros((3, 8, 8, 8), np.float32)
  a[:, 2:5, 1:4, :5] = 1
  before = np.asarray(g.features(z, ["layer4"])["layer4"])
  after = np.asarray(
      g.features(z, ["layer4"], {"layer4": (jnp.asarray(a), jnp.zeros(8))})["layer4"])
  assert (after[a == 1] == 0).all()
  np.testing.assert_array_equal(after[a == 0], before[a == 0])
  assert np.abs(before[a == 1]).sum() > 0  # the test zeroed something real
  # Re-rendering from the positive pass's layer-4 output equals the full intervened pass.
  r = jnp.full((8,), 0.5)
  full = g(z, {"layer6": (jnp.ones((3, 16, 16, 4)), jnp.full((4,), 0.5))})
  x4 = g.features(z, ["layer4"])["layer4"]
  np.testing.assert_allclose(
      g.render_from("layer4", x4, {"layer6": (jnp.ones((3, 16, 16, 4)), jnp.full((4,), 0.5))}),
      full, atol=1e-6)
  del r


def test_standard_z_rows_match_numpy_for_any_n():
  for n in (1, 5, 40):
    want = np.random.RandomState(1).standard_normal(n * 16).reshape(n, 16)
    np.testing.assert_allclose(gen_lib.standard_z(n, 16), want, rtol=1e-6)
  np.testing.assert_array_equal(gen_lib.standard_z(40, 16)[:5], gen_lib.standard_z(5, 16))
