"""Test setup: 8 forced CPU devices (sharding tests) and shared fixtures. pytest puts the repository
root on sys.path (tests/ is a package), so tests import `configs` presets as modules."""
import os

# Before any jax import: tests that shard use a mesh over 8 CPU devices; the rest use one. The
# tests' programs are tiny, so compiling dominates: LLVM's optimisation level 1 instead of 3
# takes the suite from about 660 to 500 s on 2 cores. (Level 0 is faster still, but its code
# gave NaN losses in a segmenter training test.)
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=1")

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import soundfile as sf  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  """A DeprecationWarning raised from the package's own code fails the test that hits it."""
  config.addinivalue_line("filterwarnings", "error::DeprecationWarning:learning_words")

FIXTURE_SPLITS = {"train": [3, 5, 8, 13, 21, 34], "val": [40, 41], "test": [50, 51]}
FIXTURE_WORDS = ("red", "blue", "shiny", "matte", "ball", "cube", "small", "big", "cyan", "metal")


def write_official_layout(root: str, image_size: int = 16) -> dict:
  """Writes a small official-layout Audio CLEVRGAN (TTS audio) under root; returns id -> entry."""
  from learning_words.world import speech  # pylint: disable=g-import-not-at-top
  for sub in ("audio", "images", "text"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  rng = np.random.default_rng(0)
  entries = {}
  for split, ids in FIXTURE_SPLITS.items():
    with open(os.path.join(root, f"name_list_{split}.txt"), "w") as f:
      f.write("\n".join(str(i) for i in ids) + "\n")
    for i in ids:
      words = rng.choice(FIXTURE_WORDS, size=2 + i % 4)
      text = "there is a " + " ".join(words) + "."
      wav = speech.speak(text)
      colour = rng.integers(0, 256, size=3).astype(np.uint8)
      image = np.broadcast_to(colour, (image_size, image_size, 3)).copy()
      Image.fromarray(image).save(os.path.join(root, "images", f"{i}.jpg"), quality=95)
      sf.write(os.path.join(root, "audio", f"{i}.wav"), wav, 16000, subtype="PCM_16")
      with open(os.path.join(root, "text", f"{i}.txt"), "w") as f:
        f.write(text + "\n")
      entries[i] = {"split": split, "text": text}
  return entries


@pytest.fixture(scope="session")
def official_layout(tmp_path_factory):
  """(root, entries) of a fixture in the official layout, written once per test process."""
  root = str(tmp_path_factory.mktemp("official") / "synth")
  return root, write_official_layout(root)


@pytest.fixture(scope="session")
def data_dir(official_layout, tmp_path_factory):
  """The official-layout fixture built as a TFDS dataset (tiny config); returns its folder."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from learning_words.data import official  # pylint: disable=g-import-not-at-top
  root, _ = official_layout
  c = tiny.get_config()
  c.data.source, c.data.official_dir = "official", root
  return official.prepare(c, str(tmp_path_factory.mktemp("official_data"))).data_dir
