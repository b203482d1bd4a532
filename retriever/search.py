"""An e5rag index: an encoder bound to a store. Documents are embedded once, without an
instruction; every query brings its own task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from e5rag.indexers import Document, Hit, Store, open_store

from .encoder import Encoder
from .errors import IndexMismatchError, InputError
from .fingerprint import ModelFingerprint

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
    metadata_updated: int = 0


@dataclass(frozen=True)
class AddPlan:
    """Of a batch given to ``add``: the documents to embed, how many of them replace a stored one,
    how many are skipped as unchanged, and how many only changed metadata (stored, not re-embedded)."""

    todo: list[Document]
    updated: int
    skipped: int
    relabeled: int = 0


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
    theirs = ModelFingerprint.from_dict(manifest.model)
    ours = encoder.fingerprint
    if not ours.same_model(theirs) or (writing and ours.max_length != theirs.max_length):
        raise IndexMismatchError(
            f"the index was built with {theirs.describe()} but the model in use is {ours.describe()}: "
            "pass the index's --model/--adapter/--max-length, or build a new index")


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
    return record


def windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter; none is empty)."""
    it = iter(items)
    while window := list(islice(it, size)):
        yield window


class SearchIndex:
    """Encoder + store. ``add`` embeds documents; ``search`` embeds queries with their task."""

    def __init__(self, encoder: Encoder, store: Store, *, writing: bool = False, model_source: str | None = None,
                 adapter: str | None = None) -> None:
        check_model(store, encoder, writing)
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
                recorded = (store.manifest.model if store.manifest else {}) or {}
                model = model if model is not None else recorded.get("source")
                adapter = adapter if adapter is not None else recorded.get("adapter_path")
                encoder = Encoder.from_pretrained(model, adapter=adapter,
                                                  max_length=int(recorded.get("max_length", 512)))
            return cls(encoder, store, writing=not readonly, model_source=model, adapter=adapter)
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------------ writing
    def add(self, docs: Iterable[Document], *, batch_size: int = 16, commit_every: int = 4096,
            skip_unchanged: bool = True, show_progress_bar: bool | None = None) -> IndexReport:
        """Embed and upsert documents, committing every ``commit_every`` so a crash loses at most that.

        ``docs`` may be any iterable (e.g. ``stream_documents``): it is read ``commit_every`` at a time,
        so memory holds about two commits' documents whatever the corpus size."""
        if commit_every < 1:
            raise InputError(f"commit_every must be at least 1, got {commit_every}")
        todo: list[Document] = []
        embedded = updated = skipped = relabeled = 0
        window = None
        for window in windows(docs, commit_every):
            plan = self.plan_add(window, skip_unchanged)
            todo += plan.todo
            updated, skipped, relabeled = updated + plan.updated, skipped + plan.skipped, relabeled + plan.relabeled
            while len(todo) >= commit_every:
                embedded += self._write(todo[:commit_every], batch_size, show_progress_bar)
                todo = todo[commit_every:]
        if window is None:
            raise InputError("no documents to index")
        if todo:
            embedded += self._write(todo, batch_size, show_progress_bar)
        self.store.commit()
        return IndexReport(added=embedded - updated, updated=updated, skipped=skipped, total=self.store.count(),
                           metadata_updated=relabeled)

    def _write(self, chunk: list[Document], batch_size: int, show_progress_bar: bool | None) -> int:
        """Embed, upsert and commit one chunk. -> its size"""
        vectors = self.encoder.encode_document([d.text for d in chunk], [d.title for d in chunk],
                                               batch_size=batch_size, show_progress_bar=show_progress_bar)
        self.store.upsert(chunk, vectors)
        self.store.commit()
        return len(chunk)

    def plan_add(self, docs: Sequence[Document], skip_unchanged: bool = True) -> AddPlan:
        """What ``add`` will embed of ``docs`` (see ``AddPlan``); stores metadata-only changes at once
        (not re-embedded) and initialises a new index's manifest."""
        if not docs:
            raise InputError("no documents to index")
        if self.store.manifest is None:
            self.store.initialize(self.encoder.dim, self._record)
        known = self.store.content_hashes([d.id for d in docs])
        todo = [d for d in docs if not (skip_unchanged and known.get(d.id) == d.content_hash)]
        skipped = len(docs) - len(todo)
        relabel = self._metadata_only(todo, known) if skip_unchanged else set()
        if relabel:  # only metadata changed: stored in place (committed with the next commit), not re-embedded
            self.store.update_metadata([d for d in todo if d.id in relabel])
            todo = [d for d in todo if d.id not in relabel]
        return AddPlan(todo, sum(1 for d in todo if d.id in known), skipped, len(relabel))

    def _metadata_only(self, changed: Sequence[Document], known: dict[str, str]) -> set[str]:
        """Ids among ``changed`` already stored with the same text and title (only metadata differs)."""
        stored = [d for d in changed if d.id in known]
        return {d.id for d, old in zip(stored, self.store.get([d.id for d in stored]), strict=True)
                if old is not None and old.text == d.text and (old.title or "") == (d.title or "")}

    def delete(self, ids: Sequence[str]) -> int:
        n = self.store.delete(list(ids))
        self.store.commit()
        return n

    # ------------------------------------------------------------------ reading
    def embed_queries(self, queries: Sequence[str], task: str | Sequence[str] | None = None,
                      use_instruction: bool = True, batch_size: int = 16) -> np.ndarray:
        """Query vectors with the task's instruction. -> (n, dim) float32"""
        return self.encoder.encode_query(queries, task=task, use_instruction=use_instruction, batch_size=batch_size)

    def search(self, queries: Sequence[str], task: str | Sequence[str] | None = None, k: int = 10,
               filter: str | None = None, use_instruction: bool = True, batch_size: int = 16, *,
               nprobe: int | None = None, ef: int | None = None) -> list[list[Hit]]:
        """Top-k documents for each query; ``task``: one for all, one per query, or None (default).
        ``nprobe`` (IVF) / ``ef`` (HNSW): search breadth for this call (default: the manifest's)."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        vectors = self.embed_queries(queries, task, use_instruction, batch_size)
        return self.store.search(vectors, k, filter=filter, nprobe=nprobe, ef=ef)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
