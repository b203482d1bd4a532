"""Milvus Lite 3.x files: turning a ``*.db`` path into a local server URI, with clear errors.

Milvus Lite 3 keeps an index in a *directory* named ``something.db`` and serves it from an
in-process gRPC server that holds an exclusive ``flock`` on ``{path}/LOCK``: one process at a
time may open it, readers included. pymilvus starts that server itself when given a ``.db`` URI
(``milvus_lite.server_manager``); here we only check the path first and translate what would
otherwise be a logged traceback and "Open local milvus failed" into a ``StoreError`` that says why:

* the path is a regular file: Milvus Lite 2.x wrote a single SQLite file, which 3.x cannot read;
* the path is a directory that is not a Milvus Lite index (e.g. a FAISS index named ``*.db``);
* another process holds the lock ("index in use");
* a read-only open of a path that does not exist ("no index at PATH").

Lite writes each segment's index file (``collections/NAME/partitions/P/indexes/*.idx``, ``*.sidx``) in a
background thread after a flush, in place: a process killed during that write leaves a truncated
file, and every later load of the collection fails on it. Those files are derived from the flushed
segments (Lite builds a missing one on load), so ``index_files`` lists them for the store to remove
and reload (``MilvusStore``), and no committed row is lost.

Servers are reference-counted per path so that closing the last store in this process stops the
server and releases the lock (pymilvus would otherwise keep it until the process exits).

Noise that is not the user's business is kept off stderr: pymilvus' client pings every 10 s even
when idle, and Lite's gRPC server (default policy: one ping per 5 minutes without calls) answers
with a GOAWAY "too_many_pings" that gRPC's C core prints; keepalive is pointless on loopback, so
``CLIENT_OPTIONS`` turns it off. pymilvus' iterators warn on every use that Lite returns no mvccTs
session timestamp (they fall back to the client's, which is right for a local index).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

from e5rag import fsutil

from .base import StoreError

LOCK_FILE = "LOCK"  # milvus_lite.db.LOCK_FILENAME
CLIENT_OPTIONS = {"grpc_options": {"grpc.keepalive_permit_without_calls": 0, "grpc.keepalive_time_ms": 2**31 - 1}}
SERVER_LOGGER = "milvus_lite.adapter.grpc.servicer"  # logs each failed request with its traceback
_QUIET_LOGGERS = ("pymilvus.client.iterator",)  # "failed to set up mvccTs ..., use client-side ts instead"
FAISS_MARKERS = {"CURRENT", "e5rag-index.json"}  # indexers.atomic: CURRENT, MARKER
_SQLITE_MAGIC = b"SQLite format 3\x00"
_INDEX_SUFFIXES = (".idx", ".sidx")  # milvus_lite.index.files.INDEX_FILE_EXTENSIONS
_LITE_ENTRIES = {"LOCK", "collections", "databases", ".database-staging", "aliases.json",
                 "database_properties.json", "snapshots"}

_lock = threading.Lock()
_open: dict[str, int] = {}  # absolute path -> stores open on it in this process
_started: set[str] = set()  # paths whose server this module started (and so stops)


def index_files(path: Path, collection: str, db_name: str | None = None) -> list[Path]:
    """Milvus Lite's per-segment index files of ``collection`` (its real name, not an alias) in the index
    directory ``path``: derived data that Lite rebuilds from the segments when one is missing."""
    root = path if db_name in (None, "", "default") else path / "databases" / db_name
    partitions = root / "collections" / collection / "partitions"
    return sorted(p for p in partitions.glob("*/indexes/*") if p.suffix in _INDEX_SUFFIXES and p.is_file())


def no_index_message(path: str | Path) -> str:
    return f"no index at {path}: build one with `e5rag index SOURCE --index {path}`"


def check_path(path: Path, readonly: bool) -> None:
    """Refuse paths Milvus Lite 3 cannot open, before pymilvus tries (and logs a traceback)."""
    if path.is_file():
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
        if head == _SQLITE_MAGIC:
            raise StoreError(f"{path} was written by Milvus Lite 2.x (a single SQLite file), which Milvus Lite 3 "
                             "cannot open: rebuild the index with `e5rag index` (Milvus Lite 3 keeps an index in a "
                             "directory), or read it with milvus-lite<3 and pymilvus<3")
        raise StoreError(f"{path} is a file, not a Milvus Lite index (Milvus Lite 3 keeps an index in a directory)")
    if path.is_dir():
        entries = {p.name for p in path.iterdir()}
        if entries and not entries & _LITE_ENTRIES:
            hint = " (it looks like a FAISS index: pass --store faiss)" if entries & FAISS_MARKERS else ""
            raise StoreError(f"{path} is a directory that is not a Milvus Lite index{hint}")
        return
    if readonly:
        raise StoreError(no_index_message(path))
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)


def locked_by_another_process(path: Path) -> bool:
    """True when some process holds Milvus Lite's lock on ``path`` (call only when this one does not)."""
    return fsutil.is_locked(path / LOCK_FILE)


def in_use_message(path: Path) -> str:
    return (f"index {path} is in use by another process: Milvus Lite lets one process open an index at a time "
            "(readers included); wait for it to finish, or serve the index from a Milvus server for shared access")


class _Capture(logging.Filter):
    """Keeps (and so stops) the records of one logger: they would print a traceback we turn into an error."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def reason(self) -> str:
        for rec in self.records:
            if rec.exc_info and rec.exc_info[1] is not None:
                return f"{type(rec.exc_info[1]).__name__}: {rec.exc_info[1]}"
        return "; ".join(rec.getMessage() for rec in self.records) or "no reason given"


@contextmanager
def captured_logs(name: str):
    """Keep the records of logger ``name`` meanwhile instead of printing them."""
    logger, capture = logging.getLogger(name), _Capture()
    logger.addFilter(capture)
    try:
        yield capture
    finally:
        logger.removeFilter(capture)


def _manager():
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError as exc:
        raise StoreError("a local Milvus index (*.db) needs milvus-lite: pip install 'e5rag[milvus]'") from exc
    return server_manager_instance


def acquire(path: Path, readonly: bool) -> str:
    """Check ``path`` and start (or reuse) its Milvus Lite server. Returns the URI to connect to."""
    check_path(path, readonly)
    key = str(path.resolve())
    manager = _manager()
    for name in _QUIET_LOGGERS:
        if logging.getLogger(name).level < logging.ERROR:
            logging.getLogger(name).setLevel(logging.ERROR)
    with _lock:
        # The server of a path already open in this process holds the lock itself: no probe then.
        served = _open.get(key, 0) > 0 or key in getattr(manager, "_servers", {})
        if not served and locked_by_another_process(path):
            raise StoreError(in_use_message(path))
        with captured_logs("milvus_lite.server_manager") as capture:
            uri = manager.start_and_get_uri(key)
        if uri is None:
            if locked_by_another_process(path):
                raise StoreError(in_use_message(path))
            raise StoreError(f"Milvus Lite could not open {path}: {capture.reason()}")
        if not served:
            _started.add(key)
        _open[key] = _open.get(key, 0) + 1
    return uri


def release(path: Path) -> None:
    """Forget one store on ``path``; the last one stops the server this module started."""
    key = str(path.resolve())
    with _lock:
        left = _open.get(key, 0) - 1
        if left > 0:
            _open[key] = left
            return
        _open.pop(key, None)
        if key not in _started:
            return
        _started.discard(key)
    _manager().release_server(key)
