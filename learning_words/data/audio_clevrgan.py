"""`audio_clevrgan`: the synthetic Audio CLEVRGAN, in the official dataset's record format.

Splits are id ranges: train [0, n_train), val [n_train, n_train + n_val), test after that. Ids whose
generated image holds no parsed object are skipped (counted in WORKDIR/data/world_report.json).
The config name carries a fingerprint of the generator and segmenter weights (of their folders:
checkpoints.fingerprint_folders), so a new generator never reuses stale pairs.
"""
import tensorflow_datasets as tfds

from learning_words.data import records


class AudioClevrganConfig(tfds.core.BuilderConfig):
  """Sizes of the splits, the seed, and the fingerprint of the models that drew and read them."""

  def __init__(self, *, resolution, num_train, num_val, num_test, seed, fingerprint):
    super().__init__(name=f"r{resolution}_n{num_train}_{num_val}_{num_test}_s{seed}_{fingerprint}")
    self.resolution = resolution
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
    return tfds.core.DatasetInfo(
        builder=self, features=records.make_caption_features(self.builder_config.resolution))

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split, start, num)
            for split, (start, num) in self.builder_config.splits.items()}

  def _generate_examples(self, split, start, num):
    recs, stats = self.make_split(start, num)
    self.stats[split] = stats
    for r in recs:
      yield r["id"], {"id": r["id"], "z_index": r["z_index"], "image": r["image"],
                      "waveform": records.encode_pcm16(r["waveform"]), "text": r["text"]}


def make_builder(config, data_dir: str, weights_fingerprint: str,
                 make_split=None) -> AudioClevrgan:
  """The builder for `config.data` under `data_dir` (WORKDIR/data); `make_split` to build it."""
  d = config.data
  return AudioClevrgan(
      config=AudioClevrganConfig(
          resolution=config.world.resolution, num_train=d.num_train, num_val=d.num_val,
          num_test=d.num_test, seed=config.seed, fingerprint=weights_fingerprint),
      make_split=make_split, data_dir=data_dir, file_format="array_record")
