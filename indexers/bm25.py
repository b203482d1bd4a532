"""BM25 over the documents of a ``docs.sqlite`` (FAISS store): an SQLite FTS5 index kept exact by triggers.

``docs_fts`` is an external-content FTS5 table over ``docs(title, text)`` keyed by the FAISS id
(``iid``). Triggers on ``docs`` update it in the same statement as every insert, upsert and delete,
so BM25 and the vectors stay in step inside the store's one crash-safe commit. An index built
before this table existed gains it (filled from the stored texts, no re-embedding) the next time
it is opened for writing, or with ``rebuild``.

Scoring is FTS5's ``bm25()``: Okapi BM25 with k1 = 1.2, b = 0.75, title and text counted as one
field, idf = ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6 (terms in over half the documents
count almost nothing). Tokens: FTS5's ``porter unicode61`` tokenizer (Unicode letters and digits,
case- and diacritic-folded, Porter-stemmed). No stop-word list: stop words get the idf floor.
A query is the OR of its distinct tokens (see ``match_expression``); the caller passes the bare
query, never an instruction.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection

FTS_TABLE = "docs_fts"
TOKENIZER = "porter unicode61 remove_diacritics 2"

_FTS_SCHEMA = f"""
CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, text, content='docs', content_rowid='iid',
                                            tokenize='{TOKENIZER}');
CREATE TRIGGER IF NOT EXISTS docs_fts_insert AFTER INSERT ON docs BEGIN
    INSERT INTO {FTS_TABLE}(rowid, title, text) VALUES (new.iid, new.title, new.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_fts_delete AFTER DELETE ON docs BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, text) VALUES ('delete', old.iid, old.title, old.text);
END;
CREATE TRIGGER IF NOT EXISTS docs_fts_update AFTER UPDATE ON docs BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, text) VALUES ('delete', old.iid, old.title, old.text);
    INSERT INTO {FTS_TABLE}(rowid, title, text) VALUES (new.iid, new.title, new.text);
END;
"""
_TOKEN = re.compile(r"[^\W_]+")  # what unicode61 keeps: letters and digits (underscore separates)


def has_index(conn: sqlite3.Connection) -> bool:
    """Whether this docs database has the BM25 table."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FTS_TABLE,)).fetchone()
    return row is not None


def ensure_index(conn: sqlite3.Connection) -> bool:
    """Create the BM25 table and its triggers if missing, filled from the stored texts.

    Returns True when it had to be built. Runs inside the caller's transaction (nothing is committed).
    """
    if has_index(conn):
        return False
    for statement in _statements(_FTS_SCHEMA):
        conn.execute(statement)
    rebuild(conn)
    return True


def rebuild(conn: sqlite3.Connection) -> None:
    """Re-derive the whole BM25 index from the ``docs`` table (FTS5 'rebuild'; no commit)."""
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")


def query_tokens(query: str) -> list[str]:
    """The distinct lower-cased tokens of a query, in order (FTS5 stems them again on matching)."""
    return list(dict.fromkeys(t.lower() for t in _TOKEN.findall(query)))


def match_expression(query: str) -> str:
    """An FTS5 MATCH expression: the OR of the query's distinct tokens, each quoted, so no query text
    is read as FTS5 syntax. Empty when the query has no tokens."""
    return " OR ".join(f'"{t}"' for t in query_tokens(query))


def search(conn: sqlite3.Connection, query: str, k: int,
           allowed: Collection[int] | None = None) -> list[tuple[int, float]]:
    """Top-``k`` (iid, BM25 score) for a bare query, best first; ``allowed``: only these iids (a filter)."""
    expr = match_expression(query)
    if not expr or k < 1 or (allowed is not None and not allowed):
        return []
    # bm25() is negative (lower is better, so ORDER BY ranks best first); we report the Okapi score.
    sql = f"SELECT rowid, -bm25({FTS_TABLE}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? ORDER BY bm25({FTS_TABLE})"
    if allowed is None:
        return [(int(i), float(s)) for i, s in conn.execute(sql + " LIMIT ?", (expr, int(k)))]
    out: list[tuple[int, float]] = []
    for iid, score in conn.execute(sql, (expr,)):
        if iid in allowed:
            out.append((int(iid), float(score)))
            if len(out) == k:
                break
    return out


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    out, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current).strip()
        if sqlite3.complete_statement(joined):
            out.append(joined)
            current = []
    return out
