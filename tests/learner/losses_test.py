"""Margin ranking losses against per-anchor Python loops over the similarity matrix."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from learning_words.learner import losses

B = 6
MARGIN = 0.7


def hinge(neg, pos, margin=MARGIN):
  return max(0.0, margin + neg - pos)


def loop_terms(sim, img_idx, cap_idx, s_edit, margin=MARGIN):
  """Per-anchor hinges, one anchor at a time: {term: [B] list}."""
  n = len(sim)
  t = {k: [] for k in ("imp_image", "imp_caption", "hard_image", "hard_caption", "edited")}
  for i in range(n):
    pos = sim[i][i]
    t["imp_image"].append(hinge(sim[img_idx[i]][i], pos, margin))
    t["imp_caption"].append(hinge(sim[i][cap_idx[i]], pos, margin))
    t["hard_image"].append(hinge(max(sim[j][i] for j in range(n) if j != i), pos, margin))
    t["hard_caption"].append(hinge(max(sim[i][k] for k in range(n) if k != i), pos, margin))
    t["edited"].append(hinge(s_edit[i], pos, margin))
  return t


def loop_loss(kind, t):
  mean = lambda xs: sum(xs) / len(xs)
  regular = mean(t["imp_image"]) + mean(t["imp_caption"])
  if kind == "regular":
    return regular
  if kind == "negatives_hard":
    return regular + mean(t["hard_image"]) + mean(t["hard_caption"])
  if kind == "negatives_edited":
    return regular + mean(t["edited"])
  per_anchor = [c + max(h, e) for c, h, e in zip(t["hard_caption"], t["hard_image"], t["edited"])]
  return min(max(regular, 0.0), 5.0) + min(max(mean(per_anchor), 0.0), 5.0)


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  sim = rng.normal(size=(B, B)).astype(np.float32)
  sim[np.arange(B), np.arange(B)] += 0.5  # positives a little higher, so some hinges are zero
  s_edit = (np.diagonal(sim) + rng.normal(scale=0.5, size=B)).astype(np.float32)
  return sim, s_edit


@pytest.mark.parametrize("kind", losses.LOSS_KINDS)
def test_loss_matches_loop(inputs, kind):
  sim, s_edit = inputs
  key = jax.random.key(3)
  img_idx, cap_idx = (np.asarray(i) for i in losses.draw_impostors(key, B))
  t = loop_terms(sim.tolist(), img_idx, cap_idx, s_edit.tolist())
  loss, terms = losses.compute_loss(kind, jnp.asarray(sim), key, jnp.asarray(s_edit), MARGIN)
  np.testing.assert_allclose(float(loss), loop_loss(kind, t), rtol=1e-5, atol=1e-6)
  expected_names = {"regular": {"imp_image", "imp_caption"},
                    "negatives_hard": {"imp_image", "imp_caption", "hard_image", "hard_caption"},
                    "negatives_edited": {"imp_image", "imp_caption", "edited"}}
  if kind in expected_names:
    assert set(terms) == expected_names[kind]
  else:
    assert {"regular", "combined", "hard_or_edited"} <= set(terms)
  for name in set(terms) & set(t):
    np.testing.assert_allclose(float(terms[name]), np.mean(t[name]), rtol=1e-5, atol=1e-6)


def test_batch_of_two_forces_the_impostor():
  sim = np.array([[1.0, 0.4], [0.9, -0.2]], np.float32)
  loss, terms = losses.compute_loss("regular", jnp.asarray(sim), jax.random.key(0), margin=1.0)
  # Anchor 0: image impostor S[1,0], caption impostor S[0,1]; anchor 1: S[0,1] and S[1,0].
  imp_image = (hinge(0.9, 1.0, 1.0) + hinge(0.4, -0.2, 1.0)) / 2
  imp_caption = (hinge(0.4, 1.0, 1.0) + hinge(0.9, -0.2, 1.0)) / 2
  np.testing.assert_allclose(float(terms["imp_image"]), imp_image, rtol=1e-6)
  np.testing.assert_allclose(float(terms["imp_caption"]), imp_caption, rtol=1e-6)
  np.testing.assert_allclose(float(loss), imp_image + imp_caption, rtol=1e-6)


def test_impostors_are_others_drawn_uniformly():
  n_draws, b = 4000, 5
  keys = jax.random.split(jax.random.key(7), n_draws)
  img_idx, cap_idx = jax.vmap(losses.draw_impostors, in_axes=(0, None))(keys, b)
  for idx in (np.asarray(img_idx), np.asarray(cap_idx)):
    assert idx.shape == (n_draws, b)
    for i in range(b):
      counts = np.bincount(idx[:, i], minlength=b)
      assert counts[i] == 0
      others = np.delete(counts, i)  # each of the 4 others: expected 1000, sd ~27
      assert others.min() > 880 and others.max() < 1120, counts
  # The two draws are independent of each other.
  assert np.mean(np.asarray(img_idx) == np.asarray(cap_idx)) < 0.3
  with pytest.raises(ValueError):
    losses.draw_impostors(jax.random.key(0), 1)


def test_negatives_both_clamps():
  key = jax.random.key(1)
  # Positives far below every negative: every hinge is about 11, both losses exceed 5.
  sim = np.zeros((4, 4), np.float32)
  np.fill_diagonal(sim, -10.0)
  s_edit = np.zeros(4, np.float32)
  loss, terms = losses.compute_loss("negatives_both", jnp.asarray(sim), key, jnp.asarray(s_edit))
  assert float(terms["imp_image"]) + float(terms["imp_caption"]) == pytest.approx(22.0)
  assert float(terms["regular"]) == 5.0 and float(terms["combined"]) == 5.0
  assert float(loss) == 10.0
  # Only the combined loss exceeds 5 (edited negatives far above): regular stays unclamped.
  sim = np.full((4, 4), -0.5, np.float32)
  np.fill_diagonal(sim, 0.0)
  s_edit = np.full(4, 8.0, np.float32)
  loss, terms = losses.compute_loss("negatives_both", jnp.asarray(sim), key, jnp.asarray(s_edit))
  assert float(terms["regular"]) == pytest.approx(1.0)   # 0.5 + 0.5
  assert float(terms["hard_or_edited"]) == pytest.approx(9.0)
  assert float(terms["combined"]) == 5.0
  assert float(terms["edited_harder"]) == 1.0
  assert float(loss) == pytest.approx(6.0)


def test_gradients_are_finite_and_errors():
  sim = jax.random.normal(jax.random.key(0), (B, B))
  s_edit = jax.random.normal(jax.random.key(1), (B,))
  for kind in losses.LOSS_KINDS:
    grad = jax.grad(lambda s, e: losses.compute_loss(kind, s, jax.random.key(2), e)[0])(sim, s_edit)
    assert np.isfinite(np.asarray(grad)).all()
  with pytest.raises(ValueError, match="negatives_both"):
    losses.compute_loss("triplet", sim, jax.random.key(0))
  with pytest.raises(ValueError, match="s_edit"):
    losses.compute_loss("negatives_edited", sim, jax.random.key(0))


def loop_softmax_loss(kind, sim, s_edit, t):
  """The softmax base and its terms, one anchor at a time with math.log / math.exp."""
  import math
  n = len(sim)
  logsumexp = lambda xs: math.log(sum(math.exp(x) for x in xs))
  rows = [logsumexp([sim[i][k] / t for k in range(n)]) - sim[i][i] / t for i in range(n)]
  cols = [logsumexp([sim[j][i] / t for j in range(n)]) - sim[i][i] / t for i in range(n)]
  base = 0.5 * (sum(rows) / n + sum(cols) / n)
  smooth = lambda neg, pos: math.log(1.0 + math.exp((neg - pos) / t))
  hard_i = [smooth(max(sim[j][i] for j in range(n) if j != i), sim[i][i]) for i in range(n)]
  hard_c = [smooth(max(sim[i][k] for k in range(n) if k != i), sim[i][i]) for i in range(n)]
  edited = [smooth(s_edit[i], sim[i][i]) for i in range(n)]
  mean = lambda xs: sum(xs) / n
  if kind == "regular":
    return base
  if kind == "negatives_hard":
    return base + mean(hard_i) + mean(hard_c)
  if kind == "negatives_edited":
    return base + mean(edited)
  return base + mean([c + max(h, e) for c, h, e in zip(hard_c, hard_i, edited)])


@pytest.mark.parametrize("kind", losses.LOSS_KINDS)
@pytest.mark.parametrize("temperature", [0.07, 1.0])
def test_softmax_base_matches_loop(inputs, kind, temperature):
  sim, s_edit = inputs
  sim = sim * 0.3  # cosine-like range, so 1 / 0.07 logits stay well inside float32
  s_edit = s_edit * 0.3
  loss, terms = losses.compute_loss(kind, jnp.asarray(sim), jax.random.key(0), jnp.asarray(s_edit),
                                    base="softmax", temperature=temperature)
  want = loop_softmax_loss(kind, sim.astype(np.float64).tolist(), s_edit.astype(np.float64).tolist(),
                           temperature)
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)
  assert "softmax" in terms and "imp_image" not in terms


def test_softmax_base_prefers_a_clear_diagonal_and_refuses_unknown_bases():
  eye = jnp.eye(4)
  low, _ = losses.compute_loss("regular", 5 * eye, jax.random.key(0), base="softmax",
                               temperature=1.0)
  high, _ = losses.compute_loss("regular", -5 * eye, jax.random.key(0), base="softmax",
                                temperature=1.0)
  # Hand-computed: a diagonal 5 above three zeros gives -log(e^5 / (e^5 + 3)).
  np.testing.assert_allclose(float(low), -np.log(np.exp(5) / (np.exp(5) + 3)), rtol=1e-5)
  assert float(high) > float(low)
  with pytest.raises(ValueError, match="base"):
    losses.compute_loss("regular", eye, jax.random.key(0), base="hinge")


@pytest.mark.parametrize("kind", ["negatives_edited", "negatives_both"])
@pytest.mark.parametrize("base", ["triplet", "softmax"])
def test_unaccepted_samples_add_no_edited_term(inputs, kind, base):
  """A rigged batch: the samples without an accepted negative get an absurd s_edit (their drawn
  negative would dominate the loss); the loss equals the loop over the accepted samples only and
  their s_edit gets no gradient."""
  sim, s_edit = inputs
  valid = np.array([True, False, True, True, False, True])
  rigged = np.where(valid, s_edit, 50.0).astype(np.float32)
  key = jax.random.key(3)
  loss_fn = lambda e: losses.compute_loss(kind, jnp.asarray(sim), key, e, MARGIN, base, 0.5,
                                          jnp.asarray(valid))
  (loss, terms), grad = jax.value_and_grad(loss_fn, has_aux=True)(jnp.asarray(rigged))
  if base == "triplet":
    img_idx, cap_idx = (np.asarray(i) for i in losses.draw_impostors(key, B))
    t = loop_terms(sim.tolist(), img_idx, cap_idx, rigged.tolist())
    edited = [e for e, v in zip(t["edited"], valid) if v]
    np.testing.assert_allclose(float(terms["edited"]), sum(edited) / len(edited), rtol=1e-5)
    t["edited"] = [e if v else 0.0 for e, v in zip(t["edited"], valid)]  # max(hard, none) = hard
    if kind == "negatives_edited":
      want = loop_loss("regular", t) + sum(edited) / len(edited)
    else:
      want = loop_loss(kind, t)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5, atol=1e-6)
  else:  # the same loss as the batch without the unaccepted samples' edited terms
    clean = np.where(valid, s_edit, -50.0).astype(np.float32)  # a negative scoring far below
    want, _ = losses.compute_loss(kind, jnp.asarray(sim), key, jnp.asarray(clean), MARGIN, base,
                                  0.5, None)
    if kind == "negatives_edited":  # the edited mean is over 4 samples, not 6
      e = np.log1p(np.exp((s_edit - np.diagonal(sim)) / 0.5))[valid].mean()
      want = float(losses.info_nce(jnp.asarray(sim), 0.5)) + e
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(grad)[~valid] == 0) and np.any(np.asarray(grad)[valid] != 0)


@pytest.mark.parametrize("kind,hinges", [("regular", 2), ("negatives_edited", 3),
                                         ("negatives_hard", 4), ("negatives_both", 4)])
def test_chance_loss_is_the_margin_per_hinge(kind, hinges):
  # Every pair scored alike: each hinge max(0, m + s_neg - s_pos) is the margin m.
  assert losses.chance_loss(kind, batch=6, margin=0.5) == pytest.approx(0.5 * hinges)


def test_chance_loss_of_the_softmax_base():
  # Uniform logits: cross-entropy log(B) per direction; each added term softplus(0) = log 2.
  assert losses.chance_loss("regular", 8, base="softmax") == pytest.approx(np.log(8), rel=1e-6)
  assert losses.chance_loss("negatives_edited", 8, base="softmax") == pytest.approx(
      np.log(8) + np.log(2), rel=1e-6)


def test_frame_edited_matches_a_loop_and_ignores_padding():
  rng = np.random.default_rng(3)
  b, t, temp = 5, 7, 0.1
  pos, neg = rng.normal(size=(b, t)), rng.normal(size=(b, t))
  frames = np.array([1, 3, 7, 2, 0])  # 0 counts one frame, as MISA does
  got = {base: np.asarray(losses.frame_edited(jnp.asarray(pos), jnp.asarray(neg),
                                              jnp.asarray(frames), base, 1.0, temp))
         for base in ("triplet", "softmax")}
  for i in range(b):
    n = max(frames[i], 1)
    hinge = [max(0.0, 1.0 + neg[i, j] - pos[i, j]) for j in range(n)]
    logistic = [np.log1p(np.exp((neg[i, j] - pos[i, j]) / temp)) for j in range(n)]
    assert np.isclose(got["triplet"][i], np.mean(hinge), atol=1e-5)
    assert np.isclose(got["softmax"][i], np.mean(logistic), atol=1e-5)
  # the frames' best cells: a matchmap's max over (h, w)
  mm = rng.normal(size=(2, 3, 4, 5))
  assert np.allclose(losses.frame_scores(jnp.asarray(mm)),
                     [[mm[i, :, :, j].max() for j in range(5)] for i in range(2)])


def test_edited_weight_temperature_and_override_by_hand():
  sim = jnp.asarray(np.diag([1.0, 2.0]))
  s_edit = jnp.asarray([0.5, 2.5])
  key = jax.random.key(0)
  base, terms = losses.compute_loss("regular", sim, key, base="softmax", temperature=0.5)
  loss, terms = losses.compute_loss("negatives_edited", sim, key, s_edit, base="softmax",
                                    temperature=0.5, edited_weight=3.0, edited_temperature=0.25)
  softplus = lambda x: np.log1p(np.exp(x))
  edited = np.mean([softplus((0.5 - 1.0) / 0.25), softplus((2.5 - 2.0) / 0.25)])
  assert np.isclose(terms["edited"], edited, atol=1e-5)
  assert np.isclose(loss, base + 3.0 * edited, atol=1e-5)
  loss, terms = losses.compute_loss("negatives_edited", sim, key, s_edit, base="triplet",
                                    edited_weight=2.0, edited=jnp.asarray([0.2, 0.4]))
  regular, _ = losses.compute_loss("regular", sim, key, base="triplet")
  assert np.isclose(terms["edited"], 0.3) and np.isclose(loss, regular + 0.6, atol=1e-6)


def test_word_edited_matches_a_loop_over_the_word_frames():
  rng = np.random.default_rng(4)
  b, t, temp = 4, 9, 0.2
  pos, neg = rng.normal(size=(b, t)), rng.normal(size=(b, t))
  word = np.zeros((b, t), bool)
  word[0, 2:5], word[1, 8], word[3, 0:9] = True, True, True  # sample 2: no frame
  for base in ("triplet", "softmax"):
    got = np.asarray(losses.word_edited(jnp.asarray(pos), jnp.asarray(neg), jnp.asarray(word),
                                        base, 1.0, temp))
    for i in range(b):
      frames = [j for j in range(t) if word[i, j]]
      if not frames:
        assert got[i] == 0.0
        continue
      p, n = np.mean(pos[i, frames]), np.mean(neg[i, frames])
      want = max(0.0, 1.0 + n - p) if base == "triplet" else np.log1p(np.exp((n - p) / temp))
      assert np.isclose(got[i], want, atol=1e-5)


def test_frame_invariance_matches_a_loop():
  rng = np.random.default_rng(5)
  b, t, temp = 3, 7, 0.1
  pos, neg = rng.normal(size=(b, t)), rng.normal(size=(b, t))
  keep = np.zeros((b, t), bool)
  keep[0, [1, 4, 6]], keep[2, :] = True, True  # sample 1 keeps no frame
  got = np.asarray(losses.frame_invariance(jnp.asarray(pos), jnp.asarray(neg), jnp.asarray(keep),
                                           temp))
  for i in range(b):
    frames = [j for j in range(t) if keep[i, j]]
    want = sum(abs(pos[i, j] - neg[i, j]) for j in frames) / len(frames) / temp if frames else 0
    assert np.isclose(got[i], want, atol=1e-5)


def test_region_frame_scores_take_each_frames_best_cell_inside_the_region_only():
  rng = np.random.default_rng(6)
  b, h, w, t = 3, 4, 4, 5
  mm = rng.normal(size=(b, h, w, t))
  cells = np.zeros((b, h, w), bool)
  cells[0, 1:3, 2] = True   # two cells
  cells[1] = True           # every cell: the plain best cell
  # sample 2: an empty region
  got = np.asarray(losses.region_frame_scores(jnp.asarray(mm), jnp.asarray(cells)))
  for i in range(b):
    for j in range(t):
      inside = [mm[i, y, x, j] for y in range(h) for x in range(w) if cells[i, y, x]]
      want = max(inside) if inside else losses.NO_CELL
      assert np.isclose(got[i, j], want, atol=1e-6)
  np.testing.assert_allclose(got[1], np.asarray(losses.frame_scores(jnp.asarray(mm)))[1])
