"""Test setup: 8 forced CPU devices (sharding tests) and shared fixtures. pytest puts the repository
root on sys.path (tests/ is a package), so tests import `configs` presets as modules."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

# Before any jax import: tests that shard use a mesh over 8 CPU devices; the rest use one. The
# tests' programs are tiny, so compiling dominates, and the settings below trade their speed for
# compile time (users' runs keep XLA's defaults):
# - LLVM's optimisation level 0 instead of 3: 510 s of pytest against 689 s at level 1, back to
#   back on a 2-core AMD EPYC.
# - XLA's older CPU loop emitters instead of its MLIR fusion emitters compile the same programs
#   about a quarter faster (the speech-encoder tests 63 -> 43 s, the cluster-training tests
#   68 -> 50 s, at level 1).
# - Without XLA's concurrency-optimised scheduler: with it at level 0, 4 single GAN steps and the
#   same steps in one scan end up to 4% apart (at level 1, 8e-5: sums summed in another order flip
#   the signs of near-zero gradients, which Adam turns into whole steps); without it, bit for bit.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
                      "--xla_cpu_enable_concurrency_optimized_scheduler=false")
# Many tests (and the `main` subprocesses some of them start) compile the same programs: the tiny
# encoders' steps and passes at the same shapes. JAX's persistent compilation cache, one folder
# for the whole session (set here, in the process that starts the xdist workers, so they and every
# subprocess inherit it), compiles each once. A fresh folder per session: nothing carries over
# between runs, so a run's time is what a clean checkout costs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lw_test_jax_cache_")
  os.environ["LW_TEST_OWNS_JAX_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# The GCS emulator's address (the `gcs` fixture starts it), set before anything imports gcsfs,
# tensorstore or array_record, each of which reads its own variable.
GCS_URL = f"http://127.0.0.1:{_free_port()}"
os.environ.update(STORAGE_EMULATOR_HOST=GCS_URL, FSSPEC_GCS_TOKEN="anon",
                  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",  # else each bucket lookup stalls 60 s
                  TENSORSTORE_GCS_HTTP_URL=GCS_URL, CLOUD_STORAGE_EMULATOR_ENDPOINT=GCS_URL)

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import soundfile as sf  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  """A DeprecationWarning raised from the package's own code fails the test that hits it."""
  config.addinivalue_line("filterwarnings", "error::DeprecationWarning:learning_words")


def pytest_unconfigure(config):
  """The session's compilation cache goes with the process that made it."""
  del config
  owned = os.environ.get("LW_TEST_OWNS_JAX_CACHE")
  if owned and not os.environ.get("PYTEST_XDIST_WORKER"):
    shutil.rmtree(owned, ignore_errors=True)

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


class Emulator:
  """The GCS emulator (tests/_gcs_emulator_server.py) on GCS_URL's port, bucket gs://lw-test; its
  objects live in a folder, so `start` after `stop` finds them again."""

  def __init__(self, data_dir: str):
    self.data_dir, self.proc = data_dir, None  # its messages: emulator.log beside data_dir

  def start(self, die_on: str | None = None):
    args = [sys.executable, os.path.join(ROOT, "tests", "_gcs_emulator_server.py"),
            GCS_URL.rsplit(":", 1)[1], self.data_dir] + ([die_on] if die_on else [])
    with open(os.path.join(os.path.dirname(self.data_dir), "emulator.log"), "ab") as log:
      self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
    if self.proc.stdout.readline().strip() != b"ready":
      raise RuntimeError(f"the GCS emulator did not start: {args}")

  def stop(self):
    """SIGTERM (it saves its object index, then exits), SIGKILL if it does not within 10 s."""
    if self.proc is None:
      return
    if self.proc.poll() is None:
      os.kill(self.proc.pid, signal.SIGTERM)
      try:
        self.proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        os.kill(self.proc.pid, signal.SIGKILL)
    self.proc.wait()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """A running GCS emulator (bucket gs://lw-test), stopped by its pid after the module; gcsfs's
  retries on a failed request are shortened from seconds to milliseconds, so that a test of a
  bucket that went away takes no minute."""
  from gcsfs import retry  # pylint: disable=g-import-not-at-top
  emulator = Emulator(str(tmp_path_factory.mktemp("gcs")))
  emulator.start()
  real_sleep = retry.asyncio.sleep
  retry.asyncio = type(sys)("asyncio_fast_retries")
  retry.asyncio.__dict__.update({k: v for k, v in vars(__import__("asyncio")).items()
                                 if not k.startswith("__")})
  retry.asyncio.sleep = lambda seconds: real_sleep(min(seconds, 0.01))
  yield emulator
  retry.asyncio = __import__("asyncio")
  emulator.stop()
