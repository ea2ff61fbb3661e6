"""A GCS emulator for the tests: gcp-storage-emulator (objects kept in DATA_DIR, so a restart keeps
them; bucket `lw-test`) on a loopback port, with its three gaps filled:
  * suffix range reads (`Range: bytes=-N`, how array_record reads a file's tail) are served;
  * a download names the object's generation (`x-goog-generation`, as GCS does; tensorstore
    reads it to order the writes of an OCDBT checkpoint: without it a checkpoint of many arrays
    fails with "Malformed StorageGeneration");
  * an object move (`.../o/SRC/moveTo/o/DST`, gcsfs's rename) copies then deletes instead of 501.
The emulator rewrites its whole object index (a JSON file) after every write, which grows
quadratically with a pipeline's thousands of objects; here the index is written at most every
0.2 s, and at exit (SIGTERM) or death (below), so no written object is forgotten.
With DIE_ON (a regular expression), the emulator exits, unanswered, at the first request whose
"METHOD PATH" matches it: a bucket that goes away in the middle of a write. With "404:" before
the expression, it answers every matching request 404 instead and keeps running: a storage that
restarted and forgot a write in progress (an upload session it no longer knows).

  python tests/_gcs_emulator_server.py PORT DATA_DIR [DIE_ON | 404:PATTERN]
"""
import os
import re
import signal
import sys
import threading
import time
from http import HTTPStatus

from gcp_storage_emulator import server, storage
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_SUFFIX = re.compile(r"^\s*bytes=-(\d+)\s*$")
_download = objects.download


def download(request, response, storage, *args, **kwargs):
  """A suffix range becomes the equivalent `bytes=START-`; the generation goes in a header."""
  headers = request._request_handler.headers  # pylint: disable=protected-access
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except NotFound:
    obj = None
  m = _SUFFIX.match(headers.get("range", "") or "")
  if m:
    size = int(obj["size"]) if obj else 0
    del headers["range"]
    headers["range"] = f"bytes={max(size - int(m.group(1)), 0)}-"
  out = _download(request, response, storage, *args, **kwargs)
  if obj is not None and response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
    response["x-goog-generation"] = obj["generation"]
    response["x-goog-metageneration"] = obj["metageneration"]
  return out


def move(request, response, storage, *args, **kwargs):
  p = request.params
  try:
    dest = objects._copy(request.base_url, storage, p["bucket_name"], p["object_id"],  # pylint: disable=protected-access
                         p["bucket_name"], p["dest_object_id"])
    storage.delete_file(p["bucket_name"], p["object_id"])
    response.json(dest)
  except NotFound:
    response.status = HTTPStatus.NOT_FOUND


def _patched(routes):
  out = []
  for regex, handlers in routes:
    out.append((regex, {m: download if h is _download else h for m, h in handlers.items()}))
  return tuple(out)


objects.download = download  # also what objects.get calls for ?alt=media
server.HANDLERS = ((r"^/storage/v1/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/"
                    r"(?P<dest_object_id>.*[^/]+)$", {"POST": move}),) + _patched(server.HANDLERS)

_write_index = storage.Storage._write_config_to_file  # pylint: disable=protected-access
_lock, _dirty = threading.Lock(), threading.Event()
storage.Storage._write_config_to_file = lambda self: _dirty.set()  # pylint: disable=protected-access


def _save_index(store):
  with _lock:
    if _dirty.is_set():
      _dirty.clear()
      _write_index(store)


_handle = server.Router.handle
_die_on = _not_found_on = None
_NOT_FOUND = b'{"error": {"code": 404, "message": "No such upload session"}}'


def handle(self, method):
  request = f"{method} {self._request_handler.path}"  # pylint: disable=protected-access
  if _die_on and re.search(_die_on, request):
    _save_index(_STORE)
    os._exit(3)  # pylint: disable=protected-access
  if _not_found_on and re.search(_not_found_on, request):
    h = self._request_handler  # pylint: disable=protected-access
    h.send_response(HTTPStatus.NOT_FOUND)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(_NOT_FOUND)))
    h.end_headers()
    h.wfile.write(_NOT_FOUND)
    return None
  with _lock:
    return _handle(self, method)


server.Router.handle = handle
_STORE = None


if __name__ == "__main__":
  fault = sys.argv[3] if len(sys.argv) > 3 else None
  if fault and fault.startswith("404:"):
    _not_found_on = fault[len("404:"):]
  else:
    _die_on = fault
  emulator = server.create_server("127.0.0.1", int(sys.argv[1]), in_memory=False,
                                  default_bucket="lw-test", data_dir=sys.argv[2])
  _STORE = emulator._storage  # pylint: disable=protected-access
  _dirty.set()
  _save_index(_STORE)

  def stop(*_):
    _save_index(_STORE)
    os._exit(0)  # pylint: disable=protected-access
  signal.signal(signal.SIGTERM, stop)
  emulator.start()
  print("ready", flush=True)
  while True:  # until the test stops it by its pid
    time.sleep(0.2)
    _save_index(_STORE)
