"""Crash-safe directory generations: ``CURRENT`` names the live generation folder.

A writer builds a whole new generation in a temporary folder, fsyncs it, renames it into place
and then atomically replaces ``CURRENT``. A process killed at any point leaves the previous
generation live and intact; stale temporary folders are removed by the next writer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .base import StoreError

CURRENT = "CURRENT"
LOCK = ".lock"
_GEN_PREFIX = "gen-"
_TMP_PREFIX = ".tmp-"


def current_generation(root: Path) -> Path | None:
    """The live generation folder, or None when the index has never been committed."""
    marker = root / CURRENT
    if not marker.is_file():
        return None
    gen = root / marker.read_text().strip()
    if not gen.is_dir():
        raise StoreError(f"index {root} is damaged: {CURRENT} names {gen.name}, which is missing")
    return gen


def new_workdir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def publish(root: Path, workdir: Path) -> Path:
    """Turn a finished work folder into the live generation; the old one is then removed."""
    old = current_generation(root)
    number = int(old.name[len(_GEN_PREFIX):]) + 1 if old is not None else 1
    gen = root / f"{_GEN_PREFIX}{number:06d}"
    fsync_tree(workdir)
    os.rename(workdir, gen)
    tmp_marker = root / f"{_TMP_PREFIX}{CURRENT}"
    with open(tmp_marker, "w") as fh:
        fh.write(gen.name)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_marker, root / CURRENT)
    _fsync_dir(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return gen


def clean_stale(root: Path) -> None:
    """Remove work folders and generations left by killed writers (call with the lock held)."""
    live = current_generation(root)
    for p in root.iterdir():
        if p.name.startswith(_TMP_PREFIX) or (p.name.startswith(_GEN_PREFIX) and p != live):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


class WriterLock:
    """An exclusive, non-blocking lock: a second writer gets a clear "index in use" error."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._fh = open(root / LOCK, "a+")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"index {root} is in use by another writing process; wait for it to finish") from None
            raise

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
