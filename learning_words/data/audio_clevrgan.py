"""`audio_clevrgan`: the synthetic Audio CLEVRGAN, in the official dataset's record format.

Splits are id ranges: train [0, n_train), val [n_train, n_train + n_val), test after that. Ids whose
image holds no object are skipped (counted in WORKDIR/data/world_report.json). The config name
carries the world (`world.pairs`, world/pairs.py; the reference's prior samples keep the plain
name) and a fingerprint of the weights that drew and read the pairs (checkpoints.fingerprint_folders),
so a new generator never reuses stale pairs. The ground-truth-captioned worlds also store each
pair's scene description (`scene`, JSON), which the word test then uses as labels. With
`world.edit_variants` the renders' records also carry the oracle edits (world/edit_variants.py;
VARIANT_FEATURES) and the folder's name ends in `_variants`.
"""
import json

import numpy as np
import tensorflow_datasets as tfds

from learning_words.data import records
from learning_words.data.vocabulary import ATTRIBUTES


VARIANT_KEYS = ("variants", "variant_valid", "changed", "null_variants", "null_valid",
                "object_masks", "word_frames")
TRUTH_PAIRS = ("renders", "inverted")  # captions from the ground truth: scenes are stored


def variant_features(resolution: int, slots: int) -> dict:
  """The oracle edits of a record (world/edit_variants.variant_arrays), one row per object slot,
  and where each slot's attribute words are spoken (`word_frames`, log-mel frames [start, end))."""
  image = lambda: tfds.features.Tensor(shape=(slots, resolution, resolution, 3), dtype=np.uint8)
  flags = lambda dtype: tfds.features.Tensor(shape=(slots,), dtype=dtype)
  return {"variants": image(), "variant_valid": flags(np.uint8), "changed": flags(np.int8),
          "null_variants": image(), "null_valid": flags(np.uint8),
          "object_masks": tfds.features.Tensor(shape=(slots, resolution, resolution),
                                               dtype=np.uint8),
          "word_frames": tfds.features.Tensor(shape=(slots, len(ATTRIBUTES), 2), dtype=np.int16)}


class AudioClevrganConfig(tfds.core.BuilderConfig):
  """Sizes of the splits, the seed, and the fingerprint of the models that drew and read them."""

  def __init__(self, *, resolution, num_train, num_val, num_test, seed, fingerprint,
               pairs="prior", variant_slots=0):
    world = "" if pairs == "prior" else f"_{pairs}"
    world += "_variants" if variant_slots else ""
    # 1.1.0: the oracle edits gained `word_frames`; the other worlds' records are unchanged.
    super().__init__(
        name=f"r{resolution}_n{num_train}_{num_val}_{num_test}_s{seed}{world}_{fingerprint}",
        version="1.1.0" if variant_slots else "1.0.0")
    self.resolution = resolution
    self.with_scene = pairs in TRUTH_PAIRS
    self.variant_slots = variant_slots
    self.splits = {"train": (0, num_train), "val": (num_train, num_val),
                   "test": (num_train + num_val, num_test)}
    self.seed = seed


class AudioClevrgan(records.Builder):
  """Built by `pairs.make_pairs`, which the caller passes as `make_split(start, num) -> records`."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, make_split=None, **kwargs):
    super().__init__(**kwargs)
    self.make_split = make_split
    self.stats = {}

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    features = records.make_caption_features(cfg.resolution, cfg.with_scene)
    if cfg.variant_slots:
      features = tfds.features.FeaturesDict(
          {**features, **variant_features(cfg.resolution, cfg.variant_slots)})
    return tfds.core.DatasetInfo(builder=self, features=features)

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split, start, num)
            for split, (start, num) in self.builder_config.splits.items()}

  def _generate_examples(self, split, start, num):
    recs, stats = self.make_split(start, num)
    self.stats[split] = stats
    for r in recs:
      out = {"id": r["id"], "z_index": r["z_index"], "image": r["image"],
             "waveform": records.encode_pcm16(r["waveform"]), "text": r["text"]}
      if self.builder_config.with_scene:
        out["scene"] = json.dumps(r["scene"])
      if self.builder_config.variant_slots:
        out.update({key: r[key] for key in VARIANT_KEYS})
      yield r["id"], out


def make_builder(config, data_dir: str, weights_fingerprint: str,
                 make_split=None) -> AudioClevrgan:
  """The builder for `config.data` under `data_dir` (WORKDIR/data); `make_split` to build it."""
  d = config.data
  return AudioClevrgan(
      config=AudioClevrganConfig(
          resolution=config.world.resolution, num_train=d.num_train, num_val=d.num_val,
          num_test=d.num_test, seed=config.seed, fingerprint=weights_fingerprint,
          pairs=config.world.pairs,
          variant_slots=config.world.max_objects if config.world.get("edit_variants") else 0),
      make_split=make_split, data_dir=data_dir, file_format="array_record")
