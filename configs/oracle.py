"""The oracle editor: the upper bound of what drawn negatives can teach this learner.

  python -m learning_words.main --config=configs/oracle.py --workdir=workdir_oracle --mode=pipeline

The renders' world (ground-truth images and captions, the positives stored) whose records also
hold, per object, the scene redrawn by the renderer with one attribute of that object changed and
with that object moved (world/edit_variants.py). As in configs/reproduce.py, per seed a `regular`
warm-up, then the same budget of each arm from it (learning_words/experiment.py): `regular`,
`oracle` (the edit of the object under the caption's peak), `oracle_random` (a random object's)
and `oracle_null` (the peak's object moved, its caption word for word the same: a false negative
that tells whether the tests reward spotting any difference). Compare each arm's gain over this
world's `regular` with the generator's arms over theirs (configs/reproduce.py). Evaluators that
edit through the generator (edited recall, edit effect) are skipped on stored images; `semantic`
runs, with the renderer drawing each caption's four one-attribute negatives.
Running it again skips finished runs and resumes a stopped one.

Wall time on 2-core AMD EPYC CPUs: 41 to 70 minutes (build_data 94-129 s, train 35-52 min for 3
seeds, eval 5-14 min; the evaluations of this version include the probe). Expected (test split,
each arm minus `regular`, mean over seeds, 95% paired bootstrap), as measured on 2026-12-06:
semantic pairwise accuracy +0.001 [-0.013, +0.015] for `oracle` (regular 0.62), count-matched word
test +0.000 [-0.004, +0.004]; retrieval A_r10 -0.02 for every edited arm. An earlier run on
another machine gave the plain word test +0.025 [+0.016, +0.035] for `oracle`; this one +0.004
[-0.004, +0.013] (docs/results.md).

The learner these negatives do teach: the edited term on the changed word's frames, 1 + 7 epochs,

  python -m learning_words.main --config=configs/oracle.py --workdir=WORKDIR --mode=pipeline \
      "--config.experiment.arms=('regular','oracle')" --config.experiment.warmup_epochs=1 \
      --config.experiment.branch_epochs=7 --config.loss.edited_score=word

(7.5 to 11 min per arm and seed on a 2-core AMD EPYC). Expected, test split, seeds 0 and 1:
`oracle` minus `regular` semantic pairwise +0.070 [+0.050, +0.090] (0.69 against 0.62),
count-matched word test +0.086 [+0.074, +0.098], A_r10 +0.066.

The candidate chosen on validation: cells that see 16 px, the word term read on the edited
object's cells, the held-still term, a lower temperature, 1 + 7 epochs (about 11 min per arm on
the 2-core AMD EPYC):

  python -m learning_words.main --config=configs/oracle.py --workdir=WORKDIR --mode=pipeline \
      "--config.experiment.arms=('regular','oracle','oracle_random','oracle_null')" \
      --config.experiment.warmup_epochs=1 --config.experiment.branch_epochs=7 \
      --config.loss.edited_score=word --config.loss.edited_cells=edited \
      --config.loss.edited_invariance=0.5 --config.loss.temperature=0.035 \
      "--config.model.image_depths=(2,2,0,0,0)" --config.model.image_embed_kernel=1

Expected on validation (seed 0, from scratch, 8 epochs): pairwise 0.80 for `oracle` (shape 0.63)
against 0.70 for `regular` with the same cells and temperature; 0.82 at 16 epochs
(docs/findings.md). Measured on the test split, 3 seeds (about 90 min of training): `oracle` 0.765
against `regular` 0.715, +0.051 [+0.036, +0.065]; `oracle_random` +0.045; `oracle_null` -0.051;
count-matched word test +0.018 (docs/results.md).

The same with Adam 3e-4 and signed speech frames (add --config.train.lr=3e-4
--config.model.audio_out_relu=False), chosen on validation after it; about 35 min per seed. Test
split, 3 seeds: `oracle` 0.823 against `regular` 0.737, +0.086 [+0.071, +0.101] (shape 0.635,
material 0.841); `oracle_random` +0.081; `oracle_null` -0.351, collapsed in 2 of 3 seeds
(docs/results.md).
"""
from learning_words import defaults


def get_config():
  c = defaults.preset_beside(__file__, "quickstart")
  c.world.pairs = "renders"
  c.world.edit_variants = True
  c.data.positives = "stored"
  c.train.cache_positives = False
  c.train.kinds = ()
  c.experiment.seeds = (0, 1, 2)
  c.experiment.arms = ("regular", "oracle", "oracle_random", "oracle_null")
  return c
