"""The reproduce experiment's runs: names, order, budgets, starting points and arms, as listed by
hand; the pipeline trains them in that order and evaluates the arms only."""
import pytest

from configs import reproduce, tiny
from learning_words import experiment, pipeline
from learning_words.common import errors


def test_reproduce_preset_lists_warmups_then_arms_per_seed():
  c = reproduce.get_config()
  runs = experiment.run_configs(c)
  arms = ("regular", "edited_random", "edited_cluster", "edited_random_location",
          "edited_random_object")
  want = [n for s in (0, 1, 2) for n in [f"warmup_seed{s}"] + [f"{a}_seed{s}" for a in arms]]
  assert [name for name, _, _ in runs] == want
  for name, cfg, warmup in runs:
    seed = int(name[-1])
    assert cfg.train.name == name and cfg.train.seed == seed and cfg.seed == c.seed
    assert warmup == name.startswith("warmup")
    if warmup:
      assert cfg.loss.kind == "regular" and cfg.train.init_from == ""
      assert cfg.train.epochs == c.experiment.warmup_epochs
      continue
    assert cfg.train.init_from == f"warmup_seed{seed}"
    assert cfg.train.epochs == c.experiment.branch_epochs
    arm = name[:-len("_seed0")]
    assert cfg.loss.kind == ("regular" if arm == "regular" else "negatives_edited")
    if arm != "regular":
      assert cfg.negatives.mode == ("cluster" if arm == "edited_cluster" else "random")
      assert cfg.negatives.location == {"edited_random_location": "random",
                                        "edited_random_object": "object"}.get(arm, "peak")
  # The pipeline trains every run in that order and evaluates the arms only.
  assert [cfg.train.name for cfg in pipeline.run_configs(c)] == want
  assert c.train.kinds == () and not experiment.enabled(tiny.get_config())


def test_unknown_arm_is_a_config_error():
  c = tiny.get_config()
  c.experiment.seeds, c.experiment.arms = (0,), ("regular", "edited_everything")
  with pytest.raises(errors.ConfigError, match="edited_everything"):
    experiment.run_configs(c)
