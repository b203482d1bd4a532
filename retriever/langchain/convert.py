"""Pure conversions between LangChain's world and e5rag's: documents, filters, vectors, kwargs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from e5rag.indexers import Document, Hit
from langchain_core.documents import Document as LCDocument

from ..errors import InputError

# LangChain keeps a title in metadata; e5rag stores it in its own column (embedded as "title text").
TITLE_KEY = "title"


def to_store_document(id_: str, text: str, metadata: Mapping[str, Any] | None) -> Document:
    """A LangChain (id, page_content, metadata) as an e5rag document; a string ``metadata["title"]``
    becomes the title column (and comes back in metadata on the way out)."""
    if not isinstance(text, str):
        raise InputError(f"document {id_!r}: page_content must be a string, got {type(text).__name__}")
    meta = dict(metadata or {})
    title = meta.pop(TITLE_KEY) if isinstance(meta.get(TITLE_KEY), str) and meta.get(TITLE_KEY) else ""
    try:
        json.dumps(meta, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata of document {id_!r} is not JSON-serialisable ({exc}): "
                         "keep metadata to strings, numbers, booleans, lists and dicts") from None
    return Document(id=id_, text=text, title=title, metadata=meta)


def to_langchain(doc: Document, **extra: Any) -> LCDocument:
    """An e5rag document as a LangChain one (``id`` filled); ``extra`` is added to metadata."""
    meta = dict(doc.metadata)
    if doc.title:
        meta[TITLE_KEY] = doc.title
    meta.update(extra)
    return LCDocument(id=doc.id, page_content=doc.text, metadata=meta)


def hit_to_langchain(hit: Hit) -> LCDocument:
    """A search hit with ``score`` (cosine) and ``title`` (always present) in metadata."""
    return to_langchain(hit.document, title=hit.document.title, score=hit.score)


def fill_ids(ids: Sequence[str | None] | None, n: int) -> list[str]:
    """Ids for ``n`` new documents: the given ones, a uuid4 wherever one is missing."""
    if ids is None:
        ids = [None] * n
    ids = list(ids)
    if len(ids) != n:
        raise InputError(f"got {len(ids)} ids for {n} texts: pass one id per text, or none")
    out = [str(i) if i not in (None, "") else str(uuid.uuid4()) for i in ids]
    seen: set[str] = set()
    for i in out:
        if i in seen:
            raise InputError(f"id {i!r} appears twice in one call: ids must be unique")
        seen.add(i)
    return out


def _clause(key: str, value: Any) -> str:
    field = "title" if key == TITLE_KEY else f"metadata[{json.dumps(key)}]"
    if isinstance(value, Mapping):
        if set(value) == {"$eq"}:
            value = value["$eq"]
        elif set(value) == {"$in"}:
            value = list(value["$in"])
        else:
            raise InputError(f"filter on {key!r}: only a value, a list, {{'$eq': v}} or {{'$in': [..]}} "
                             f"are supported, got {dict(value)!r} (or pass a filter expression string)")
    if isinstance(value, (list, tuple, set)):
        values = list(value)
        if not values:
            raise InputError(f"filter on {key!r}: the list of accepted values is empty")
        return f"{field} in {json.dumps(values, ensure_ascii=False)}"
    if value is None or isinstance(value, (dict, bytes)):
        raise InputError(f"filter on {key!r}: values must be strings, numbers or booleans, got {value!r}")
    return f"{field} == {json.dumps(value, ensure_ascii=False)}"


def filter_expression(filter: str | Mapping[str, Any] | None) -> str | None:
    """A filter as e5rag's (Milvus-style) expression string.

    A string passes through; a dict ``{"lang": "en", "year": [2023, 2024]}`` means every key
    matches (a list: any of its values); ``"title"`` filters the title column.
    """
    if filter is None or isinstance(filter, str):
        return filter or None
    if not isinstance(filter, Mapping):
        raise InputError(f"filter must be an expression string or a dict, got {type(filter).__name__}")
    if not filter:
        return None
    return " and ".join(_clause(str(k), v) for k, v in filter.items())


def unit_rows(vectors: Any) -> np.ndarray:
    """L2-normalised float32 rows, so inner product is cosine for any embeddings (zero rows stay zero).
    (n, dim) -> (n, dim)"""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"embeddings must be a list of vectors (n, dim), got shape {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.where(norms > 0, norms, 1.0)


def split_per_input(kwargs: Mapping[str, Any], n: int, keys: Sequence[str]) -> list[dict[str, Any]] | None:
    """Per-input kwargs for a batch: a list/tuple value under one of ``keys`` gives one value per
    input. None when nothing varies (every input gets ``kwargs`` as is)."""
    varying = [k for k in keys if isinstance(kwargs.get(k), (list, tuple))]
    if not varying:
        return None
    for key in varying:
        if len(kwargs[key]) != n:
            raise InputError(f"got {len(kwargs[key])} values of {key!r} for {n} inputs: "
                             "pass one value for all inputs or exactly one per input")
    return [{**kwargs, **{k: kwargs[k][i] for k in varying}} for i in range(n)]
