"""An e5rag index: an encoder bound to a store. Documents are embedded once, without an
instruction; every query brings its own task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from e5rag.indexers import Document, Hit, Store, open_store

from .encoder import Encoder
from .errors import IndexMismatchError, InputError
from .fingerprint import ModelFingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexReport:
    """What an ``add`` did: new, replaced (text changed) and skipped (unchanged) documents."""

    added: int
    updated: int
    skipped: int
    total: int


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
    return record


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
                                                  max_length=int(recorded.get("max_length", 512)),
                                                  quantize=recorded.get("quantization"))
            return cls(encoder, store, writing=not readonly, model_source=model, adapter=adapter)
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------------ writing
    def add(self, docs: Sequence[Document], *, batch_size: int = 16, commit_every: int = 4096,
            skip_unchanged: bool = True, show_progress_bar: bool | None = None) -> IndexReport:
        """Embed and upsert documents, committing every ``commit_every`` so a crash loses at most that."""
        docs = list(docs)
        if not docs:
            raise InputError("no documents to index")
        if self.store.manifest is None:
            self.store.initialize(self.encoder.dim, self._record)
        known = self.store.content_hashes([d.id for d in docs])
        todo = [d for d in docs if not (skip_unchanged and known.get(d.id) == d.content_hash)]
        skipped = len(docs) - len(todo)
        updated = sum(1 for d in todo if d.id in known)
        for start in range(0, len(todo), commit_every):
            chunk = todo[start:start + commit_every]
            vectors = self.encoder.encode_document([d.text for d in chunk], [d.title for d in chunk],
                                                   batch_size=batch_size, show_progress_bar=show_progress_bar)
            self.store.upsert(chunk, vectors)
            self.store.commit()
        self.store.commit()
        return IndexReport(added=len(todo) - updated, updated=updated, skipped=skipped, total=self.store.count())

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
               filter: str | None = None, use_instruction: bool = True, batch_size: int = 16) -> list[list[Hit]]:
        """Top-k documents for each query; ``task``: one for all, one per query, or None (default)."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        vectors = self.embed_queries(queries, task, use_instruction, batch_size)
        return self.store.search(vectors, k, filter=filter)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
