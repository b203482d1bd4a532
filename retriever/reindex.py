"""Re-embed every document an index holds with another model, from the texts the index stores.

``reindex(location, encoder)`` builds the replacement beside the live index
(``indexers.staging``: a staged FAISS index in the index folder, or a new Milvus collection),
committing every ``commit_every`` documents, and switches to it only when every document is
in it. Readers keep searching the old index with its old model until the switch. Killed at any
point, the old index is untouched; the same call again resumes: documents already staged with the
same content are not embedded again. ``estimate`` says what a rebuild would do and how long it
should take, from the speed measured on a sample.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e5rag.indexers import Document, Store, StoreError, detect_store, open_store
from e5rag.indexers.staging import Staging, finish_interrupted_switch, open_staging, staging_exists

from .encoder import Encoder
from .errors import InputError
from .fingerprint import ModelFingerprint
from .identity_migration import comparable_record
from .search import model_record

log = logging.getLogger(__name__)

READ_BATCH = 512  # documents read from a store per request


@dataclass(frozen=True)
class ReindexPlan:
    """What a rebuild has left to do: ``total`` documents, ``staged`` already re-embedded by an
    interrupted run, ``todo`` to embed; ``up_to_date`` when the index already has the target model."""

    total: int
    staged: int
    todo: int
    up_to_date: bool = False


@dataclass(frozen=True)
class ReindexEstimate:
    """A dry run: the plan, and the speed measured by embedding ``sample`` documents."""

    plan: ReindexPlan
    sample: int
    docs_per_s: float
    eta_s: float


@dataclass(frozen=True)
class ReindexReport:
    """What a rebuild did: ``embedded`` now, ``resumed`` from an interrupted run, ``removed`` staged
    documents no longer in the index; ``switched`` when the index now serves the new model."""

    total: int
    embedded: int
    resumed: int
    removed: int
    seconds: float
    switched: bool

    @property
    def docs_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def _same_target(record: dict[str, Any], target: ModelFingerprint) -> bool:
    if not record.get("base"):
        return False
    theirs = ModelFingerprint.from_dict(record)
    return theirs.same_model(target) and theirs.max_length == target.max_length


def _todo(source: Store, staged: Store | None, keep: int = 0) -> tuple[int, set[str], list[Document]]:
    """(documents in source, ids whose staged copy is missing or has other content, first ``keep`` of those)."""
    total, todo, sample = 0, set(), []
    for docs in source.iter_documents(READ_BATCH):
        total += len(docs)
        have = staged.content_hashes([d.id for d in docs]) if staged is not None else {}
        for d in docs:
            if have.get(d.id) != d.content_hash:
                todo.add(d.id)
                if len(sample) < keep:
                    sample.append(d)
    return total, todo, sample


def _chunks(source: Store, ids: set[str], size: int) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    for docs in source.iter_documents(READ_BATCH):
        for d in docs:
            if d.id in ids:
                chunk.append(d)
                if len(chunk) == size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _embed(encoder: Encoder, docs: list[Document], batch_size: int):
    return encoder.encode_document([d.text for d in docs], [d.title for d in docs], batch_size=batch_size,
                                   show_progress_bar=False)


def _open_existing(location: str | Path, readonly: bool, options: dict[str, Any]) -> Store:
    """Open an index that must exist; a missing one is refused before anything is created."""
    if not readonly:
        open_store(location, readonly=True, **options).close()
    store = open_store(location, readonly=readonly, **options)
    if store.manifest is None:
        store.close()
        raise InputError(f"the index {location} is empty: there is nothing to re-embed")
    return store


def _finish_switch(location: str | Path, options: dict[str, Any]) -> None:
    if detect_store(location, options.get("store")) == "milvus":
        finish_interrupted_switch(str(location), options)


def recorded_model(location: str | Path, store_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model record of the index at ``location`` (finishing a Milvus switch a kill interrupted)."""
    options = dict(store_options or {})
    _finish_switch(location, options)
    with _open_existing(location, True, options) as store:
        return dict(store.manifest.model or {})


def discard(location: str | Path, store_options: dict[str, Any] | None = None) -> int | None:
    """Remove the staged rebuild an interrupted ``reindex`` left beside the index. -> documents it held
    (None: there was none). The live index is not touched."""
    options = dict(store_options or {})
    _finish_switch(location, options)
    with _open_existing(location, False, options) as source:
        if not staging_exists(source):
            return None
        staging = open_staging(source, options)
        held = staging.store.count()
        staging.discard()
        return held


def _current(store: Store, encoder: Encoder) -> dict[str, Any]:
    return comparable_record(store.manifest.model or {}, encoder)


def estimate(location: str | Path, encoder: Encoder, *, store_options: dict[str, Any] | None = None,
             batch_size: int = 16, sample: int = 64) -> ReindexEstimate:
    """Count what ``reindex`` would embed and time ``encoder`` on up to ``sample`` of those documents.

    Writes nothing. The first batch warms the model up and is not timed when there are more.
    """
    options = dict(store_options or {})
    source = _open_existing(location, True, options)
    try:
        target = encoder.fingerprint
        if _same_target(_current(source, encoder), target):
            return ReindexEstimate(ReindexPlan(source.count(), 0, 0, up_to_date=True), 0, 0.0, 0.0)
        staged = None
        if staging_exists(source):
            try:
                staged = open_staging(source, options, readonly=True)
            except StoreError:
                staged = None
        try:
            usable = staged is not None and _same_target(staged.store.manifest.model, target)
            total, todo, docs = _todo(source, staged.store if usable else None, keep=max(sample, 1))
        finally:
            if staged is not None:
                staged.close()
    finally:
        source.close()
    plan = ReindexPlan(total, total - len(todo), len(todo))
    if not docs:
        return ReindexEstimate(plan, 0, 0.0, 0.0)
    warm, timed = (docs[:batch_size], docs[batch_size:]) if len(docs) > batch_size else ([], docs)
    if warm:
        _embed(encoder, warm, batch_size)
    start = time.perf_counter()
    _embed(encoder, timed, batch_size)
    speed = len(timed) / max(time.perf_counter() - start, 1e-9)
    return ReindexEstimate(plan, len(timed), speed, len(todo) / speed)


def reindex(location: str | Path, encoder: Encoder, *, store_options: dict[str, Any] | None = None,
            model_source: str | None = None, adapter: str | None = None, batch_size: int = 16,
            commit_every: int = 1024, show_progress_bar: bool | None = None) -> ReindexReport:
    """Re-embed every stored document with ``encoder`` and switch the index to it (see the module doc).

    ``model_source``/``adapter``: where the new index records its model is loaded from (default:
    what the encoder was loaded from). ``commit_every``: documents between durable checkpoints.
    """
    if commit_every < 1 or batch_size < 1:
        raise InputError("commit_every and batch_size must be at least 1")
    options = dict(store_options or {})
    started = time.perf_counter()
    _finish_switch(location, options)
    source = _open_existing(location, False, options)
    staging: Staging | None = None
    try:
        target = encoder.fingerprint
        total = source.count()
        if _same_target(_current(source, encoder), target):
            log.info("index %s already holds vectors of %s: nothing to re-embed", location, target.describe())
            _drop_leftover(source, options, target)
            return ReindexReport(total, 0, 0, 0, time.perf_counter() - started, switched=False)
        staging = open_staging(source, options)
        staged = staging.store
        if staged.manifest is not None and not _same_target(staged.manifest.model, target):
            log.warning("discarding a staged rebuild of %s for another model (%s)", location,
                        ModelFingerprint.from_dict(staged.manifest.model).describe()
                        if staged.manifest.model.get("base") else "unknown")
            staging.discard()
            staging = open_staging(source, options)
            staged = staging.store
        if staged.manifest is None:
            staged.initialize(encoder.dim, model_record(encoder, model_source, adapter))
        total, todo, _ = _todo(source, staged)
        resumed = total - len(todo)
        if resumed:
            log.warning("resuming the rebuild of %s: %d of %d documents are already re-embedded",
                        location, resumed, total)
        embedded = _embed_all(source, staged, encoder, todo, batch_size, commit_every, show_progress_bar)
        removed = _remove_stale(source, staged)
        staged.commit()
        if staged.count() != source.count():
            raise StoreError(f"the rebuilt index holds {staged.count()} documents but {location} holds "
                             f"{source.count()}; the old index is unchanged: run the same command again")
        staging.switch()
        return ReindexReport(total, embedded, resumed, removed, time.perf_counter() - started, switched=True)
    finally:
        if staging is not None:
            staging.close()
        source.close()


def _embed_all(source: Store, staged: Store, encoder: Encoder, todo: set[str], batch_size: int,
               commit_every: int, show_progress_bar: bool | None) -> int:
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if show_progress_bar is None else show_progress_bar
    chunk_size = max(batch_size, min(commit_every, 8 * batch_size))
    done = since_commit = 0
    with tqdm(total=len(todo), disable=not show, desc="reindex", unit="doc", file=sys.stderr) as bar:
        for chunk in _chunks(source, todo, chunk_size):
            staged.upsert(chunk, _embed(encoder, chunk, batch_size))
            done += len(chunk)
            since_commit += len(chunk)
            if since_commit >= commit_every:
                staged.commit()
                since_commit = 0
            bar.update(len(chunk))
    return done


def _remove_stale(source: Store, staged: Store) -> int:
    """Delete staged documents that are no longer in the index (deleted since a run was killed)."""
    stale: list[str] = []
    for docs in staged.iter_documents(READ_BATCH):
        ids = [d.id for d in docs]
        present = source.content_hashes(ids)
        stale += [i for i in ids if i not in present]
    return staged.delete(stale) if stale else 0


def _drop_leftover(source: Store, options: dict[str, Any], target: ModelFingerprint) -> None:
    """Remove what a rebuild to ``target`` killed after its switch left behind (or an empty one)."""
    if source.kind == "faiss" and not staging_exists(source):
        return  # (a Milvus staging open also drops generations an interrupted switch left)
    staging = open_staging(source, options)  # an unusable FAISS staging folder is replaced by an empty one
    manifest = staging.store.manifest
    if manifest is None or _same_target(manifest.model, target):
        staging.discard()
    else:
        staging.close()
