"""tfds data source -> grain -> per-host batches -> global jax.Arrays.

Featurisation (waveform -> log-mel spectrogram, random crop for training, fixed length for
evaluation) runs in grain's map, i.e. in its worker processes when `worker_count > 0`. Each host
reads its own shard (`ShardByJaxProcess`), and `make_global` assembles the per-host batches into
arrays sharded over the mesh's `data` axis. The iterator's `get_state()` / `set_state()` resume
exactly (saved with the Orbax checkpoint by the train loop).
"""
import json
import os

import grain
from absl import flags
import jax
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from learning_words.common import errors, mesh as mesh_lib
from learning_words.data import audio, audio_clevrgan, records

# What a batch carries; strings (captions) stay in the dataset, they are not device data. Records
# with oracle edits (audio_clevrgan.VARIANT_KEYS) carry those too.
BATCH_KEYS = ("id", "z_index", "image", "spec", "n_frames")
OPTIONAL_KEYS = audio_clevrgan.VARIANT_KEYS


class LogMels(dict):
  """Record id -> its whole recording's log-mel, with the bytes held (Featurise's cache)."""

  def __init__(self):
    super().__init__()
    self.nbytes = 0


_SHARED_LOG_MELS: dict[str, LogMels] = {}


def shared_log_mels(name: str) -> LogMels:
  """The process's log-mel cache for the dataset `name` (its folder): the runs trained one after
  another in one process (the pipeline's train stage) featurise each recording once."""
  return _SHARED_LOG_MELS.setdefault(name, LogMels())


def release_log_mels():
  """Frees every shared log-mel cache (after training)."""
  _SHARED_LOG_MELS.clear()


class Featurise(grain.transforms.RandomMap):
  """Record -> {id, z_index, image, spec [frames, 40], n_frames}; random crop when `train`.

  Training reads every caption once per epoch, and its log-mel (the whole recording, before the
  crop) does not change: the first `cache_bytes` of them are kept by record id (in `cache`, which
  several loaders of one dataset may share), so later epochs only crop. The cached arrays are the
  computed ones, so results do not depend on the cache.
  """

  def __init__(self, frames: int, train: bool, cache_bytes: int = 0,
               cache: LogMels | None = None):
    self.frames = frames
    self.train = train
    self.cache_bytes = cache_bytes
    self._specs = LogMels() if cache is None else cache

  def log_mel(self, element) -> np.ndarray:
    key = int(element["id"])
    spec = self._specs.get(key)
    if spec is None:
      spec = audio.log_mel_spectrogram(records.decode_pcm16(np.asarray(element["waveform"])))
      if self._specs.nbytes + spec.nbytes <= self.cache_bytes:
        self._specs[key] = spec
        self._specs.nbytes += spec.nbytes
    return spec

  def random_map(self, element, rng: np.random.Generator):
    spec = self.log_mel(element)
    offset = 0
    if self.train and spec.shape[0] > self.frames:
      offset = int(rng.integers(0, spec.shape[0] - self.frames + 1))
    spec, n_frames = audio.pad_or_crop(spec, self.frames, offset)
    out = {"id": np.int64(element["id"]), "z_index": np.int64(element["z_index"]),
           "image": np.asarray(element["image"], np.uint8), "spec": spec,
           "n_frames": np.int32(n_frames),
           **{k: np.asarray(element[k]) for k in OPTIONAL_KEYS if k in element}}
    if "word_frames" in out:
      out["word_frames"] = crop_spans(out["word_frames"], offset, n_frames)
    return out


def crop_spans(spans, offset: int, n_frames: int) -> np.ndarray:
  """Frame spans [..., 2] ([start, end), -1: none) of a recording -> the same spans in the crop
  that keeps its frames [offset, offset + n_frames): shifted and clipped; -1 where none is left."""
  spans = np.asarray(spans)
  start = np.clip(spans[..., 0].astype(np.int32) - offset, 0, n_frames)
  end = np.clip(spans[..., 1].astype(np.int32) - offset, 0, n_frames)
  keep = (spans[..., 0] >= 0) & (end > start)
  return np.where(keep[..., None], np.stack([start, end], -1), -1).astype(np.int16)


def open_source(data_dir: str, split: str):
  """Random-access source over a built dataset folder (the one holding dataset_info.json; on a
  bucket too, one ranged read per record)."""
  if not (epath.Path(data_dir) / "dataset_info.json").is_file():
    raise errors.MissingError(f"{data_dir}: no dataset here (dataset_info.json missing); "
                            "build it first with --mode=build_data")
  return tfds.builder_from_directory(data_dir).as_data_source(split)


# Records are read from local files (a bucket's dataset is mirrored first, workdir.dataset_dir):
# grain's defaults (16 threads, 500 records read ahead) suit remote disks, and on a 2-core CPU
# polling that read-ahead cost more than the reads (batches of 32 from the kept log-mels: 0.075 to
# 0.083 s with the defaults, 0.036 to 0.043 s with these).
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=64)


def auto_workers(cores: int | None = None) -> int:
  """grain workers for `data.worker_count=-1`: none up to 2 cores (on a 2-core CPU a worker made
  the loader slower: 163 records/s against 208 in process, as the step's threads and the worker
  share the cores), else one per core beyond two, at most 16."""
  cores = (os.cpu_count() or 1) if cores is None else cores
  return 0 if cores <= 2 else min(cores - 2, 16)


def make_loader(source, *, batch_size: int, frames: int, train: bool, seed: int,
                worker_count: int = 0, cache_gb: float = 0.0,
                cache_name: str | None = None) -> grain.DataLoader:
  """Per-host loader: seeded shuffle (train), this host's shard, featurise, batch.

  `batch_size` is the GLOBAL batch; each of the jax.process_count() hosts loads its share.
  Training repeats forever and drops the last partial batch; evaluation is one ordered pass.
  cache_gb: log-mels kept across epochs (Featurise), shared out among the worker processes.
  cache_name: with no worker processes, the log-mels are kept in the process's cache of that name
  (shared_log_mels: later loaders of the same dataset reuse them).
  worker_count: grain worker processes; -1 picks them from the host's cores (auto_workers).
  """
  hosts = jax.process_count()
  worker_count = auto_workers() if worker_count < 0 else worker_count
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags; outside app.run use defaults
  if batch_size % hosts:
    raise errors.ConfigError(f"--config.data.batch_size={batch_size} is not divisible by "
                             f"{hosts} hosts")
  sampler = grain.samplers.IndexSampler(
      num_records=len(source),
      shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
      shuffle=train, num_epochs=None if train else 1, seed=seed)
  return grain.DataLoader(
      data_source=source, sampler=sampler, read_options=READ_OPTIONS,
      operations=[Featurise(frames, train, int(cache_gb * 2**30) // max(worker_count, 1),
                            shared_log_mels(cache_name) if cache_name and not worker_count
                            else None),
                  grain.transforms.Batch(batch_size // hosts, drop_remainder=train)],
      worker_count=worker_count)


def make_global(batch: dict, mesh: jax.sharding.Mesh) -> dict:
  """Per-host numpy batch -> global jax.Arrays sharded over the mesh's 'data' axis."""
  sharding = mesh_lib.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k]))
          for k in _keys(batch)}


def _keys(batch: dict) -> tuple:
  return BATCH_KEYS + tuple(k for k in OPTIONAL_KEYS if k in batch)


def load_eval_arrays(data_dir: str, split: str, frames: int, limit: int) -> dict:
  """The first `limit` pairs of a split (ordered; this host's share), featurised at `frames`."""
  src = open_source(data_dir, split)
  loader = make_loader(src, batch_size=jax.process_count(), frames=frames, train=False, seed=0)
  rows = []
  for b in loader:
    rows.append(b)
    if sum(len(r["id"]) for r in rows) >= limit:
      break
  return {k: np.concatenate([r[k] for r in rows])[:limit] for k in _keys(rows[0])}


def load_scenes(data_dir: str, split: str, ids) -> list[dict] | None:
  """The ground-truth scene descriptions of the pairs `ids` of a split, where the dataset stores
  them (the ground-truth-captioned worlds), else None."""
  src = open_source(data_dir, split)
  if "scene" not in tfds.builder_from_directory(data_dir).info.features:
    return None
  wanted, by_id = {int(i) for i in ids}, {}
  for start in range(0, len(src), 256):  # in chunks, until every wanted id is read
    for r in src.__getitems__(list(range(start, min(start + 256, len(src))))):
      by_id[int(r["id"])] = r["scene"]
    if wanted <= by_id.keys():
      break
  decode = lambda s: json.loads(s.decode() if isinstance(s, bytes) else str(s))
  return [decode(by_id[int(i)]) for i in ids]
