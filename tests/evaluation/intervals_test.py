"""Paired bootstrap intervals on rigged samples whose answers are known by hand."""
import numpy as np
import pytest

from learning_words.evaluation import intervals


def test_identical_and_opposite_runs_have_degenerate_intervals():
  ranks = [np.arange(50) % 3]
  same = intervals.paired_difference([ranks], [ranks], "semantic_r1")
  assert same == {"diff": 0.0, "low": 0.0, "high": 0.0}
  hit, miss = [np.zeros(50, int)], [np.ones(50, int)]
  assert intervals.paired_difference([hit], [miss], "semantic_r1") == {
      "diff": 1.0, "low": 1.0, "high": 1.0}


def test_bernoulli_differences_match_the_normal_interval():
  """The arm finds every item, the base 30% of them: item differences are Bernoulli(0.7), whose
  95% interval of the mean is about 0.7 +- 1.96 sqrt(0.21 / n)."""
  n = 400
  arm = [np.zeros(n, int)]
  base = [np.where(np.arange(n) < 0.3 * n, 0, 5)]
  got = intervals.paired_difference([arm], [base], "semantic_r1", n_resamples=4000)
  half = 1.96 * np.sqrt(0.7 * 0.3 / n)
  assert got["diff"] == pytest.approx(0.7)
  assert got["low"] == pytest.approx(0.7 - half, abs=0.012)
  assert got["high"] == pytest.approx(0.7 + half, abs=0.012)


def test_word_tests_pool_categories_and_seeds_average():
  # base: category 0 credits 0, 0, 1, 1 (0.5), category 1 credit 1 (1.0): mean 0.75; the arm wins
  # every pair: 1.0. Difference 0.25 in seed 0; in seed 1 the runs tie: the mean over seeds 0.125.
  category, image = np.array([0, 0, 0, 0, 1]), np.arange(5)
  base = [np.array([0.0, 0.0, 1.0, 1.0, 1.0]), category, image]
  arm = [np.ones(5), category, image]
  got = intervals.paired_difference([arm], [base], "attributes")
  assert got["diff"] == pytest.approx(0.25)
  assert got["low"] <= 0.25 <= got["high"]
  two = intervals.paired_difference([arm, base], [base, base], "attributes")
  assert two["diff"] == pytest.approx(0.125)


def test_word_tests_resample_images_not_pairs():
  """400 pairs on 4 "with" images, 100 pairs each; the arm wins every pair of images 0 and 1, the
  base every pair of images 2 and 3 (one category). The difference is 0. Resampled by pair, the
  interval would be about +-1.96 sqrt(1 / 400) = +-0.098; resampled by image, the difference is
  the mean of 4 draws of +-1 with replacement, which is -1 (or +1) with probability 1/16 > 2.5%:
  the interval spans [-1, +1], at least [-0.5, +0.5] with bootstrap noise."""
  image = np.repeat(np.arange(4), 100)
  category = np.zeros(400, int)
  arm = [(image < 2).astype(float), category, image]
  base = [(image >= 2).astype(float), category, image]
  got = intervals.paired_difference([arm], [base], "attributes", n_resamples=4000)
  assert got["diff"] == 0.0
  assert got["low"] <= -0.5 and got["high"] >= 0.5


def test_word_tests_refuse_different_pairs():
  category = np.zeros(4, int)
  arm = [np.ones(4), category, np.array([0, 0, 1, 1])]
  base = [np.ones(4), category, np.array([0, 1, 1, 1])]
  with pytest.raises(ValueError, match="same items"):
    intervals.paired_difference([arm], [base], "attributes_matched")


def test_runs_on_different_items_are_refused():
  with pytest.raises(ValueError, match="same items"):
    intervals.paired_difference([[np.zeros(5, int)]], [[np.zeros(6, int)]], "retrieval_A_r10")


def test_report_differences_per_seed_and_over_seeds():
  """Runs named as the experiment names them: each arm minus regular of the same seed; a run
  without items (an older evaluation) or without its regular is left out."""
  from learning_words.evaluation import report  # pylint: disable=g-import-not-at-top
  ranks = lambda hits: {"semantic": {"items": {"rank": [0 if h else 3 for h in hits],
                                               "caption": list(range(len(hits)))}}}
  evals = {"regular_seed0": ranks([1, 0, 0, 0]), "edited_random_seed0": ranks([1, 1, 1, 0]),
           "regular_seed1": ranks([1, 1, 0, 0]), "edited_random_seed1": ranks([1, 1, 0, 0]),
           "edited_cluster_seed2": ranks([1, 1, 1, 1]),  # no regular_seed2
           "edited_random_location_seed0": {"semantic": {"r1": 0.5}}}  # no items
  diffs = report.experiment_differences(evals)
  assert list(diffs) == ["edited_random"] and list(diffs["edited_random"]) == ["semantic_r1"]
  d = diffs["edited_random"]["semantic_r1"]
  assert d["seeds"]["0"]["diff"] == pytest.approx(0.5) and d["seeds"]["1"]["diff"] == 0.0
  assert d["mean"]["diff"] == pytest.approx(0.25)
  lines = report.differences_table(diffs)
  row = next(line for line in lines if line.startswith("| edited_random | semantic_r1 |"))
  assert row.startswith("| edited_random | semantic_r1 | +0.500 [")
  assert "| +0.000 [+0.000, +0.000] |" in row


def test_localisation_shares_difference_by_hand():
  """Peaks on objects: the arm hits 3 of 4 captions, the base 1 of 4 -> +0.5; a constant
  difference per item (all hit vs none) has a degenerate interval."""
  arm, base = [np.array([1, 1, 1, 0])], [np.array([1, 0, 0, 0])]
  assert intervals.paired_difference([arm], [base], "localisation")["diff"] == 0.5
  hit, miss = [np.ones(30, int)], [np.zeros(30, int)]
  assert intervals.paired_difference([hit], [miss], "word_pointing") == {
      "diff": 1.0, "low": 1.0, "high": 1.0}
