"""Crash-safe directory generations: ``CURRENT`` names the live generation folder.

A FAISS index folder is recognised by its marker file ``e5rag-index.json`` (folders written
before the marker existed: by a ``CURRENT`` naming a generation). A writer builds a whole new
generation in a temporary folder, fsyncs it, renames it into place and then atomically replaces
``CURRENT``. A process killed at any point leaves the previous generation live and intact.

e5rag removes only what it created: every work folder and generation a writer makes is first
recorded in the journal ``.e5rag-journal.json``, and the next writer removes the recorded entries
that are not live. Nothing else in the folder is ever touched; a non-empty folder that is not an
index is refused. Names read back (``CURRENT``, the journal) must match a strict pattern, so no
path from the folder's own files can point outside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from e5rag import fsutil

from .base import StoreError

MARKER = "e5rag-index.json"
FORMAT = "e5rag-faiss"
CURRENT = "CURRENT"
LOCK = ".lock"
JOURNAL = ".e5rag-journal.json"
_GEN_PREFIX = "gen-"
_TMP_PREFIX = ".tmp-"
GEN_NAME = re.compile(r"gen-[0-9]{6,12}")
_TMP_NAME = re.compile(r"\.tmp-[0-9a-f]{16}")
# Entries of a Milvus Lite 3 index folder (``milvus_local._LITE_ENTRIES``), for a hint only.
_MILVUS_LITE_ENTRIES = {"collections", "databases", "aliases.json", "database_properties.json", "snapshots"}

_REPAIR = "restore the folder from a backup, or rebuild it with `e5rag index SOURCE --index NEW_FOLDER`"


def damaged(root: Path, what: str) -> StoreError:
    """The one-line error for a damaged index folder."""
    return StoreError(f"index {root} is damaged: {what}; {_REPAIR}")


def _is_legacy(root: Path) -> bool:
    marker = root / CURRENT
    try:
        return marker.is_file() and GEN_NAME.fullmatch(marker.read_text().strip()) is not None
    except (OSError, UnicodeDecodeError):
        return False


def check_root(root: Path) -> bool:
    """Whether ``root`` is an e5rag FAISS index folder (False: it does not exist or is empty).

    Raises ``StoreError`` for a file, for a non-empty folder that is not an index, and for a
    damaged marker. Writes nothing.
    """
    if not root.exists():
        return False
    if not root.is_dir():
        raise StoreError(f"{root} is a file, not a FAISS index directory")
    marker = root / MARKER
    if marker.is_file():
        try:
            fmt = json.loads(marker.read_bytes()).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != FORMAT:
            raise damaged(root, f"{marker.name} is not an e5rag FAISS index marker")
        return True
    if _is_legacy(root):
        return True
    entries = {p.name for p in root.iterdir()} - {LOCK}
    if not entries:
        return False
    hint = " (it looks like a Milvus Lite index: pass --store milvus)" if entries & _MILVUS_LITE_ENTRIES else ""
    raise StoreError(f"{root} is a non-empty folder that is not an e5rag FAISS index (it has no {MARKER}){hint}; "
                     "e5rag writes an index only into a new or empty folder: choose another --index")


def prepare_root(root: Path) -> None:
    """Create ``root`` (if needed) and its marker; call with the writer lock held."""
    if not (root / MARKER).is_file():
        fsutil.atomic_write_json(root / MARKER, {"format": FORMAT, "version": 1})


def read_current(root: Path) -> str | None:
    """The live generation's name as ``CURRENT`` records it (validated), or None before the first commit."""
    marker = root / CURRENT
    try:
        raw = marker.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise damaged(root, f"{CURRENT} cannot be read ({exc.strerror})") from None
    name = raw.decode("ascii", errors="replace").strip()
    if GEN_NAME.fullmatch(name) is None:
        raise damaged(root, f"{CURRENT} holds {name[:60]!r}, not a generation name (gen-NNNNNN)")
    return name


def current_generation(root: Path) -> Path | None:
    """The live generation folder, or None when the index has never been committed."""
    name = read_current(root)
    if name is None:
        return None
    gen = root / name
    if gen.is_symlink() or not gen.is_dir():
        raise damaged(root, f"{CURRENT} names {name}, which is missing or not a folder")
    return gen


def _journal(root: Path) -> list[str]:
    try:
        entries = json.loads((root / JOURNAL).read_bytes()).get("created", [])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError):
        return []  # a damaged journal only means nothing is cleaned: never guess
    return [e for e in entries if isinstance(e, str) and (GEN_NAME.fullmatch(e) or _TMP_NAME.fullmatch(e))]


def _record(root: Path, names: list[str]) -> None:
    """Add ``names`` to the journal (durably, before the entries are created)."""
    entries = _journal(root)
    entries += [n for n in names if n not in entries]
    fsutil.atomic_write_json(root / JOURNAL, {"created": entries})


def _forget(root: Path, names: set[str]) -> None:
    left = [n for n in _journal(root) if n not in names]
    if left:
        fsutil.atomic_write_json(root / JOURNAL, {"created": left})
    else:
        (root / JOURNAL).unlink(missing_ok=True)
        fsutil.fsync_dir(root)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def new_workdir(root: Path) -> Path:
    """A recorded work folder for the next generation (writer lock held)."""
    path = fsutil.make_dir(root, _TMP_PREFIX)
    # Recorded right after creation: a kill between the two leaves one empty folder, never a loss.
    _record(root, [path.name])
    return path


def publish(root: Path, workdir: Path) -> Path:
    """Turn a finished work folder into the live generation; the old one is then removed."""
    old = current_generation(root)
    number = int(old.name[len(_GEN_PREFIX):]) + 1 if old is not None else 1
    while (root / f"{_GEN_PREFIX}{number:06d}").exists() or (root / f"{_GEN_PREFIX}{number:06d}").is_symlink():
        number += 1  # never rename onto an entry e5rag did not make
    gen = root / f"{_GEN_PREFIX}{number:06d}"
    _record(root, [gen.name] + ([old.name] if old is not None else []))
    fsutil.fsync_tree(workdir)
    os.rename(workdir, gen)
    fsutil.atomic_write_text(root / CURRENT, gen.name)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _forget(root, {workdir.name, gen.name} | ({old.name} if old is not None else set()))
    return gen


def clean_stale(root: Path) -> None:
    """Remove the recorded work folders and generations of killed writers (writer lock held)."""
    recorded = _journal(root)
    if not recorded:
        return
    live = read_current(root)
    for name in recorded:
        if name != live:
            _remove(root / name)
    _forget(root, set(recorded))


class WriterLock:
    """An exclusive, non-blocking lock: a second writer gets a clear "index in use" error."""

    def __init__(self, root: Path) -> None:
        try:
            self._lock = fsutil.FileLock(root / LOCK)
        except fsutil.LockHeld:
            raise StoreError(f"index {root} is in use by another writing process; wait for it to finish") from None

    def release(self) -> None:
        self._lock.release()
