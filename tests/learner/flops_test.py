"""learner/flops.py: the analytic count against XLA's own cost analysis of the compiled train step
on CPU (within 10%), and its building blocks against hand-computed cases."""
import jax
import jax.numpy as jnp
import pytest

from configs import tiny
from learning_words import benchmark
from learning_words.learner import flops


def test_valid_taps_by_hand():
  # 4 outputs, 3 taps, padding 1: the edge outputs see 2 taps, the inner ones 3.
  assert flops.valid_taps(4, 3, 1, 4) == 2 + 3 + 3 + 2
  # The generator's first layer: a 1x1 input padded by 3 under a 4-tap kernel: one tap each.
  assert flops.valid_taps(1, 4, 3, 4) == 4
  assert flops.conv1d(10, 1, 5, 7) == 2 * 10 * 5 * 7


def test_conv_count_matches_xla_on_a_padded_conv():
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  cost = jax.jit(conv).lower(jnp.zeros((2, 4, 4, 16)), jnp.zeros((3, 3, 16, 32))).compile()
  cost = cost.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  assert cost["flops"] == 2 * flops.conv2d(4, 3, 16, 32)


def _config():
  c = tiny.get_config()  # wide enough that convolutions dominate, as in every real preset
  c.model.image_widths = (16, 16, 32, 32, 32)
  c.model.audio_widths = (32, 64, 64)
  c.model.embed_dim = 32
  c.gan.sizes = (32, 32, 32, 16)
  c.data.train_frames = 256
  return c


@pytest.mark.parametrize("kind", ["regular", "negatives_edited"])
def test_step_count_within_10_percent_of_xla(kind):
  config = _config()
  # Under the tests' 8 CPU devices, so the per-device count is scaled back to the whole step.
  xla = benchmark.time_step(config, kind, steps=0)["flops_per_step"]
  ours = flops.train_step(config, kind)["total"]
  assert abs(ours - xla) / xla < 0.10, (ours, xla)
