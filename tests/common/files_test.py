"""common/files.py: whole-file writes, the local mirror of a bucket path, copying folders up and
down (only what is missing or differs), and which failures count as an unreachable bucket."""
import json
import os

import pytest
from etils import epath

from learning_words import workdir as wd
from learning_words.common import errors, files


def test_local_writes_leave_no_temporary_file(tmp_path):
  path = tmp_path / "a" / "b.bin"
  files.write_bytes(path, b"one")
  files.write_bytes(path, b"two")
  assert path.read_bytes() == b"two" and os.listdir(tmp_path / "a") == ["b.bin"]


def test_the_mirror_of_a_bucket_path_is_under_the_cache(tmp_path, monkeypatch):
  monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
  assert os.fspath(files.mirror("gs://bkt/run/data")) == os.path.join(str(tmp_path), "gs", "bkt",
                                                                       "run", "data")
  assert os.fspath(files.mirror("/local/run")) == "/local/run"


def test_copying_a_folder_copies_only_what_is_missing_or_differs(tmp_path):
  src, dst, back = tmp_path / "src", tmp_path / "dst", tmp_path / "back"
  (src / "sub").mkdir(parents=True)
  (src / "a").write_bytes(b"1")
  (src / "sub" / "b").write_bytes(b"22")
  assert files.upload(src, dst) == 2
  assert files.upload(src, dst) == 0
  assert json.loads((dst / files.MANIFEST).read_text()) == {"a": 1, "sub/b": 2}
  (src / "sub" / "b").write_bytes(b"333")  # another size: copied again
  assert files.upload(src, dst) == 1 and files.complete_copy(dst)
  assert files.download(dst, back) == 3  # the two files and the manifest
  assert {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*")
          if p.is_file() and p.name != files.MANIFEST} == {"a": b"1", "sub/b": b"333"}


def test_the_markers_are_copied_last(tmp_path, monkeypatch):
  src = tmp_path / "src"
  src.mkdir()
  for name in ("a.array_record", files.MARKER, "features.json", "z.json"):
    (src / name).write_bytes(b"x")
  order = []
  real = files.write_bytes
  monkeypatch.setattr(files, "write_bytes", lambda p, d: (order.append(os.path.basename(p)),
                                                           real(p, d))[1])
  files.upload(src, tmp_path / "dst")
  assert order == ["a.array_record", "features.json", "z.json", files.MARKER]


def test_a_cut_off_upload_is_refused_then_repaired_by_rerunning(gcs, tmp_path, monkeypatch):
  # A dataset built in the local mirror; its upload dies after the first file.
  monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
  workdir = f"gs://lw-test/cut_{os.getpid()}"
  local = os.path.join(wd.data_root(workdir), "ds", "1.0.0")
  os.makedirs(local)
  for name, data in (("ds-train.array_record", b"r" * 100), ("features.json", b"{}"),
                     (files.MARKER, b"{}")):
    with open(os.path.join(local, name), "wb") as f:
      f.write(data)
  remote = epath.Path(wd.path(workdir, "data", "ds", "1.0.0"))
  import fsspec
  real_url_to_fs = fsspec.core.url_to_fs
  puts = []

  class Dying:  # the bucket's filesystem, gone after its first upload
    def __init__(self, fs):
      self.fs = fs

    def put_file(self, *args, **kwargs):
      puts.append(args[1])
      if len(puts) > 1:
        raise ConnectionError("the bucket went away")
      return self.fs.put_file(*args, **kwargs)

  def url_to_fs(url, **kwargs):
    fs, where = real_url_to_fs(url, **kwargs)
    return Dying(fs), where

  monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
  with pytest.raises(ConnectionError):
    files.upload(local, remote)
  monkeypatch.setattr(fsspec.core, "url_to_fs", real_url_to_fs)
  assert [os.path.basename(p) for p in puts] == ["ds-train.array_record", "features.json"]
  assert (remote / "ds-train.array_record").exists()
  assert not (remote / files.MARKER).exists() and not files.complete_copy(remote)
  # Another host (an empty cache) refuses the partial copy, in one line that says what to do.
  other = tmp_path / "other_cache"
  monkeypatch.setenv(files.CACHE_ENV, str(other))
  (remote / files.MARKER).write_text("{}")  # even with the marker there (an older upload order)
  with pytest.raises(errors.StorageError, match="incomplete .* run the command that built it"):
    wd._cached(workdir, os.path.join(wd.data_root(workdir), "ds", "1.0.0"))
  assert not (other / "gs").exists() or not any(p.is_file() for p in other.rglob("*"))
  # The host that built it runs the same command again: the bucket's copy is made whole.
  monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
  assert wd._cached(workdir, local) == local and files.complete_copy(remote)
  monkeypatch.setenv(files.CACHE_ENV, str(other))
  fetched = wd._cached(workdir, os.path.join(wd.data_root(workdir), "ds", "1.0.0"))
  with open(os.path.join(fetched, "ds-train.array_record"), "rb") as f:
    assert f.read() == b"r" * 100


def test_only_connection_failures_on_a_bucket_become_a_storage_error():
  try:
    try:
      raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as inner:
      raise RuntimeError("save failed") from inner
  except RuntimeError as e:
    chained = e
  error = files.storage_error("gs://bkt/run", chained)
  assert isinstance(error, errors.StorageError) and isinstance(error, errors.UserError)
  assert str(error).startswith("gs://bkt/run: the bucket stopped answering (ConnectionRefusedError")
  assert files.storage_error("/local/run", chained) is None
  assert files.storage_error("gs://bkt/run", ValueError("shapes differ")) is None


def test_a_refused_upload_on_a_bucket_is_a_storage_error_and_a_missing_read_is_not():
  # gcsfs turns a 404 into FileNotFoundError(url): on a resumable upload's url it is a write the
  # storage forgot (a restart), which rerunning repairs; on an object's path, a file not there.
  from gcsfs import retry  # pylint: disable=g-import-not-at-top
  url = ("https://storage.googleapis.com/upload/storage/v1/b/bkt/o?uploadType=resumable"
         "&upload_id=ABC")
  for status, path, refused in ((404, url, True), (404, "bkt/run/missing.json", False)):
    try:
      try:
        retry.validate_response(status, b"", path)
      except FileNotFoundError as inner:
        raise RuntimeError("cannot schedule new futures after shutdown") from inner
    except RuntimeError as e:
      error = files.storage_error("gs://bkt/run", e)
    if refused:
      assert isinstance(error, errors.StorageError)
      assert str(error).startswith("gs://bkt/run: the bucket refused a write (HTTP 404 on the "
                                   "upload https://storage.googleapis.com/upload/storage/v1/b/bkt/o)")
    else:
      assert error is None


def test_no_network_at_start_is_one_line_in_seconds(tmp_path):
  # A gs:// workdir whose storage endpoint answers nothing: one line, exit 2, well before the
  # storage client's minute of retries, and nothing created.
  import socket
  import subprocess
  import sys
  import time
  from tests.conftest import ROOT
  with socket.socket() as s:  # a port with nothing listening
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
         files.CACHE_ENV: str(tmp_path / "cache")}
  start = time.time()
  out = subprocess.run([sys.executable, "-m", "learning_words.main", "--config=configs/tiny.py",
                        "--workdir=gs://lw-test/nowhere", "--mode=report"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, lines
  assert f"cannot reach the storage at 127.0.0.1:{port}" in lines[0]
  assert "nothing was written" in lines[0] and time.time() - start < 30


def test_the_storage_endpoint(monkeypatch):
  monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
  assert files.endpoint() == ("storage.googleapis.com", 443)
  for url, want in (("http://127.0.0.1:9023", ("127.0.0.1", 9023)), ("localhost:8080",
                    ("localhost", 8080)), ("https://gcs.example", ("gcs.example", 443))):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    assert files.endpoint() == want


def test_the_storage_client_starts_without_a_line_on_the_terminal(gcs):
  """With only STORAGE_EMULATOR_HOST naming the emulator, a tensorstore write (how checkpoints
  are saved) reaches it; after start_storage it prints nothing (its start-up line is returned
  for the log), while without it the same write prints tensorstore's credentials line (the
  control)."""
  del gcs  # running
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = {k: v for k, v in os.environ.items() if k not in (
      "TENSORSTORE_GCS_HTTP_URL", "CLOUD_STORAGE_EMULATOR_ENDPOINT", "GOOGLE_AUTH_TOKEN_FOR_TESTING")}
  code = ("import sys, numpy as np, tensorstore as ts\n"
          "from learning_words.common import files\n"
          "assert set(files.emulator_defaults()) == {'TENSORSTORE_GCS_HTTP_URL', "
          "'CLOUD_STORAGE_EMULATOR_ENDPOINT', 'GOOGLE_AUTH_TOKEN_FOR_TESTING'}\n"
          "if sys.argv[1] == 'start':\n"
          "  print(files.start_storage('gs://lw-test/creds'))\n"
          "t = ts.open({'driver': 'zarr', 'kvstore': {'driver': 'gcs', 'bucket': 'lw-test', "
          "'path': 'creds/' + sys.argv[1]}, 'metadata': {'shape': [4], 'dtype': '<f4'}, "
          "'create': True, 'delete_existing': True}).result()\n"
          "t.write(np.arange(4, dtype=np.float32)).result()\n"
          "assert (t.read().result() == np.arange(4)).all()\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  run = lambda arg: subprocess.run([sys.executable, "-c", code, arg], cwd=root, env=env,
                                   capture_output=True, text=True, timeout=120)
  r = run("start")
  assert r.returncode == 0 and r.stderr.strip() == "", r.stderr[-2000:]
  assert "GOOGLE_AUTH_TOKEN_FOR_TESTING" in r.stdout  # caught, for the log
  r = run("control")
  assert r.returncode == 0 and "GOOGLE_AUTH_TOKEN_FOR_TESTING" in r.stderr
