"""Paired bootstrap intervals: an arm minus `regular` on the same test items.

Each evaluator's JSON keeps its per-item results (`items`): retrieval each query's rank, semantic
each complete caption's rank and each (caption, negative) pair's credit, the word tests each
pair's credit, category and "with" image. Two runs evaluated
on the same test material have the same items in the same order, so a difference of a metric can
be resampled pairwise: the same resample of items for both arms (and, for the mean over seeds, for
every seed: the seeds share the test material). scipy.stats.bootstrap does the resampling
(percentile intervals).
"""
import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy import stats

from learning_words.data.vocabulary import ATTRIBUTES


def _by_image(credit, category, image):
  """The word tests' resampling units: the pairs grouped by their "with" image (a pair reuses
  its images across words and, in attributes_matched, across pairs) -> (per-category credit
  sums, per-category pair counts), each a list of [n_images] arrays."""
  _, unit = np.unique(image, return_inverse=True)
  on = [category == c for c in range(len(ATTRIBUTES))]
  sums = [np.bincount(unit, weights=credit * o) for o in on]
  counts = [np.bincount(unit, weights=o.astype(float)) for o in on]
  return sums, counts


def _pooled_categories(sums, counts, axis=-1):
  """Mean over the categories that have pairs of the pooled credit of their pairs."""
  means = []
  for s, n in zip(sums, counts):
    total = np.sum(n, axis=axis)
    means.append(np.where(total > 0, np.sum(s, axis=axis) / np.maximum(total, 1), np.nan))
  return np.nanmean(np.stack(means), axis=0)


def _pooled_all(sums, counts, axis=-1):
  """The pooled credit of every pair, whatever its category."""
  return np.sum(sum(sums), axis=axis) / np.maximum(np.sum(sum(counts), axis=axis), 1)


def _pooled_one(category: int):
  """The pooled credit of one category's pairs (NaN when it has none)."""
  def statistic(sums, counts, axis=-1):
    total = np.sum(counts[category], axis=axis)
    return np.where(total > 0, np.sum(sums[category], axis=axis) / np.maximum(total, 1), np.nan)
  return statistic


def _by_item(ranks):
  return [ranks], []


def _hits(k):
  return lambda own, shared, axis=-1: np.mean(own[0] < k, axis=axis)


def _share(own, shared, axis=-1):
  return np.mean(own[0], axis=axis)


# metric name -> (evaluator, item arrays it reads, units(*items) -> (arrays of the run, arrays that
# are the same for both runs: one entry per resampling unit), statistic(own, shared, axis))
METRICS = {
    "attributes": ("attributes", ("credit", "category", "image"), _by_image,
                   _pooled_categories),
    "attributes_matched": ("attributes_matched", ("credit", "category", "image"), _by_image,
                           _pooled_categories),
    "semantic_r1": ("semantic", ("rank",), _by_item, _hits(1)),
    # own image above each one-attribute negative, resampling the captions
    "semantic_pairwise": ("semantic", ("pair_credit", "pair_category", "pair_caption"),
                          _by_image, _pooled_all),
    **{f"semantic_pairwise_{a}": ("semantic", ("pair_credit", "pair_category", "pair_caption"),
                                  _by_image, _pooled_one(i)) for i, a in enumerate(ATTRIBUTES)},
    # the same pairs on the changed word's frames only (the renders' world; pairs whose word has
    # no frame carry category -1 and count nowhere)
    "semantic_pairwise_word": ("semantic", ("word_credit", "word_category", "word_caption"),
                               _by_image, _pooled_all),
    **{f"semantic_pairwise_word_{a}": ("semantic", ("word_credit", "word_category",
                                                    "word_caption"), _by_image, _pooled_one(i))
       for i, a in enumerate(ATTRIBUTES)},
    "retrieval_A_r10": ("retrieval", ("A_rank",), _by_item, _hits(10)),
    "retrieval_I_r10": ("retrieval", ("I_rank",), _by_item, _hits(10)),
    # the share of captions that peak on an object cell, of word recordings that point at a cell
    # holding the word (pooled over words)
    "localisation": ("localisation", ("on_object",), _by_item, _share),
    "word_pointing": ("word_pointing", ("hit",), _by_item, _share),
}


def items_of(evals: dict, metric: str):
  """The metric's item arrays of one run (read_evals' output), or None when it has none."""
  name, keys, _, _ = METRICS[metric]
  items = evals.get(name, {}).get("items")
  if not items or any(k not in items for k in keys):
    return None
  return [np.asarray(items[k]) for k in keys]


def paired_difference(arm_seeds, base_seeds, metric: str, n_resamples: int = 2000,
                      seed: int = 0, confidence: float = 0.95) -> dict:
  """{'diff': mean over seeds of metric(arm) - metric(base), 'low', 'high'}: the percentile
  bootstrap interval, resampling the metric's units (retrieval and semantic: the queries; the
  word tests: the "with" images), the same resample for both arms and every seed.

  arm_seeds, base_seeds: per seed, the item arrays (items_of) of the two runs, on the same test
  items (the word tests: the same pairs, hence the same units).
  """
  _, _, units, statistic = METRICS[metric]
  runs = [units(*items) for pair in zip(arm_seeds, base_seeds) for items in pair]
  shared = runs[0][1]
  for own, other in runs[1:]:
    if len(other) != len(shared) or any(
        x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(other, shared)):
      raise ValueError(f"{metric}: the runs were not evaluated on the same items")
  n_own = len(runs[0][0])
  data = [x for own, _ in runs for x in own] + list(shared)
  if len({len(x) for x in data}) != 1:
    raise ValueError(f"{metric}: the runs were not evaluated on the same items "
                     f"({sorted({len(x) for x in data})})")
  n_seeds = len(arm_seeds)

  def mean_difference(*arrays, axis=-1):
    extra = list(arrays[2 * n_seeds * n_own:])
    run = lambda r: statistic(list(arrays[r * n_own:(r + 1) * n_own]), extra, axis=axis)
    return np.mean([run(2 * s) - run(2 * s + 1) for s in range(n_seeds)], axis=0)

  point = float(mean_difference(*data))
  if len(data[0]) < 2:
    return {"diff": point, "low": float("nan"), "high": float("nan")}
  res = stats.bootstrap(tuple(data), mean_difference, paired=True, vectorized=True,
                        n_resamples=n_resamples, confidence_level=confidence,
                        method="percentile", batch=100, random_state=np.random.default_rng(seed))
  return {"diff": point, "low": float(res.confidence_interval.low),
          "high": float(res.confidence_interval.high)}
