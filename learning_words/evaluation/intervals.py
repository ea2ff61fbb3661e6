"""Paired bootstrap intervals: an arm minus `regular` on the same test items (issue 15).

Each evaluator's JSON keeps its per-item results (`items`): retrieval each query's rank, semantic
each complete caption's rank, the word tests each pair's credit and category. Two runs evaluated
on the same test material have the same items in the same order, so a difference of a metric can
be resampled pairwise: the same resample of items for both arms (and, for the mean over seeds, for
every seed: the seeds share the test material). scipy.stats.bootstrap does the resampling
(percentile intervals).
"""
import numpy as np
from scipy import stats

from learning_words.data.vocabulary import ATTRIBUTES


def _pooled_categories(credit, category, axis=-1):
  """Mean over the categories that have pairs of the pooled credit of their pairs."""
  means = []
  for c in range(len(ATTRIBUTES)):
    on = category == c
    n = np.sum(on, axis=axis)
    means.append(np.where(n > 0, np.sum(credit * on, axis=axis) / np.maximum(n, 1), np.nan))
  return np.nanmean(np.stack(means), axis=0)


def _hits(k):
  return lambda ranks, axis=-1: np.mean(ranks < k, axis=axis)


# metric name -> (evaluator, item arrays it reads, statistic(*arrays, axis) -> value)
METRICS = {
    "attributes": ("attributes", ("credit", "category"), _pooled_categories),
    "attributes_matched": ("attributes_matched", ("credit", "category"), _pooled_categories),
    "semantic_r1": ("semantic", ("rank",), _hits(1)),
    "retrieval_A_r10": ("retrieval", ("A_rank",), _hits(10)),
    "retrieval_I_r10": ("retrieval", ("I_rank",), _hits(10)),
}
SHARED = ("category",)  # item arrays that are the same for both arms (not resampled per arm)


def items_of(evals: dict, metric: str):
  """The metric's item arrays of one run (read_evals' output), or None when it has none."""
  name, keys, _ = METRICS[metric]
  items = evals.get(name, {}).get("items")
  if not items or any(k not in items for k in keys):
    return None
  return [np.asarray(items[k]) for k in keys]


def paired_difference(arm_seeds, base_seeds, metric: str, n_resamples: int = 2000,
                      seed: int = 0, confidence: float = 0.95) -> dict:
  """{'diff': mean over seeds of metric(arm) - metric(base), 'low', 'high'}: the percentile
  bootstrap interval, resampling the items (the same resample for both arms and every seed).

  arm_seeds, base_seeds: per seed, the item arrays (items_of) of the two runs; every array of
  every run must have the same length (the same test items).
  """
  _, keys, statistic = METRICS[metric]
  shared = [i for i, k in enumerate(keys) if k in SHARED]
  own = [i for i in range(len(keys)) if i not in shared]
  data = []
  for a, b in zip(arm_seeds, base_seeds):
    data += [a[i] for i in own] + [b[i] for i in own]
  data += [arm_seeds[0][i] for i in shared]
  lengths = {len(x) for x in data}
  if len(lengths) != 1:
    raise ValueError(f"{metric}: the runs were not evaluated on the same items ({lengths})")
  per_run = 2 * len(own)
  n_seeds = len(arm_seeds)

  def mean_difference(*arrays, axis=-1):
    extra = arrays[n_seeds * per_run:]

    def full(own_arrays):  # one run's arrays in METRICS order, the shared ones filled in
      it = iter(own_arrays)
      return [next(it) if i in own else extra[shared.index(i)] for i in range(len(keys))]

    diffs = []
    for s in range(n_seeds):
      chunk = arrays[s * per_run:(s + 1) * per_run]
      diffs.append(statistic(*full(chunk[:len(own)]), axis=axis)
                   - statistic(*full(chunk[len(own):]), axis=axis))
    return np.mean(diffs, axis=0)

  point = float(mean_difference(*data))
  if len(data[0]) < 2:
    return {"diff": point, "low": float("nan"), "high": float("nan")}
  res = stats.bootstrap(tuple(data), mean_difference, paired=True, vectorized=True,
                        n_resamples=n_resamples, confidence_level=confidence,
                        method="percentile", batch=100, random_state=np.random.default_rng(seed))
  return {"diff": point, "low": float(res.confidence_interval.low),
          "high": float(res.confidence_interval.high)}
