"""Where a workdir's files live: a local folder or a gs:// bucket, both through one path type
(etils.epath.Path).

On a bucket an object appears whole when its upload closes, so writes go straight to their name
(a rename there is a copy and a delete). Locally a write goes to a temporary name and is renamed
into place, so a killed run never leaves half a file. What cannot be written to a bucket piece by
piece (TFDS's ArrayRecord files, TensorBoard's event files, the log file) is written in a local
mirror of the bucket's path and copied up (`mirror`, `upload`); datasets are read from that
mirror, filled from the bucket once (`download`), so every host reads locally.
"""
import io
import json
import os
import re
import socket
import sys
import tempfile

import numpy as np
from etils import epath

from learning_words.common import errors

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
GCS_EXTRA = "pip install 'learning_words[gcs]'"
# Where gs:// paths are mirrored locally (datasets, TensorBoard and log files before upload).
CACHE_ENV = "LW_CACHE"


def scheme(path) -> str | None:
  """'gs' for gs://..., None for a local path (as written: GS:// is not gs://)."""
  m = _SCHEME.match(os.fspath(path))
  return m.group(1) if m else None


def is_cloud(path) -> bool:
  return scheme(path) == "gs"


def check(path, flag: str = "--workdir"):
  """Refuses a URL other than gs://, and gs:// without its libraries, in one line each."""
  s = scheme(path)
  if s is None:
    return
  if s != "gs":
    raise errors.ConfigError(f"{flag}={path}: {s}:// is not supported; give a local folder, a "
                             "mounted one, or a gs:// bucket path")
  try:
    import gcsfs  # pylint: disable=g-import-not-at-top,unused-import
    import google.cloud.storage  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise errors.ConfigError(f"{flag}={path}: gs:// needs gcsfs and google-cloud-storage, which "
                             f"are not installed here: {GCS_EXTRA}") from None


def absolute(path) -> epath.Path:
  """The path made absolute (Orbax wants that); a bucket path is already."""
  return epath.Path(path) if is_cloud(path) else epath.Path(os.path.abspath(path))


def write_bytes(path, data: bytes) -> epath.Path:
  """Writes a whole file, creating its folder; never half a file (see the module docstring)."""
  p = epath.Path(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  if is_cloud(p):
    p.write_bytes(data)
    return p
  tmp = p.with_name(f"{p.name}.{socket.gethostname()}.{os.getpid()}.tmp")  # several writers
  tmp.write_bytes(data)
  os.replace(tmp, p)
  return p


def write_npy(path, array) -> epath.Path:
  """np.save through write_bytes."""
  buf = io.BytesIO()
  np.save(buf, np.asarray(array))
  return write_bytes(path, buf.getvalue())


def mirror(path) -> epath.Path:
  """The local folder standing for a gs:// path ($LW_CACHE, default ~/.cache/learning_words,
  then gs/BUCKET/PATH); a local path stands for itself."""
  if not is_cloud(path):
    return epath.Path(path)
  root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache",
                                                   "learning_words")
  return epath.Path(root) / "gs" / os.fspath(path)[len("gs://"):]


def _files(folder: epath.Path):
  """(relative path, path) of every file under folder, in name order."""
  if is_cloud(folder):
    import fsspec  # pylint: disable=g-import-not-at-top
    fs, where = fsspec.core.url_to_fs(os.fspath(folder))
    for full in sorted(fs.find(where)):
      rel = full[len(where):].lstrip("/")
      yield rel, folder / rel
    return
  for root, _, names in os.walk(folder):
    for name in sorted(names):
      path = epath.Path(root, name)
      yield os.path.relpath(path, folder), path


# A dataset folder is complete where its marker is: TFDS's dataset_info.json, and on a bucket our
# manifest of every file's size, written after everything else.
MARKER = "dataset_info.json"
MANIFEST = "lw_manifest.json"


def sizes(folder) -> dict:
  """{relative path: size in bytes} of every file under folder but the manifest."""
  return {rel: p.stat().length for rel, p in _files(epath.Path(folder)) if rel != MANIFEST}


def _last(rel: str) -> bool:
  return os.path.basename(rel) in (MARKER, MANIFEST)


def _copy_tree(src, dst) -> int:
  """Copies the files under src that dst lacks (or holds at another size), the completeness
  markers (MARKER, MANIFEST) last, so that a copy stopped half-way never looks complete; returns
  how many were copied."""
  import fsspec  # pylint: disable=g-import-not-at-top
  src, dst = epath.Path(src), epath.Path(dst)
  copied = 0
  ordered = sorted(_files(src), key=lambda item: (_last(item[0]), item[0] == MANIFEST, item[0]))
  for rel, path in ordered:
    target = dst / rel
    if target.exists() and target.stat().length == path.stat().length:
      continue
    if is_cloud(target):
      fs, where = fsspec.core.url_to_fs(os.fspath(target))
      fs.put_file(os.fspath(path), where)
    elif is_cloud(path):
      target.parent.mkdir(parents=True, exist_ok=True)
      fs, where = fsspec.core.url_to_fs(os.fspath(path))
      tmp = f"{target}.{os.getpid()}.tmp"
      fs.get_file(where, tmp)
      os.replace(tmp, target)
    else:
      write_bytes(target, path.read_bytes())
    copied += 1
  return copied


def upload(local, remote) -> int:
  """Copies a local folder's files up to a gs:// folder (those not there yet, the marker last),
  then writes the manifest of their sizes: the bucket's copy is complete once it is there."""
  copied = _copy_tree(local, remote)
  epath.Path(remote, MANIFEST).write_text(json.dumps(sizes(local), sort_keys=True))
  return copied


def complete_copy(folder) -> bool:
  """Whether a folder holds every file its manifest names, at the manifest's sizes."""
  manifest = epath.Path(folder, MANIFEST)
  if not manifest.is_file():
    return False
  try:
    want = json.loads(manifest.read_text())
  except ValueError:
    return False
  return sizes(folder) == want


def download(remote, local) -> int:
  """Copies a complete gs:// folder's files into a local one (those not there yet, the marker and
  the manifest last) and checks the copy against the manifest; an incomplete one is refused."""
  if not complete_copy(remote):
    raise errors.StorageError(f"{remote} is incomplete (an upload that was cut off), so it is not "
                              "copied: run the command that built it again on the host that "
                              f"built it (it uploads the rest), or delete {remote} to build it "
                              "anew")
  copied = _copy_tree(remote, local)
  if not complete_copy(local):
    raise errors.StorageError(f"{local}: the copy of {remote} does not match its manifest; delete "
                              f"{local} and run the command again")
  return copied


def endpoint() -> tuple[str, int]:
  """(host, port) that gs:// requests go to: the emulator's when STORAGE_EMULATOR_HOST names one
  (as gcsfs reads it), else Google Cloud Storage's."""
  url = os.environ.get("STORAGE_EMULATOR_HOST", "")
  if url:
    m = re.match(r"^(?:(https?)://)?([^:/]+)(?::(\d+))?", url)
    if m:
      return m.group(2), int(m.group(3) or (443 if m.group(1) == "https" else 80))
  return "storage.googleapis.com", 443


def emulator_defaults(environ=os.environ) -> dict:
  """With STORAGE_EMULATOR_HOST set (gcsfs's variable for a GCS emulator), points the other
  clients at the same emulator where their own variables are unset: tensorstore (the checkpoints'
  arrays; with a fixed token, since an emulator checks none and looking for real credentials
  would only probe the network) and array_record. Returns what it set."""
  url = environ.get("STORAGE_EMULATOR_HOST", "")
  if not url:
    return {}
  want = {"TENSORSTORE_GCS_HTTP_URL": url, "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
          "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator"}
  added = {k: v for k, v in want.items() if not environ.get(k)}
  environ.update(added)
  return added


def start_storage(workdir) -> str:
  """For a gs:// workdir: starts tensorstore's GCS client (it writes the checkpoints' arrays) with
  one read of a missing object, its native messages (the credentials lookup writes a line straight
  to the terminal, once per process) caught instead of shown; returns them for the log file.
  Errors are left to the first real request, where they are reported."""
  if not is_cloud(workdir):
    return ""
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  bucket = str(workdir)[len("gs://"):].split("/")[0]
  with tempfile.TemporaryFile() as caught:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(caught.fileno(), 2)
    try:
      ts.KvStore.open({"driver": "gcs", "bucket": bucket}).result().read(
          "learning_words_start_probe").result()
    except Exception:  # pylint: disable=broad-except
      pass
    finally:
      os.dup2(saved, 2)
      os.close(saved)
    caught.seek(0)
    return caught.read().decode(errors="replace").strip()


def reach(workdir, timeout_s: float = 10.0):
  """Before anything is written to a gs:// workdir: one TCP connection to the storage endpoint,
  so that no network ends in one line within timeout_s rather than after a minute of the client's
  retries (StorageError; nothing was written)."""
  if not is_cloud(workdir):
    return
  host, port = endpoint()
  try:
    socket.create_connection((host, port), timeout=timeout_s).close()
  except OSError as e:
    raise errors.StorageError(
        f"{workdir}: cannot reach the storage at {host}:{port} ({type(e).__name__}: {e}); nothing "
        "was written. Check the network (and STORAGE_EMULATOR_HOST, if set), then run the command "
        "again") from None


_UNREACHABLE = ("connection refused", "cannot connect", "failed to establish a new connection",
                "unavailable", "max retries exceeded", "timeout of", "server disconnected",
                "connection reset", "name or service not known", "could not resolve")


def storage_error(workdir, exc: BaseException) -> errors.StorageError | None:
  """The one-line error for a failure that says a gs:// workdir's bucket could not be reached or
  refused a write; None for a local workdir or any other failure."""
  if not is_cloud(workdir):
    return None
  resume = ("What was written before is kept: run the same command again to go on from the last "
            "complete checkpoint")
  reason = unreachable(exc)
  if reason is not None:
    return errors.StorageError(f"{workdir}: the bucket stopped answering ({reason}). {resume}")
  reason = refused_write(exc)
  if reason is not None:
    return errors.StorageError(f"{workdir}: the bucket refused a write ({reason}). {resume}")
  return None


# tensorstore's status text for a failed write to GCS: 'Error writing gs://B/OBJ: MESSAGE
# [http_response_code='404'] ...'.
_TS_WRITE = re.compile(r"Error writing (gs://\S+?): (.*?) \[http_response_code='(\d+)'\]")


def refused_write(exc: BaseException) -> str | None:
  """A short reason when `exc` (or an exception it came from) is the storage answering a write
  with an HTTP error (e.g. 404 for an upload a restarted storage forgot), from tensorstore (the
  checkpoints' arrays) or gcsfs (every other file); None otherwise."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    m = _TS_WRITE.search(str(exc))
    if m:
      return f"HTTP {m.group(3)} writing {m.group(1)}: {m.group(2)}"[:300]
    if isinstance(exc, FileNotFoundError) and "uploadType=" in str(exc):  # gcsfs: 404 on upload
      return f"HTTP 404 on the upload {str(exc).split('?')[0][:200]}"
    exc = exc.__cause__ or exc.__context__
  return None


def unreachable(exc: BaseException) -> str | None:
  """A short reason when `exc` (or an exception it came from) says the storage could not be
  reached; None for any other failure."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ConnectionError) or any(k in text.lower() for k in _UNREACHABLE):
      return text.splitlines()[0][:200]
    exc = exc.__cause__ or exc.__context__
  return None
