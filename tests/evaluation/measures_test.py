"""The measures that see small effects: the semantic test's pairwise accuracy (against a loop), its
paired intervals, the attribute probe (1.0 on separable features, chance on noise; cells and pixel
windows by hand) and the word test's clutter correlation (against scipy on a hand-built case)."""
import numpy as np
from scipy import stats

from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import attributes, intervals, probe, semantic


def test_pairwise_accuracy_against_a_loop():
  rng = np.random.default_rng(0)
  n, k = 40, 4
  pos = rng.integers(0, 5, n).astype(float)
  neg = rng.integers(0, 5, (n, k)).astype(float)  # ties are frequent: they count against
  changed = rng.integers(0, 4, (n, k))
  got = semantic.pairwise_accuracy(pos, neg, changed)
  wins = {a: [] for a in ATTRIBUTES}
  for i in range(n):
    for j in range(k):
      wins[ATTRIBUTES[changed[i, j]]].append(1.0 if pos[i] > neg[i, j] else 0.0)
  every = [w for a in ATTRIBUTES for w in wins[a]]
  assert np.isclose(got["pairwise"], sum(every) / len(every))
  for a in ATTRIBUTES:
    assert np.isclose(got["pairwise_by"][a], np.mean(wins[a]))
  assert got["items"]["pair_caption"][:k] == [0] * k and len(got["items"]["pair_credit"]) == n * k


def test_pairwise_accuracy_by_hand_with_a_missing_category():
  pos = np.array([1.0, 0.0])
  neg = np.array([[0.0, 2.0], [1.0, -1.0]])
  changed = np.array([[0, 1], [1, 1]])  # shape, color / color, color: no size, no material pair
  got = semantic.pairwise_accuracy(pos, neg, changed)
  assert got["pairwise"] == 0.5
  assert got["pairwise_by"]["shape"] == 1.0
  assert np.isclose(got["pairwise_by"]["color"], 1 / 3)
  assert np.isnan(got["pairwise_by"]["size"]) and np.isnan(got["pairwise_by"]["material"])


def test_pairwise_intervals_pool_pairs_and_resample_captions():
  rng = np.random.default_rng(1)
  n, k = 60, 4
  changed = rng.integers(0, 4, (n, k))
  pos_a, pos_b = rng.normal(size=n), rng.normal(size=n)
  neg = rng.normal(size=(n, k))
  items = lambda pos: [np.asarray(semantic.pairwise_accuracy(pos, neg, changed)["items"][key])
                       for key in ("pair_credit", "pair_category", "pair_caption")]
  a, b = items(pos_a + 1.0), items(pos_b)
  d = intervals.paired_difference([a], [b], "semantic_pairwise", n_resamples=500)
  plain = lambda pos: np.mean(pos[:, None] > neg)
  assert np.isclose(d["diff"], plain(pos_a + 1.0) - plain(pos_b))
  assert d["low"] < d["diff"] < d["high"]
  c = intervals.paired_difference([a], [b], "semantic_pairwise_color", n_resamples=200)
  on = changed == 1
  assert np.isclose(c["diff"], np.mean(((pos_a + 1.0)[:, None] > neg)[on])
                    - np.mean((pos_b[:, None] > neg)[on]))


def test_probe_reads_separable_features_perfectly_and_noise_at_chance():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 600)
  centres = rng.normal(size=(3, 16)) * 5.0
  x = centres[labels] + rng.normal(size=(600, 16)) * 0.1
  acc, correct = probe.fit_score(x[:400], labels[:400], x[400:], labels[400:])
  assert acc == 1.0 and correct.shape == (200,)
  two = rng.integers(0, 2, 4000)
  noise = rng.normal(size=(4000, 8))
  acc, _ = probe.fit_score(noise[:2000], two[:2000], noise[2000:], two[2000:])
  assert abs(acc - 0.5) < 0.05  # 2,000 test objects: 0.05 is about 4.5 standard deviations


def test_probe_with_one_training_class_predicts_it():
  acc, correct = probe.fit_score(np.zeros((3, 2)), np.array([1, 1, 1]), np.zeros((4, 2)),
                                 np.array([1, 0, 1, 1]))
  assert acc == 0.75 and correct.tolist() == [1, 0, 1, 1]


def scene(*objects):
  return {"objects": [dict(zip(("x", "y", *ATTRIBUTES), o)) for o in objects]}


def test_object_table_cells_and_pixel_windows_by_hand():
  scenes = [scene((0.10, 0.90, "cube", "red", "large", "metal")),
            scene(), scene((0.55, 0.30, "sphere", "cyan", "small", "rubber"),
                           (0.99, 0.01, "cylinder", "gray", "large", "rubber"))]
  rows, xy, labels = probe.object_table(scenes)
  assert rows.tolist() == [0, 2, 2]
  assert labels[1].tolist() == [VOCAB[a].index(v) for a, v in
                                zip(ATTRIBUTES, ("sphere", "cyan", "small", "rubber"))]
  cells = probe.centroid_cells(xy, 8)  # (row, column): y * 8, x * 8
  assert cells.tolist() == [[7, 0], [2, 4], [0, 7]]
  feats = np.arange(3 * 8 * 8 * 2).reshape(3, 8, 8, 2)
  assert probe.cell_features(feats, rows, cells).tolist() == [
      feats[0, 7, 0].tolist(), feats[2, 2, 4].tolist(), feats[2, 0, 7].tolist()]
  images = np.zeros((3, 16, 16, 3), np.uint8)
  images[2, 4, 8] = 255  # the sphere's centroid pixel (x 0.55 * 16 = 8.8 -> 8, y 4.8 -> 4)
  win = probe.pixel_windows(images, rows, xy, side=4).reshape(3, 4, 4, 3)
  assert win[1, 2, 2].tolist() == [1.0, 1.0, 1.0] and win[1].sum() == 3.0  # centred at (2, 2)
  assert win[0].sum() == 0.0
  assert probe.majority(labels)["size"] == 2 / 3


def test_count_correlation_against_scipy():
  counts = np.array([1, 2, 3, 4, 5, 6])
  sim = np.stack([-counts + 0.0, counts * 2.0, np.array([3, 1, 2, 6, 5, 4.0])], axis=1)
  expected = np.mean([-1.0, 1.0, stats.spearmanr(sim[:, 2], counts).statistic])
  assert np.isclose(attributes.count_correlation(sim, counts), expected)
  assert np.isnan(attributes.count_correlation(sim, np.full(6, 2)))


def test_pairwise_ties_are_counted_and_count_against():
  got = semantic.pairwise_accuracy(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [2.0, 2.0]]),
                                   np.zeros((2, 2), int))
  assert got["pairwise"] == 0.25 and got["pairwise_ties"] == 0.75
