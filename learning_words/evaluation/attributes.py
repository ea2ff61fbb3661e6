"""`attributes` and `attributes_matched` (the paper's Table 1): is each attribute word grounded?

Each of the 15 attribute words of the world (8 colours, 2 materials, 2 sizes, 3 shapes) is spoken
by the TTS (evals.attributes.voices; the reference: one recording per word) at its own length. The
first `pool` test images G(z_id) (or the stored images) are read by the attribute segmenter, or by
their ground truth where the world stores it (`labels`: 'truth'), and scored by MISA against each
recording, on image features taken before the encoder's last ReLU (evals.attributes.pre_relu).

`attributes`, the reference's protocol (experiments.py, docs/differences.md): per word, an
image is "with" it when the segmenter gives the word between 100 and 700 pixels at 128 px (size
words: 100 to 20,000) and "without" it under 10 pixels; images in between are skipped; pixel
thresholds scale with the resolution squared (`pixel_thresholds`). Scanning the test list in
order, up to `images` of each; the i-th "with" image is paired with the i-th "without" and wins
when it scores strictly higher (evals.attributes.tie_credit: what a tie counts, 0 as the
reference). A category's score pools its words' pairs; the mean is over the categories. Chance 0.5.

`attributes_matched`: the same words, recordings and image sets, but each "with" image is paired
with every "without" image of the same parsed object count, so that a model ranking images by how
many objects they hold (captions' length follows their object count) sits at 0.5 (`n_pairs` says
how many pairs remain).

`count_spearman` measures the clutter the plain test reads: the mean over the words of the
Spearman correlation between the word's score and the image's object count (0: the count does not
matter; negative: every word scores crowded images lower). Images holding a word tend to hold more
objects, so with a negative correlation the plain test falls below 0.5 without any word being
wrong; `attributes_matched` is the word test to read.

Two more diagnostics say how much the similarities depend on what is said: the mean Spearman
correlation between two words' rankings of the test images (1: every word ranks the images alike),
and the share of the similarity's variance that the image alone explains (1: the word does not
matter). Recordings of equal length share a jitted call; their features are then padded to a
common length, which MISA's frame mask leaves out.
"""
import jax.numpy as jnp
import numpy as np
from etils import epy
with epy.lazy_imports():  # imported at first use: start-up time
  from scipy import stats

from learning_words.common import batching, errors, figures
from learning_words.data import audio
from learning_words.data.vocabulary import ATTRIBUTES, VOCAB
from learning_words.evaluation import context
from learning_words.learner import recall
from learning_words.models import encoders
from learning_words.models import generator as gen_lib
from learning_words.models import segmenter as seg_lib
from learning_words.world import parse, speech

WORDS = tuple(w for a in ATTRIBUTES for w in VOCAB[a])  # 15, grouped by category
CATEGORY = {w: a for a in ATTRIBUTES for w in VOCAB[a]}
# The reference's pixel counts at 128 px (experiments.py): "with" between MIN and MAX (MAX_SIZE for
# size words), "without" under ABSENT.
PIXELS_128 = {"min": 100, "max": 700, "max_size": 20_000, "absent": 10}


def pixel_thresholds(resolution: int) -> dict:
  """PIXELS_128 scaled by (resolution / 128)^2: the same share of the image at any size."""
  scale = (resolution / 128.0) ** 2
  return {k: v * scale for k, v in PIXELS_128.items()}


def attribute_pixels(maps: dict) -> np.ndarray:
  """Per image, the pixels labelled with each word of WORDS -> int [P, 15]. maps: {attribute:
  int labels [P,R,R]} (1 + the value's index, 0 = background), as the segmenter predicts."""
  cols = [np.sum(np.asarray(maps[a]) == 1 + i, axis=(1, 2))
          for a in ATTRIBUTES for i in range(len(VOCAB[a]))]
  return np.stack(cols, axis=1)


def scene_pixels(scenes: list[dict]) -> np.ndarray:
  """attribute_pixels from scene descriptions (ground truth): each object's pixels count for each
  of its four values -> int [P, 15]."""
  out = np.zeros((len(scenes), len(WORDS)), np.int64)
  for i, scene in enumerate(scenes):
    for obj in scene["objects"]:
      for a in ATTRIBUTES:
        out[i, WORDS.index(obj[a])] += int(obj["pixels"])
  return out


def protocol_images(pixels, category: str, resolution: int, n: int):
  """The reference's "with" and "without" images of one word, in test-list order, up to n each.

  pixels [P]: the word's pixels per image. -> (with indices, without indices).
  """
  t = pixel_thresholds(resolution)
  top = t["max_size"] if category == "size" else t["max"]
  pixels = np.asarray(pixels)
  with_ = np.nonzero((pixels >= t["min"]) & (pixels <= top))[0][:n]
  without = np.nonzero(pixels < t["absent"])[0][:n]
  return with_, without


def credit(pos, neg, tie_credit: float = 0.0) -> np.ndarray:
  """Per pair, 1 where pos > neg, tie_credit where equal, else 0 (elementwise, broadcast)."""
  pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
  return (pos > neg) + tie_credit * (pos == neg)


def paired_credits(scores, with_, without, tie_credit: float = 0.0) -> np.ndarray:
  """Each pair's credit: the i-th "with" image against the i-th "without"; scores [P]."""
  w, wo = paired_images(with_, without)
  return credit(np.asarray(scores)[w], np.asarray(scores)[wo], tie_credit)


def paired_images(with_, without) -> tuple[np.ndarray, np.ndarray]:
  """(with image, without image) of each pair of paired_credits."""
  n = min(len(with_), len(without))
  return np.asarray(with_[:n], int), np.asarray(without[:n], int)


def matched_credits(scores, counts, with_, without, tie_credit: float = 0.0) -> np.ndarray:
  """Each pair's credit: every "with" image against every "without" image of the same object
  count (with-major order); scores, counts [P]."""
  w, wo = matched_images(counts, with_, without)
  return credit(np.asarray(scores)[w], np.asarray(scores)[wo], tie_credit)


def matched_images(counts, with_, without) -> tuple[np.ndarray, np.ndarray]:
  """(with image, without image) of each pair of matched_credits, with-major."""
  counts, with_, without = np.asarray(counts), np.asarray(with_, int), np.asarray(without, int)
  same = counts[with_][:, None] == counts[without][None, :]  # [n_with, n_without]
  w, wo = np.nonzero(same)
  return with_[w], without[wo]


def paired_wins(scores, with_, without, tie_credit: float = 0.0) -> tuple[float, int]:
  """(wins, pairs) of paired_credits."""
  c = paired_credits(scores, with_, without, tie_credit)
  return float(c.sum()), len(c)


def matched_wins(scores, counts, with_, without, tie_credit: float = 0.0) -> tuple[float, int]:
  """(wins, pairs) of matched_credits."""
  c = matched_credits(scores, counts, with_, without, tie_credit)
  return float(c.sum()), len(c)


def pool_categories(words: dict) -> dict:
  """{'categories': {attribute: pooled wins / pairs of its words}, 'mean': mean of the categories
  with pairs, 'n_pairs'}; words: {word: {'wins', 'pairs'}}. A category with no pair is NaN and is
  left out of the mean."""
  cats = {}
  for a in ATTRIBUTES:
    wins = sum(words[w]["wins"] for w in VOCAB[a] if w in words)
    pairs = sum(words[w]["pairs"] for w in VOCAB[a] if w in words)
    cats[a] = wins / pairs if pairs else float("nan")
  finite = [v for v in cats.values() if np.isfinite(v)]
  return {"categories": cats, "mean": float(np.mean(finite)) if finite else float("nan"),
          "n_pairs": int(sum(r["pairs"] for r in words.values()))}


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


def count_correlation(sim, counts) -> float:
  """Mean over the columns of sim [P, W] (each word's score of the P images) of their Spearman
  correlation with the images' object counts [P]; NaN where it is undefined (constant)."""
  sim, counts = np.asarray(sim, np.float64), np.asarray(counts, np.float64)
  if sim.shape[0] < 2 or np.all(counts == counts[0]):
    return float("nan")
  with np.errstate(invalid="ignore", divide="ignore"):
    rho = [stats.spearmanr(sim[:, w], counts).statistic for w in range(sim.shape[1])]
  rho = np.asarray(rho, np.float64)
  return float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")


def image_share(sim) -> float:
  """Share of sim [P, W]'s variance explained by the image alone: the between-image sum of
  squares (W * sum over images of (image mean - grand mean)^2) over the total sum of squares."""
  sim = np.asarray(sim, np.float64)
  if sim.size == 0:
    return float("nan")
  total = np.sum((sim - sim.mean()) ** 2)
  between = sim.shape[1] * np.sum((sim.mean(axis=1) - sim.mean()) ** 2)
  return float(between / total) if total > 0 else float("nan")


def word_similarities(ctx: context.Context) -> dict:
  """What both evaluators score, computed once per context: {'sim' [P, 15, V] MISA of each test
  image against each word's recordings, 'pixels' [P, 15], 'counts' [P] parsed objects, 'labels',
  and the features scored: 'image_features' [P,h,w,D], 'word_features' ([15 V, T', D], [15 V])}."""
  if "attributes" in ctx.memo:
    return ctx.memo["attributes"]
  cfg = ctx.cfg.attributes
  batch = int(ctx.cfg.batch_size)
  layer = ctx.config.negatives.layer
  pre_relu = bool(cfg.pre_relu)
  z_index = ctx.data["z_index"][:int(cfg.pool)]
  if not len(z_index):
    raise ValueError("attributes: no test images")
  if ctx.scenes is not None:  # the world's ground truth
    labels, scenes = "truth", ctx.scenes[:len(z_index)]
    pixels = scene_pixels(scenes)
  else:
    if ctx.seg is None:
      raise errors.MissingError("attributes needs the attribute segmenter "
                                "(WORKDIR/segmenter/weights): run --mode=train_segmenter")
    images = ctx.data["image"][:len(z_index)] if ctx.stored else figures.to_uint8(
        batching.map_batches(lambda zi: encoders.generate(ctx.g, ctx.z_table[zi]), (z_index,),
                             batch, desc="attributes: images"))
    labels = "segmenter"
    maps = seg_lib.predict(ctx.seg, images)
    pixels = attribute_pixels(maps)
    scenes = parse.parse(maps, ctx.config.world.parse_min_pixels)
  if ctx.stored:
    img = batching.map_batches(
        lambda im: encoders.embed_stored_images(ctx.models, im, pre_relu=pre_relu),
        (ctx.data["image"][:len(z_index)],), batch, desc="attributes: image features")
  else:
    img = batching.map_batches(
        lambda zi: encoders.embed_generated_images(ctx.models, ctx.g, ctx.z_table[zi],
                                                   layer=layer, pre_relu=pre_relu),
        (z_index,), batch, desc="attributes: image features")
  voices = tuple(cfg.voices)
  aud, frames = embed_words(ctx.models, speak_words(voices, int(ctx.config.speech.workers)),
                            batch)
  sim = np.asarray(recall.similarity(img, aud, frames, chunk=min(64, img.shape[0]),
                                     cosine=bool(ctx.config.model.cosine)))  # [P, W*V]
  out = {"sim": sim.reshape(len(z_index), len(WORDS), len(voices)), "pixels": pixels,
         "counts": np.array([len(s["objects"]) for s in scenes]), "labels": labels,
         "voices": list(voices), "image_features": img, "word_features": (aud, frames),
         "resolution": int(ctx.data["image"].shape[1] if ctx.stored
                           else gen_lib.resolution_of(ctx.g.sizes))}
  ctx.memo["attributes"] = out
  return out


def score_words(ctx: context.Context, matched: bool) -> dict:
  """Both evaluators' output: per word its wins and pairs (pooled over the voices), per category
  and their mean (pool_categories)."""
  cfg = ctx.cfg.attributes
  s = word_similarities(ctx)
  sim, tie = s["sim"], float(cfg.tie_credit)
  words, credits, categories, images = {}, [], [], []
  for w_i, w in enumerate(WORDS):
    with_, without = protocol_images(s["pixels"][:, w_i], CATEGORY[w], s["resolution"],
                                     int(cfg.images))
    pair_with = (matched_images(s["counts"], with_, without) if matched
                 else paired_images(with_, without))[0]
    per_voice = [matched_credits(sim[:, w_i, v], s["counts"], with_, without, tie) if matched
                 else paired_credits(sim[:, w_i, v], with_, without, tie)
                 for v in range(sim.shape[2])]
    word_credits = np.concatenate(per_voice)
    credits.append(word_credits)
    images.append(np.tile(pair_with, len(per_voice)))
    categories.append(np.full(len(word_credits), ATTRIBUTES.index(CATEGORY[w])))
    wins, pairs = float(word_credits.sum()), len(word_credits)
    words[w] = {"category": CATEGORY[w], "score": wins / pairs if pairs else float("nan"),
                "wins": wins, "pairs": pairs, "n_with": len(with_), "n_without": len(without)}
  per_word = sim.mean(axis=2)  # [P, 15]: each word's similarity, averaged over the voices
  pooled = pool_categories(words)
  empty = {}
  if pooled["n_pairs"] == 0:  # no test at all: no word's numbers mean anything
    per_word = per_word[:0]
    empty["empty"] = (f"no pair: of the {sim.shape[0]} pool images, none had a word's attribute "
                      "with another lacking it (raise --config.evals.attributes.pool, or check "
                      "that the images hold objects the segmenter reads)")
  return {**empty,"protocol": "matched object count" if matched else "reference",
          "n_images": int(sim.shape[0]), "labels": s["labels"], "voices": s["voices"],
          "features": "pre-ReLU" if cfg.pre_relu else "post-ReLU", "tie_credit": tie,
          "chance": 0.5, **pooled,
          "word_ranking_spearman": ranking_agreement(per_word),
          "count_spearman": count_correlation(per_word, s["counts"][:per_word.shape[0]]),
          "image_variance_share": image_share(per_word), "words": words,
          # every pair's credit, category (index into ATTRIBUTES) and "with" image (index into the
          # test images), in a fixed order: the paired intervals of evaluation/intervals.py
          # resample the images
          "items": {"credit": np.concatenate(credits).tolist(),
                    "category": np.concatenate(categories).astype(int).tolist(),
                    "image": np.concatenate(images).astype(int).tolist()}}


def run(ctx: context.Context) -> dict:
  """`attributes`: the reference's protocol (the module docstring)."""
  return score_words(ctx, matched=False)


def run_matched(ctx: context.Context) -> dict:
  """`attributes_matched`: pairs of equal parsed object count (the module docstring)."""
  return score_words(ctx, matched=True)
