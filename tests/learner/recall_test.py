"""Recall@k against a plain loop over queries, and on rigged matrices with known answers."""
import numpy as np

from learning_words.learner import recall


def _loop_recall(sim, k, axis):
  hits = []
  for q in range(sim.shape[0]):
    scores = sim[q, :] if axis == 0 else sim[:, q]
    # Ties rank the match after equal-scoring impostors.
    order = sorted(range(len(scores)), key=lambda j: -scores[j] + (1e-12 if j == q else 0))
    hits.append(q in order[:k])
  return np.mean(hits)


def test_recall_matches_a_loop_on_random_matrices():
  rng = np.random.default_rng(0)
  for n in (7, 30):
    sim = rng.normal(size=(n, n)) + 1.5 * np.eye(n)
    rec = recall.recalls(sim)
    for k in (1, 5, 10):
      assert rec[f"A_r{k}"] == _loop_recall(sim, k, 0)
      assert rec[f"I_r{k}"] == _loop_recall(sim, k, 1)


def test_rigged_matrices():
  n = 20
  assert recall.recalls(np.eye(n)) == {f"{d}_r{k}": 1.0 for k in (1, 5, 10) for d in "AI"}
  # Constant similarity: every impostor ties with the match, so nothing is retrieved at 1..10 of 20.
  assert recall.recalls(np.ones((n, n)))["A_r10"] == 0.0
  # Caption j's match is image j, but image (j + 1) % n scores higher: rank 1 both ways.
  sim = np.eye(n) + 2 * np.roll(np.eye(n), 1, axis=0)
  rec = recall.recalls(sim)
  assert rec["A_r1"] == rec["I_r1"] == 0.0 and rec["A_r5"] == 1.0
  assert recall.score(rec) == 0.5 * (rec["A_r5"] + rec["I_r5"])


def test_a_is_image_to_speech_as_the_reference_names_it():
  """sim[i, j] = s(image i, caption j). Caption 0 scores 5 with every image: every other image
  retrieves it first (image->speech misses), while each caption still finds its image except
  caption 0, which ties with all of them."""
  n = 10
  sim = np.eye(n)
  sim[:, 0] = 5.0
  rec = recall.recalls(sim)
  assert rec["A_r1"] == 1 / n  # image -> speech: only image 0
  assert rec["I_r1"] == (n - 1) / n  # speech -> image: all captions but caption 0
