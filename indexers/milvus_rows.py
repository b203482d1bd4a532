"""Documents <-> Milvus rows, and request batching that respects gRPC message limits.

Texts and titles longer than Milvus' VARCHAR limit (65,535 UTF-8 bytes) are stored truncated at a
character boundary, with a warning: the vector was computed by the caller from the full text (a
model reads far fewer tokens than that), and the stored content hash is the full document's, so
re-indexing the same document is still skipped. Ids that long and metadata whose JSON exceeds
64 KiB are refused (``StoreInputError``): neither can be cut without changing what it means.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .base import Document, StoreInputError
from .milvus_schema import HASH, ID, JSON_MAX, METADATA, TEXT, TITLE, VARCHAR_MAX, VECTOR

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024 * 1024  # well under Milvus' 64 MiB insert and gRPC message limits
MAX_REQUEST_ROWS = 10_000
MAX_IDS_PER_QUERY = 1_000


def truncate_utf8(text: str, max_bytes: int = VARCHAR_MAX) -> str:
    """Longest prefix of ``text`` whose UTF-8 encoding fits in ``max_bytes`` (whole characters only)."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


def _metadata_json(doc: Document) -> int:
    if not isinstance(doc.metadata, dict):
        raise StoreInputError(f"document {doc.id!r}: metadata must be a JSON object, got {type(doc.metadata).__name__}")
    try:
        size = len(json.dumps(doc.metadata, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise StoreInputError(f"document {doc.id!r}: metadata is not JSON-serialisable ({exc})") from None
    if size > JSON_MAX:
        raise StoreInputError(f"document {doc.id!r}: metadata is {size} bytes of JSON, over Milvus' limit of "
                              f"{JSON_MAX}: keep large content in the text")
    return size


def to_rows(docs: Sequence[Document], vectors: np.ndarray) -> tuple[list[dict[str, Any]], list[int]]:
    """Milvus rows for ``docs`` with their ``vectors`` (n, dim) float32, and each row's size in bytes."""
    rows, sizes, truncated = [], [], []
    for doc, vec in zip(docs, vectors, strict=True):
        if len(doc.id.encode("utf-8")) > VARCHAR_MAX:
            raise StoreInputError(f"document id {doc.id[:40]!r}... is longer than Milvus' limit of {VARCHAR_MAX} bytes")
        full_title = doc.title or ""
        text, title = truncate_utf8(doc.text), truncate_utf8(full_title)
        if text is not doc.text or title is not full_title:
            truncated.append(doc.id)
        meta_size = _metadata_json(doc)
        rows.append({ID: doc.id, VECTOR: vec, TITLE: title, TEXT: text, METADATA: doc.metadata, HASH: doc.content_hash})
        sizes.append(len(doc.id) + len(text.encode("utf-8")) + len(title.encode("utf-8")) + meta_size
                     + vec.nbytes + 128)
    if truncated:
        log.warning("%d document(s) have a text or title over Milvus' VARCHAR limit of %d bytes and are stored "
                    "truncated (vectors and content hashes are of the full documents): %s%s", len(truncated),
                    VARCHAR_MAX, ", ".join(map(repr, truncated[:5])), " ..." if len(truncated) > 5 else "")
    return rows, sizes


def batches(items: Sequence, sizes: Sequence[int], max_bytes: int = MAX_REQUEST_BYTES,
            max_items: int = MAX_REQUEST_ROWS) -> Iterator[Sequence]:
    """Consecutive slices of ``items`` of at most ``max_items`` and ``max_bytes`` (one oversized item
    makes a batch of its own)."""
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (total + size > max_bytes or i - start >= max_items):
            yield items[start:i]
            start, total = i, 0
        total += size
    if start < len(items):
        yield items[start:]


def id_chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    """Ids in groups small enough for one ``id in [...]`` expression."""
    sizes = [len(i.encode("utf-8")) + 8 for i in ids]
    yield from (list(chunk) for chunk in batches(list(ids), sizes, 4 * 1024 * 1024, MAX_IDS_PER_QUERY))


def ids_expr(ids: Iterable[str]) -> str:
    """``id in ["a", "b"]`` with every id quoted and escaped (pymilvus' ``get`` does not escape quotes)."""
    return f"{ID} in [" + ", ".join(json.dumps(i, ensure_ascii=False) for i in ids) + "]"


def to_document(entity: dict[str, Any]) -> Document:
    """A ``Document`` from a query row or a search hit's entity (the id comes from the primary field)."""
    meta = entity.get(METADATA)
    if isinstance(meta, (str, bytes)):
        meta = json.loads(meta)
    return Document(id=entity[ID], text=entity.get(TEXT, ""), title=entity.get(TITLE, ""), metadata=meta or {})
