"""Documents and their chunks in a store: ids, metadata, the parent put back together, grouped hits.

A document that fits the encoder is stored as itself. A longer one is stored as chunks
``"{doc_id}#{n}"`` (n = 0, 1, ...), each carrying the parent's title and metadata plus
``parent_id``, ``chunk`` (n), ``start``/``end`` (character offsets into the parent text) and
``chunks`` (how many). Only the store's own API is used: chunk ids are found by probing
``{doc_id}#0``, ``#1``, ... which is exact because a document's chunks are always numbered
``0..n-1`` with no gap: writes replace them in order and deletes remove the highest first
(see ``plan_writes``), so even a crash mid-write leaves a gap-free prefix.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from e5rag.indexers import Document, Hit, Store

from .chunking import Span, join_spans
from .errors import InputError

CHUNK_KEYS = ("parent_id", "chunk", "start", "end", "chunks", "page")
PARENT_METADATA = "parent_metadata"  # the parent's own metadata, kept whole where it used a key above
_PROBE = 64  # chunk ids asked for per store call while probing
_CHUNK_ID = re.compile(r"^(.*)#(\d+)$", re.DOTALL)


def chunk_id(doc_id: str, n: int) -> str:
    return f"{doc_id}#{n}"


def split_document(doc: Document, spans: Sequence[Span]) -> list[Document]:
    """The stored documents for ``doc``: itself when one span covers it, else one chunk per span."""
    if len(spans) == 1 and spans[0] == Span(0, len(doc.text)):
        return [doc]
    base = dict(doc.metadata)
    if any(k in base for k in (*CHUNK_KEYS, PARENT_METADATA)):
        base[PARENT_METADATA] = dict(doc.metadata)
    pages = doc.metadata.get("page_starts")  # a PDF's page offsets (see ``extract.pdf_text``)
    chunks = []
    for n, s in enumerate(spans):
        meta = {**base, "parent_id": doc.id, "chunk": n, "start": s.start, "end": s.end, "chunks": len(spans)}
        if isinstance(pages, list) and pages:
            meta["page"] = bisect_right(pages, s.start)  # 1-based: the page the chunk starts on
        chunks.append(Document(chunk_id(doc.id, n), doc.text[s.start:s.end], doc.title, meta))
    return chunks


def is_chunk(doc: Document) -> bool:
    m = doc.metadata
    return isinstance(m.get("parent_id"), str) and isinstance(m.get("chunk"), int) and \
        doc.id == chunk_id(m["parent_id"], m["chunk"])


def parent_id(doc: Document) -> str:
    """The id of the document a stored document belongs to (its own id when it is not a chunk)."""
    return doc.metadata["parent_id"] if is_chunk(doc) else doc.id


def position(doc: Document) -> dict[str, object]:
    """``parent_id``, ``chunk``, ``start``, ``end`` of a stored document (a whole one: chunk 0)."""
    if is_chunk(doc):
        return {k: doc.metadata[k] for k in ("parent_id", "chunk", "start", "end")}
    return {"parent_id": doc.id, "chunk": 0, "start": 0, "end": len(doc.text)}


# ---------------------------------------------------------------------- reading a store
def stored_chunk_ids(store: Store, doc_id: str, first: int = 0) -> list[str]:
    """Ids of the stored chunks ``doc_id#first``, ``#first+1``, ... up to the first missing one."""
    found: list[str] = []
    n = first
    while True:
        ids = [chunk_id(doc_id, i) for i in range(n, n + _PROBE)]
        present = store.content_hashes(ids)
        for i in ids:
            if i not in present:
                return found
            found.append(i)
        n += _PROBE


def get_document(store: Store, doc_id: str) -> Document | None:
    """A document as it was indexed: a whole one as stored, a chunked one put back together from
    its chunks (text, title, metadata). None when neither is in the store."""
    whole = store.get([doc_id])[0]
    if whole is not None:
        return whole
    chunks = [c for c in store.get(stored_chunk_ids(store, doc_id)) if c is not None]
    if not chunks:
        return None
    text = join_spans([(c.metadata["start"], c.metadata["end"], c.text) for c in chunks])
    meta = chunks[0].metadata
    if PARENT_METADATA in meta:
        meta = meta[PARENT_METADATA]
    else:
        meta = {k: v for k, v in meta.items() if k not in CHUNK_KEYS}
    return Document(doc_id, text, chunks[0].title, meta)


def delete_documents(store: Store, ids: Sequence[str]) -> list[str]:
    """Delete documents, each with every chunk of it (highest chunk first). -> the ids that were stored"""
    ids = list(dict.fromkeys(ids))
    whole = store.content_hashes(ids)
    for doc in store.get([i for i in ids if _CHUNK_ID.match(i) and i in whole]):
        if doc is not None and is_chunk(doc):  # one chunk alone would leave a gap in its document
            raise InputError(f"{doc.id!r} is chunk {doc.metadata['chunk']} of document "
                             f"{doc.metadata['parent_id']!r}: delete the document, which removes all its chunks")
    doomed: list[str] = []
    found: list[str] = []
    for doc_id in ids:
        chunks = stored_chunk_ids(store, doc_id)
        if chunks or doc_id in whole:
            found.append(doc_id)
        doomed += ([doc_id] if doc_id in whole else []) + chunks[::-1]
    if doomed:
        store.delete(doomed)
    return found


# ---------------------------------------------------------------------- writing
@dataclass(frozen=True)
class Write:
    """What indexing one document does: delete ``stale`` ids (in this order), then upsert ``parts``."""

    doc: Document
    parts: list[Document]
    stale: list[str]
    existed: bool


def check_part_ids(parts_of: Sequence[tuple[Document, list[Document]]]) -> None:
    """Refuse input where a chunk id of one document is another document's id."""
    owner: dict[str, str] = {}
    for doc, parts in parts_of:
        for n, p in enumerate(parts):
            what = f"document {doc.id!r}" if p is doc else f"chunk {n} of document {doc.id!r}"
            if p.id in owner:
                raise InputError(f"id {p.id!r} is both {owner[p.id]} and {what}: rename the document "
                                 "('#N' ends the ids of chunks)")
            owner[p.id] = what


def plan_writes(store: Store, parts_of: Sequence[tuple[Document, list[Document]]],
                skip_unchanged: bool = True) -> tuple[list[Write], int]:
    """Compare each document's new parts with the store. -> (writes for changed/new documents, skipped)

    A document is unchanged when every part is stored with the same content hash and nothing
    else of it is (no whole copy beside chunks, no chunk past the last).
    """
    check_part_ids(parts_of)
    probes: list[str] = []
    for doc, parts in parts_of:
        probes += [p.id for p in parts]
        probes += [chunk_id(doc.id, len(parts)), doc.id] if parts[0].id != doc.id else [chunk_id(doc.id, 0)]
    known = store.content_hashes(probes)
    writes: list[Write] = []
    skipped = 0
    for doc, parts in parts_of:
        chunked = parts[0].id != doc.id
        if chunked:
            beyond = stored_chunk_ids(store, doc.id, len(parts)) if chunk_id(doc.id, len(parts)) in known else []
            stale = ([doc.id] if doc.id in known else []) + beyond[::-1]
        else:
            stale = stored_chunk_ids(store, doc.id)[::-1] if chunk_id(doc.id, 0) in known else []
        same = all(known.get(p.id) == p.content_hash for p in parts)
        if skip_unchanged and same and not stale:
            skipped += 1
            continue
        existed = bool(stale) or any(p.id in known for p in parts)
        writes.append(Write(doc, parts, stale, existed))
    return writes, skipped


def parent_of_id(stored_id: str) -> str:
    """The document id a stored id belongs to, read from the id alone (``a#3`` -> ``a``)."""
    m = _CHUNK_ID.match(stored_id)
    return m.group(1) if m else stored_id


def stale_ids(store: Store, keep: set[str]) -> list[str]:
    """Every stored id not in ``keep`` (the part ids of the input), a document's chunks highest first
    (so an interrupted delete leaves the rest numbered without a gap)."""

    def order(i: str):
        m = _CHUNK_ID.match(i)
        return (m.group(1), -int(m.group(2))) if m else (i, 1)

    return sorted((i for i in store.ids() if i not in keep), key=order)


# ---------------------------------------------------------------------- searching
def group_hits(hits: Sequence[Hit], k: int) -> list[Hit]:
    """The best hit of each parent document, at most ``k`` of them, ranked again from 1."""
    seen: set[str] = set()
    out: list[Hit] = []
    for h in hits:
        parent = parent_id(h.document)
        if parent in seen:
            continue
        seen.add(parent)
        out.append(Hit(h.document, h.score, len(out) + 1))
        if len(out) == k:
            break
    return out


def search_documents(store: Store, queries: np.ndarray, k: int, filter: str | None = None,
                     max_k: int = 16384, **breadth: int | None) -> list[list[Hit]]:
    """Top-``k`` documents per query row, each parent once (its best chunk). queries: (n, dim)

    Asks the store for 4k chunks, then for 4 times more for any query that got fewer than ``k``
    distinct documents from a full list (the store had more), up to ``max_k`` (Milvus' top-k limit).
    ``breadth``: the store's search parameters (``nprobe``, ``ef``).
    """
    fetch = min(max(k, 1) * 4, max_k)
    results = store.search(queries, fetch, filter=filter, **breadth)
    out: list[list[Hit]] = [[] for _ in results]
    pending = list(range(len(results)))
    while pending:
        retry = []
        for i in pending:
            out[i] = group_hits(results[i], k)
            if len(out[i]) < k and len(results[i]) >= fetch and fetch < max_k:
                retry.append(i)
        if retry:
            fetch = min(fetch * 4, max_k)
            for i, hits in zip(retry, store.search(queries[retry], fetch, filter=filter, **breadth), strict=True):
                results[i] = hits
        pending = retry
    return out
