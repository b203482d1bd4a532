"""SHA-256 of big files, computed once: cached by resolved path, size and mtime.

A 14 GB model is read once; the next load looks its digest up in ``{cache_dir}/file-hashes.jsonl``
(one JSON line per file version, appended, so concurrent processes never corrupt it). A file
rewritten in place gets a new mtime and so a new digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_FILE = "file-hashes.jsonl"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's contents (read in 4 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _read_cache(cache: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        with open(cache, encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                    found[row["key"]] = row["sha256"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a killed writer
    except FileNotFoundError:
        pass
    return found


def cached_sha256(path: Path, cache_dir: Path) -> str:
    """``sha256_file(path)``, looked up in (or added to) the cache under ``cache_dir``."""
    key = _key(path)
    cache = cache_dir / CACHE_FILE
    hit = _read_cache(cache).get(key)
    if hit is not None:
        return hit
    digest = sha256_file(path)
    if _key(path) == key:  # not rewritten while we read it
        cache_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "sha256": digest}) + "\n"
        fd = os.open(cache, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    return digest
