"""SQLite table of documents keyed by a stable int64 id (the FAISS id). No pickle anywhere.

Besides the documents (and their BM25 table), a generation's database lists its vector segment
files and the ids of stored vectors that are dead (``indexers.segments``): the store's one commit
point is this database's transaction, in WAL mode, so a commit writes only the pages it changed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import bm25
from .base import Document
from .filter_sql import to_sql
from .filters import Filter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY,
    file TEXT UNIQUE NOT NULL,
    rows INTEGER NOT NULL,
    level INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead (iid INTEGER PRIMARY KEY);
"""
_CHUNK = 900  # stay under SQLite's bound-parameter limit


def _chunks(items: Sequence, n: int = _CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class DocStore:
    """Documents in one SQLite file; every method is one statement per chunk, no commit inside."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        # check_same_thread=False: async callers (LangChain) run store methods in executor threads;
        # SQLite is built serialized (sqlite3.threadsafety == 3) and writers hold their own lock.
        self.conn = sqlite3.connect(uri, uri=True, isolation_level="DEFERRED", check_same_thread=False)
        if not readonly:
            self.conn.executescript(_SCHEMA)
            bm25.ensure_index(self.conn)  # BM25 over the texts, kept in step by triggers (indexers.bm25)

    def use_wal(self) -> None:
        """Write-ahead logging with a full sync at each commit: a commit appends only the pages it changed,
        readers keep their snapshot meanwhile, and a killed writer's uncommitted pages are ignored."""
        self.commit()
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")

    def snapshot(self) -> None:
        """Pin this (read-only) connection to the current committed state until it is closed."""
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()

    def has_segments(self) -> bool:
        """Whether this database lists vector segments (a generation of the segmented layout)."""
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'segments'").fetchone()
        return row is not None

    def segments(self) -> list[tuple[int, str, int, int]]:
        """(seq, file name, rows, level) of every committed segment, in order."""
        return [(int(q), f, int(r), int(lv)) for q, f, r, lv in
                self.conn.execute("SELECT seq, file, rows, level FROM segments ORDER BY seq")]

    def add_segment(self, seq: int, file: str, rows: int, level: int = 0) -> None:
        self.conn.execute("INSERT INTO segments (seq, file, rows, level) VALUES (?, ?, ?, ?)",
                          (int(seq), file, int(rows), int(level)))

    def drop_segments(self, seqs: Sequence[int]) -> None:
        self.conn.executemany("DELETE FROM segments WHERE seq = ?", [(int(q),) for q in seqs])

    def dead(self) -> list[int]:
        """Ids of stored vectors whose document was replaced or deleted."""
        return [r[0] for r in self.conn.execute("SELECT iid FROM dead ORDER BY iid")]

    def dead_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])

    def add_dead(self, iids: Sequence[int]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO dead (iid) VALUES (?)", [(int(i),) for i in iids])

    def take_dead(self, iids: Sequence[int]) -> set[int]:
        """Those of ``iids`` that are dead, now forgotten (their vectors are being dropped from a segment)."""
        found: set[int] = set()
        for chunk in _chunks([int(i) for i in iids]):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(f"SELECT iid FROM dead WHERE iid IN ({marks})", list(chunk)))
            self.conn.execute(f"DELETE FROM dead WHERE iid IN ({marks})", list(chunk))
        return found

    def forget_vectors(self) -> None:
        """Clear the segment list and the dead ids (a compacted generation's base holds exactly the live vectors)."""
        self.conn.execute("DELETE FROM segments")
        self.conn.execute("DELETE FROM dead")

    def copy_to(self, path: Path) -> None:
        """Write a compacted copy of the committed database to ``path`` (SQLite ``VACUUM INTO``)."""
        self.commit()
        self.conn.execute("VACUUM INTO ?", (str(path),))

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def ids(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT id FROM docs ORDER BY iid")]

    def iids(self, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(list(ids)):
            q = f"SELECT id, iid FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, list(chunk)).fetchall())
        return out

    def hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(list(ids)):
            q = f"SELECT id, hash FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, list(chunk)).fetchall())
        return out

    def upsert(self, docs: Sequence[Document]) -> list[int]:
        """Insert or replace by id, keeping an existing row's iid. Returns the iids in order."""
        self.conn.executemany(
            "INSERT INTO docs (id, title, text, metadata, hash) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET title=excluded.title, text=excluded.text, "
            "metadata=excluded.metadata, hash=excluded.hash",
            [(d.id, d.title or "", d.text, json.dumps(d.metadata, ensure_ascii=False), d.content_hash) for d in docs])
        iids = self.iids([d.id for d in docs])
        return [iids[d.id] for d in docs]

    def delete(self, ids: Sequence[str]) -> list[int]:
        found = self.iids(ids)
        for chunk in _chunks(list(found)):
            self.conn.execute(f"DELETE FROM docs WHERE id IN ({','.join('?' * len(chunk))})", list(chunk))
        return list(found.values())

    def by_iid(self, iids: Sequence[int]) -> dict[int, Document]:
        out: dict[int, Document] = {}
        for chunk in _chunks([int(i) for i in iids]):
            q = f"SELECT iid, id, title, text, metadata FROM docs WHERE iid IN ({','.join('?' * len(chunk))})"
            for iid, id_, title, text, meta in self.conn.execute(q, list(chunk)):
                out[iid] = Document(id_, text, title, json.loads(meta))
        return out

    def by_id(self, ids: Sequence[str]) -> dict[str, Document]:
        iids = self.iids(ids)
        docs = self.by_iid(list(iids.values()))
        return {id_: docs[iid] for id_, iid in iids.items()}

    def page(self, after_iid: int, limit: int) -> list[tuple[int, Document]]:
        """Up to ``limit`` (iid, document) pairs with iid > ``after_iid``, in iid order."""
        q = "SELECT iid, id, title, text, metadata FROM docs WHERE iid > ? ORDER BY iid LIMIT ?"
        return [(iid, Document(id_, text, title, json.loads(meta)))
                for iid, id_, title, text, meta in self.conn.execute(q, (int(after_iid), int(limit)))]

    def matching_iids(self, expr: Filter) -> list[int]:
        """iids of documents the parsed filter accepts (see ``indexers.filters``)."""
        where, params = to_sql(expr)
        return [r[0] for r in self.conn.execute(f"SELECT iid FROM docs WHERE {where}", params)]

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
