"""common/: periodic actions, batching, JSON files and checkpoints, against plain loops and
hand-computed values."""
import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from learning_words.common import batching, checkpoints, jsonio, periodic


def test_itstime_is_the_loops_old_rules():
  for every in (1, 3, 5, 16):
    for total in (1, 7, 16, 40):
      for done in range(1, total + 1):
        # Loops that advance one step: `done % every == 0 or done == total`.
        assert periodic.itstime(done, every, total) == (done % every == 0 or done == total)
        # Chunked loops (the GAN's): a multiple of every in (prev, done], or the end.
        for prev in range(done):
          crossed = any(m % every == 0 for m in range(prev + 1, done + 1)) or done == total
          assert periodic.itstime(done, every, total, prev=prev) == crossed
  assert periodic.itstime(10, 5) and not periodic.itstime(11, 5)  # no total: multiples only
  assert not periodic.itstime(3, 0, 10) and periodic.itstime(10, 0, 10)  # every 0: the end only


@pytest.mark.parametrize("n,batch", [(7, 3), (6, 3), (1, 4)])
def test_map_batches_equals_a_plain_loop(n, batch):
  x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
  y = np.arange(n, dtype=np.int32)
  calls = []

  def fn(i, a, b):
    calls.append((i, a.shape[0]))
    return {"sum": a.sum(-1) + b, "batch": jnp.full(a.shape[0], i)}

  out = batching.map_batches(fn, (x, y), batch, indexed=True)
  want = [x[k].sum() + y[k] for k in range(n)]  # one row at a time
  np.testing.assert_array_equal(np.asarray(out["sum"]), want)
  np.testing.assert_array_equal(np.asarray(out["batch"]), [k // batch for k in range(n)])
  assert all(size == batch for _, size in calls)  # every call has the full shape (padded)
  assert [i for i, _ in calls] == list(range(-(-n // batch)))


def test_batch_indices_depend_on_seed_and_step_only():
  a = batching.batch_indices(3, 10, 100, 8)
  np.testing.assert_array_equal(a, np.random.default_rng([3, 10]).integers(0, 100, size=8))
  np.testing.assert_array_equal(batching.host_batch_indices(3, 10, 100, 8), a)  # one host


def test_json_values_are_made_plain_and_writes_leave_no_temporary(tmp_path):
  path = str(tmp_path / "sub" / "f.json")
  obj = {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), 4: [np.int64(2), True],
         "d": (np.bool_(False), math.inf)}
  jsonio.write_json(path, obj)
  with open(path) as f:
    assert json.load(f) == {"a": 1.5, "b": [0, 1, 2], "c": None, "4": [2, True],
                            "d": [False, None]}
  assert os.listdir(tmp_path / "sub") == ["f.json"]
  assert jsonio.read_json(str(tmp_path / "none.json")) == {}
  assert jsonio.read_json(str(tmp_path / "none.json"), []) == []


class _Net(nnx.Module):

  def __init__(self, seed: int):
    self.dense = nnx.Linear(3, 2, rngs=nnx.Rngs(seed))
    self.norm = nnx.BatchNorm(2, rngs=nnx.Rngs(seed))


def _leaves(module):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.state(module))]


def test_manager_items_round_trip_and_keep_the_best(tmp_path):
  manager = checkpoints.make_manager(str(tmp_path / "ckpt"), keep=1, best_metric="score")
  a, arrays = _Net(0), {"x": np.arange(4, dtype=np.int32)}
  checkpoints.save(manager, 1, {"net": a, "arrays": arrays}, metrics={"score": 0.9})
  b = _Net(1)
  checkpoints.save(manager, 2, {"net": b}, metrics={"score": 0.1})
  manager.wait_until_finished()
  assert manager.best_step() == 1 and manager.latest_step() == 2 and manager.all_steps() == [1, 2]
  fresh = _Net(2)
  assert checkpoints.restore(manager, {"net": fresh}) == 2  # the latest by default
  for x, y in zip(_leaves(fresh), _leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert checkpoints.restore(manager, {"net": fresh}, step=1) == 1
  for x, y in zip(_leaves(fresh), _leaves(a)):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(checkpoints.restore_arrays(manager, 1, "arrays")["x"], arrays["x"])
  assert checkpoints.restore_arrays(manager, 2, "arrays") is None
  empty = checkpoints.make_manager(str(tmp_path / "empty"))
  assert checkpoints.restore(empty, {"net": fresh}) == 0


def test_small_replicated_arrays_are_saved_whole_large_ones_by_replica(tmp_path, monkeypatch):
  # Over 8 devices a replicated weight is saved by one replica when its share per replica is under
  # REPLICA_PARALLEL_MIN_BYTES (no slice cut on the device), in 8 slices (one per replica) when
  # its share reaches it; both come back equal to what was saved.
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  cuts = []
  real = jax.lax.slice_in_dim
  monkeypatch.setattr(jax.lax, "slice_in_dim", lambda *a, **k: cuts.append(1) or real(*a, **k))
  replicated = NamedSharding(Mesh(np.array(jax.devices()[:8]), ("data",)), P())
  big_rows = 8 * checkpoints.REPLICA_PARALLEL_MIN_BYTES // (4 * 64)  # 8 shares of the minimum
  for name, rows, expected_cuts in (("small", 16, 0), ("big", big_rows, 8)):
    host = np.random.default_rng(rows).standard_normal((rows, 64)).astype(np.float32)
    net = nnx.Module()
    net.w = nnx.Param(jax.device_put(host, replicated))
    manager = checkpoints.make_manager(str(tmp_path / name))
    cuts.clear()
    checkpoints.save(manager, 1, {"net": net})
    manager.wait_until_finished()
    assert len(cuts) == expected_cuts, name
    net.w[...] = jnp.zeros_like(net.w[...])
    assert checkpoints.restore(manager, {"net": net}) == 1
    np.testing.assert_array_equal(np.asarray(net.w[...]), host)


def test_weight_fingerprints_name_values_not_saves(tmp_path):
  net = _Net(0)
  checkpoints.save_weights(str(tmp_path / "one"), net)
  checkpoints.save_weights(str(tmp_path / "two"), net)  # the same values, saved again
  checkpoints.save_weights(str(tmp_path / "other"), _Net(1))
  fp = lambda *names: checkpoints.fingerprint_folders(*(str(tmp_path / n) for n in names))
  assert fp("one") == fp("two") != fp("other")
  h = hashlib.sha1()
  for leaf in jax.tree.leaves(nnx.state(net)):
    h.update(np.asarray(leaf).tobytes())
  with open(tmp_path / "one" / checkpoints.FINGERPRINT) as f:
    assert f.read() == h.hexdigest()[:8] == checkpoints.fingerprint_values(nnx.state(net))
  loaded = checkpoints.restore_weights(lambda: _Net(5), str(tmp_path / "one"))
  for x, y in zip(_leaves(loaded), _leaves(net)):
    np.testing.assert_array_equal(x, y)
  # A folder without FINGERPRINT (weights shipped before it existed): the hash of its files.
  os.remove(tmp_path / "two" / checkpoints.FINGERPRINT)
  assert fp("two") == fp("two") != fp("one")
  assert checkpoints.fingerprint_folders(str(tmp_path / "one"), extra=(8,)) != fp("one")


def test_keyed_restores_trace_the_model_once_and_stay_independent(tmp_path):
  checkpoints.save_weights(str(tmp_path / "a"), _Net(0))
  checkpoints.save_weights(str(tmp_path / "b"), _Net(1))
  built = []
  make = lambda: built.append(1) or _Net(7)
  a = checkpoints.restore_weights(make, str(tmp_path / "a"), key="net test")
  b = checkpoints.restore_weights(make, str(tmp_path / "b"), key="net test")
  again = checkpoints.restore_weights(make, str(tmp_path / "a"), key="net test")
  assert len(built) == 1  # the constructor traced once for the key
  assert a is not again and a.dense.kernel is not again.dense.kernel  # each its own module
  for got, want in ((a, _Net(0)), (b, _Net(1)), (again, _Net(0))):
    for x, y in zip(_leaves(got), _leaves(want)):
      np.testing.assert_array_equal(x, y)
  a.dense.kernel[...] = jnp.zeros_like(a.dense.kernel[...])  # the others keep their values
  np.testing.assert_array_equal(np.asarray(again.dense.kernel[...]),
                                np.asarray(_Net(0).dense.kernel[...]))


def test_progress_bars_outside_a_terminal_write_a_few_lines():
  # A piped console (SLURM, nohup, CI): the bars' refreshes are paced, not written at every step.
  import subprocess
  import sys
  code = ("import time\nfrom learning_words.common import console\nconsole.pace_progress()\n"
          "from tqdm import tqdm\nfor _ in tqdm(range(300)):\n  time.sleep(0.005)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  refreshes = out.stderr.replace("\r", "\n").strip().splitlines()
  assert out.returncode == 0 and 1 <= len(refreshes) <= 3, refreshes
  assert "300/300" in refreshes[-1]
  env = {**__import__("os").environ, "TQDM_MININTERVAL": "0"}  # a user's choice is kept
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=env)
  assert len(out.stderr.replace("\r", "\n").strip().splitlines()) > 20
