"""Pure conversions between LangChain's world and e5rag's: documents, filters, vectors, kwargs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document as LCDocument

from e5rag.indexers import Document, Hit, filters

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


_COMPARE = {"$eq": "==", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_DICT_OPS = "a value, a list, or {'$eq'|'$ne'|'$gt'|'$gte'|'$lt'|'$lte': v, '$in'|'$nin': [..]}"


def _scalar(key: str, value: Any, field: filters.Field) -> filters.Scalar:
    if not isinstance(value, (str, int, float)) or (field[0] == "column" and not isinstance(value, str)):
        kinds = "strings" if field[0] == "column" else "strings, numbers or booleans"
        raise InputError(f"filter on {key!r}: values must be {kinds}, got {value!r}")
    return value


def _values(key: str, value: Any, field: filters.Field) -> tuple[filters.Scalar, ...]:
    if not isinstance(value, (list, tuple, set)) or not value:
        raise InputError(f"filter on {key!r}: '$in' / '$nin' (or a plain list) need a non-empty list, got {value!r}")
    return tuple(_scalar(key, v, field) for v in value)


def _key_clause(key: str, value: Any) -> filters.Filter:
    """``{key: value}`` as a filter tree; ``"title"`` means the title column."""
    field: filters.Field = ("column", "title") if key == TITLE_KEY else ("metadata", key)
    if isinstance(value, (list, tuple, set)):
        return filters.In(field, _values(key, value, field))
    if not isinstance(value, Mapping):
        return filters.Compare(field, "==", _scalar(key, value, field))
    if not value:
        raise InputError(f"filter on {key!r}: the operator dict is empty: use {_DICT_OPS}")
    parts: list[filters.Filter] = []
    for op, operand in value.items():
        if op in _COMPARE:
            parts.append(filters.Compare(field, _COMPARE[op], _scalar(key, operand, field)))
        elif op == "$ne":
            parts.append(filters.Not(filters.Compare(field, "==", _scalar(key, operand, field))))
        elif op in ("$in", "$nin"):
            node = filters.In(field, _values(key, operand, field))
            parts.append(node if op == "$in" else filters.Not(node))
        else:
            raise InputError(f"filter on {key!r}: unknown operator {op!r}: use {_DICT_OPS} "
                             "(or pass a filter expression string)")
    return parts[0] if len(parts) == 1 else filters.And(tuple(parts))


def _dict_filter(filter: Mapping[str, Any]) -> filters.Filter:
    """A LangChain-style dict filter as a tree: keys are ANDed; ``$and`` / ``$or`` take lists of dicts."""
    parts: list[filters.Filter] = []
    for key, value in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, Mapping) and v for v in value):
                raise InputError(f"filter {key!r} needs a non-empty list of non-empty dicts, got {value!r}")
            items = tuple(_dict_filter(v) for v in value)
            parts.append(filters.And(items) if key == "$and" else filters.Or(items))
        elif str(key).startswith("$"):
            raise InputError(f"unknown filter operator {key!r}: use '$and' or '$or' at the top level, "
                             f"and per key {_DICT_OPS}")
        else:
            parts.append(_key_clause(str(key), value))
    return parts[0] if len(parts) == 1 else filters.And(tuple(parts))


def filter_expression(filter: str | Mapping[str, Any] | None) -> str | None:
    """A filter as e5rag's expression string (``e5rag.indexers.filters``), which both stores take.

    A string passes through; a dict follows LangChain's convention: ``{"lang": "en", "year": {"$gte": 2020}}``
    (every key must match), a list means any of its values, ``$eq $ne $in $nin $gt $gte $lt $lte`` per
    key, ``{"$or": [{..}, {..}]}`` / ``{"$and": [..]}``; ``"title"`` filters the title column.
    """
    if filter is None or isinstance(filter, str):
        return filter or None
    if not isinstance(filter, Mapping):
        raise InputError(f"filter must be an expression string or a dict, got {type(filter).__name__}")
    if not filter:
        return None
    return filters.format_filter(_dict_filter(filter))


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
