"""Image / spoken-caption pairs of the synthetic Audio CLEVRGAN: G(z_i) -> read -> caption -> speak.

The image of id i is G(z_i) with z_i the reference's fixed z row (generator.standard_z), so it is
re-created from the id at train time. The attribute segmenter reads each generated image, parse
turns its maps into a scene description, captions.caption writes it and eSpeak NG speaks it with
a voice drawn from (seed, id). Images where nothing is parsed are skipped and counted.
"""
import jax.numpy as jnp
import numpy as np
from flax import nnx

from learning_words.common import figures
from learning_words.models import generator as gen_lib
from learning_words.world import captions, parse, speech


def draw_images(g, z: np.ndarray, batch: int = 256) -> np.ndarray:
  """uint8 [N, R, R, 3] images G(z), batched and jitted."""
  draw = nnx.jit(lambda g, z: g(z))
  return np.concatenate([figures.to_uint8(draw(g, jnp.asarray(z[i:i + batch])))
                         for i in range(0, len(z), batch)])


def read_images(seg_predict, images: np.ndarray, min_pixels: int) -> list[dict]:
  """Scene descriptions of uint8 images [N,R,R,3]: the segmenter's label maps, parsed."""
  return parse.parse(seg_predict(images), min_pixels)


def make_pairs(g, seg_predict, ids, *, seed: int, speech_cfg, relation_prob: float,
               min_pixels: int, progress: bool = True) -> tuple[list[dict], dict]:
  """Records (id, z_index, image, waveform float32, text) for `ids` and counts of what was
  skipped."""
  ids = np.asarray(ids)
  z = gen_lib.standard_z(int(ids.max()) + 1, g.sizes[0])[ids]
  images = draw_images(g, z)
  scenes = read_images(seg_predict, images, min_pixels)
  keep = [k for k, s in enumerate(scenes) if s["objects"]]
  texts, voices = [], []
  for k in keep:
    rng = np.random.default_rng([seed, int(ids[k])])
    texts.append(captions.caption(scenes[k], rng, relation_prob))
    voices.append(speech.choose_voice(rng, tuple(speech_cfg.voices), tuple(speech_cfg.rate_range),
                                      tuple(speech_cfg.pitch_range)))
  waves = speech.speak_many(texts, voices, workers=speech_cfg.workers, progress=progress)
  records = [{"id": int(ids[k]), "z_index": int(ids[k]), "image": images[k], "waveform": w,
              "text": t, "scene": scenes[k]} for k, t, w in zip(keep, texts, waves)]
  return records, {"generated": len(ids), "parsed": len(keep),
                   "skipped_no_object": len(ids) - len(keep)}
