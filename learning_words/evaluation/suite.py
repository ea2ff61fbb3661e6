"""The evaluation suite: plug-ins named in `config.evals.names`.

  retrieval      recall@{1,5,10} speech->image and image->speech over N held-out pairs
  edited_recall  the positive among 9 GAN-edited negatives (random units): R@1, R@5
  semantic       the positive among 4 negatives with one attribute of one object changed: R@1,
                 R@3, and pairwise accuracy (own above each negative) per changed attribute
  attributes_matched  the word test: attribute words vs test images with / without them, pairs of
                 equal object count only (the headline word test)
  attributes     the paper's Table 1 by the reference's protocol: the i-th image with the word
                 against the i-th without (it also reads clutter: count_spearman)
  localisation   caption peaks on object cells and on the border, with their chance levels
  word_pointing  attribute words' peaks on cells that hold the word (the pointing game)
  probe          a linear probe of each object's attributes on its cell's image features,
                 beside a random encoder and the raw pixels
  edit_effect    drawn negatives at the peak and at a random place: where the mask lands,
                 acceptance, what the segmenter reads as changed, caption specificity

Each evaluator is `run(ctx: context.Context) -> dict` (JSON-able), deterministic for
`config.evals.seed`: it receives the encoders, the generator and the data, never a trainer.
`semantic` and `attributes` need the attribute segmenter; without one (at a resolution with no
shipped one, in a workdir that never trained one) they are recorded as skipped, as are
`edited_recall`, `semantic` and `edit_effect` on stored positives (no latent to edit), except
`semantic` on the renders' world, whose negatives the renderer draws.
"""
import time

from absl import logging

from learning_words.common import errors
from learning_words.evaluation import (attributes, context, edit_effect, edited_recall,
                                       localisation, probe, retrieval, semantic)

# In the order the report and the console show them: the count-matched word test first, as the
# plain one also reads how many objects an image holds (its `count_spearman`).
EVALUATORS = {"retrieval": retrieval.run, "edited_recall": edited_recall.run,
              "semantic": semantic.run, "attributes_matched": attributes.run_matched,
              "attributes": attributes.run, "probe": probe.run,
              "localisation": localisation.run, "word_pointing": localisation.run_pointing,
              "edit_effect": edit_effect.run}
NEEDS_SEGMENTER = ("semantic", "attributes", "attributes_matched", "localisation",
                   "word_pointing", "edit_effect", "probe")
# They redraw the positive from its latent.
NEEDS_LATENTS = ("edited_recall", "semantic", "edit_effect")


def check_names(names) -> tuple[str, ...]:
  names = tuple(names)
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise errors.ConfigError(f"--config.evals.names: unknown evaluators {unknown}; "
                             f"known: {list(EVALUATORS)}")
  return names


def pairs_needed(config, names) -> int:
  """How many held-out pairs the named evaluators read (the first ones of the split)."""
  e = config.evals
  sizes = {"retrieval": e.retrieval.n_pairs, "edited_recall": e.edited_recall.captions,
           "semantic": e.semantic.captions, "attributes": e.attributes.pool,
           "attributes_matched": e.attributes.pool, "localisation": e.localisation.n_pairs,
           "word_pointing": e.attributes.pool, "edit_effect": e.edit_effect.captions,
           "probe": e.probe.images}
  return max([int(sizes[n]) for n in names] + [1])


def rendered_world(ctx: context.Context) -> bool:
  """Whether the held-out pairs are the renderer's scenes (world.pairs='renders'), which the
  semantic test can redraw without a latent."""
  return ctx.config.world.pairs == "renders"


def evaluate(ctx: context.Context, names=None) -> dict:
  """{evaluator: its metrics (with 'seconds'), or {'skipped': why}} for the named evaluators."""
  out = {}
  for name in check_names(ctx.cfg.names if names is None else names):
    if name in NEEDS_SEGMENTER and ctx.seg is None:
      out[name] = {"skipped": "no attribute segmenter (WORKDIR/segmenter/weights): run "
                              "--mode=train_segmenter first"}
      continue
    if name in NEEDS_LATENTS and ctx.stored and not (name == "semantic" and rendered_world(ctx)):
      out[name] = {"skipped": "the positives are stored images (data.positives=stored): no latent "
                              "to draw edited negatives from"}
      continue
    start = time.time()
    out[name] = {**EVALUATORS[name](ctx), "seconds": round(time.time() - start, 2)}
    logging.info("eval %s: %s", name, {k: v for k, v in out[name].items()
                                       if isinstance(v, (int, float))})
  return out
