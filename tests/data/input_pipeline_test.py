"""grain pipeline over the official-layout fixture: featurisation, cropping, resume, global
arrays."""
import os

import jax
import numpy as np
import pytest
import soundfile as sf

from learning_words.common import mesh as mesh_lib
from learning_words.data import audio, input_pipeline
from tests.conftest import FIXTURE_SPLITS



def _full_spec(root, i):
  wav, _ = sf.read(os.path.join(root, "audio", f"{i}.wav"), dtype="int16")
  return audio.log_mel_spectrogram(wav.astype(np.float32) / 32768)


def test_eval_batches_hold_every_record_fixed_length(data_dir, official_layout):
  root, _ = official_layout
  src = input_pipeline.open_source(data_dir, "train")
  loader = input_pipeline.make_loader(src, batch_size=4, frames=64, train=False, seed=0)
  batches = list(loader)
  assert [len(b["id"]) for b in batches] == [4, 2]  # one ordered pass, last batch partial
  ids = np.concatenate([b["id"] for b in batches])
  assert sorted(ids) == sorted(FIXTURE_SPLITS["train"])
  for b in batches:
    assert b["spec"].shape[1:] == (64, 40) and b["spec"].dtype == np.float32
    assert b["image"].shape[1:] == (16, 16, 3) and b["image"].dtype == np.uint8
    for i, spec, n in zip(b["id"], b["spec"], b["n_frames"]):
      full = _full_spec(root, i)
      assert n == min(full.shape[0], 64)
      np.testing.assert_allclose(spec[:n], full[:n], atol=1e-4)
      assert not spec[n:].any()  # zero padding past the true length


def test_train_crops_are_random_windows_of_the_full_spectrogram(data_dir, official_layout):
  root, _ = official_layout
  src = input_pipeline.open_source(data_dir, "train")
  loader = input_pipeline.make_loader(src, batch_size=2, frames=32, train=True, seed=1)
  it = iter(loader)
  offsets = []
  for _ in range(6):
    b = next(it)
    for i, spec, n in zip(b["id"], b["spec"], b["n_frames"]):
      full = _full_spec(root, i)
      assert n == 32 and full.shape[0] > 32
      diffs = [np.abs(full[o:o + 32] - spec).max() for o in range(full.shape[0] - 31)]
      offsets.append(int(np.argmin(diffs)))
      assert min(diffs) < 1e-4
  assert len(set(offsets)) > 1


def test_cached_log_mels_give_the_same_batches_and_respect_the_budget(data_dir, official_layout,
                                                                    monkeypatch):
  """Three epochs with the log-mel cache equal three without it (same seed, same crops); a
  budget of two recordings keeps two, and every crop still matches its file's spectrogram."""
  root, _ = official_layout
  src = input_pipeline.open_source(data_dir, "train")
  run = lambda gb: [next(it) for it in [iter(input_pipeline.make_loader(
      src, batch_size=2, frames=32, train=True, seed=4, cache_gb=gb))] for _ in range(9)]
  for got, want in zip(run(1.0), run(0.0)):  # 6 records, 3 batches per epoch
    for k in input_pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(got[k], want[k])
  full = {i: _full_spec(root, i) for i in FIXTURE_SPLITS["train"]}
  sizes = sorted(f.nbytes for f in full.values())
  featurise = input_pipeline.Featurise(32, train=True, cache_bytes=sizes[0] + sizes[1])
  rng = np.random.default_rng(0)
  for _ in range(2):
    for k in range(len(src)):
      out = featurise.random_map(src[k], rng)
      diffs = [np.abs(full[int(out["id"])][o:o + 32] - out["spec"]).max()
               for o in range(full[int(out["id"])].shape[0] - 31)]
      assert min(diffs) < 1e-4
  kept = featurise._specs  # pylint: disable=protected-access
  assert 1 <= len(kept) <= 2 and sum(v.nbytes for v in kept.values()) <= sizes[0] + sizes[1]
  for i, spec in kept.items():
    np.testing.assert_allclose(spec, full[i], atol=1e-4)
  # Loaders of one dataset sharing the process's cache compute each log-mel once.
  calls = []
  compute = audio.log_mel_spectrogram
  monkeypatch.setattr(audio, "log_mel_spectrogram", lambda *a, **k: calls.append(1) or compute(
      *a, **k))
  for _ in range(2):
    it = iter(input_pipeline.make_loader(src, batch_size=2, frames=32, train=True, seed=5,
                                         cache_gb=1.0, cache_name="shared-test"))
    for _ in range(3):
      next(it)
  assert len(calls) == len(src)


def test_resume_gives_exactly_the_same_next_batches(data_dir):
  src = input_pipeline.open_source(data_dir, "train")
  make = lambda: input_pipeline.make_loader(src, batch_size=2, frames=32, train=True, seed=3)
  it = iter(make())
  for _ in range(4):  # crosses an epoch boundary (6 records, 3 batches per epoch)
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  resumed = iter(make())
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for k in input_pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(got[k], want[k])


def test_shuffle_depends_on_the_seed(data_dir):
  src = input_pipeline.open_source(data_dir, "train")
  order = lambda seed: np.concatenate([next(iter(input_pipeline.make_loader(
      src, batch_size=6, frames=16, train=True, seed=seed)))["id"]])
  np.testing.assert_array_equal(order(5), order(5))
  assert any((order(s) != order(5)).any() for s in (6, 7, 8))


def test_global_arrays_are_sharded_over_the_data_axis(data_dir):
  src = input_pipeline.open_source(data_dir, "train")
  batch = next(iter(input_pipeline.make_loader(src, batch_size=4, frames=16, train=True, seed=0)))
  mesh = mesh_lib.make_mesh(jax.devices()[:4])
  arrays = input_pipeline.make_global(batch, mesh)
  for k in input_pipeline.BATCH_KEYS:
    assert arrays[k].shape == batch[k].shape
    assert len(arrays[k].sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(arrays[k]), batch[k])


def test_missing_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="build_data"):
    input_pipeline.open_source(str(tmp_path), "train")


def test_featurisation_in_worker_processes_matches_in_process(data_dir):
  src = input_pipeline.open_source(data_dir, "val")
  batches = {}
  for workers in (0, 1):
    loader = input_pipeline.make_loader(src, batch_size=2, frames=48, train=False, seed=0,
                                        worker_count=workers)
    batches[workers] = {int(i): s for b in loader for i, s in zip(b["id"], b["spec"])}
  assert sorted(batches[0]) == sorted(batches[1]) == sorted(FIXTURE_SPLITS["val"])
  for i, spec in batches[0].items():
    np.testing.assert_array_equal(batches[1][i], spec)


def test_auto_workers_leave_two_cores_to_the_step():
  assert [input_pipeline.auto_workers(c) for c in (1, 2, 3, 4, 18, 64)] == [0, 0, 1, 2, 16, 16]
  assert input_pipeline.auto_workers() == input_pipeline.auto_workers(os.cpu_count())


def test_word_spans_follow_the_crop():
  spans = np.array([[[0, 5], [10, 20]], [[-1, -1], [28, 40]], [[3, 12], [30, 31]]], np.int16)
  got = input_pipeline.crop_spans(spans, offset=8, n_frames=24)  # keeps frames 8..31
  want = [[[-1, -1], [2, 12]], [[-1, -1], [20, 24]], [[0, 4], [22, 23]]]
  np.testing.assert_array_equal(got, want)
