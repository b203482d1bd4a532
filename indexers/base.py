"""The store interface every backend implements; the CLI and the retriever see only this.

A store keeps vectors, documents (id, text, title, metadata) and a manifest. It knows no model:
the manifest's ``model`` entry is an opaque dict that the caller compares.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e5rag.errors import E5RagError

FORMAT_VERSION = 1


class StoreError(E5RagError):
    """An index is missing, damaged, in use, or cannot do what was asked."""


class StoreInputError(StoreError, ValueError):
    """Bad data handed to a store: wrong dimension, duplicate ids, empty id, bad filter."""


class UnsupportedFilterError(StoreInputError):
    """A metadata filter this store cannot evaluate."""


@dataclass(frozen=True)
class Document:
    """A stored document. ``metadata`` is any JSON object."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return content_hash(self.text, self.title, self.metadata)


@dataclass(frozen=True)
class Hit:
    """One search result: the document, its inner-product score and 1-based rank."""

    document: Document
    score: float
    rank: int


@dataclass(frozen=True)
class CompactReport:
    """What a compaction merged: appended segment files, dead vectors dropped, live vectors written."""

    segments: int
    dead: int
    vectors: int
    bytes_written: int


@dataclass(frozen=True)
class Manifest:
    """What an index holds and which model made it."""

    store: str
    dim: int
    model: dict[str, Any]
    count: int = 0
    format_version: int = FORMAT_VERSION
    index_type: str = "Flat"
    metric: str = "ip"
    search_params: dict[str, int] = field(default_factory=dict)  # default nprobe/ef (indexers.search_params)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": self.format_version, "store": self.store, "dim": self.dim,
                "metric": self.metric, "index_type": self.index_type, "count": self.count, "model": self.model,
                "search_params": dict(self.search_params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(store=d["store"], dim=int(d["dim"]), model=d.get("model") or {}, count=int(d.get("count", 0)),
                   format_version=int(d.get("format_version", 0)), index_type=d.get("index_type", "Flat"),
                   metric=d.get("metric", "ip"), search_params=dict(d.get("search_params") or {}))


def content_hash(text: str, title: str = "", metadata: dict[str, Any] | None = None) -> str:
    """Hash of what is embedded and stored, used to skip unchanged documents on re-index."""
    import json

    payload = json.dumps([title, text, metadata or {}], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def check_vectors(vectors: np.ndarray, dim: int, n: int | None = None) -> np.ndarray:
    """Validate a (n, dim) float matrix and return it as contiguous float32."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise StoreInputError(f"vectors must be a 2-D array (n, {dim}), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise StoreInputError(f"vectors have dimension {arr.shape[1]} but this index holds dimension {dim}: "
                              "use the model the index was built with, or a new index")
    if n is not None and arr.shape[0] != n:
        raise StoreInputError(f"got {arr.shape[0]} vectors for {n} documents")
    if not np.issubdtype(arr.dtype, np.floating):
        raise StoreInputError(f"vectors must be floating point, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise StoreInputError("vectors contain NaN or infinity")
    return arr


def check_documents(docs: Sequence[Document]) -> None:
    seen: set[str] = set()
    for d in docs:
        if not isinstance(d.id, str) or not d.id:
            raise StoreInputError(f"document id must be a non-empty string, got {d.id!r}")
        if d.id in seen:
            raise StoreInputError(f"document id {d.id!r} appears twice in one batch")
        seen.add(d.id)


class Store(ABC):
    """A vector store with documents and a manifest. Writes become durable on ``commit``."""

    kind: str = ""

    @property
    @abstractmethod
    def manifest(self) -> Manifest | None:
        """The manifest, or None for a new, empty index that has not been initialised."""

    @abstractmethod
    def initialize(self, dim: int, model: dict[str, Any]) -> None:
        """Set dimension and model identity of a new index (error if already set)."""

    @abstractmethod
    def count(self) -> int:
        """Number of documents."""

    @abstractmethod
    def upsert(self, docs: Sequence[Document], vectors: np.ndarray) -> None:
        """Add documents, replacing any with the same id. vectors: (len(docs), dim) float32."""

    @abstractmethod
    def update_metadata(self, docs: Sequence[Document]) -> None:
        """Store new metadata (and content hash) for existing documents, keeping their vectors bit
        for bit: for documents whose text and title are unchanged, so nothing is re-embedded."""

    @staticmethod
    def _check_existing(docs: Sequence[Document], found: Iterable[str]) -> None:
        """For ``update_metadata``: refuse ids the store does not hold."""
        missing = sorted({d.id for d in docs} - set(found))
        if missing:
            raise StoreInputError(f"cannot update metadata of {len(missing)} document(s) not in the index "
                                  f"(e.g. {missing[0]!r}): add them with upsert")

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; missing ids are ignored. Returns how many existed."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[Document | None]:
        """Documents by id, None where absent, in the order asked."""

    @abstractmethod
    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """Stored content hash of each id that exists."""

    def ids(self) -> list[str]:
        """Every stored id (for a full sync against a source). Stores that cannot list say so."""
        raise StoreError(f"a {type(self).__name__} cannot list its document ids")

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vector of each id that exists: id -> (dim,) float32 (approximate for compressed
        FAISS types such as PQ)."""
        raise StoreError(f"the {self.kind or type(self).__name__} store cannot return stored vectors")

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, filter: str | None = None, *, nprobe: int | None = None,
               ef: int | None = None) -> list[list[Hit]]:
        """Top-k by inner product for each query row. queries: (n, dim) -> n lists of hits.

        ``nprobe`` (IVF) / ``ef`` (HNSW) override the manifest's ``search_params`` for this call."""

    def keyword_search(self, queries: Sequence[str], k: int, filter: str | None = None) -> list[list[Hit]]:
        """Top-k by BM25 for each bare query string -> n lists of hits (score: the BM25 score)."""
        raise StoreError(f"the {self.kind or type(self).__name__} store has no BM25 index: use a FAISS index "
                         "directory for hybrid search")

    def iter_documents(self, batch_size: int = 1000) -> Iterator[list[Document]]:
        """Every stored document, in lists of up to ``batch_size`` (each backend's own order)."""
        raise StoreError(f"a {self.kind or type(self).__name__} store cannot list its documents")

    def set_model(self, model: dict[str, Any]) -> None:
        """Replace the manifest's opaque model record (e.g. a migrated identity); durable on ``commit``."""
        raise StoreError(f"a {self.kind or type(self).__name__} store cannot change its model record")

    def compact(self, force: bool = False) -> CompactReport | None:
        """Merge what commits appended since the store was last compacted, when it is due (or ``force``).

        FAISS commits pending writes first, and its commits compact by themselves when due, so this is for
        merging on demand (``e5rag compact``). Stores that manage their own segments (Milvus) return None.
        """
        return None

    def commit(self) -> None:  # noqa: B027  (a default no-op: stores that write at once need nothing)
        """Make every write so far durable (atomic where the backend allows)."""

    def close(self) -> None:  # noqa: B027
        """Release files and connections (commits nothing)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
