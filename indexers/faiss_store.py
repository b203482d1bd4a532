"""FAISS store: an index directory of crash-safe generations that commits append to.

A generation (``indexers.atomic``) holds ``index.faiss`` (its base: inner product, ``IndexIDMap2``
over any ``index_factory`` string, or a native IVF), ``docs.sqlite`` (id, title, text, metadata and
BM25; the int64 FAISS id is the row id; WAL mode), ``manifest.json`` and the vector segments that
later commits appended (``indexers.segments``). A commit writes one segment file with the vectors
it added and commits one SQLite transaction that lists it beside the changed documents and the ids
of the vectors they replaced: its cost is what changed, not the size of the store. A whole new
generation is written only by the first commit, by the first write to an index of the older
one-file layout, by a commit that trains an IVF index, and by compaction: a commit compacts when
appended and dead vectors pass a quarter of the base (``indexers.segments``), ``compact(force=True)``
on demand. A process killed at any point leaves the last committed state searchable.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from e5rag import fsutil

from . import atomic, bm25, segments
from .base import (
    CompactReport,
    Document,
    Hit,
    Manifest,
    Store,
    StoreError,
    StoreInputError,
    check_documents,
    check_vectors,
)
from .docstore import DocStore
from .filters import parse_filter
from .search_params import SearchParams, check_applies, default_search_params
from .segments import Layout

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


def faiss_message(exc: RuntimeError) -> str:
    """What a FAISS C++ error says, without its "Error in <signature> at <file>:<line>:" prefix."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("Error in ") and ": " in text:
        text = text.split(": ", 1)[1]
        text = text.removeprefix("Error: ")
        if "' failed: " in text:  # a failed check: its message, not the C++ condition
            text = text.split("' failed: ", 1)[1]
    return text


def make_index(dim: int, index_type: str):
    """An inner-product index that takes our int64 ids: IVF indexes natively (with a hash-table
    direct map, so vectors can be reconstructed and removed), anything else inside IndexIDMap2."""
    faiss = _faiss()
    try:
        inner = faiss.index_factory(int(dim), index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise StoreInputError(f"FAISS cannot build index type {index_type!r}: {faiss_message(exc)} "
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
    raise StoreInputError(f"FAISS cannot build index type {index_type!r}: {faiss_message(error)} "
                          "(see faiss index_factory strings such as Flat, HNSW32, IVF256,Flat)")


def ivf_lists(index_type: str) -> int | None:
    """The number of inverted lists of a factory string with an IVF stage (``IVF256,Flat``,
    ``OPQ16,IVF256,PQ16``), or None for any other index (or a string FAISS cannot build)."""
    faiss = _faiss()
    for dim in _PROBE_DIMS:
        try:
            index = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError:
            continue
        try:
            return int(faiss.extract_index_ivf(index).nlist)
        except RuntimeError:  # no IVF stage
            return None
    return None


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


@dataclass
class _Generation:
    """A generation loaded whole: its base index with the committed segments added and dead ids dropped."""

    name: str
    manifest: Manifest
    index: Any
    docs: DocStore  # read-only, pinned to the state the vectors were loaded from
    masked: set[int]  # dead ids the index cannot remove (graph indexes): excluded at search time
    layout: Layout | None  # None: the older one-file layout (no segments; its first write migrates it)


def _drop(index, iids: Sequence[int]) -> set[int]:
    """Remove ``iids`` from ``index``; -> the ids it cannot remove (HNSW), to be masked at search."""
    if not len(iids) or index.ntotal == 0:
        return set()
    faiss = _faiss()
    arr = np.ascontiguousarray(np.asarray(iids, dtype=np.int64))
    try:
        # IDSelectorArray: the one selector IVF's hash-table direct map can remove with.
        index.remove_ids(faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr)))
        return set()
    except RuntimeError:
        return set(arr.tolist())


class _Moved(StoreError):
    """A segment was merged away between this open's snapshot and its read: open again."""


def _still_listed(db: Path, file: str) -> bool:
    """Whether the latest committed state of a generation's database still lists segment ``file``."""
    try:
        docs = DocStore(db, readonly=True)
        try:
            return any(f == file for _, f, _, _ in docs.segments())
        finally:
            docs.close()
    except sqlite3.Error:  # the generation itself is gone: a compaction published another (open again)
        return False


def _add_segments(root: Path, name: str, index, docs: DocStore, dim: int) -> tuple[int, int]:
    """Add the committed segments of generation ``name`` to ``index``. -> (segments, vectors)"""
    listed = docs.segments()
    rows = 0
    for _, file, n, _ in listed:
        path = root / name / file
        if segments.SEGMENT_NAME.fullmatch(file) is None:
            raise atomic.damaged(root, f"{name}/{DOCS_FILE} lists {file[:60]!r}, not a segment name")
        if path.is_symlink():
            raise atomic.damaged(root, f"{name}/{file} is a symbolic link (an index holds only its own files)")
        try:
            iids, vectors = segments.read_segment(path, dim, n)
            index.add_with_ids(vectors, iids)
        except ValueError as exc:
            if not path.exists() and not _still_listed(root / name / DOCS_FILE, file):
                raise _Moved(f"{name}/{file} was merged by a writer while this opened") from None
            raise atomic.damaged(root, f"{name}/{file} {exc}") from None
        except RuntimeError:
            raise atomic.damaged(root, f"{name}/{file} cannot be added to {INDEX_FILE}") from None
        rows += n
    return len(listed), rows


def _load_generation(root: Path, name: str) -> _Generation:
    """Generation ``name`` loaded whole; ``StoreError`` naming the damaged file."""
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
        try:
            if not path.is_file():
                raise sqlite3.OperationalError("missing")
            docs = DocStore(path, readonly=True)
            docs.snapshot()  # documents, segment list and dead ids from one committed state
            count = docs.count()
            segmented = docs.has_segments()
            dead = docs.dead() if segmented else []
        except sqlite3.Error as exc:
            raise atomic.damaged(root, f"{name}/{DOCS_FILE} is missing or not an e5rag document database "
                                       f"({exc})") from None
        layout, masked = None, set()
        if segmented:
            base_rows = index.ntotal
            n_segments, segment_rows = _add_segments(root, name, index, docs, manifest.dim)
            masked = _drop(index, dead)
            layout = Layout(base_rows, segment_rows, n_segments, len(dead))
        live = index.ntotal - len(masked)
        if count != live:
            raise atomic.damaged(root, f"{name}/{DOCS_FILE} holds {count} documents but {INDEX_FILE} and its segments "
                                       f"{live} vectors")
    except BaseException:
        if docs is not None:
            docs.close()
        raise
    return _Generation(name, replace(manifest, count=count), index, docs, masked, layout)


def open_snapshot(root: Path) -> _Generation | None:
    """The live generation, loaded whole, or None before the first commit.

    A writer may publish (and remove the previous generation) while this reads: a failure while
    ``CURRENT`` moved on is a torn read, retried on the new generation; one while it stayed is damage.
    """
    for _ in range(_OPEN_ATTEMPTS):
        name = atomic.read_current(root)
        if name is None:
            return None
        try:
            return _load_generation(root, name)
        except _Moved:
            continue
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


def _without(batches: list[tuple[np.ndarray, np.ndarray]], drop: set[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) batches less the rows whose id is in ``drop``."""
    out = []
    for iids, vecs in batches:
        keep = np.fromiter((i not in drop for i in iids.tolist()), dtype=bool, count=len(iids))
        out.append((iids[keep], vecs[keep]))
    return out


class FaissStore(Store):
    """FAISS vectors + SQLite documents in a directory. ``readonly`` opens take no lock and see the
    committed state of the moment they opened, whatever a writer commits meanwhile.

    A new index's folder (marker, lock) is created only at the first write, so a failed run
    before it leaves nothing behind.
    """

    kind = "faiss"

    def __init__(self, path: str | Path, *, index_type: str = "Flat", readonly: bool = False) -> None:
        self.root = Path(path)
        self.readonly = readonly
        self._lock = None
        self._docs = None
        self._work: Path | None = None  # folder of a whole new generation being written
        self._in_place = False  # appending to the live generation (its database open for writing)
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
                self._masked, self._layout = set(), None
                check_index_type(index_type)
            else:
                self._adopt(snapshot)
            self._index_type = self._manifest.index_type if self._manifest else index_type
        except BaseException:
            self.close()
            raise
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # (iids, vectors) awaiting IVF training
        self._appended: list[tuple[np.ndarray, np.ndarray]] = []  # (iids, vectors) of the next segment
        self._session_params = SearchParams()  # set_search_params(nprobe=, efSearch=) of this open store
        self._mask_selector = None

    def _adopt(self, snapshot: _Generation) -> None:
        self._gen = self.root / snapshot.name
        self._manifest, self._index, self._docs = snapshot.manifest, snapshot.index, snapshot.docs
        self._masked, self._layout = snapshot.masked, snapshot.layout

    # ------------------------------------------------------------------ state
    @property
    def manifest(self) -> Manifest | None:
        return self._manifest

    @property
    def layout(self) -> Layout | None:
        """The live generation's base, appended segments and dead vectors (None: the older layout, or empty)."""
        return self._layout

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
        if self._work is None and not self._in_place:
            if self._docs is not None:
                self._docs.close()
                self._docs = None
            if self._layout is not None and self._index.is_trained:
                # append to the live generation: commits add segments inside its database's transactions
                self._docs = DocStore(self._gen / DOCS_FILE)
                self._in_place = True
                self._remove_unlisted_segments()
                atomic.prepare_root(self.root)  # an index written before the marker existed gets one now
            else:
                # a whole new generation: the first commit, the older layout, or an IVF index still untrained
                self._work = atomic.new_workdir(self.root)
                if self._gen is not None:
                    live = DocStore(self._gen / DOCS_FILE, readonly=True)
                    try:
                        live.copy_to(self._work / DOCS_FILE)
                    finally:
                        live.close()
                self._docs = DocStore(self._work / DOCS_FILE)
            self._docs.use_wal()
        return self._docs

    def _remove_unlisted_segments(self) -> None:
        """Remove the segment files a killed writer wrote but never committed (writer lock held)."""
        listed = {file for _, file, _, _ in self._docs.segments()}
        for entry in self._gen.iterdir():
            name = entry.name
            ours = segments.SEGMENT_NAME.fullmatch(name) or (
                name.startswith(".") and name.endswith(".tmp") and segments.SEGMENT_NAME.fullmatch(name[1:-4]))
            if ours and name not in listed and not entry.is_symlink() and entry.is_file():
                entry.unlink()

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
        replaced = store.delete([d.id for d in docs])
        if replaced:
            self._remove_vectors(np.asarray(replaced, dtype=np.int64))
        # new rows, so new ids (AUTOINCREMENT never reuses one): a stored vector is never overwritten
        iids = np.asarray(store.upsert(docs), dtype=np.int64)
        if self._index.is_trained:
            self._index.add_with_ids(vecs, iids)
            if self._in_place:
                self._appended.append((iids, vecs))
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
        drop = set(iids.tolist())
        if self._pending:
            self._pending = _without(self._pending, drop)
        if self._in_place:
            appended = {i for ids, _ in self._appended for i in ids.tolist()}
            self._appended = _without(self._appended, drop)
            self._docs.add_dead(sorted(drop - appended))  # committed vectors: dropped on every later open
        masked = _drop(self._index, iids)
        if masked:
            self._masked |= masked
            self._mask_selector = None

    def _rebuild_without(self, drop: set[int]):
        """A fresh index of this one's vectors less ``drop`` (graph indexes cannot remove)."""
        faiss = _faiss()
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vecs = self._index.index.reconstruct_n(0, self._index.ntotal)
        keep = np.array([i not in drop for i in ids.tolist()], dtype=bool)
        fresh = make_index(self._manifest.dim, self._index_type)
        if not fresh.is_trained:
            fresh.train(vecs)
        if keep.any():
            fresh.add_with_ids(np.ascontiguousarray(vecs[keep]), ids[keep])
        log.info("rebuilt the %s index without %d removed vectors", self._index_type, len(drop))
        return fresh

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
                    f"({faiss_message(exc)}); add more documents or use a smaller index such as Flat") from None
        if len(iids):
            self._index.add_with_ids(vecs, iids)
        self._pending = []

    def commit(self) -> None:
        """Make every write since the last commit durable and visible to new readers, atomically."""
        if self._work is None and not self._in_place:
            return
        self._train_pending()
        count = self._docs.count()
        if count != self._index.ntotal - len(self._masked):
            raise StoreError(f"internal error: {count} documents but {self._index.ntotal - len(self._masked)} "
                             "vectors; nothing was saved")
        self._manifest = replace(self._manifest, count=count)
        if self._in_place:
            self._append_segment()
            if segments.compaction_due(self._layout):
                self._rewrite()
        else:
            self._publish_work()

    def _append_segment(self) -> None:
        """One segment file with the vectors added since the last commit (and the merge of FANOUT segments of
        one level it completes, ``indexers.segments``), then the one SQLite commit."""
        docs, layout = self._docs, self._layout
        listed = docs.segments()
        seq = max((q for q, _, _, _ in listed), default=0)
        if self._appended:
            iids = np.concatenate([i for i, _ in self._appended])
            vecs = np.concatenate([v for _, v in self._appended])
            if len(iids):
                seq += 1
                segments.write_segment(self._gen / segments.segment_name(seq), iids, vecs)  # durable, then listed
                docs.add_segment(seq, segments.segment_name(seq), len(iids))
                listed.append((seq, segments.segment_name(seq), len(iids), 0))
        merged: list[str] = []
        while run := segments.merge_run([lv for _, _, _, lv in listed]):
            parts, listed = listed[-run:], listed[:-run]
            loaded = [segments.read_segment(self._gen / f, self._manifest.dim, n) for _, f, n, _ in parts]
            iids = np.concatenate([i for i, _ in loaded])
            vecs = np.concatenate([v for _, v in loaded])
            dead = docs.take_dead(iids.tolist())  # dropped here, so no longer dead anywhere
            if dead:
                ((iids, vecs),) = _without([(iids, vecs)], dead)
            seq += 1
            level = parts[0][3] + 1
            segments.write_segment(self._gen / segments.segment_name(seq), iids, vecs)
            docs.drop_segments([q for q, _, _, _ in parts])
            docs.add_segment(seq, segments.segment_name(seq), len(iids), level)
            listed.append((seq, segments.segment_name(seq), len(iids), level))
            merged += [f for _, f, _, _ in parts]
        docs.commit()  # the commit point: documents, BM25, segment list and dead ids together
        for file in merged:  # listed by no committed state now (a reader still opening an older one opens again)
            (self._gen / file).unlink(missing_ok=True)
        self._appended = []
        self._layout = Layout(layout.base_rows, sum(n for _, _, n, _ in listed), len(listed), docs.dead_count())
        # the manifest's count and model record, for readers that look before loading (informative: the
        # database is the truth; a kill right here leaves the previous record, corrected at the next commit)
        fsutil.atomic_write_text(self._gen / MANIFEST_FILE, json.dumps(self._manifest.to_dict(), indent=2))

    def _publish_work(self) -> None:
        """Write the work folder as a whole new generation and make it the live one."""
        if self._masked:
            self._index = self._rebuild_without(self._masked)
            self._masked, self._mask_selector = set(), None
        docs = self._docs
        docs.forget_vectors()  # this generation's base holds exactly the live vectors
        docs.commit()
        docs.close()
        self._docs = None
        _faiss().write_index(self._index, str(self._work / INDEX_FILE))
        (self._work / MANIFEST_FILE).write_text(json.dumps(self._manifest.to_dict(), indent=2))
        atomic.prepare_root(self.root)  # an index written before the marker existed gets one now
        self._gen = atomic.publish(self.root, self._work)
        self._work = None
        self._layout = Layout(self._index.ntotal, 0, 0, 0)
        self._docs = DocStore(self._gen / DOCS_FILE, readonly=True)

    def compact(self, force: bool = False) -> CompactReport | None:
        """Commit pending writes, then write the live vectors as a new generation's base if appended and
        dead vectors make it due (``indexers.segments.compaction_due``: commits do it themselves) or ``force``."""
        if self.readonly:
            raise StoreError(f"index {self.root} was opened read-only")
        self.commit()
        layout = self._layout
        if self._gen is None or (layout is None and not force):
            return None
        if layout is not None and not (force or segments.compaction_due(layout)):
            return None
        return self._rewrite()

    def _rewrite(self) -> CompactReport:
        """Write the committed state as a whole new generation (the base of exactly the live vectors)."""
        merged = self._layout or Layout(self._index.ntotal, 0, 0, 0)
        self._writable()
        if self._in_place:  # (an index of the older layout already has its work folder: a copy to rewrite)
            work = atomic.new_workdir(self.root)
            self._docs.copy_to(work / DOCS_FILE)
            self._docs.close()
            self._docs, self._in_place, self._work = DocStore(work / DOCS_FILE), False, work
            self._docs.use_wal()
        self._publish_work()
        written = sum(f.stat().st_size for f in self._gen.iterdir() if f.is_file())
        log.info("compacted %s: %d segments and %d dead vectors merged into %d", self.root, merged.segments,
                 merged.dead, self._index.ntotal)
        return CompactReport(segments=merged.segments, dead=merged.dead, vectors=int(self._index.ntotal),
                             bytes_written=written)

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
        """FAISS per-call search parameters (thread-safe: nothing is set on the shared index), with the
        masked dead ids excluded where the index could not remove them."""
        faiss = _faiss()
        out = None
        if params.nprobe is not None and isinstance(self._index, faiss.IndexIVF):
            out = faiss.SearchParametersIVF(nprobe=min(params.nprobe, self._index.nlist))
        elif params.ef is not None and isinstance(self._index, faiss.IndexIDMap2):
            if isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSW):
                out = faiss.SearchParametersHNSW(efSearch=max(params.ef, k))
        if self._masked:
            if self._mask_selector is None:
                dead = np.asarray(sorted(self._masked), dtype=np.int64)
                # the arrays stay referenced with the selector: FAISS keeps pointers, not copies
                batch = faiss.IDSelectorBatch(len(dead), faiss.swig_ptr(dead))
                self._mask_selector = (dead, batch, faiss.IDSelectorNot(batch))
            out = out if out is not None else faiss.SearchParameters()
            out.sel = self._mask_selector[2]
        return out

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
        """Release the index; writes not committed are dropped (the last commit stays live)."""
        if getattr(self, "_docs", None) is not None:
            self._docs.close()
            self._docs = None
        if getattr(self, "_work", None) is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None
