"""A GCS emulator for the tests: gcp-storage-emulator (objects kept in DATA_DIR, so a restart keeps
them; bucket `lw-test`) on a loopback port, with its three gaps filled:
  * suffix range reads (`Range: bytes=-N`, how array_record reads a file's tail) are served;
  * a download names the object's generation (`x-goog-generation`, as GCS does; tensorstore
    reads it to order the writes of an OCDBT checkpoint: without it a checkpoint of many arrays
    fails with "Malformed StorageGeneration");
  * an object move (`.../o/SRC/moveTo/o/DST`, gcsfs's rename) copies then deletes instead of 501.
With DIE_ON (a regular expression), the emulator exits, unanswered, at the first request whose
"METHOD PATH" matches it: a bucket that goes away in the middle of a write.

  python tests/_gcs_emulator_server.py PORT DATA_DIR [DIE_ON]
"""
import os
import re
import sys
import threading
from http import HTTPStatus

from gcp_storage_emulator import server
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

_handle = server.Router.handle


def die_on(pattern: str):
  def handle(self, method):
    if re.search(pattern, f"{method} {self._request_handler.path}"):  # pylint: disable=protected-access
      os._exit(3)  # pylint: disable=protected-access
    return _handle(self, method)
  server.Router.handle = handle


if __name__ == "__main__":
  if len(sys.argv) > 3:
    die_on(sys.argv[3])
  emulator = server.create_server("127.0.0.1", int(sys.argv[1]), in_memory=False,
                                  default_bucket="lw-test", data_dir=sys.argv[2])
  emulator.start()
  print("ready", flush=True)
  threading.Event().wait()  # until the test stops it (SIGTERM / SIGKILL by pid)
