"""Sources and datasets on object storage (``s3://``, ``gs://``, ``az://``) through fsspec.

One thin layer under everything that opens a source or a dataset file (docs/storage.md). A
plain path never reaches fsspec: every function here hands it back unchanged or to the
ordinary ``open``, so local runs behave exactly as before. For a URL:

* **reading** streams: ``reading(url)`` gives PyAV (or anyone) a seekable file object whose
  reads are HTTP range requests through a small block cache (``BLOCK`` bytes a block, at most
  ``MAX_BLOCKS`` held), so a file whose index (an MP4's moov atom) sits at its end costs one
  extra ranged read, not a download;
* **writing** is whole objects only: a file is finished locally, then ``put_file`` uploads it
  to its final key. An object store shows a new object only once its upload is complete (a
  single PUT, or the completion of a multipart upload: S3, GCS and Azure block blobs alike),
  so a reader sees the old object or the new one, never half of one; no temporary key, no
  copy. The upload is checked by size afterwards;
* **transient errors** (5xx, throttling, a reset or timed-out connection) are retried with
  exponential backoff on top of the backend's own retries; what still fails raises
  ``StorageError``, whose ``code`` (``storage_error``) is recorded against the source as a
  failure, so a rerun tries it again;
* **confinement**: ``inside(root, value)`` is ``confine.inside`` for URLs too: a key read
  from a file must stay under the dataset's prefix.

Credentials and endpoints come from each backend's usual environment and config (for S3:
``AWS_*`` variables, ``~/.aws``, ``AWS_ENDPOINT_URL`` for a MinIO or other S3-compatible
server; fsspec's own config files for anything else).
"""
from __future__ import annotations

import io
import os
import posixpath
import random
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from wandata import confine

# URL schemes read through fsspec, and the package each needs (docs/storage.md).
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs",
            "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}
EXTRA = {"s3fs": "pip install 'wandata[s3]'", "gcsfs": "pip install gcsfs", "adlfs": "pip install adlfs"}
CODE = "storage_error"     # reason code of a source whose reads or writes kept failing

BLOCK = 8 << 20            # bytes per ranged read of a streamed source
MAX_BLOCKS = 4             # blocks held per open source (LRU): 32 MiB at most
RETRIES_ENV, BACKOFF_ENV = "WANDATA_STORAGE_RETRIES", "WANDATA_STORAGE_BACKOFF_S"
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCS", "AZURE_", "FSSPEC_")

T = TypeVar("T")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(OSError):
    """An object-store operation kept failing after its retries (or cannot start at all)."""

    code = CODE

    def __init__(self, url: str, action: str, error: BaseException | str, attempts: int = 1):
        self.url, self.action = url, action
        why = error if isinstance(error, str) else f"{type(error).__name__}: {_first_line(error)}"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"could not {action} {url}{tries} ({why}); check the storage service, "
                         "the credentials and the network, then run the same command again")


class MissingBackend(ImportError):
    """The fsspec backend of a URL's scheme is not installed."""


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


def is_url(value) -> bool:
    """True for an object-store URL that this module reads (``s3://...``); a local path, a
    ``Path`` or ``file://`` is not one."""
    if not isinstance(value, str):
        return False
    m = _URL.match(value)
    return bool(m) and m.group(1).lower() in BACKENDS


def join(root: str, rel: str) -> str:
    return root.rstrip("/") + "/" + rel.lstrip("/")


def name(url: str) -> str:
    return posixpath.basename(url.rstrip("/"))


def inside(root, value, what: str = "path"):
    """``confine.inside`` for a root that may be a URL: ``root/value`` (a URL) or
    ``confine.OutsideRoot`` when ``value`` is absolute, another URL, or climbs out of the
    root's prefix with ``..``. Object stores have no links, so the text decides."""
    if not is_url(root):
        return confine.inside(root, value, what)
    text = os.fspath(value)
    if (not text or "\x00" in text or "\\" in text or text.startswith("/") or "://" in text
            or Path(text).drive):
        raise confine.OutsideRoot(text, root, what)
    norm = posixpath.normpath(text)
    if norm in (".", "..") or norm.startswith("../"):
        raise confine.OutsideRoot(text, root, what)
    return join(root, norm)


# --- retries -------------------------------------------------------------------------------

def _env_number(key: str, default: float, lo: float, hi: float, cast=float):
    raw = os.environ.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise ValueError(f"{key}={raw!r} is not a number from {lo:g} to {hi:g}; fix or unset it")
    return value


def retries() -> int:
    """Attempts per operation (the backend's own retries come inside each attempt)."""
    return _env_number(RETRIES_ENV, 4, 1, 20, int)


def _transient(e: BaseException) -> bool:
    """Worth another try: a server error, throttling, a broken or timed-out connection. A
    missing key or a refused permission is an answer, not an accident."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                          MissingBackend, ValueError)):
            return False
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        response = getattr(e, "response", None)
        if isinstance(response, dict):  # botocore's ClientError
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = response.get("Error", {}).get("Code", "")
            return status >= 500 or status == 429 or "Throttl" in code or code in (
                "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable")
        module = type(e).__module__
        if module.startswith(("aiohttp", "botocore", "urllib3", "requests", "google", "azure")):
            return True  # the clients' connection and protocol errors
        if type(e).__name__ == "FSTimeoutError":
            return True
        if isinstance(e, OSError) and not isinstance(e, StorageError):
            return True   # s3fs and gcsfs turn HTTP failures into plain OSErrors
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def call(action: str, url: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)``, tried again with exponential backoff while it fails transiently;
    then ``StorageError``. A permanent error (no such key, no permission) is raised as it is."""
    attempts = retries()
    base = _env_number(BACKOFF_ENV, 0.5, 0.0, 60.0)
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - classified just below
            if not _transient(e):
                raise
            if i == attempts - 1:
                raise StorageError(url, action, e, attempts) from e
            time.sleep(base * (2 ** i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


# --- the filesystem of a URL ---------------------------------------------------------------

_FS: dict[tuple, object] = {}


def filesystem(url: str):
    """``(fs, path)`` for a URL. One instance per process and per credential environment: a
    process that changes ``AWS_*`` (a test, a long-lived driver) gets a fresh client, and a
    worker process never inherits a client bound to its parent's event loop."""
    scheme = _URL.match(url).group(1).lower()
    key = (scheme, os.getpid(),
           tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES))))
    fs = _FS.get(key)
    if fs is None:
        try:
            import fsspec
            # Listings are read fresh: another writer (a second run, a user) may change the bucket.
            fs = fsspec.filesystem(scheme, skip_instance_cache=True, use_listings_cache=False)
        except ImportError as e:
            pkg = BACKENDS[scheme]
            raise MissingBackend(f"{scheme}:// needs the {pkg} package ({e}); install it: "
                                 f"{EXTRA[pkg]}") from e
        _FS[key] = fs
    return fs, fs._strip_protocol(url)


def _url(scheme_of: str, path: str) -> str:
    return f"{_URL.match(scheme_of).group(1)}://{path}"


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return call("look up", url, fs.exists, path)


def size(target) -> int:
    """Bytes of a local file or an object; FileNotFoundError when there is none."""
    if not is_url(target):
        return os.path.getsize(target)
    fs, path = filesystem(target)
    return int(call("look up", target, fs.size, path))


def head(url: str, n: int) -> bytes:
    """The first ``n`` bytes of an object (one ranged read)."""
    fs, path = filesystem(url)
    return call("read", url, fs.cat_file, path, start=0, end=n)


def files(url: str) -> list[str]:
    """Every object under the prefix ``url`` (recursive), as URLs, sorted; an object at ``url``
    itself gives a list of one. Hidden names (a component starting with '.') are left out,
    as local discovery skips hidden files and folders."""
    fs, path = filesystem(url)
    root = path.rstrip("/")
    found = call("list", url, fs.find, root, withdirs=False)
    out = []
    for p in found:
        rel = p[len(root):].lstrip("/") if p.startswith(root) else p
        if p != root and any(part.startswith(".") for part in rel.split("/")):
            continue
        out.append(_url(url, p))
    return sorted(out)


def put_file(local: Path, url: str) -> None:
    """Upload a finished local file to its final key (see the module's note on atomicity) and
    check the object's size against the file's."""
    fs, path = filesystem(url)
    want = os.path.getsize(local)

    def put():
        fs.put_file(os.fspath(local), path)
        got = fs.size(path)
        if got != want:
            raise ConnectionError(f"the stored object has {got} bytes, not {want}")
    call("upload", url, put)


def get_file(url: str, local: Path) -> bool:
    """Download an object to ``local``; False if there is no such object."""
    fs, path = filesystem(url)
    try:
        call("download", url, fs.get_file, path, os.fspath(local))
    except FileNotFoundError:
        return False
    return True


def remove(url: str) -> None:
    """Delete an object; a missing one is not an error."""
    fs, path = filesystem(url)
    try:
        call("delete", url, fs.rm_file, path)
    except FileNotFoundError:
        pass


# --- streaming reads -----------------------------------------------------------------------

class RemoteFile(io.RawIOBase):
    """A seekable, read-only object: ranged reads through fsspec's block cache. A read that
    fails transiently reopens the object at the same offset and tries again (``call``), so a
    dropped connection mid-file costs one block, not the source."""

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self.fs, self.path = filesystem(url)
        self.size = int(call("look up", url, self.fs.size, self.path))
        self.pos = 0
        self.f = None

    def _file(self):
        if self.f is None:
            self.f = self.fs.open(self.path, "rb", block_size=BLOCK, cache_type="blockcache",
                                  cache_options={"maxblocks": MAX_BLOCKS}, size=self.size)
        return self.f

    def _read(self, n: int) -> bytes:
        try:
            f = self._file()
            f.seek(self.pos)
            return f.read(n)
        except Exception:
            self._drop()  # the next attempt starts a fresh file at self.pos
            raise

    def _drop(self) -> None:
        f, self.f = self.f, None
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: BLE001 - a broken connection's file may not close cleanly
                pass

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, max(0, self.size - self.pos))
        if n <= 0:
            return b""
        data = call("read", self.url, self._read, n)
        self.pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._drop()
        super().close()


@contextmanager
def reading(target) -> Iterator:
    """What ``av.open`` (or ``open``) takes for ``target``: the path itself for a local file,
    a streaming ``RemoteFile`` for a URL, closed on exit."""
    if not is_url(target):
        yield str(target)
        return
    f = RemoteFile(target)
    try:
        yield f
    finally:
        f.close()


def open_bytes(target):
    """A binary reader for a local path or a URL (a context manager either way)."""
    return RemoteFile(target) if is_url(target) else open(target, "rb")
