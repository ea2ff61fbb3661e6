"""`audio_clevrgan_official`: the official Audio CLEVRGAN files, read through TFDS `manual_dir`.

Expected layout (the variant's folder, or its parent holding `natural/` and `synth/`):
  name_list_{train,val,test}.txt   one id per line
  audio/<id>.wav  images/<id>.jpg  text/<id>.txt
File id == z index (the image is G(z_id)). Bad files raise an error naming the file and the
problem, or with `on_bad_audio='skip'` are skipped and counted (never replaced by zeros).
"""
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from learning_words.common import errors, jsonio
from learning_words.data import audio, records

SPLITS = ("train", "val", "test")


class DataError(errors.InputError):
  """A file of the official layout is missing or unreadable; the message names it."""


class OfficialConfig(tfds.core.BuilderConfig):
  """Caption variant ('natural' or 'synth'), stored image size and the bad-file policy."""

  def __init__(self, *, variant, image_size, on_bad_audio):
    if variant not in ("natural", "synth"):
      raise errors.ConfigError("--config.data.official_variant must be 'natural' or 'synth', "
                               f"got {variant!r}")
    if on_bad_audio not in ("error", "skip"):
      raise errors.ConfigError("--config.data.on_bad_audio must be 'error' or 'skip', "
                               f"got {on_bad_audio!r}")
    super().__init__(name=f"{variant}_r{image_size}_{on_bad_audio}")
    self.variant = variant
    self.image_size = image_size
    self.on_bad_audio = on_bad_audio


def find_root(manual_dir: str, variant: str) -> str:
  """The folder holding name_list_train.txt: `manual_dir` itself or `manual_dir/variant`."""
  for root in (os.path.join(manual_dir, variant), manual_dir):
    if os.path.isfile(os.path.join(root, "name_list_train.txt")):
      return root
  raise DataError(
      f"no name_list_train.txt in {manual_dir!r} or {os.path.join(manual_dir, variant)!r}: "
      "--config.data.official_dir must point at the official Audio CLEVRGAN layout")


def read_example(root: str, file_id: str, image_size: int) -> dict:
  """Loads one id's image, audio and text; raises DataError / AudioError naming the bad file."""
  paths = {kind: os.path.join(root, kind, f"{file_id}.{ext}")
           for kind, ext in (("audio", "wav"), ("images", "jpg"), ("text", "txt"))}
  for kind in ("images", "text"):
    if not os.path.isfile(paths[kind]):
      raise DataError(f"{paths[kind]}: id {file_id} is listed but the file does not exist")
  wav = audio.load_wav(paths["audio"])
  try:
    with Image.open(paths["images"]) as im:
      img = im.convert("RGB")
      if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BICUBIC)
      image = np.asarray(img, dtype=np.uint8)
  except OSError as e:
    raise DataError(f"{paths['images']}: not a readable image ({e})") from e
  with open(paths["text"], encoding="utf-8") as f:
    text = f.read().strip()
  return {"id": int(file_id), "z_index": int(file_id), "image": image,
          "waveform": records.encode_pcm16(wav), "text": text}


class AudioClevrganOfficial(records.Builder):
  """Official image / spoken-caption pairs, re-encoded as ArrayRecord."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Copy the official Audio CLEVRGAN folder and pass it as --config.data.official_dir.")

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    # {"split", "id", "reason"} of each file skipped under on_bad_audio='skip'
    self.skipped = []

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, features=records.make_caption_features(self.builder_config.image_size))

  def _split_generators(self, dl_manager):
    root = find_root(str(dl_manager.manual_dir), self.builder_config.variant)
    return {split: self._generate_examples(root, split) for split in SPLITS
            if os.path.isfile(os.path.join(root, f"name_list_{split}.txt"))}

  def _generate_examples(self, root, split):
    with open(os.path.join(root, f"name_list_{split}.txt")) as f:
      ids = [line.strip() for line in f if line.strip()]
    for file_id in ids:
      try:
        yield int(file_id), read_example(root, file_id, self.builder_config.image_size)
      except (DataError, audio.AudioError) as e:
        if self.builder_config.on_bad_audio != "skip":
          raise type(e)(f"{e}. Fix or remove the file, or pass --config.data.on_bad_audio=skip "
                        "to skip bad files") from e
        self.skipped.append({"split": split, "id": file_id, "reason": str(e)})
        logging.warning("skipping id %s of %s: %s", file_id, split, e)


def make_builder(config, data_dir: str) -> AudioClevrganOfficial:
  """The builder for `config.data` under `data_dir` (WORKDIR/data)."""
  d = config.data
  return AudioClevrganOfficial(
      config=OfficialConfig(variant=d.official_variant, image_size=d.image_size,
                            on_bad_audio=d.on_bad_audio),
      data_dir=data_dir, file_format="array_record")


def prepare(config, data_dir: str) -> AudioClevrganOfficial:
  """Builds the dataset from `config.data.official_dir` (a no-op when it exists) and logs skips."""
  if not config.data.official_dir:
    raise DataError("--config.data.official_dir is empty: set it to the official Audio CLEVRGAN "
                    "root")
  builder = make_builder(config, data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=config.data.official_dir))
  if builder.skipped:
    logging.warning("skipped %d bad ids (on_bad_audio=skip): %s", len(builder.skipped),
                    json.dumps(builder.skipped[:20]))
    jsonio.write_json(os.path.join(builder.data_dir, "skipped.json"), builder.skipped)
  return builder
