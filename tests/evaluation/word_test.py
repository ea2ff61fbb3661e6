"""The attribute (word) test: each recording enters the speech encoder at its own length, so
padding cannot move the scores; the two diagnostics against scipy and a hand-built matrix."""
import itertools

import numpy as np
import pytest
from flax import nnx
from scipy import stats

from configs import tiny
from learning_words.evaluation import attributes
from learning_words.learner import recall
from learning_words.models import davenet, encoders
from tests.evaluation.evaluators_test import _numpy_module


def _loop_misa(img, aud, frames):
  """sim [P, N] by plain loops: MISA = mean over valid frames of the max over positions."""
  p_n, n_n = img.shape[0], len(aud)
  sim = np.zeros((p_n, n_n))
  for p in range(p_n):
    for n in range(n_n):
      per_frame = [max(float(img[p, y, x] @ aud[n][t]) for y in range(img.shape[1])
                       for x in range(img.shape[2])) for t in range(frames[n])]
      sim[p, n] = np.mean(per_frame)
  return sim


def test_words_are_encoded_at_their_own_length_so_padding_does_not_count():
  c = tiny.get_config()
  models = _numpy_module(lambda: encoders.Encoders(c.model, rngs=nnx.Rngs(0)), 1)
  models.eval()
  rng = np.random.default_rng(0)
  lengths = (9, 12, 12, 17, 23, 40)  # equal lengths share a call; batches of 2 pad rows
  specs = [rng.normal(-40, 15, (t, 40)).astype(np.float32) for t in lengths]
  img = rng.normal(size=(3, 2, 2, c.model.embed_dim)).astype(np.float32)
  # The oracle: every recording alone through the speech encoder, at its own length.
  ratio = models.audio.pooling_ratio
  alone = [np.asarray(models.audio(s[None]))[0] for s in specs]
  frames = [max(1, t // ratio) for t in lengths]
  want = _loop_misa(img, alone, frames)
  aud, got_frames = attributes.embed_words(models, specs, batch=2)
  assert np.asarray(got_frames).tolist() == frames
  got = np.asarray(recall.similarity(img, aud, got_frames, chunk=3, cosine=False))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # The old path, every word padded with zeros to the evaluation length, fails this oracle.
  padded = np.stack([np.concatenate([s, np.zeros((64 - len(s), 40), np.float32)]) for s in specs])
  old_aud = np.asarray(models.audio(padded))
  old = np.asarray(recall.similarity(img, old_aud, np.array(frames), chunk=3, cosine=False))
  assert not np.allclose(old, want, rtol=1e-3, atol=1e-3)
  assert davenet.pooled_length(64, ratio) == old_aud.shape[1]


def test_ranking_agreement_is_the_mean_spearman_over_word_pairs():
  sim = np.random.default_rng(1).normal(size=(30, 5))
  sim[:, 3] = np.round(sim[:, 3])  # ties
  pairs = [stats.spearmanr(sim[:, a], sim[:, b]).statistic
           for a, b in itertools.combinations(range(5), 2)]
  assert attributes.ranking_agreement(sim) == pytest.approx(np.mean(pairs), abs=1e-12)
  same = np.arange(6.0)[:, None] + np.array([0.0, 10.0, -3.0])  # every word ranks alike
  assert attributes.ranking_agreement(same) == pytest.approx(1.0)
  flipped = same * np.array([-1.0, 1.0, 1.0])  # the first word ranks the images in reverse
  assert attributes.ranking_agreement(flipped) == pytest.approx(-1 / 3)  # (-1 - 1 + 1) / 3
  assert np.isnan(attributes.ranking_agreement(np.ones((4, 1))))


def test_image_share_by_hand():
  # sim[p, w] = a_p + b_w with a = (0, 1, 2), b = (0, 3): image means 1.5, 2.5, 3.5 around the
  # grand mean 2.5 -> between-image SS = 2 words * (1 + 0 + 1) = 4; total SS = 17.5.
  sim = np.array([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]])
  assert attributes.image_share(sim) == pytest.approx(4 / 17.5)
  assert attributes.image_share(np.arange(4.0)[:, None].repeat(3, 1)) == pytest.approx(1.0)
  assert attributes.image_share(np.arange(3.0)[None].repeat(4, 0)) == pytest.approx(0.0)
