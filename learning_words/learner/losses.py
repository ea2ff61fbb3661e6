"""Margin ranking (triplet) losses on the in-batch similarity matrix.

Input: S [B,B] with S[i,j] = MISA(image_i, caption_j), so S[i,i] is anchor i's positive pair,
column i holds every image against caption i and row i every caption against image i. Each term is
a hinge max(0, margin + s_neg - s_pos) per anchor, averaged over the batch:
  imp_image    S[j,i], j a random other image       imp_caption   S[i,k], k a random other caption
  hard_image   max_{j != i} S[j,i]                  hard_caption  max_{k != i} S[i,k]
  edited       s_edit[i] = MISA(edited negative of image i, caption i), averaged over the
               samples whose negative was accepted (edit_valid); a sample with none adds no
               edited term (the reference never trains on a rejected negative)
Kinds (the reference's `loss_type`):
  regular           imp_image + imp_caption
  negatives_hard    regular + hard_image + hard_caption
  negatives_edited  regular + edited
  negatives_both    clip(regular, 0, 5) + clip(mean_i[hard_caption_i + max(hard_image_i,
                    edited_i)], 0, 5)
The `negatives_both` clamps act on the two batch-mean losses (scalars), not per sample: the
reference averages each loss over the batch and then applies torch.clamp(loss, 0, 5) to each.
The per-sample max of the hard-image and edited hinges equals the reference's hinge of the larger
of the two margins, max(0, m + max(a, b) - p) = max(max(0, m + a - p), max(0, m + b - p)).
Gradients flow through the chosen impostors only, as in the reference, which picks the hardest
ones on a detached matrix and then recomputes their similarity with gradients.

Edited-term options (differences from the reference, each off by default): `edited_weight`
scales the edited term of `negatives_edited`; `edited_temperature` is the softmax base's T for it
alone; `edited` [B] replaces the per-sample edited term by one the caller computed (frame_edited:
the contrast frame by frame rather than of the two MISA means; word_edited: of the two images'
scores over the frames of the one word that names the edit).

Base objective (`loss.base`): 'triplet' is the reference's, above. 'softmax' replaces the two
random-impostor hinges by the in-batch softmax over every impostor, both ways (InfoNCE on S / T,
averaged over the two directions), and each added term by its smooth counterpart on the same scale,
-log sigmoid((s_pos - s_neg) / T) (a softplus in place of the hinge: the positive against the one
negative): hard_image, hard_caption and edited as above; negatives_both takes the larger of the
hard-image and edited terms per sample, as the triplet kind does, without the clamps (the softmax
terms are unbounded only as the hinges are). So every kind adds its terms to the same base, and
`regular` stays the edited kinds' baseline.
"""
import jax
import jax.numpy as jnp

LOSS_KINDS = ("regular", "negatives_hard", "negatives_edited", "negatives_both")
BASES = ("triplet", "softmax")
CLAMP_MAX = 5.0  # the reference's clamp on each of the two losses in `negatives_both`


def hinge(s_neg, s_pos, margin):
  """max(0, margin + s_neg - s_pos), elementwise."""
  return jax.nn.relu(margin + s_neg - s_pos)


def draw_impostors(key, batch: int):
  """Random impostor indices (image j [B], caption k [B]), each uniform over the B-1 others."""
  if batch < 2:
    raise ValueError(f"in-batch impostors need a batch of at least 2, got {batch}")
  offsets = jax.random.randint(key, (2, batch), 1, batch)  # in [1, B-1]: never the anchor itself
  anchors = jnp.arange(batch)
  return (anchors + offsets[0]) % batch, (anchors + offsets[1]) % batch


def sampled_hinges(sim, key, margin):
  """Per-anchor hinges [B] with a random impostor image and a random impostor caption."""
  b = sim.shape[0]
  pos = jnp.diagonal(sim)
  img_idx, cap_idx = draw_impostors(key, b)
  anchors = jnp.arange(b)
  return hinge(sim[img_idx, anchors], pos, margin), hinge(sim[anchors, cap_idx], pos, margin)


def hardest_hinges(sim, margin):
  """Per-anchor hinges [B] with the most similar other image (column) and caption (row)."""
  pos = jnp.diagonal(sim)
  off = jnp.where(jnp.eye(sim.shape[0], dtype=bool), -jnp.inf, sim)
  return hinge(jnp.max(off, axis=0), pos, margin), hinge(jnp.max(off, axis=1), pos, margin)


def info_nce(sim, temperature):
  """Mean over both directions of the cross-entropy of the true pair among the batch: rows
  (image -> captions) and columns (caption -> images) of sim / temperature."""
  logits = sim / temperature
  labels = jnp.arange(sim.shape[0])
  rows = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=1), labels[:, None], 1)[:, 0]
  cols = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=0), labels[None, :], 0)[0]
  return 0.5 * (rows.mean() + cols.mean())


def pair_logistic(s_neg, s_pos, temperature):
  """-log sigmoid((s_pos - s_neg) / T) elementwise: the softmax of the positive against one
  negative (the smooth hinge of the softmax base)."""
  return jax.nn.softplus((s_neg - s_pos) / temperature)


def valid_mean(values, valid):
  """Mean of values [B] over valid [B] (None: all); 0 where none is valid."""
  if valid is None:
    return jnp.mean(values)
  valid = jnp.asarray(valid, values.dtype)
  return jnp.sum(values * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def frame_scores(mm):
  """Per frame, the best cell's similarity: matchmaps mm [B,h,w,T] -> [B,T]."""
  return jnp.max(mm, axis=(1, 2))


NO_CELL = -1e4  # the score of a frame whose region holds no cell (below any similarity)


def region_frame_scores(mm, cells):
  """Per frame, the best similarity among the cells `cells` (bool [B,h,w]) only: matchmaps
  mm [B,h,w,T] -> [B,T]; NO_CELL where a sample's region is empty. The edited term's read-out on
  the cells the edit touched, so the frames that name the change are compared where it is."""
  return jnp.max(jnp.where(cells[..., None], mm, NO_CELL), axis=(1, 2))


def peak_frames(mm, cells):
  """The frames whose best cell anywhere lies in the region `cells` (bool [B,h,w]): matchmaps
  mm [B,h,w,T] -> bool [B,T]. Without word timings, the frames the matchmap itself ties to the
  edited region stand in for the word that names the edit."""
  best = mm >= jnp.max(mm, axis=(1, 2), keepdims=True)
  return jnp.any(best & cells[..., None], axis=(1, 2))


def frame_edited(pos_frames, neg_frames, n_frames, base: str = "triplet", margin: float = 1.0,
                 temperature: float = 0.07):
  """Per-sample edited term [B] taken frame by frame: the mean over each caption's valid frames
  (n_frames [B]) of the pair term (hinge, or -log sigmoid on the softmax base) between the edited
  image's and the own image's best-cell scores at that frame (pos_frames, neg_frames [B,T]).
  Unlike the term on the two MISA means, frames that favour the own image cannot cancel the ones
  that favour the edit: each frame is pushed on its own."""
  per = (hinge(neg_frames, pos_frames, margin) if base == "triplet"
         else pair_logistic(neg_frames, pos_frames, temperature))
  t = jnp.arange(per.shape[1])
  valid = (t[None, :] < jnp.clip(n_frames, 1, per.shape[1])[:, None]).astype(per.dtype)
  return jnp.sum(per * valid, axis=1) / jnp.sum(valid, axis=1)


def word_edited(pos_frames, neg_frames, word, base: str = "triplet", margin: float = 1.0,
                temperature: float = 0.07):
  """Per-sample edited term [B] on some frames only: the pair term (hinge, or -log sigmoid on
  the softmax base) between the own image's and the edited image's mean best-cell score over the
  frames `word` (bool [B,T]: the word that names the edit, or the frames peaking on it) of
  pos_frames, neg_frames [B,T]. A sample with no such frame gets 0 (the caller drops it from the
  edited term)."""
  w = word.astype(pos_frames.dtype)
  n = jnp.maximum(w.sum(axis=1), 1.0)
  pos, neg = (pos_frames * w).sum(axis=1) / n, (neg_frames * w).sum(axis=1) / n
  per = hinge(neg, pos, margin) if base == "triplet" else pair_logistic(neg, pos, temperature)
  return jnp.where(word.any(axis=1), per, 0.0)


def frame_invariance(pos_frames, neg_frames, keep, temperature: float = 0.07):
  """Per-sample invariance term [B]: the mean over the frames `keep` (bool [B,T]; those that name
  nothing of the edited object) of |own - edited| best-cell score, over `temperature`. A frame
  about something the edit left alone should not move; moving ones add noise to MISA's mean.
  0 where no frame is kept."""
  k = keep.astype(pos_frames.dtype)
  return (jnp.abs(pos_frames - neg_frames) * k).sum(axis=1) / (
      jnp.maximum(k.sum(axis=1), 1.0) * temperature)


def compute_loss(kind: str, sim, key, s_edit=None, margin: float = 1.0, base: str = "triplet",
                 temperature: float = 0.07, edit_valid=None, edited_weight: float = 1.0,
                 edited_temperature: float | None = None, edited=None):
  """(loss, {term: batch mean}) for loss `kind` on the similarity matrix sim [B,B].

  key draws the random impostors (see `draw_impostors`); s_edit [B] is needed by the edited kinds,
  edit_valid bool [B] says which samples have an accepted negative (None: all). Samples without
  one add no edited term: `edited` is the mean over the others, and in negatives_both their
  per-sample max is the hard-image term alone.
  base: 'triplet' (margin) or 'softmax' (temperature), see the module docstring; edited_weight,
  edited_temperature and edited: the edited-term options of the module docstring.
  """
  if base not in BASES:
    raise ValueError(f"unknown loss base {base!r}; allowed: {', '.join(BASES)}")
  if base == "softmax":
    t_edit = temperature if edited_temperature is None else edited_temperature
    return _softmax_loss(kind, sim, s_edit, temperature, edit_valid, edited_weight, t_edit,
                         edited)
  if kind not in LOSS_KINDS:
    raise ValueError(f"unknown loss kind {kind!r}; allowed: {', '.join(LOSS_KINDS)}")
  if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
    raise ValueError(f"expected a square in-batch similarity matrix, got {sim.shape}")
  if kind in ("negatives_edited", "negatives_both") and s_edit is None:
    raise ValueError(f"loss {kind!r} needs s_edit, the edited negatives' similarities")

  imp_image, imp_caption = sampled_hinges(sim, key, margin)
  terms = {"imp_image": imp_image.mean(), "imp_caption": imp_caption.mean()}
  regular = terms["imp_image"] + terms["imp_caption"]
  if kind == "regular":
    return regular, terms

  if kind in ("negatives_hard", "negatives_both"):
    hard_image, hard_caption = hardest_hinges(sim, margin)
    terms.update(hard_image=hard_image.mean(), hard_caption=hard_caption.mean())
  if kind in ("negatives_edited", "negatives_both"):
    edited = _only_valid(hinge(s_edit, jnp.diagonal(sim), margin) if edited is None else edited,
                         edit_valid)
    terms["edited"] = valid_mean(edited, edit_valid)

  if kind == "negatives_hard":
    return regular + terms["hard_image"] + terms["hard_caption"], terms
  if kind == "negatives_edited":
    return regular + edited_weight * terms["edited"], terms

  # negatives_both: two batch-mean losses, each clamped to [0, 5] (see the module docstring).
  hard_or_edited = jnp.maximum(hard_image, edited)
  terms["hard_or_edited"] = hard_or_edited.mean()
  terms["edited_harder"] = jnp.mean((edited > hard_image).astype(sim.dtype))
  terms["regular"] = jnp.clip(regular, 0.0, CLAMP_MAX)
  terms["combined"] = jnp.clip(jnp.mean(hard_caption + hard_or_edited), 0.0, CLAMP_MAX)
  return terms["regular"] + terms["combined"], terms


def _only_valid(edited, valid):
  """Per-sample edited terms [B] (>= 0), zero where the sample has no accepted negative."""
  return edited if valid is None else jnp.where(valid, edited, 0.0)


def _softmax_loss(kind, sim, s_edit, temperature, edit_valid=None, edited_weight=1.0,
                  edited_temperature=None, edited=None):
  """compute_loss on the softmax base (the module docstring)."""
  if kind not in LOSS_KINDS:
    raise ValueError(f"unknown loss kind {kind!r}; allowed: {', '.join(LOSS_KINDS)}")
  if kind in ("negatives_edited", "negatives_both") and s_edit is None:
    raise ValueError(f"loss {kind!r} needs s_edit, the edited negatives' similarities")
  terms = {"softmax": info_nce(sim, temperature)}
  loss = terms["softmax"]
  pos = jnp.diagonal(sim)
  off = jnp.where(jnp.eye(sim.shape[0], dtype=bool), -jnp.inf, sim)
  hard_image = pair_logistic(jnp.max(off, axis=0), pos, temperature)
  hard_caption = pair_logistic(jnp.max(off, axis=1), pos, temperature)
  if kind == "negatives_hard":
    terms.update(hard_image=hard_image.mean(), hard_caption=hard_caption.mean())
    return loss + terms["hard_image"] + terms["hard_caption"], terms
  if kind == "regular":
    return loss, terms
  t_edit = temperature if edited_temperature is None else edited_temperature
  edited = _only_valid(pair_logistic(s_edit, pos, t_edit) if edited is None else edited,
                       edit_valid)
  terms["edited"] = valid_mean(edited, edit_valid)
  if kind == "negatives_edited":
    return loss + edited_weight * terms["edited"], terms
  hard_or_edited = jnp.maximum(hard_image, edited)
  terms.update(hard_caption=hard_caption.mean(), hard_or_edited=hard_or_edited.mean(),
               edited_harder=jnp.mean((edited > hard_image).astype(sim.dtype)))
  return loss + jnp.mean(hard_caption + hard_or_edited), terms


def chance_loss(kind: str, batch: int, margin: float = 1.0, base: str = "triplet",
                temperature: float = 0.07) -> float:
  """The loss of a model that scores every pair alike (every negative accepted): what training
  starts near and must fall below. Triplet: the margin per hinge (regular 2m, edited 3m, hard and
  both 4m, the clamps aside); softmax: log(batch) for the in-batch term, log 2 per added one."""
  zeros = jnp.zeros((batch, batch), jnp.float32)
  loss, _ = compute_loss(kind, zeros, jax.random.key(0), s_edit=jnp.zeros(batch), margin=margin,
                         base=base, temperature=temperature)
  return float(loss)
