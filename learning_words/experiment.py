"""The `reproduce` experiment (configs/reproduce.py): does drawing negatives teach attributes?

For each seed of `experiment.seeds` (the training seed: weights, batch order, negatives; the world
is the config's), a `regular` warm-up of `experiment.warmup_epochs`, then from its best checkpoint
the same budget (`experiment.branch_epochs`) of every arm of `experiment.arms`:

  regular                 the triplet / softmax base alone
  edited_random           + negatives with random units (the reference's random mode)
  edited_cluster          + negatives with concept-guided units (cluster mode)
  edited_random_location  + the control: random units, the same masks moved to a random place
  edited_random_object    + the control: random units, the same masks moved onto another object
                          than the one under the caption's peak (read by the attribute segmenter)
  oracle                  + the renderer's edit of the object under the caption's peak: one
                          attribute changed (the renders' world with stored edits,
                          configs/oracle.py; learner/oracle.py)
  oracle_random           + the same kind of edit on a random object
  oracle_null             + the peak's object moved, its caption unchanged (a false negative)

Runs are named `warmup_seed<k>` and `<arm>_seed<k>`, so the report groups each arm's seeds. The
train stage takes them in order (every warm-up before the arms that start from it); a finished run
trains no more and a stopped one resumes from its last checkpoint, so running the experiment again
skips what is done. Every arm is evaluated the same way; warm-ups are not evaluated.
"""
from learning_words.common import errors

ARMS = {
    "regular": {"kind": "regular"},
    "edited_random": {"kind": "negatives_edited", "mode": "random", "location": "peak"},
    "edited_cluster": {"kind": "negatives_edited", "mode": "cluster", "location": "peak"},
    "edited_random_location": {"kind": "negatives_edited", "mode": "random",
                               "location": "random"},
    "edited_random_object": {"kind": "negatives_edited", "mode": "random", "location": "object"},
    "oracle": {"kind": "negatives_edited", "mode": "oracle"},
    "oracle_random": {"kind": "negatives_edited", "mode": "oracle_random"},
    "oracle_null": {"kind": "negatives_edited", "mode": "oracle_null"},
}


def enabled(config) -> bool:
  """Whether the config runs the experiment (`experiment.seeds` non-empty)."""
  return bool(tuple(config.experiment.seeds))


def warmup_name(seed: int) -> str:
  return f"warmup_seed{seed}"


def arm_name(arm: str, seed: int) -> str:
  return f"{arm}_seed{seed}"


def run_configs(config) -> list:
  """[(run name, its config, whether it is a warm-up)] in training order: each seed's warm-up,
  then its arms."""
  e = config.experiment
  unknown = [a for a in e.arms if a not in ARMS]
  if unknown:
    raise errors.ConfigError(f"--config.experiment.arms: unknown arms {unknown}; known: "
                             f"{list(ARMS)}")
  out = []
  for seed in e.seeds:
    c = config.copy_and_resolve_references()
    c.train.seed, c.train.name, c.train.kinds = int(seed), warmup_name(seed), ()
    c.loss.kind, c.train.epochs, c.train.init_from = "regular", int(e.warmup_epochs), ""
    out.append((c.train.name, c, True))
    for arm in e.arms:
      c = config.copy_and_resolve_references()
      spec = ARMS[arm]
      c.train.seed, c.train.name, c.train.kinds = int(seed), arm_name(arm, seed), ()
      c.loss.kind, c.train.epochs = spec["kind"], int(e.branch_epochs)
      c.train.init_from = warmup_name(seed)
      c.negatives.mode = spec.get("mode", c.negatives.mode)
      c.negatives.location = spec.get("location", c.negatives.location)
      out.append((c.train.name, c, False))
  return out
