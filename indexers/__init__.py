"""Vector stores for e5rag: FAISS (a directory) and Milvus (Lite file or server), one interface."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .base import (
    Document,
    Hit,
    Manifest,
    Store,
    StoreError,
    StoreInputError,
    UnsupportedFilterError,
    content_hash,
)

StoreKind = Literal["faiss", "milvus"]

__all__ = ["Document", "Hit", "Manifest", "Store", "StoreError", "StoreInputError", "UnsupportedFilterError",
           "content_hash", "detect_store", "open_store"]


def detect_store(location: str | Path, store: StoreKind | None = None) -> StoreKind:
    """Which backend a location means: ``*.db`` or a URI is Milvus, a directory is FAISS."""
    if store is not None:
        if store not in ("faiss", "milvus"):
            raise StoreInputError(f"unknown store {store!r}: use 'faiss' or 'milvus'")
        return store
    text = str(location)
    if text.startswith(("http://", "https://", "tcp://", "grpc://", "unix:")) or text.endswith(".db"):
        return "milvus"
    return "faiss"


def open_store(location: str | Path, *, store: StoreKind | None = None, readonly: bool = False,
               index_type: str | None = None, **options) -> Store:
    """Open (or prepare to create) the store at ``location``.

    ``index_type`` applies when the index is created (FAISS factory string, or a Milvus index type).
    ``options`` go to the Milvus store (``token``, ``collection``, ``db_name``).
    """
    kind = detect_store(location, store)
    if kind == "faiss":
        if options:
            raise StoreInputError(f"options {sorted(options)} only apply to a Milvus store")
        from .faiss_store import FaissStore

        return FaissStore(location, index_type=index_type or "Flat", readonly=readonly)
    from .milvus_store import MilvusStore

    return MilvusStore(str(location), index_type=index_type, readonly=readonly, **options)
