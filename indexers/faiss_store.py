"""FAISS store: an index directory of crash-safe generations.

Each generation holds ``index.faiss`` (inner product, ``IndexIDMap2`` over any ``index_factory``
string), ``docs.sqlite`` (id, title, text, metadata; the int64 FAISS id is the row id) and
``manifest.json``. Writes go to a working copy and become live only on ``commit``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .base import Document, Hit, Manifest, Store, StoreError, StoreInputError, check_documents, check_vectors
from .docstore import DocStore
from .filters import parse_filter
from .search_params import SearchParams, check_applies, default_search_params

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
DOCS_FILE = "docs.sqlite"
MANIFEST_FILE = "manifest.json"
# Queries per search from which FAISS's exhaustive search uses one BLAS matrix product instead of
# one dot product at a time. faiss 1.15 raised it from 20 to 128,000, which made a batch of 100
# queries over 100k x 576 vectors 7x slower than numpy's ``q @ D.T`` (benchmarks/README.md).
BLAS_THRESHOLD = 20


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        from .base import StoreError

        raise StoreError("the FAISS store needs faiss: pip install 'e5rag[faiss]' "
                         "(or 'e5rag[faiss-gpu]' on CUDA)") from exc
    if faiss.cvar.distance_compute_blas_threshold > BLAS_THRESHOLD:
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    return faiss


def make_index(dim: int, index_type: str):
    """An inner-product index that takes our int64 ids: IVF indexes natively (with a hash-table
    direct map, so vectors can be reconstructed and removed), anything else inside IndexIDMap2."""
    faiss = _faiss()
    try:
        inner = faiss.index_factory(int(dim), index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise StoreInputError(f"FAISS cannot build index type {index_type!r}: {str(exc).splitlines()[0]} "
                              "(see faiss index_factory strings such as Flat, HNSW32, IVF256,Flat)") from None
    if isinstance(inner, faiss.IndexIVF):  # index_factory returns the concrete class
        inner.set_direct_map_type(faiss.DirectMap.Hashtable)
        return inner
    return faiss.IndexIDMap2(inner)


def read_manifest(root: Path) -> Manifest | None:
    """The manifest of the live generation of a FAISS index directory, if any."""
    gen = atomic.current_generation(root)
    if gen is None:
        return None
    return Manifest.from_dict(json.loads((gen / MANIFEST_FILE).read_text()))


class FaissStore(Store):
    """FAISS vectors + SQLite documents in a directory. ``readonly`` opens take no lock."""

    kind = "faiss"

    def __init__(self, path: str | Path, *, index_type: str = "Flat", readonly: bool = False) -> None:
        self.root = Path(path)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a FAISS index directory")
        self.readonly = readonly
        self._lock = None if readonly else atomic.WriterLock(self.root)
        try:
            if not readonly:
                atomic.clean_stale(self.root)
            self._gen = atomic.current_generation(self.root) if self.root.exists() else None
            if readonly and self._gen is None:
                raise StoreError(f"no index at {self.root}: build one with `e5rag index SOURCE --index {self.root}`")
            self._manifest = read_manifest(self.root) if self._gen is not None else None
            self._index_type = self._manifest.index_type if self._manifest else index_type
            self._index = _faiss().read_index(str(self._gen / INDEX_FILE)) if self._gen is not None else None
            self._docs = DocStore(self._gen / DOCS_FILE, readonly=True) if self._gen is not None else None
        except BaseException:
            self.close()
            raise
        self._work: Path | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # (iids, vectors) awaiting IVF training
        self._session_params = SearchParams()  # set_search_params(nprobe=, efSearch=) of this open store

    # ------------------------------------------------------------------ state
    @property
    def manifest(self) -> Manifest | None:
        return self._manifest

    def initialize(self, dim: int, model: dict[str, Any]) -> None:
        if self._manifest is not None:
            raise StoreError(f"index {self.root} is already initialised")
        self._writable()
        self._index = make_index(dim, self._index_type)
        self._manifest = Manifest(store=self.kind, dim=int(dim), model=dict(model), index_type=self._index_type,
                                  search_params=default_search_params(self._index_type).to_dict())

    def _writable(self) -> DocStore:
        if self.readonly:
            raise StoreError(f"index {self.root} was opened read-only")
        if self._work is None:
            self._work = atomic.new_workdir(self.root)
            if self._gen is not None:
                shutil.copy2(self._gen / DOCS_FILE, self._work / DOCS_FILE)
            if self._docs is not None:
                self._docs.close()
            self._docs = DocStore(self._work / DOCS_FILE)
        return self._docs

    def _require_init(self) -> Manifest:
        if self._manifest is None:
            raise StoreError(f"index {self.root} is empty: add documents first")
        return self._manifest

    # ------------------------------------------------------------------ writes
    def upsert(self, docs: Sequence[Document], vectors: np.ndarray) -> None:
        manifest = self._require_init()
        docs = list(docs)
        check_documents(docs)
        vecs = check_vectors(vectors, manifest.dim, len(docs))
        if not docs:
            return
        store = self._writable()
        existing = store.iids([d.id for d in docs])
        if existing:
            self._remove_vectors(np.fromiter(existing.values(), dtype=np.int64))
        iids = np.asarray(store.upsert(docs), dtype=np.int64)
        if self._index.is_trained:
            self._index.add_with_ids(vecs, iids)
        else:
            self._pending.append((iids, vecs))

    def delete(self, ids: Sequence[str]) -> int:
        self._require_init()
        removed = self._writable().delete(list(ids))
        if removed:
            self._remove_vectors(np.asarray(removed, dtype=np.int64))
        return len(removed)

    def _remove_vectors(self, iids: np.ndarray) -> None:
        if self._pending:
            drop = set(iids.tolist())
            self._pending = [(i[keep], v[keep]) for i, v in self._pending
                             for keep in [np.array([x not in drop for x in i.tolist()], dtype=bool)]]
        if self._index.ntotal == 0:
            return
        faiss = _faiss()
        try:
            iids = np.ascontiguousarray(iids, dtype=np.int64)
            # IDSelectorArray: the one selector IVF's hash-table direct map can remove with.
            self._index.remove_ids(faiss.IDSelectorArray(len(iids), faiss.swig_ptr(iids)))
        except RuntimeError:
            # Graph indexes (HNSW) cannot remove: rebuild from the stored vectors without these ids.
            self._rebuild_without(set(iids.tolist()))

    def _rebuild_without(self, drop: set[int]) -> None:
        faiss = _faiss()
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vecs = self._index.index.reconstruct_n(0, self._index.ntotal)
        keep = np.array([i not in drop for i in ids.tolist()], dtype=bool)
        fresh = make_index(self._manifest.dim, self._index_type)
        if not fresh.is_trained:
            fresh.train(vecs)
        if keep.any():
            fresh.add_with_ids(np.ascontiguousarray(vecs[keep]), ids[keep])
        self._index = fresh
        log.info("rebuilt the %s index without %d removed vectors", self._index_type, len(drop))

    def _train_pending(self) -> None:
        if not self._pending:
            return
        iids = np.concatenate([i for i, _ in self._pending])
        vecs = np.concatenate([v for _, v in self._pending])
        if not self._index.is_trained:
            try:
                self._index.train(vecs)
            except RuntimeError as exc:
                raise StoreInputError(
                    f"index type {self._index_type!r} could not be trained on {len(vecs)} vectors "
                    f"({str(exc).splitlines()[0]}); add more documents or use a smaller index such as Flat") from None
        if len(iids):
            self._index.add_with_ids(vecs, iids)
        self._pending = []

    def commit(self) -> None:
        """Publish the working copy as the new live generation (atomic; see ``indexers.atomic``)."""
        if self._work is None:
            return
        self._train_pending()
        docs = self._docs
        count = docs.count()
        if count != self._index.ntotal:
            raise StoreError(f"internal error: {count} documents but {self._index.ntotal} vectors; nothing was saved")
        docs.commit()
        docs.close()
        _faiss().write_index(self._index, str(self._work / INDEX_FILE))
        self._manifest = Manifest(store=self.kind, dim=self._manifest.dim, model=self._manifest.model, count=count,
                                  index_type=self._index_type, search_params=self._manifest.search_params)
        (self._work / MANIFEST_FILE).write_text(json.dumps(self._manifest.to_dict(), indent=2))
        self._gen = atomic.publish(self.root, self._work)
        self._work = None
        self._docs = DocStore(self._gen / DOCS_FILE, readonly=True)

    def set_search_params(self, **params: int) -> None:
        """FAISS run-time search parameters, e.g. ``nprobe=16`` (IVF) or ``efSearch=128`` (HNSW).

        Not persisted: they apply to this open store only (a search's ``nprobe=``/``ef=`` still win).
        """
        self._require_init()
        space = _faiss().ParameterSpace()
        for name, value in params.items():
            if name in ("nprobe", "efSearch", "ef"):
                given = SearchParams(nprobe=value) if name == "nprobe" else SearchParams(ef=value)
                check_applies(given, self._index_type)
                self._session_params = given.over(self._session_params)
                continue
            try:
                space.set_index_parameter(self._index, name, value)
            except RuntimeError:
                raise StoreInputError(f"index type {self._index_type!r} has no search parameter {name!r}") from None

    # ------------------------------------------------------------------ reads
    def count(self) -> int:
        return 0 if self._docs is None else self._docs.count()

    def get(self, ids: Sequence[str]) -> list[Document | None]:
        if self._docs is None:
            return [None] * len(ids)
        found = self._docs.by_id(list(ids))
        return [found.get(i) for i in ids]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return {} if self._docs is None else self._docs.hashes(list(ids))

    def search(self, queries: np.ndarray, k: int, filter: str | None = None, *, nprobe: int | None = None,
               ef: int | None = None) -> list[list[Hit]]:
        manifest = self._require_init()
        q = check_vectors(queries, manifest.dim)
        if k < 1:
            raise StoreInputError(f"k must be at least 1, got {k}")
        asked = SearchParams(nprobe, ef)
        check_applies(asked, self._index_type)
        params = self._faiss_params(asked.over(self._session_params).over(
            SearchParams.from_dict(manifest.search_params).over(default_search_params(self._index_type))), k)
        if self._pending:
            raise StoreError("this index has uncommitted vectors that still need training; commit() first")
        if filter:
            scores, iids = self._filtered_search(q, k, filter)
        elif self._index.ntotal == 0:
            return [[] for _ in range(len(q))]
        else:
            scores, iids = self._index.search(q, min(k, self._index.ntotal), params=params)
        docs = self._docs.by_iid(sorted({int(i) for i in iids.ravel() if i >= 0}))
        return [[Hit(docs[int(i)], float(s), r + 1) for r, (s, i) in enumerate(
                    (s, i) for s, i in zip(srow, irow, strict=True) if i >= 0 and int(i) in docs)]
                for srow, irow in zip(scores, iids, strict=True)]

    def _faiss_params(self, params: SearchParams, k: int):
        """FAISS per-call search parameters (thread-safe: nothing is set on the shared index)."""
        faiss = _faiss()
        if params.nprobe is not None and isinstance(self._index, faiss.IndexIVF):
            return faiss.SearchParametersIVF(nprobe=min(params.nprobe, self._index.nlist))
        if params.ef is not None and isinstance(self._index, faiss.IndexIDMap2):
            if isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSW):
                return faiss.SearchParametersHNSW(efSearch=max(params.ef, k))
        return None

    def _filtered_search(self, q: np.ndarray, k: int, expr: str) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the documents that match the filter (vectors reconstructed)."""
        iids = np.asarray(self._docs.matching_iids(parse_filter(expr)), dtype=np.int64)
        if len(iids) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        vecs = np.stack([self._index.reconstruct(int(i)) for i in iids])
        scores = q @ vecs.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, top, axis=1), iids[top]

    def close(self) -> None:
        if getattr(self, "_docs", None) is not None:
            self._docs.close()
            self._docs = None
        if getattr(self, "_work", None) is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None
