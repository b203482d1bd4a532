"""SQLite table of documents keyed by a stable int64 id (the FAISS id). No pickle anywhere."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

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

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

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

    def matching_iids(self, expr: Filter) -> list[int]:
        """iids of documents the parsed filter accepts (see ``indexers.filters``)."""
        where, params = to_sql(expr)
        return [r[0] for r in self.conn.execute(f"SELECT iid FROM docs WHERE {where}", params)]

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
