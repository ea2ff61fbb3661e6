"""common/files.py: whole-file writes, the local mirror of a bucket path, copying folders up and
down (only what is missing or differs), and which failures count as an unreachable bucket."""
import os

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
  src, dst = tmp_path / "src", tmp_path / "dst"
  (src / "sub").mkdir(parents=True)
  (src / "a").write_bytes(b"1")
  (src / "sub" / "b").write_bytes(b"22")
  assert files.upload(src, dst) == 2
  assert files.upload(src, dst) == 0
  (src / "sub" / "b").write_bytes(b"333")  # another size: copied again
  assert files.download(src, dst) == 1
  assert {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == {
      "a": b"1", "sub/b": b"333"}


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
