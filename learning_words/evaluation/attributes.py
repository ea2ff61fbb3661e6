"""`attributes` (the paper's Table 1): does the model ground each attribute word in the image?

Each of the 15 attribute words of the world (8 colours, 2 materials, 2 sizes, 3 shapes) is spoken
by the TTS with a fixed set of voices (evals.attributes.voices, default rate and pitch). The test
images G(z_id) (or the stored images) are read by the attribute segmenter (parse.parse of its
maps), or labelled by their ground truth where the world stores it (`labels`: 'truth'); an image
has a word iff one of its objects has that value. Per word, up to `images` test images with it and
`images` without (a seeded random choice) are scored by MISA against each recording; the word's
score is the fraction of (with, without) pairs in which the image with the word scores higher
(ties count 0.5; the Mann-Whitney statistic, computed by sorting), averaged over the voices. Per
category (colour, material, size, shape) the mean over its words, and the mean of the categories.
Chance is 0.5. A word with no image on one side has no score (null) and is left out of the means.

Each recording enters the speech encoder at its own length, as in the reference: a word lasts
33-55 frames, and padding it with silence (zero is the loudest value of our log-mel features)
made every word rank the images alike. Recordings of equal length share a jitted call; their
features are then padded to a common length, which MISA's frame mask leaves out. Two diagnostics
say how much a model's similarities depend on what is said: the mean Spearman correlation between
two words' rankings of the test images (1: every word ranks the images alike), and the share of
the similarity's variance that the image alone explains (1: the word does not matter). A third
holds the object count fixed (per word, `categories_within_count` and their mean
`mean_within_count`, as the plain test's; over all the test images, voices averaged):
images with a word hold more objects than images without it, and a model that scores short
recordings against sparse images (captions' length follows their object count) lands below 0.5
on the plain test without any word being grounded.
"""
import jax.numpy as jnp
import numpy as np
from scipy import stats

from learning_words.common import batching, figures
from learning_words.data import audio
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import context
from learning_words.learner import recall
from learning_words.models import encoders
from learning_words.models import segmenter as seg_lib
from learning_words.world import parse, speech

WORDS = tuple(w for a in ATTRIBUTES for w in VOCAB[a])  # 15, grouped by category
CATEGORY = {w: a for a in ATTRIBUTES for w in VOCAB[a]}


def ordered_pair_fraction(pos, neg) -> float:
  """Fraction of pairs (p, q) in pos x neg with p > q, ties counting 0.5; NaN if either is empty.

  Sorting neg and counting with binary search: O((P + N) log N), not a loop over pairs.
  """
  pos, neg = np.asarray(pos, np.float64).ravel(), np.sort(np.asarray(neg, np.float64).ravel())
  if not pos.size or not neg.size:
    return float("nan")
  below = np.searchsorted(neg, pos, side="left")  # negatives strictly lower than each positive
  tied = np.searchsorted(neg, pos, side="right") - below
  return float((below.sum() + 0.5 * tied.sum()) / (pos.size * neg.size))


def presence(scenes: list[dict]) -> np.ndarray:
  """bool [P, 15]: whether each scene description has an object with each word of WORDS."""
  has = np.zeros((len(scenes), len(WORDS)), bool)
  for i, scene in enumerate(scenes):
    for obj in scene["objects"]:
      for a in ATTRIBUTES:
        has[i, WORDS.index(obj[a])] = True
  return has


def choose_images(has, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Up to n random indices where `has` [P] holds and up to n where it does not."""
  with_, without = np.nonzero(has)[0], np.nonzero(~np.asarray(has))[0]
  return rng.permutation(with_)[:n], rng.permutation(without)[:n]


def summarise(word_scores: dict) -> dict:
  """{'categories': {attribute: mean over its words}, 'mean': mean of the categories}; words
  scored NaN (or missing) are left out, a category with none is NaN and is left out of the mean."""
  cats = {}
  for a in ATTRIBUTES:
    vals = [word_scores.get(w, np.nan) for w in VOCAB[a]]
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    cats[a] = float(np.mean(vals)) if vals else float("nan")
  finite = [v for v in cats.values() if np.isfinite(v)]
  return {"categories": cats, "mean": float(np.mean(finite)) if finite else float("nan")}


def speak_words(voices, workers: int = 1) -> list:
  """Log-mel spectrograms [T_i, 40] of every word spoken in every voice, word-major (W * V of
  them), each at its own length; the voices at eSpeak NG's default rate and pitch (the same
  recordings every run)."""
  base = speech.DEFAULT_VOICE
  voice_list = [speech.Voice(v, base.rate, base.pitch) for v in voices]
  texts = [w for w in WORDS for _ in voice_list]
  waves = speech.speak_many(texts, voice_list * len(WORDS), workers=workers, progress=False)
  return [audio.log_mel_spectrogram(w, name=t) for w, t in zip(waves, texts)]


def embed_words(models, specs, batch: int):
  """(features [N,T',D], valid frames [N]) of N recordings [T_i, 40], each encoded at its own
  length: one jitted call per length (batches of `batch` rows, padded), then the features padded
  with zeros to the longest T' (frames beyond a recording's own are masked by MISA)."""
  lengths = np.array([s.shape[0] for s in specs])
  parts = {}
  for length in np.unique(lengths):
    rows = np.nonzero(lengths == length)[0]
    spec = np.stack([specs[i] for i in rows]).astype(np.float32)
    parts[int(length)] = (rows, *batching.map_batches(
        lambda s, f: encoders.embed_audio(models, s, f),
        (spec, np.full(len(rows), length, np.int32)), batch))
  t_max = max(aud.shape[1] for _, aud, _ in parts.values())
  feats = jnp.zeros((len(specs), t_max, next(iter(parts.values()))[1].shape[2]), jnp.float32)
  frames = jnp.zeros(len(specs), jnp.int32)
  for rows, aud, f in parts.values():
    feats = feats.at[rows, :aud.shape[1]].set(aud)
    frames = frames.at[rows].set(f)
  return feats, frames


def ranking_agreement(sim) -> float:
  """Mean Spearman correlation between the columns of sim [P, W] (each word's ranking of the P
  images), over the W (W - 1) / 2 pairs of words; NaN for fewer than 2 words or images."""
  sim = np.asarray(sim, np.float64)
  if sim.shape[0] < 2 or sim.shape[1] < 2:
    return float("nan")
  with np.errstate(invalid="ignore", divide="ignore"):  # a constant column: NaN, left out
    rho = np.corrcoef(stats.rankdata(sim, axis=0), rowvar=False)  # Pearson of the ranks
  pairs = rho[np.triu_indices(sim.shape[1], 1)]
  return float(np.nanmean(pairs)) if np.isfinite(pairs).any() else float("nan")


def image_share(sim) -> float:
  """Share of sim [P, W]'s variance explained by the image alone: the between-image sum of
  squares (W * sum over images of (image mean - grand mean)^2) over the total sum of squares."""
  sim = np.asarray(sim, np.float64)
  total = np.sum((sim - sim.mean()) ** 2)
  between = sim.shape[1] * np.sum((sim.mean(axis=1) - sim.mean()) ** 2)
  return float(between / total) if total > 0 else float("nan")


def within_count_words(sim, has, counts) -> np.ndarray:
  """The word test with the object count held fixed, per word [W]: the ordered-pair fraction of
  images with the word over images without it among images of equal object count, pooled over
  the counts by their number of pairs (NaN for a word with no such pair). sim, has [P, W];
  counts [P]. An image with a word tends to hold more objects, so a model that ranks images by
  how many objects they hold scores away from 0.5 on the plain test without grounding a word."""
  sim, has, counts = np.asarray(sim), np.asarray(has, bool), np.asarray(counts)
  scores = np.full(sim.shape[1], np.nan)
  for w in range(sim.shape[1]):
    total = weight = 0.0
    for k in np.unique(counts):
      m = counts == k
      p, q = sim[m & has[:, w], w], sim[m & ~has[:, w], w]
      if p.size and q.size:
        total += ordered_pair_fraction(p, q) * p.size * q.size
        weight += p.size * q.size
    if weight:
      scores[w] = total / weight
  return scores


def run(ctx: context.Context) -> dict:
  """Table 1 scores of the model on the first `evals.attributes.pool` test images."""
  cfg = ctx.cfg.attributes
  batch = int(ctx.cfg.batch_size)
  layer = ctx.config.negatives.layer
  z_index = ctx.data["z_index"][:int(cfg.pool)]
  if not len(z_index):
    raise ValueError("attributes: no test images")
  if ctx.scenes is not None:  # the world's ground truth
    labels, scenes = "truth", ctx.scenes[:len(z_index)]
  else:
    if ctx.seg is None:
      raise FileNotFoundError("attributes needs the attribute segmenter "
                              "(WORKDIR/segmenter/weights)")
    images = ctx.data["image"][:len(z_index)] if ctx.stored else figures.to_uint8(
        batching.map_batches(lambda zi: encoders.generate(ctx.g, ctx.z_table[zi]), (z_index,),
                             batch, desc="attributes: images"))
    labels = "segmenter"
    scenes = parse.parse(seg_lib.predict(ctx.seg, images), ctx.config.world.parse_min_pixels)
  has = presence(scenes)
  if ctx.stored:
    img = batching.map_batches(lambda im: encoders.embed_stored_images(ctx.models, im),
                               (ctx.data["image"][:len(z_index)],), batch,
                               desc="attributes: image features")
  else:
    img = batching.map_batches(
        lambda zi: encoders.embed_generated_images(ctx.models, ctx.g, ctx.z_table[zi],
                                                   layer=layer),
        (z_index,), batch, desc="attributes: image features")
  voices = tuple(cfg.voices)
  aud, frames = embed_words(ctx.models, speak_words(voices, int(ctx.config.speech.workers)),
                            batch)
  sim = np.asarray(recall.similarity(img, aud, frames, chunk=min(64, img.shape[0]),
                                     cosine=bool(ctx.config.model.cosine)))  # [P, W*V]
  sim = sim.reshape(len(z_index), len(WORDS), len(voices))
  words = {}
  for w_i, w in enumerate(WORDS):
    rng = np.random.default_rng([int(ctx.cfg.seed), w_i])
    with_, without = choose_images(has[:, w_i], int(cfg.images), rng)
    per_voice = [ordered_pair_fraction(sim[with_, w_i, v], sim[without, w_i, v])
                 for v in range(len(voices))]
    words[w] = {"category": CATEGORY[w], "score": float(np.mean(per_voice)),
                "per_voice": per_voice, "n_with": len(with_), "n_without": len(without)}
  summary = summarise({w: r["score"] for w, r in words.items()})
  per_word = sim.mean(axis=2)  # [P, 15]: each word's similarity, averaged over the voices
  counts = [len(s["objects"]) for s in scenes]
  held = within_count_words(per_word, has, counts)
  for w_i, w in enumerate(WORDS):
    words[w]["within_count"] = float(held[w_i])
  held_summary = summarise(dict(zip(WORDS, held)))
  return {"n_images": len(z_index), "labels": labels, "voices": list(voices), "chance": 0.5,
          **summary,
          "word_ranking_spearman": ranking_agreement(per_word),
          "image_variance_share": image_share(per_word),
          "categories_within_count": held_summary["categories"],
          "mean_within_count": held_summary["mean"],
          "words": words}
