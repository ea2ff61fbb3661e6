"""The image / spoken-caption record shared by the synthetic and the official Audio CLEVRGAN.

One record: `id` (file id), `z_index` (row of the fixed z matrix that draws the image, == id in the
reference), `image` uint8 [R,R,3], `waveform` 16 kHz mono int16 PCM (raw bytes on disk: half the
size of float32, and what both TTS and the official recordings produce), `text` (the caption).
"""
import numpy as np
import tensorflow_datasets as tfds

from learning_words import audio

SAMPLE_RATE = audio.SAMPLE_RATE


def make_caption_features(image_size: int) -> tfds.features.FeaturesDict:
  """Features of one image / spoken-caption record (Tensor/Text only: no TensorFlow needed)."""
  return tfds.features.FeaturesDict({
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
