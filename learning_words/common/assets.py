"""Weights shipped inside the package: the quickstart's trained generator, attribute segmenter and
the inverter (the encoder that finds the latents of renders for the ladder's L1 / L2 worlds); and
the quickstart's semantic-test negatives (`semantic_negatives/`: the edits, a few kB, that the
test otherwise searches for in about three minutes of generator and segmenter work).

Each is trained once (hours of GAN training; 15 min of segmenter or inverter training on a CPU)
and committed with a provenance.json beside them, so a fresh quickstart starts from them;
`--config.gan.retrain` / `--config.segmenter.retrain` train new ones in the workdir instead (the
inverter is used only with the generator it was trained against: see workdir.inverter_dir).
"""
import os
import shutil
import subprocess

from etils import epath

from learning_words.common import files, jsonio

ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
KINDS = ("generator", "segmenter", "inverter")


def shipped_dir(kind: str, config) -> str:
  """Where the package ships weights of `kind` for this config's resolution (may not exist)."""
  if kind not in KINDS:
    raise ValueError(f"unknown asset kind {kind!r}: one of {KINDS}")
  return os.path.join(ASSETS_DIR, f"{kind}_r{config.world.resolution}")


def shipped_semantic_negatives(name: str) -> str | None:
  """The package's copy of a semantic-test negatives file (evaluation/semantic.py names it by the
  hash of everything the negatives depend on), or None."""
  path = os.path.join(ASSETS_DIR, "semantic_negatives", name)
  return path if os.path.isfile(path) else None


def read_provenance(kind: str, config) -> dict:
  return jsonio.read_json(os.path.join(shipped_dir(kind, config), "provenance.json"))


def ship(kind: str, src: str, config, provenance: dict) -> str:
  """Copies the weights folder `src` into the package as `kind`, with provenance.json (plus the
  commit it was shipped from); returns the destination."""
  if not epath.Path(src).is_dir():
    raise FileNotFoundError(f"{src}: no trained {kind} to ship")
  dst = shipped_dir(kind, config)
  if os.path.isdir(dst):
    shutil.rmtree(dst)
  files.download(src, dst)  # a local folder or a bucket's
  commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=ASSETS_DIR if os.path.isdir(ASSETS_DIR) else None).stdout.strip()
  provenance = {"kind": kind, "resolution": config.world.resolution,
                "world_config": config.world.to_dict(), "commit": commit, **provenance}
  jsonio.write_json(os.path.join(dst, "provenance.json"), provenance)
  return dst
