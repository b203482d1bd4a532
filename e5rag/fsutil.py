"""Crash-safe file writes and a writer lock, shared by every layer (stdlib only, imports nothing of e5rag).

* ``atomic_write_bytes/text/json`` and ``atomic_open`` (streaming): write a sibling temporary file,
  fsync it, rename it over the target, fsync the folder. A reader sees the old content or the new,
  never a torn file.
* ``publish_dir``: build a whole folder beside its target, fsync it, rename it into place;
  ``replace_dir``: the same for a folder the caller built.
* ``make_dir``: a new folder with the permissions the umask gives (``tempfile.mkdtemp`` gives 0700).
* ``FileLock``: an exclusive, non-blocking ``flock``; a second holder gets ``LockHeld``.

Writers of one path are expected to be serialised (by a ``FileLock`` or by owning the path):
the temporary name of ``atomic_write_*`` is fixed, so a killed writer's leftover is overwritten
by the next write instead of piling up (``unique=True`` where several processes may race).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class LockHeld(Exception):
    """Another process (or another open handle) holds the lock."""


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path``, then every folder, deepest first (symlinks are not followed)."""
    dirs = []
    for here, subdirs, files in os.walk(path):
        for name in files:
            f = Path(here) / name
            if f.is_symlink():
                continue
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        dirs.append(Path(here))
        subdirs[:] = [d for d in subdirs if not (Path(here) / d).is_symlink()]
    for d in reversed(dirs):
        fsync_dir(d)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", *,
                unique: bool = False) -> Iterator[IO]:
    """A handle on a temporary sibling of ``path`` that replaces ``path`` (fsynced) when the block ends
    without an error; on an error the temporary file is removed and ``path`` is untouched.

    ``unique``: a temporary name of its own (for paths that several processes may write at once).
    """
    path = Path(path)
    tag = f".{os.getpid()}-{secrets.token_hex(4)}" if unique else ""
    tmp = path.with_name(f".{path.name}{tag}.tmp")
    binary = "b" in mode
    try:
        with open(tmp, mode, **({} if binary else {"encoding": encoding})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, *, unique: bool = False) -> Path:
    """Replace ``path`` with ``data`` atomically and durably. -> ``path``"""
    with atomic_open(path, "wb", unique=unique) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """``atomic_write_bytes`` of ``text`` encoded. -> ``path``"""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """``value`` as JSON (UTF-8, one trailing newline), written atomically. -> ``path``"""
    return atomic_write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def make_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``{prefix}{16 hex digits}`` in ``parent``, mode 0777 less the umask."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"{prefix}{secrets.token_hex(8)}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def publish_dir(target: str | Path, write: Callable[[Path], None], *, complete_marker: str,
                replace: bool = False) -> Path:
    """Run ``write(tmp)`` on a temporary sibling folder, fsync it, then rename it to ``target``.

    A killed writer never leaves a half-written ``target``. When another process published
    ``target`` first (it holds ``complete_marker``), that copy is kept and ours dropped.
    ``replace`` first moves an existing (stale or damaged) ``target`` aside, also by rename.
    """
    target = Path(target)
    tmp = make_dir(target.parent, ".tmp-")
    try:
        write(tmp)
        fsync_tree(tmp)
        if replace and target.exists():
            remove_dir(target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / complete_marker).is_file():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def remove_dir(path: Path) -> None:
    """Delete the folder ``path`` so that a reader sees all of it or none: rename it into a new
    ``.old-*`` sibling folder, then delete that (its leftovers, if the deletion is killed, are not ``path``)."""
    aside = make_dir(path.parent, ".old-")
    try:
        os.replace(path, aside / "entry")
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing one (moved aside first)."""
    fsync_tree(tmp)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)


class FileLock:
    """An exclusive, non-blocking ``flock`` on ``path`` (created if missing); ``LockHeld`` if taken."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise LockHeld(str(self.path)) from None
            raise

    def release(self) -> None:
        if not self._fh.closed:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(path: str | Path) -> bool:
    """True when some other handle holds an exclusive ``flock`` on the existing file ``path``."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        FileLock(path).release()
    except LockHeld:
        return True
    return False
