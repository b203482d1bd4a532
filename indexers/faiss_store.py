"""FAISS store: an index directory of crash-safe generations.

Each generation holds ``index.faiss`` (inner product, ``IndexIDMap2`` over any ``index_factory``
string), ``docs.sqlite`` (id, title, text, metadata; the int64 FAISS id is the row id) and
``manifest.json``. Writes go to a working copy and become live only on ``commit``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, bm25
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


# Dimensions an index type is tried with before the model (and so the real dimension) is known:
# a factory string that builds at none of them cannot be right (PQ/OPQ strings need a divisor).
_PROBE_DIMS = (64, 96, 128, 256, 384, 512, 576, 768, 960, 1024, 1536, 2048, 3072, 4096)
_OPEN_ATTEMPTS = 100  # generation switches tolerated while opening (each one a writer's publish)


def check_index_type(index_type: str) -> None:
    """Refuse a factory string FAISS cannot build at any usual dimension (no model or folder needed)."""
    faiss = _faiss()
    error = None
    for dim in _PROBE_DIMS:
        try:
            faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
            return
        except RuntimeError as exc:
            error = error or exc
    raise StoreInputError(f"FAISS cannot build index type {index_type!r}: {str(error).splitlines()[0]} "
                          "(see faiss index_factory strings such as Flat, HNSW32, IVF256,Flat)")


def _read_manifest_file(root: Path, path: Path) -> Manifest:
    where = f"{path.parent.name}/{path.name}"
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise atomic.damaged(root, f"{where} is missing") from None
    except OSError as exc:
        raise atomic.damaged(root, f"{where} cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise atomic.damaged(root, f"{where} is not valid JSON ({exc}), it may be empty or truncated") from None
    if not isinstance(raw, dict):
        raise atomic.damaged(root, f"{where} is not a JSON object")
    dim = raw.get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise atomic.damaged(root, f"{where} has no valid dim (got {dim!r})")
    try:
        return Manifest.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise atomic.damaged(root, f"{where} is incomplete ({type(exc).__name__}: {exc})") from None


def _load_generation(root: Path, name: str) -> tuple[Manifest, Any, DocStore]:
    """(manifest, FAISS index, documents) of generation ``name``; ``StoreError`` naming the damaged file."""
    gen = root / name
    if gen.is_symlink() or not gen.is_dir():
        raise atomic.damaged(root, f"{atomic.CURRENT} names {name}, which is missing or not a folder")
    for file in (MANIFEST_FILE, INDEX_FILE, DOCS_FILE):
        if (gen / file).is_symlink():
            raise atomic.damaged(root, f"{name}/{file} is a symbolic link (an index holds only its own files)")
    manifest = _read_manifest_file(root, gen / MANIFEST_FILE)
    try:
        index = _faiss().read_index(str(gen / INDEX_FILE))
    except RuntimeError:
        raise atomic.damaged(root, f"{name}/{INDEX_FILE} cannot be read by FAISS (missing or truncated)") from None
    if index.d != manifest.dim:
        raise atomic.damaged(root, f"{name}/{INDEX_FILE} holds dimension {index.d}, the manifest {manifest.dim}")
    path = gen / DOCS_FILE
    docs = None
    try:
        if not path.is_file():
            raise sqlite3.OperationalError("missing")
        docs = DocStore(path, readonly=True)
        count = docs.count()
    except sqlite3.Error as exc:
        if docs is not None:
            docs.close()
        raise atomic.damaged(root, f"{name}/{DOCS_FILE} is missing or not an e5rag document database ({exc})") from None
    if count != index.ntotal:
        docs.close()
        raise atomic.damaged(root, f"{name}/{DOCS_FILE} holds {count} documents but {INDEX_FILE} {index.ntotal} "
                                   "vectors")
    return manifest, index, docs


def open_snapshot(root: Path) -> tuple[str, Manifest, Any, DocStore] | None:
    """The live generation, loaded whole: (name, manifest, index, docs), or None before the first commit.

    A writer may publish (and remove the previous generation) while this reads: a failure while
    ``CURRENT`` moved on is a torn read, retried on the new generation; one while it stayed is damage.
    """
    for _ in range(_OPEN_ATTEMPTS):
        name = atomic.read_current(root)
        if name is None:
            return None
        try:
            return (name, *_load_generation(root, name))
        except StoreError:
            if atomic.read_current(root) == name:
                raise
    raise StoreError(f"index {root} changed {_OPEN_ATTEMPTS} times while it was being opened; try again")


def read_manifest(root: Path) -> Manifest | None:
    """The manifest of the live generation of a FAISS index directory, if any."""
    for _ in range(_OPEN_ATTEMPTS):
        name = atomic.read_current(root)
        if name is None:
            return None
        try:
            return _read_manifest_file(root, root / name / MANIFEST_FILE)
        except StoreError:
            if atomic.read_current(root) == name:
                raise
    raise StoreError(f"index {root} changed {_OPEN_ATTEMPTS} times while it was being opened; try again")


class FaissStore(Store):
    """FAISS vectors + SQLite documents in a directory. ``readonly`` opens take no lock.

    A new index's folder (marker, lock) is created only at the first write, so a failed run
    before it leaves nothing behind.
    """

    kind = "faiss"

    def __init__(self, path: str | Path, *, index_type: str = "Flat", readonly: bool = False) -> None:
        self.root = Path(path)
        self.readonly = readonly
        self._lock = None
        self._docs = None
        self._work: Path | None = None
        exists = atomic.check_root(self.root)
        try:
            if exists and not readonly:
                self._lock = atomic.WriterLock(self.root)
                atomic.clean_stale(self.root)
            snapshot = open_snapshot(self.root) if exists else None
            if readonly and snapshot is None:
                raise StoreError(f"no index at {self.root}: build one with `e5rag index SOURCE --index {self.root}`")
            if snapshot is None:
                self._gen, self._manifest, self._index = None, None, None
                check_index_type(index_type)
            else:
                name, self._manifest, self._index, self._docs = snapshot
                self._gen = self.root / name
            self._index_type = self._manifest.index_type if self._manifest else index_type
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
        index = make_index(dim, self._index_type)
        self._writable()
        self._index = index
        self._manifest = Manifest(store=self.kind, dim=int(dim), model=dict(model), index_type=self._index_type,
                                  search_params=default_search_params(self._index_type).to_dict())

    def _writable(self) -> DocStore:
        if self.readonly:
            raise StoreError(f"index {self.root} was opened read-only")
        if self._lock is None:
            self._take_new_root()
        if self._work is None:
            self._work = atomic.new_workdir(self.root)
            if self._gen is not None:
                shutil.copy2(self._gen / DOCS_FILE, self._work / DOCS_FILE)
            if self._docs is not None:
                self._docs.close()
            self._docs = DocStore(self._work / DOCS_FILE)
        return self._docs

    def _take_new_root(self) -> None:
        """Create the folder of a new index, lock it and mark it as an index (first write only)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.check_root(self.root)
        self._lock = atomic.WriterLock(self.root)
        if atomic.read_current(self.root) is not None:
            raise StoreError(f"another process created an index at {self.root} while this one was preparing; "
                             "run again to update it")
        atomic.clean_stale(self.root)
        atomic.prepare_root(self.root)

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

    def update_metadata(self, docs: Sequence[Document]) -> None:
        self._require_init()
        check_documents(docs)
        store = self._writable()
        self._check_existing(docs, store.iids([d.id for d in docs]))
        store.upsert(docs)  # the row keeps its iid, so its vector in the FAISS index is untouched

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
        atomic.prepare_root(self.root)  # an index written before the marker existed gets one now
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

    def set_model(self, model: dict[str, Any]) -> None:
        """Replace the manifest's model record; published as a new generation on ``commit``."""
        from dataclasses import replace

        manifest = self._require_init()
        self._writable()
        self._manifest = replace(manifest, model=dict(model))

    def iter_documents(self, batch_size: int = 1000):
        """Every document of the generation this store has open, in lists of ``batch_size`` (id order
        of insertion)."""
        if batch_size < 1:
            raise StoreInputError(f"batch_size must be at least 1, got {batch_size}")
        after = 0
        while self._docs is not None and (page := self._docs.page(after, batch_size)):
            yield [doc for _, doc in page]
            after = page[-1][0]

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

    def ids(self) -> list[str]:
        return [] if self._docs is None else self._docs.ids()

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if self._docs is None:
            return {}
        pending = {int(i): v for iids, vecs in self._pending for i, v in zip(iids.tolist(), vecs, strict=True)}
        return {i: pending[iid] if iid in pending else self._index.reconstruct(int(iid))
                for i, iid in self._docs.iids(list(ids)).items()}

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

    def keyword_search(self, queries: Sequence[str], k: int, filter: str | None = None) -> list[list[Hit]]:
        """Top-k by BM25 (SQLite FTS5, see ``indexers.bm25``) for each bare query -> n lists of hits."""
        self._require_init()
        if k < 1:
            raise StoreInputError(f"k must be at least 1, got {k}")
        conn = self._docs.conn
        if not bm25.has_index(conn):
            raise StoreError(f"index {self.root} has no BM25 index (it was built before hybrid search): add it "
                             f"from the stored texts with `e5rag index --rebuild-bm25 --index {self.root}`")
        allowed = set(self._docs.matching_iids(parse_filter(filter))) if filter else None
        found = [bm25.search(conn, q, k, allowed) for q in queries]
        docs = self._docs.by_iid(sorted({i for row in found for i, _ in row}))
        return [[Hit(docs[i], s, r + 1) for r, (i, s) in enumerate(row)] for row in found]

    def rebuild_keyword_index(self) -> None:
        """Re-derive the BM25 index from the stored texts (no re-embedding); published on ``commit``."""
        self._require_init()
        bm25.rebuild(self._writable().conn)

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
