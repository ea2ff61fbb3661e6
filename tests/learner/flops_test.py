"""learner/flops.py: its building blocks against hand-computed cases and one conv against XLA's
count. The whole step against XLA's count (within 10%) is checked in benchmark_test.py, which
compiles both steps anyway."""
import jax
import jax.numpy as jnp

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
