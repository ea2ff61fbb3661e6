"""Image / spoken-caption pairs of the synthetic Audio CLEVRGAN, on four worlds (the ladder).

`world.pairs` chooses where the images and captions come from; each rung adds one source of loss:
  renders          L0: rendered scenes, captions from their ground truth (stored images; no latent)
  inverted         L1: G(z*) with z* the latent found for each render (world/invert.py), the
                   render's ground-truth caption, kept where the segmenter reads the same objects
  inverted_parsed  L2: the same images, captions parsed from the segmenter's reading
  prior            L3: G(z_i) with z_i the reference's fixed z row (generator.standard_z), captions
                   parsed from the segmenter's reading (the reference's Audio CLEVRGAN)
Pair ids are split by range as in audio_clevrgan. The renders of the first three rungs are scenes
past every render the GAN and the segmenter were trained on (`render_ids`). A pair's z_index is its
row in the latent table that draws it (the fixed z matrix or the inverted latents; -1: none).
Captions are written with captions.caption and spoken by eSpeak NG with a voice drawn from (seed,
id); images where nothing is read are skipped and counted.
"""
import jax.numpy as jnp
import numpy as np
from flax import nnx

from learning_words.common import errors, figures
from learning_words.models import generator as gen_lib
from learning_words.world import captions, edit_variants, parse, scenes as scenes_lib, speech

PAIRS = ("renders", "inverted", "inverted_parsed", "prior")
RUNG = {"renders": "L0", "inverted": "L1", "inverted_parsed": "L2", "prior": "L3"}


def check_pairs(kind: str) -> str:
  if kind not in PAIRS:
    raise errors.ConfigError(f"--config.world.pairs must be one of {PAIRS}, got {kind!r}")
  return kind


def draw_images(g, z: np.ndarray, batch: int = 256) -> np.ndarray:
  """uint8 [N, R, R, 3] images G(z), batched and jitted."""
  draw = nnx.jit(lambda g, z: g(z))
  return np.concatenate([figures.to_uint8(draw(g, jnp.asarray(z[i:i + batch])))
                         for i in range(0, len(z), batch)])


def read_images(seg_predict, images: np.ndarray, min_pixels: int) -> list[dict]:
  """Scene descriptions of uint8 images [N,R,R,3]: the segmenter's label maps, parsed."""
  return parse.parse(seg_predict(images), min_pixels)


def render_ids(world_cfg, ids) -> np.ndarray:
  """Scene ids of pair ids: past the world's num_train + num_val renders (the GAN's and the
  segmenter's data), so no rung trains or tests on a scene they saw."""
  return int(world_cfg.num_train) + int(world_cfg.num_val) + np.asarray(ids)


def render_pairs(world_cfg, seed: int, ids) -> tuple:
  """(maps, descriptions, params) of the renders of pair ids (consecutive; scenes.render_scenes)."""
  ids = np.asarray(ids)
  first = int(render_ids(world_cfg, ids[:1])[0]) if len(ids) else 0
  return scenes_lib.render_scenes(len(ids), seed, world_cfg.resolution, world_cfg.min_objects,
                                  world_cfg.max_objects, start=first)


def render_pairs_images(world_cfg, seed: int, ids, with_foreground: bool = False) -> tuple:
  """(uint8 images [N,R,R,3], ground-truth scene descriptions[, object pixels bool [N,R,R]]) of
  the renders of pair ids (consecutive)."""
  arrays, descriptions, _ = render_pairs(world_cfg, seed, ids)
  if with_foreground:
    return arrays["image"], descriptions, arrays["object_id"] > 0
  return arrays["image"], descriptions


def objects_key(scene: dict) -> tuple:
  """A scene's objects as a sorted tuple of (shape, color, size, material): what a caption says
  of them (positions aside)."""
  return tuple(sorted((o["shape"], o["color"], o["size"], o["material"])
                      for o in scene["objects"]))


def agrees(truth: dict, read: dict) -> bool:
  """Whether the segmenter's reading names exactly the ground truth's objects."""
  return objects_key(truth) == objects_key(read)


def speak_pairs(ids, z_index, images, scenes, *, seed: int, speech_cfg, relation_prob: float,
                progress: bool = True, extras: dict | None = None,
                slots_of: list | None = None) -> list[dict]:
  """Records (id, z_index, image, waveform float32, text, scene, and row k of each array of
  `extras`) of scenes with objects. slots_of: per scene, the slot of each listed object
  (scenes.describe_with_slots); given, the records also carry `word_frames`
  (edit_variants.word_frames: where each object's attribute words are spoken)."""
  extras = extras or {}
  keep = [k for k, s in enumerate(scenes) if s["objects"]]
  texts, tags, voices = [], [], []
  for k in keep:
    rng = np.random.default_rng([seed, int(ids[k])])
    text, tag = captions.tagged_caption(scenes[k], rng, relation_prob)
    texts.append(text)
    tags.append(tag)
    voices.append(speech.choose_voice(rng, tuple(speech_cfg.voices), tuple(speech_cfg.rate_range),
                                      tuple(speech_cfg.pitch_range)))
  timed = slots_of is not None
  spoken = speech.speak_many(texts, voices, workers=speech_cfg.workers, progress=progress,
                             timed=timed)
  records = []
  for j, (k, t) in enumerate(zip(keep, texts)):
    wave = spoken[j][0] if timed else spoken[j]
    rec = {"id": int(ids[k]), "z_index": int(z_index[k]), "image": images[k], "waveform": wave,
           "text": t, "scene": scenes[k], **{key: v[k] for key, v in extras.items()}}
    if timed:
      slots = len(extras["variant_valid"][k])
      rec["word_frames"] = edit_variants.word_frames(tags[j], spoken[j][1], slots_of[k], slots)
    records.append(rec)
  return records


def make_pairs(g, seg_predict, ids, *, seed: int, speech_cfg, relation_prob: float,
               min_pixels: int, progress: bool = True, kind: str = "prior", world_cfg=None,
               latents=None, variants: bool = False) -> tuple[list[dict], dict]:
  """Records for pair `ids` on the world `kind` (PAIRS) and counts of what was skipped.
  world_cfg: config.world (the renders' scene ids and sizes); latents [n, Z]: the inverted
  latents, row = pair id (the inverted kinds); variants: the renders' records also carry the
  oracle edits (edit_variants.variant_arrays)."""
  ids = np.asarray(ids)
  kind = check_pairs(kind)
  stats = {"generated": len(ids)}
  extras, slots_of = None, None
  if variants and kind != "renders":
    raise errors.ConfigError("--config.world.edit_variants=True needs --config.world.pairs=renders "
                             "(the renderer redraws the ground-truth scenes)")
  if kind == "prior":
    z_index = ids
    images = draw_images(g, gen_lib.standard_z(int(ids.max()) + 1, g.sizes[0])[ids])
    scenes = read_images(seg_predict, images, min_pixels)
  else:
    maps, truth, params = render_pairs(world_cfg, seed, ids)
    images = maps["image"]
    if variants:
      extras = edit_variants.variant_arrays(params, maps, truth, world_cfg.resolution, seed, ids,
                                            relation_prob)
      slots_of = scenes_lib.describe_with_slots(params, maps["object_id"])[1]
    z_index = np.full(len(ids), -1) if kind == "renders" else ids
    scenes = truth
    if kind != "renders":
      images = draw_images(g, np.asarray(latents)[ids])
      read = read_images(seg_predict, images, min_pixels)
      if kind == "inverted_parsed":
        scenes = read
      else:  # ground truth, only where the segmenter reads the same objects in G(z*)
        agree = [agrees(t, r) for t, r in zip(truth, read)]
        stats["skipped_disagree"] = int(len(ids) - sum(agree))
        scenes = [t if a else {"objects": []} for t, a in zip(truth, agree)]
  records = speak_pairs(ids, z_index, images, scenes, seed=seed, speech_cfg=speech_cfg,
                        relation_prob=relation_prob, progress=progress, extras=extras,
                        slots_of=slots_of)
  n_empty = len(ids) - len(records) - stats.get("skipped_disagree", 0)
  return records, {**stats, "parsed": len(records), "skipped_no_object": n_empty}
