"""An e5rag index: an encoder bound to a store. Documents are embedded once, without an
instruction; every query brings its own task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from e5rag.indexers import Document, Hit, Store, StoreError, open_store

from .chunking import DEFAULT_CHUNKING, ChunkConfig, chunk_spans
from .errors import IndexMismatchError, InputError
from .fingerprint import ModelFingerprint
from .fusion import HybridConfig, fuse
from .identity_migration import comparable_record, migrate, upgraded_record
from .parents import (
    Write,
    delete_documents,
    get_document,
    group_hits,
    parent_of_id,
    plan_writes,
    search_documents,
    split_document,
    stale_ids,
)

if TYPE_CHECKING:  # the encoder (and torch) load only where a model is loaded: a served model needs neither
    from .encoder import Encoder

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class IndexReport:
    """What an ``add`` did: new, replaced (text or title changed, re-embedded), metadata-only
    updates (vector kept, not re-embedded) and skipped (unchanged) documents."""

    added: int
    updated: int
    skipped: int
    total: int
    metadata_updated: int = 0  # text and title unchanged: metadata rewritten, vectors kept
    deleted: int = 0  # documents whose source is gone (``sync=True``)


@dataclass(frozen=True)
class AddPlan:
    """Of a batch given to ``add``: the writes to embed (a document's parts and the stale chunks to
    remove), how many replace a stored document, how many are skipped as unchanged, how many only
    changed metadata (stored, not re-embedded), and every part id the batch makes (for ``sync``)."""

    writes: list[Write]
    updated: int
    skipped: int
    relabeled: int = 0
    part_ids: list[str] = field(default_factory=list)  # every stored id the batch's documents make


def check_model(store: Store, encoder: Encoder, writing: bool) -> None:
    """Refuse an encoder whose vectors do not belong in this index (names both models)."""
    manifest = store.manifest
    if manifest is None:
        return
    if manifest.dim != encoder.dim:
        raise IndexMismatchError(f"the index holds {manifest.dim}-dimensional vectors but the model makes "
                                 f"{encoder.dim}-dimensional ones: use the index's model or a new index")
    if not manifest.model.get("base"):
        return
    theirs = ModelFingerprint.from_dict(comparable_record(manifest.model, encoder))
    ours = encoder.fingerprint
    if not ours.same_model(theirs) or (writing and ours.max_length != theirs.max_length):
        raise IndexMismatchError(
            f"the index was built with {theirs.describe()} but the model in use is {ours.describe()}: "
            "pass the index's --model/--adapter/--max-length, or build a new index")
    check_quantization(theirs, ours, writing)


def check_quantization(theirs: ModelFingerprint, ours: ModelFingerprint, writing: bool) -> None:
    """The rule for an encoder that is the index's model with other quantization (int8 vs fp32):
    writing is refused (one index, one kind of document vector); searching is allowed with a warning,
    since int8 vectors keep cosine >= 0.98 to fp32 ones of the same model (benchmarks/README.md)."""
    if ours.quantization == theirs.quantization:
        return
    index_q, model_q = theirs.quantization or "unquantized", ours.quantization or "unquantized"
    if writing:
        raise IndexMismatchError(
            f"the index holds {index_q} document vectors but the encoder is {model_q}: pass "
            f"--quantize {theirs.quantization or 'none'} to add to it, or build a new index")
    log.warning("the index holds %s document vectors and the queries are encoded %s (same model): scores "
                "differ slightly from an all-%s search; pass --quantize %s to match", index_q, model_q,
                index_q, theirs.quantization or "none")


def model_record(encoder: Encoder, source: str | None = None, adapter: str | None = None) -> dict[str, Any]:
    """The manifest's model entry: the fingerprint plus where to load it from again
    (the given source/adapter, else what the encoder was loaded from)."""
    record = encoder.fingerprint.to_dict()
    source = source if source is not None else encoder.source
    if source is not None and Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())  # usable from any working directory
    record["source"] = source
    adapter = adapter if adapter is not None else encoder.adapter_path
    record["adapter_path"] = str(Path(adapter).resolve()) if adapter else None
    record["dtype"] = encoder.weights_dtype
    record["built"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def hybrid_config(hybrid: HybridConfig | bool | None) -> HybridConfig | None:
    """None for dense search; the default ``HybridConfig`` for True."""
    if hybrid is None or hybrid is False:
        return None
    if hybrid is True:
        return HybridConfig()
    if not isinstance(hybrid, HybridConfig):
        raise InputError(f"hybrid must be True, False or a HybridConfig, got {type(hybrid).__name__}")
    return hybrid


def fuse_hits(dense: Sequence[Hit], sparse: Sequence[Hit], config: HybridConfig, k: int) -> list[Hit]:
    """The top-``k`` of two hit lists for one query fused by ``config``; scores are the fused scores."""
    docs = {h.document.id: h.document for h in (*sparse, *dense)}
    fused = fuse([(h.document.id, h.score) for h in dense], [(h.document.id, h.score) for h in sparse], config)
    return [Hit(docs[i], float(score), rank) for rank, (i, score) in enumerate(fused[:k], start=1)]


def hybrid_search(store: Store, vectors: np.ndarray, queries: Sequence[str], k: int, config: HybridConfig,
                  filter: str | None = None, per_chunk: bool = False, **breadth: int | None) -> list[list[Hit]]:
    """Dense hits of ``vectors`` (n, dim) fused with BM25 hits of the bare ``queries`` (n), top ``k`` each.

    Both sides rank stored passages (chunks) to ``config.depth(k)`` (at least 100) each; the fused
    list is then grouped per document (its best chunk) unless ``per_chunk``.
    """
    depth = config.depth(k)
    dense = store.search(vectors, depth, filter=filter, **breadth)
    sparse = store.keyword_search(list(queries), depth, filter=filter)
    fused = [fuse_hits(d, s, config, depth) for d, s in zip(dense, sparse, strict=True)]
    return [f[:k] if per_chunk else group_hits(f, k) for f in fused]


def _migrate_elsewhere(location: str | Path, encoder: Encoder, store_options: dict[str, Any]) -> None:
    """Upgrade a legacy model record through a short writable open, when no other writer holds it."""
    try:
        with open_store(location, **store_options) as writer:
            migrate(writer, encoder)
    except StoreError as exc:  # e.g. in use by a writer: the record is upgraded on a later open
        log.info("could not upgrade the model record of %s now: %s", location, exc)


def windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter; none is empty)."""
    it = iter(items)
    while window := list(islice(it, size)):
        yield window


def full_groups(writes: Sequence[Write], size: int) -> Iterator[list[Write]]:
    """Leading groups of whole writes holding at least ``size`` passages each (a document's parts
    never split across commits); what is left over stays for a later group."""
    group: list[Write] = []
    parts = 0
    for w in writes:
        group.append(w)
        parts += len(w.parts)
        if parts >= size:
            yield group
            group, parts = [], 0


def split_for(doc: Document, tokenizer, max_length: int, chunking: ChunkConfig | None = DEFAULT_CHUNKING) -> list[Document]:
    """The documents ``doc`` is stored as by an encoder of ``max_length`` with ``tokenizer``: itself, or its
    chunks when it is longer than a passage (``chunking=None``: itself)."""
    if chunking is None:
        return [doc]
    tokens, overlap = chunking.resolve(max_length)
    return split_document(doc, chunk_spans(doc.text, tokenizer, tokens, overlap, doc.title))


def unchanged_report(store: Store, docs: Iterable[Document], split: Callable[[Document], list[Document]], *,
                     commit_every: int = 4096, sync: bool = False) -> IndexReport | None:
    """The report ``SearchIndex.add(docs, sync=sync)`` gives when it has nothing to write, found without a
    model: every document is stored as exactly the parts ``split`` makes of it (same ids and content
    hashes: text, title, metadata, and so the same chunking), and with ``sync`` nothing else is stored.
    None as soon as one document needs a write of any kind (then ``add`` it with the model loaded).

    ``split`` must be the split of the encoder ``add`` would use (``split_for`` with its tokenizer and
    max length). Reads the store only; ``docs`` is read ``commit_every`` at a time, up to the first change.
    """
    if store.manifest is None:
        return None
    skipped = 0
    kept: set[str] = set()
    for window in windows(docs, commit_every):
        parts_of = [(d, split(d)) for d in window]
        writes, n = plan_writes(store, parts_of, skip_unchanged=True)
        if writes:
            return None
        skipped += n
        if sync:
            kept.update(p.id for _, parts in parts_of for p in parts)
    if skipped == 0 or (sync and stale_ids(store, kept)):
        return None
    return IndexReport(added=0, updated=0, skipped=skipped, total=store.count())


class SearchIndex:
    """Encoder + store. ``add`` embeds documents; ``search`` embeds queries with their task."""

    def __init__(self, encoder: Encoder, store: Store, *, writing: bool = False, model_source: str | None = None,
                 adapter: str | None = None) -> None:
        check_model(store, encoder, writing)
        migrate(store, encoder)
        self.encoder = encoder
        self.store = store
        self._record = model_record(encoder, model_source, adapter)

    @classmethod
    def open(cls, location: str | Path, encoder: Encoder | None = None, *, model: str | None = None,
             adapter: str | None = None, readonly: bool = True, **store_options) -> SearchIndex:
        """Open a store; without an encoder, load the model recorded in the index's manifest."""
        store = open_store(location, readonly=readonly, **store_options)
        try:
            if encoder is None:
                from .encoder import Encoder

                recorded = (store.manifest.model if store.manifest else {}) or {}
                model = model if model is not None else recorded.get("source")
                adapter = adapter if adapter is not None else recorded.get("adapter_path")
                encoder = Encoder.from_pretrained(model, adapter=adapter,
                                                  max_length=int(recorded.get("max_length", 512)),
                                                  quantize=recorded.get("quantization"))
            index = cls(encoder, store, writing=not readonly, model_source=model, adapter=adapter)
            if readonly and store.manifest is not None and upgraded_record(store.manifest.model, encoder):
                _migrate_elsewhere(location, encoder, store_options)
            return index
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------------ writing
    def add(self, docs: Iterable[Document], *, batch_size: int = 16, commit_every: int = 4096,
            skip_unchanged: bool = True, show_progress_bar: bool | None = None,
            chunking: ChunkConfig | None = DEFAULT_CHUNKING, sync: bool = False) -> IndexReport:
        """Embed and upsert documents, committing about every ``commit_every`` stored passages so a
        crash loses at most that.

        ``docs`` may be any iterable (e.g. ``stream_documents``): it is read ``commit_every``
        documents at a time, so memory holds about two commits' documents whatever the corpus size.
        Documents longer than ``chunking.tokens`` are stored as chunks (see ``parents``); every
        write of a document (its chunks, and removing chunks it no longer has) lands in one commit.
        ``chunking=None`` embeds each document whole, truncated to the encoder's max length.
        ``sync=True`` also deletes every stored document that is not in ``docs`` (LangChain's
        ``cleanup="full"``), in the last commit.
        """
        if commit_every < 1:
            raise InputError(f"commit_every must be at least 1, got {commit_every}")
        pending: list[Write] = []
        written = updated = skipped = relabeled = 0
        kept: set[str] = set()  # with sync: every part id of the input
        seen: set[str] = set()  # with sync: every document id of the input
        window = None
        for window in windows(docs, commit_every):
            plan = self.plan_add(window, skip_unchanged, chunking)
            pending += plan.writes
            updated, skipped, relabeled = updated + plan.updated, skipped + plan.skipped, relabeled + plan.relabeled
            if sync:
                kept.update(plan.part_ids)
                seen.update(d.id for d in window)
            groups = list(full_groups(pending, commit_every))
            for group in groups:
                self._write(group, batch_size, show_progress_bar)
                written += len(group)
            pending = pending[sum(len(g) for g in groups):]
        if window is None:
            raise InputError("no documents to index")
        gone = stale_ids(self.store, kept) if sync else []
        if pending or gone:
            self._write(pending, batch_size, show_progress_bar, gone)
            written += len(pending)
        self.store.commit()
        deleted = len({parent_of_id(i) for i in gone} - seen)
        return IndexReport(added=written - updated, updated=updated, skipped=skipped, total=self.store.count(),
                           metadata_updated=relabeled, deleted=deleted)

    def plan_add(self, docs: Sequence[Document], skip_unchanged: bool = True,
                 chunking: ChunkConfig | None = DEFAULT_CHUNKING) -> AddPlan:
        """What ``add`` will write of ``docs`` (see ``AddPlan``); stores metadata-only changes at once
        (not re-embedded) and initialises a new index's manifest."""
        if not docs:
            raise InputError("no documents to index")
        parts_of = [(d, self.split(d, chunking)) for d in docs]
        if self.store.manifest is None:
            self.store.initialize(self.encoder.dim, self._record)
        writes, skipped = plan_writes(self.store, parts_of, skip_unchanged)
        relabel = self._metadata_only(writes) if skip_unchanged else []
        if relabel:  # only metadata changed: stored in place (committed with the next commit), not re-embedded
            self.store.update_metadata([p for w in relabel for p in w.parts])
            relabelled = {id(w) for w in relabel}
            writes = [w for w in writes if id(w) not in relabelled]
        return AddPlan(writes, sum(1 for w in writes if w.existed), skipped, len(relabel),
                       [p.id for _, parts in parts_of for p in parts])

    def _metadata_only(self, writes: Sequence[Write]) -> list[Write]:
        """The writes whose every part is already stored with the same text and title: only the
        metadata differs, so the stored vectors stay and only the metadata is rewritten."""
        candidates = [w for w in writes if w.existed and not w.stale]
        ids = [p.id for w in candidates for p in w.parts]
        stored = dict(zip(ids, self.store.get(ids), strict=True)) if ids else {}
        return [w for w in candidates
                if all((old := stored.get(p.id)) is not None and old.text == p.text
                       and (old.title or "") == (p.title or "") for p in w.parts)]

    def split(self, doc: Document, chunking: ChunkConfig | None = DEFAULT_CHUNKING) -> list[Document]:
        """The documents ``doc`` is stored as: itself, or its chunks when it is longer than a passage."""
        return split_for(doc, self.encoder.tokenizer, self.encoder.max_length, chunking)

    def _write(self, group: Sequence[Write], batch_size: int, show_progress_bar: bool | None,
               gone: Sequence[str] = ()) -> None:
        """Embed, then delete stale chunks (and ``gone`` ids) and upsert the parts; one commit."""
        parts = [p for w in group for p in w.parts]
        vectors = (self.encoder.encode_document([p.text for p in parts], [p.title for p in parts],
                                                batch_size=batch_size, show_progress_bar=show_progress_bar)
                   if parts else None)
        stale = list(dict.fromkeys([i for w in group for i in w.stale] + list(gone)))
        if stale:
            self.store.delete(stale)
        if parts:
            self.store.upsert(parts, vectors)
        self.store.commit()

    def get(self, doc_id: str) -> Document | None:
        """A document as indexed (a chunked one put back together from its chunks), or None."""
        return get_document(self.store, doc_id)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id, each with all of its chunks. -> how many of the ids were stored"""
        n = len(delete_documents(self.store, list(ids)))
        self.store.commit()
        return n

    # ------------------------------------------------------------------ reading
    def embed_queries(self, queries: Sequence[str], task: str | Sequence[str] | None = None,
                      use_instruction: bool = True, batch_size: int = 16) -> np.ndarray:
        """Query vectors with the task's instruction. -> (n, dim) float32"""
        return self.encoder.encode_query(queries, task=task, use_instruction=use_instruction, batch_size=batch_size)

    def search(self, queries: Sequence[str], task: str | Sequence[str] | None = None, k: int = 10,
               filter: str | None = None, use_instruction: bool = True, batch_size: int = 16,
               per_chunk: bool = False, hybrid: HybridConfig | bool | None = None, *,
               nprobe: int | None = None, ef: int | None = None) -> list[list[Hit]]:
        """Top-k documents for each query; ``task``: one for all, one per query, or None (default).

        A chunked document counts once, as its best chunk; ``per_chunk=True`` returns raw chunks.
        ``hybrid``: True or a ``HybridConfig`` fuses the dense ranking (query with its task) with the
        store's BM25 ranking of the bare query (``retriever.fusion``); hit scores are then fused scores.
        ``nprobe`` (IVF) / ``ef`` (HNSW): search breadth for this call (default: the manifest's).
        """
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        config = hybrid_config(hybrid)
        vectors = self.embed_queries(queries, task, use_instruction, batch_size)
        if config is None:
            if per_chunk:
                return self.store.search(vectors, k, filter=filter, nprobe=nprobe, ef=ef)
            return search_documents(self.store, vectors, k, filter=filter, nprobe=nprobe, ef=ef)
        return hybrid_search(self.store, vectors, list(queries), k, config, filter=filter, per_chunk=per_chunk,
                             nprobe=nprobe, ef=ef)

    def keyword_search(self, queries: Sequence[str], k: int = 10, filter: str | None = None,
                       per_chunk: bool = False) -> list[list[Hit]]:
        """Top-k documents by BM25 alone for each bare query (no model involved); a chunked
        document counts once, as its best chunk, unless ``per_chunk``."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if per_chunk:
            return self.store.keyword_search(list(queries), k, filter=filter)
        return [group_hits(h, k) for h in self.store.keyword_search(list(queries), 4 * k, filter=filter)]

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
