"""The paper's claim on the CPU world: a `regular` warm-up, then regular vs edited negatives (random
units, concept-guided units, and the random-location control) with the same budget, three seeds.

  python -m learning_words.main --config=configs/reproduce.py --workdir=workdir --mode=pipeline

The quickstart's world and learner (configs/quickstart.py); runs are `warmup_seed<k>` and
`<arm>_seed<k>` (learning_words/experiment.py); two controls: the same edits at a random place and
on another object than the caption's peak. Running it again skips finished runs and resumes a
stopped one. 2 warm-up + 2 branch epochs: each arm gets the quickstart's 4-epoch budget (README,
"The reproduce experiment").
"""
import importlib.util
import os


def _quickstart():
  """configs/quickstart.py, loaded beside this file (so the preset loads from any directory)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py")
  spec = importlib.util.spec_from_file_location("quickstart_preset", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config():
  c = _quickstart().get_config()
  c.train.kinds = ()
  c.experiment.seeds = (0, 1, 2)
  c.experiment.arms = ("regular", "edited_random", "edited_cluster", "edited_random_location",
                       "edited_random_object")
  # 24 tries per sample instead of 8, so that the arms differ in where they edit rather than in
  # how many samples get an edited term: on validation pairs of the quickstart's `regular` model,
  # acceptance at the peak / on another object / at a random place was 0.955 / 0.955 / 0.71 at 8
  # tries and 0.995 / 0.995 / 0.895 at 24 (README, "Where the matchmaps point").
  c.negatives.candidates = 24
  return c
