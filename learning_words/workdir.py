"""Every path of a workdir, and the loaders of what the stages leave there.

  WORKDIR/
    data/                 TFDS datasets: clevr_scenes (renders), audio_clevrgan (synthetic pairs,
                          one per world of the ladder) or audio_clevrgan_official;
                          world_report.{md,json} and its figures; build_<world>.json;
                          latents/<name>/ (the inverted worlds' latents, --mode=invert)
    gan/                  checkpoints/, tensorboard/, samples/, progress.json, generator_ema/
    segmenter/            checkpoints/, tensorboard/, eval.json, figures, weights/
    runs/<run>/           checkpoints/ (models, opt, data, concepts), tensorboard/, eval/
    eval_cache/           generated test material (semantic negatives), per dataset and seed
    report/               report.md, results.json, figures/
    logs/                 one log file per command (everything the terminal does not show)
    pipeline_times.json   wall time of each stage's last run

The phases' code receives folders, never the workdir: only this module knows the layout. The
generator and segmenter are the shipped ones (learning_words/assets) unless `gan.retrain` /
`segmenter.retrain`, then the workdir's.

WORKDIR is a local folder or gs://BUCKET/PATH (common/files.py). On a bucket, the TFDS datasets
are built in the local mirror of WORKDIR/data and then uploaded (`publish`); the stages read
them from that mirror, filled from the bucket's copy on first use, so every host reads locally.
"""
import os

import numpy as np
from etils import epath
from flax import nnx

from learning_words.common import assets, checkpoints, errors, files
from learning_words.convert import reference_generator as ref_gen
from learning_words.data import audio_clevrgan, clevr_scenes, official
from learning_words.models import encoders, generator as gen_lib
from learning_words.models.segmenter import Segmenter

def check(workdir: str):
  """Refuses a workdir this build cannot write: a URL other than gs://, or gs:// without the
  [gcs] extra."""
  files.check(workdir, "--workdir")


# The workdir's top-level entries (the layout above); everything else lies inside them.
ENTRIES = ("data", "gan", "segmenter", "runs", "eval_cache", "report", "logs",
           "pipeline_times.json")


def path(workdir: str, entry: str, *parts: str) -> str:
  """WORKDIR/entry/parts...: e.g. path(w, "runs", "regular") or path(w, "data",
  "world_report.json")."""
  if entry not in ENTRIES:
    raise ValueError(f"{entry!r} is not a workdir entry: one of {ENTRIES}")
  return os.path.join(workdir, entry, *parts)


def data_root(workdir: str) -> str:
  """Where the TFDS datasets are built and read: WORKDIR/data, or its local mirror for a
  gs:// workdir."""
  return os.fspath(files.mirror(path(workdir, "data")))


def _cached(workdir: str, folder: str) -> str | None:
  """A dataset folder under data_root when it is complete there, fetched from the bucket's copy
  first when only that one is (gs:// workdirs); else None. On a gs:// workdir, a local dataset
  whose bucket copy is incomplete (an upload cut off) is uploaded again, so running the same
  command repairs it; an incomplete bucket copy is never downloaded (files.download refuses it
  in one line)."""
  local = epath.Path(folder)
  cloud = files.is_cloud(workdir)
  remote = (epath.Path(path(workdir, "data")) / os.path.relpath(folder, data_root(workdir))
            if cloud else None)
  if (local / files.MARKER).is_file():
    if cloud and not files.complete_copy(remote):
      files.upload(local, remote)
    return folder
  if not cloud or not any((remote / name).exists() for name in (files.MARKER, files.MANIFEST)):
    return None
  files.download(remote, local)
  return folder


def publish(workdir: str, folder: str):
  """Uploads a dataset built under data_root (or a file there) to the bucket's WORKDIR/data
  (gs:// workdirs; nothing to do locally)."""
  if files.is_cloud(workdir):
    files.upload(folder, epath.Path(path(workdir, "data")) /
                 os.path.relpath(folder, data_root(workdir)))


def cache_dir(workdir: str, dataset: str, seed: int) -> str:
  """WORKDIR/eval_cache/<dataset>_<seed>; <dataset> names the dataset folder (builder, config,
  version), so each test set has its own cache."""
  parts = os.path.normpath(dataset).split(os.sep)[-3:]
  return path(workdir, "eval_cache", "_".join(parts + [str(seed)]))


def scenes_val_only(config, workdir: str) -> bool:
  """Whether the renders need only their val split (the world report's): the generator and the
  segmenter are at hand (shipped, converted or trained), so nothing trains on the train split,
  and no full render is there already (which is then used)."""
  full = clevr_scenes.make_builder(config, data_root(workdir)).data_dir
  if _cached(workdir, full):
    return False
  return (generator_dir(config, workdir) is not None
          and segmenter_weights_dir(config, workdir) is not None)


def scenes_dir(config, workdir: str) -> str:
  """Folder of the rendered scene dataset for this config (val split only: scenes_val_only)."""
  folder = clevr_scenes.make_builder(config, data_root(workdir),
                                     val_only=scenes_val_only(config, workdir)).data_dir
  return _cached(workdir, folder) or folder


def _weights_dir(kind: str, retrain: bool, config, trained: str) -> str | None:
  shipped = assets.shipped_dir(kind, config)
  if not retrain and os.path.isdir(shipped):
    return shipped
  return trained if epath.Path(trained).is_dir() else None


def official_generator_dir(workdir: str) -> str:
  """Where --config.gan.official_weights is converted to (convert/reference_generator.py)."""
  return path(workdir, "gan", "official")


def generator_dir(config, workdir: str) -> str | None:
  """The generator's weights the later stages use (None: neither converted, shipped nor
  trained): the converted official one when --config.gan.official_weights is set."""
  if config.gan.official_weights:
    folder = official_generator_dir(workdir)
    return folder if ref_gen.read_sizes(folder) is not None else None
  return _weights_dir("generator", config.gan.retrain, config,
                      path(workdir, "gan", "generator_ema"))


def segmenter_weights_dir(config, workdir: str) -> str | None:
  """The segmenter's weights the later stages use (None: neither shipped nor trained)."""
  return _weights_dir("segmenter", config.segmenter.retrain, config,
                      path(workdir, "segmenter", "weights"))


INVERTED = ("inverted", "inverted_parsed")  # the worlds drawn from inverted latents


def inverter_dir(config, workdir: str) -> tuple[str | None, str]:
  """(weights folder of the inverter for the generator in use, or None when there is none yet;
  where a newly trained one goes). The shipped inverter counts only when it was trained against
  this very generator (its provenance names the generator's fingerprint); a trained one lives in
  WORKDIR/data/inverter/<generator fingerprint>."""
  g_dir = generator_dir(config, workdir)
  g_print = checkpoints.fingerprint_folders(g_dir) if g_dir else "none"
  trained = path(workdir, "data", "inverter", g_print)
  shipped = assets.shipped_dir("inverter", config)
  if os.path.isdir(shipped) and assets.read_provenance("inverter", config).get(
      "generator_fingerprint") == g_print:
    return shipped, trained
  return (trained if epath.Path(trained).is_dir() else None), trained


def latents_dir(config, workdir: str) -> str | None:
  """WORKDIR/data/latents/<generator fingerprint>_<pairs>: the latents the invert stage found
  for the renders of every pair id of the inverted worlds (None: no generator)."""
  g_dir = generator_dir(config, workdir)
  if g_dir is None:
    return None
  d = config.data
  name = (f"{checkpoints.fingerprint_folders(g_dir)}_r{config.world.resolution}_s{config.seed}"
          f"_n{d.num_train + d.num_val + d.num_test}")
  return path(workdir, "data", "latents", name)


def load_latents(config, workdir: str):
  """The inverted latents [n, Z] the configured world draws its pairs from (None: the world
  does not use them); missing ones raise, naming the stage to run."""
  if config.world.pairs not in INVERTED:
    return None
  folder = latents_dir(config, workdir)
  f = epath.Path(folder or ".") / "latents.npy"
  if folder is None or not f.is_file():
    raise errors.MissingError(f"--config.world.pairs={config.world.pairs} needs the renders' "
                              "latents: run --mode=invert first (or --mode=pipeline)")
  with f.open("rb") as stream:
    return np.load(stream)


def weights_fingerprint(config, workdir: str) -> str | None:
  """What names the synthetic dataset: the generator and segmenter weights (None: either
  missing), the parser's setting that turned the segmenter's maps into captions, and the
  inverted worlds' latents."""
  g_dir, s_dir = generator_dir(config, workdir), segmenter_weights_dir(config, workdir)
  if g_dir is None or s_dir is None:
    return None
  folders = [g_dir, s_dir]
  if config.world.pairs in INVERTED:
    folders.append(latents_dir(config, workdir))
  return checkpoints.fingerprint_folders(*folders, extra=(config.world.parse_min_pixels,))


def data_source(config) -> str:
  """config.data.source, checked: 'synthetic' (built offline) or 'official'."""
  if config.data.source not in ("synthetic", "official"):
    raise errors.ConfigError(f"--config.data.source must be 'synthetic' or 'official', got "
                             f"{config.data.source!r}")
  return config.data.source


def dataset_dir(config, workdir: str) -> str | None:
  """Folder of the image / spoken-caption dataset this config trains on (None if not built)."""
  if data_source(config) == "official":
    folder = official.make_builder(config, data_root(workdir)).data_dir
  else:
    fingerprint = weights_fingerprint(config, workdir)
    if fingerprint is None:
      return None
    folder = audio_clevrgan.make_builder(config, data_root(workdir), fingerprint).data_dir
  return _cached(workdir, folder)


def require_dataset(config, workdir: str) -> str:
  folder = dataset_dir(config, workdir)
  if folder is None:
    raise errors.MissingError(f"{workdir}: no image / spoken-caption dataset for this config: run "
                              "--mode=build_data first (or --mode=pipeline)")
  return folder


def load_generator(config, workdir: str) -> gen_lib.Generator:
  """The frozen generator that draws positives and negatives."""
  folder = generator_dir(config, workdir)
  if folder is None:
    raise errors.MissingError("no generator: run --mode=train_gan (or --mode=pipeline "
                              "--config.gan.retrain=True) first")
  sizes = ref_gen.read_sizes(folder) or config.gan.sizes  # a converted file's own widths
  return checkpoints.restore_weights(lambda: gen_lib.Generator(sizes, rngs=nnx.Rngs(0)), folder,
                                     key=f"generator {sizes!r}")


def load_segmenter(config, workdir: str, required: bool = True) -> Segmenter | None:
  """The attribute segmenter in eval mode (None when there is none and not `required`)."""
  folder = segmenter_weights_dir(config, workdir)
  if folder is None:
    if not required:
      return None
    raise errors.MissingError("no attribute segmenter: run --mode=train_segmenter (or "
                              "--mode=pipeline) first")
  widths = tuple(config.segmenter.widths)
  seg = checkpoints.restore_weights(lambda: Segmenter(widths, rngs=nnx.Rngs(0)), folder,
                                    key=f"segmenter {widths!r}")
  seg.eval()
  return seg


def list_runs(workdir: str) -> list[str]:
  """Names of the runs under WORKDIR/runs that have checkpoints (a run stopped before its first
  save has none yet)."""
  root = epath.Path(path(workdir, "runs"))
  if not root.is_dir():
    return []
  saved = lambda r: (r / "checkpoints").is_dir() and any(
      p.name.isdigit() for p in (r / "checkpoints").iterdir())
  return sorted(r.name for r in root.iterdir() if saved(r))


def checkpoint_folder(which: str) -> tuple[str, int] | None:
  """(run folder, step) of a checkpoint folder's path RUN/checkpoints/STEP; None for 'best',
  'latest' or a step number."""
  which = str(which)
  if which in ("best", "latest") or which.isdigit():
    return None
  folder = os.fspath(files.absolute(which.rstrip("/")))
  step, parent = os.path.basename(folder), os.path.dirname(folder)
  if not (step.isdigit() and os.path.basename(parent) == "checkpoints"
          and epath.Path(folder).is_dir()):
    raise errors.ConfigError(f"--config.evals.checkpoint={which}: give 'best', 'latest', a kept "
                             "step number or a checkpoint folder's path (RUN/checkpoints/STEP)")
  return os.path.dirname(parent), int(step)


def eval_folder(run_folder: str, which: str = "best") -> str:
  """Where a run's evaluation of checkpoint `which` is kept: eval/ for the best one, eval_latest/
  or eval_step<N>/ for others, so evaluating another checkpoint never replaces (or mixes with)
  the best one's numbers."""
  which = str(which)
  given = checkpoint_folder(which)
  if given is not None:
    which = str(given[1])
  return os.path.join(run_folder, "eval" if which == "best" else
                      f"eval_step{which}" if which.isdigit() else f"eval_{which}")


def load_encoders(config, run_folder: str, which: str):
  """(encoders.Encoders, step) of a run's best or latest checkpoint, of the kept checkpoint at a
  given step (`which` a step number, e.g. '624'), or of a checkpoint folder's path (then
  run_folder is ignored), from its 'models' item."""
  manager, step = checkpoint_step(config, run_folder, which)
  models = checkpoints.abstract_module(
      lambda: encoders.Encoders(config.model, rngs=nnx.Rngs(0)),
      "encoders " + config.model.to_json_best_effort(sort_keys=True))
  checkpoints.restore(manager, {"models": models}, step)
  return models, int(step)


def checkpoint_step(config, run_folder: str, which: str):
  """(checkpoint manager, step) of the checkpoint load_encoders reads, without reading it."""
  which = str(which)
  given = checkpoint_folder(which)
  if given is not None:
    run_folder, step = given
    which = str(step)
  folder = os.path.join(run_folder, "checkpoints")
  if not epath.Path(folder).is_dir():
    raise errors.MissingError(f"{folder}: no checkpoints; train the run first (--mode=train)")
  manager = checkpoints.make_manager(folder, int(config.train.keep_checkpoints),
                                     best_metric="score")
  if which.isdigit():
    step = int(which)
    if step not in manager.all_steps():
      raise errors.MissingError(f"{folder}: no checkpoint at step {step}; kept steps: "
                                f"{sorted(manager.all_steps())}")
  else:
    step = manager.best_step() if which == "best" else manager.latest_step()
  if step is None:
    raise errors.MissingError(f"{folder}: no {which} checkpoint")
  return manager, int(step)
