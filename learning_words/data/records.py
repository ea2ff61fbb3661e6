"""The image / spoken-caption record shared by the synthetic and the official Audio CLEVRGAN.

One record: `id` (file id), `z_index` (row of the fixed z matrix that draws the image, == id in the
reference), `image` uint8 [R,R,3], `waveform` 16 kHz mono int16 PCM (raw bytes on disk: half the
size of float32, and what both TTS and the official recordings produce), `text` (the caption).
"""
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core import shuffle as _tfds_shuffle

from learning_words.data import audio

SAMPLE_RATE = audio.SAMPLE_RATE

# TFDS buffers a split's serialized records in memory and, past 1 GB, spills them to temporary
# files through TensorFlow's gfile, which this project does not install. Keep splits in memory up
# to 16 GB instead (the quickstart's 5,000 spoken captions are ~1.3 GB).
_tfds_shuffle.MAX_MEM_BUFFER_SIZE = max(_tfds_shuffle.MAX_MEM_BUFFER_SIZE, 16 << 30)


class Builder(tfds.core.GeneratorBasedBuilder):
  """The project's TFDS builders' base: TFDS prints "Downloading and preparing dataset ..." and
  "... downloaded and prepared" to stdout; here they go to the log."""

  def _log_download_bytes(self):
    logging.info("building %s/%s in %s", self.name, self.builder_config.name, self.data_dir)

  def _log_download_done(self):
    logging.info("built %s in %s", self.name, self.data_dir)


def make_caption_features(image_size: int, scene: bool = False) -> tfds.features.FeaturesDict:
  """Features of one image / spoken-caption record (Tensor/Text only: no TensorFlow needed);
  `scene`: with the image's ground-truth scene description (JSON text)."""
  extra = {"scene": tfds.features.Text()} if scene else {}
  return tfds.features.FeaturesDict({
      **extra,
      "id": np.int64,
      "z_index": np.int64,
      "image": tfds.features.Tensor(shape=(image_size, image_size, 3), dtype=np.uint8),
      "waveform": tfds.features.Tensor(
          shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES),
      "text": tfds.features.Text(),
  })


def encode_pcm16(wav: np.ndarray) -> np.ndarray:
  """float waveform in [-1, 1] -> int16 PCM (clipped); full scale 32768 as libsndfile's."""
  return np.clip(np.round(np.asarray(wav, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def decode_pcm16(pcm: np.ndarray) -> np.ndarray:
  """int16 PCM -> float32 waveform in [-1, 1]."""
  return pcm.astype(np.float32) / 32768.0
