"""Indexing on many processes: ``torchrun --nproc_per_node N -m e5rag index ...`` or ``--shard I/N``.

Every process reads the same input and encodes a disjoint part of it. Where the vectors go
depends on the store:

* **FAISS directory or Milvus Lite** (one writer at a time): rank 0 holds the store. It decides
  what needs embedding (skip-unchanged), then for each commit of ``commit_every`` documents every
  rank encodes a contiguous slice, rank 0 gathers the slices in rank order, upserts and commits.
  The commits are the ones a single process makes, so the index equals a one-process index (ids,
  FAISS row ids; vectors within float tolerance: batches hold other documents).
* **Milvus server**: every rank opens the collection and writes its own shard (documents whose id
  hashes to it, ``shard_of``), committing as it goes. ``--shard I/N`` does the same without
  torchrun (Slurm arrays, Kubernetes jobs): one process per shard, started in any order.

A process that dies makes the others fail with ``JobFailedError``; what was committed stays, and
running the same command again resumes (unchanged documents are skipped).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from e5rag.indexers import Document, Manifest, Store, detect_store

from . import distributed as dist
from .chunking import DEFAULT_CHUNKING, ChunkConfig
from .encoder import Encoder
from .errors import E5RagError, InputError
from .parents import Write
from .search import IndexReport, SearchIndex, full_groups, model_record, windows

log = logging.getLogger(__name__)

# (encoder, model source, adapter) for an index's manifest (None: a new index)
EncoderLoader = Callable[[Manifest | None], tuple[Encoder, str | None, str | None]]


class JobFailedError(E5RagError):
    """Another process of a multi-process index job stopped; what was committed is kept."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): the documents whose id hashes to it."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with 0 <= I < N, e.g. ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``."""
        try:
            i, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise InputError(f"--shard takes I/N (shard I of N, 0 <= I < N), got {text!r}") from None
        if not 0 <= i < n:
            raise InputError(f"--shard {text}: I must be at least 0 and below N")
        return cls(i, n)

    def select(self, docs: Iterable[Document]) -> Iterator[Document]:
        """The documents of this shard, in input order (streamed)."""
        return (d for d in docs if shard_of(d.id, self.count) == self.index)


def shard_of(doc_id: str, count: int) -> int:
    """The shard a document id belongs to: stable across processes, runs and machines."""
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") % count


def writes_from_every_rank(location: str, store: str | None = None) -> bool:
    """True for a Milvus server (many writers); FAISS and Milvus Lite take one writing process."""
    from e5rag.indexers.milvus_store import is_server_uri

    return detect_store(location, store) == "milvus" and is_server_uri(str(location))


def slice_bounds(n: int, parts: int) -> list[int]:
    """Boundaries of ``parts`` contiguous, balanced slices of ``n`` items (``parts + 1`` numbers)."""
    return [n * p // parts for p in range(parts + 1)]


# --------------------------------------------------------------------------- the job
def run_index_job(docs: Iterable[Document], location: str, open_store: Callable[[], Store],
                  load_encoder: EncoderLoader, *, device_type: str, store_kind: str | None = None,
                  shard: Shard | None = None, batch_size: int = 16, commit_every: int = 4096,
                  skip_unchanged: bool = True, chunking: ChunkConfig | None = DEFAULT_CHUNKING) -> IndexReport | None:
    """Index ``docs`` as this process's part of a torchrun job or of ``--shard I/N``.

    Returns the job's report on rank 0 (the shard's with ``--shard``), None on other ranks.
    """
    server = writes_from_every_rank(location, store_kind)
    if shard is not None:
        if dist.launched_world_size() > 1:
            raise InputError("--shard is for launching one process per shard yourself; under torchrun "
                             "every rank already takes its own shard: drop --shard")
        if not server:
            raise InputError(f"--shard writes from several processes at once, which only a Milvus server "
                             f"takes ({location} is {'Milvus Lite' if str(location).endswith('.db') else 'FAISS'}"
                             "): use a server URI, or torchrun, which has one process write")
        return _add_own_shard(docs, open_store, load_encoder, shard, batch_size, commit_every, skip_unchanged, chunking)
    info = dist.join(device_type)
    with _stopped_by_launcher(info):
        job = _server_job if server else _one_writer_job
        report = job(docs, open_store, load_encoder, info, batch_size, commit_every, skip_unchanged, chunking)
        dist.leave()  # every rank done: close the group before the interpreter exits
    return report


_committed = threading.local()  # documents in the index at this rank's last commit, for messages


@contextmanager
def _stopped_by_launcher(info: dist.DistInfo):
    """torchrun SIGTERMs the other ranks when one dies: say so in one line instead of dying silently."""
    if info.world_size < 2 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        kept = getattr(_committed, "count", None)
        raise JobFailedError(
            f"rank {info.rank} of this {info.world_size}-process index job was stopped by the launcher "
            "(SIGTERM), which happens when another rank fails (the launcher's report names it); the index keeps "
            f"what was committed before{f' ({kept} documents)' if kept is not None else ''}: run the same "
            "command again to resume (unchanged documents are skipped)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _add_own_shard(docs, open_store, load_encoder, shard, batch_size, commit_every, skip_unchanged, chunking) -> IndexReport:
    store = open_store()
    try:
        encoder, source, adapter = load_encoder(store.manifest)
        index = SearchIndex(encoder, store, writing=True, model_source=source, adapter=adapter)
        if store.manifest is None:  # created even by a shard that turns out empty, so every shard finds it
            store.initialize(encoder.dim, model_record(encoder, source, adapter))
        return _add_if_any(index, shard.select(docs), batch_size, commit_every, skip_unchanged, chunking)
    finally:
        store.close()


def _add_if_any(index: SearchIndex, docs, batch_size, commit_every, skip_unchanged, chunking) -> IndexReport:
    """``index.add`` of a shard's documents (streamed); a shard with none adds nothing."""
    stream = iter(docs)
    first = next(stream, None)
    if first is None:
        return IndexReport(0, 0, 0, index.store.count())
    return index.add(itertools.chain([first], stream), batch_size=batch_size, commit_every=commit_every,
                     skip_unchanged=skip_unchanged, chunking=chunking)


@contextmanager
def _collective(info: dist.DistInfo, what: str, committed: Callable[[], int] | None = None):
    """Turn a collective's failure (a peer died, or timed out) into one clear line."""
    try:
        yield
    except RuntimeError as exc:  # torch.distributed.DistBackendError is a RuntimeError
        kept = ""
        if committed is not None:
            try:
                kept = f" ({committed()} documents)"
            except Exception:  # noqa: BLE001  (the message matters more than the count)
                kept = ""
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = re.sub(r"^\[[^\]]*\] ", "", reason).split(". ")[0][:160]  # gloo: "[file:line] Read error ..."
        raise JobFailedError(
            f"another process of this {info.world_size}-process index job stopped while {what} ({reason}); "
            f"the index keeps what was committed before{kept}: run the same command again to resume "
            "(unchanged documents are skipped)") from None


def _status(fn: Callable[[], object]) -> tuple[bool, object]:
    """(True, result) or (False, the error's message) so rank 0 can tell the other ranks."""
    try:
        return True, fn()
    except Exception as exc:  # noqa: BLE001  (re-raised on rank 0 by _share, reported on the others)
        return False, exc


def _share(info: dist.DistInfo, outcome: tuple[bool, object], what: str):
    """Broadcast rank 0's outcome; every rank raises rank 0's error or returns its result."""
    ok, value = outcome
    with _collective(info, what):
        shared = dist.broadcast_object((ok, value if ok else str(value)))
    if not ok:
        if info.is_main:
            raise value  # type: ignore[misc]
        raise JobFailedError(f"rank 0 stopped the job: {shared[1]}")
    return shared[1]


def _one_writer_job(docs, open_store, load_encoder, info, batch_size, commit_every, skip_unchanged, chunking) -> IndexReport | None:
    """FAISS / Milvus Lite: every rank encodes a slice of each commit, rank 0 writes it.

    Every rank reads the input ``commit_every`` documents at a time (the same windows); rank 0 says
    which of each window need embedding, so no rank holds more than about two commits' documents."""
    store = None
    try:
        if info.is_main:
            opened = _status(open_store)
            store = opened[1] if opened[0] else None
            manifest = _share(info, (opened[0], store.manifest if store is not None else opened[1]),
                              "opening the index")
        else:
            manifest = _share(info, (True, None), "opening the index")
        encoder, source, adapter = load_encoder(manifest)
        index = None
        if info.is_main:
            built = _status(lambda: SearchIndex(encoder, store, writing=True, model_source=source, adapter=adapter))
            index = built[1] if built[0] else None
            _share(info, (built[0], None if built[0] else built[1]), "checking the model")
            _committed.count = store.count()
        else:
            _share(info, (True, None), "checking the model")
        committed = (lambda: store.count()) if store is not None else None

        def write(group: list[Write], first: int) -> None:
            chunk = [p for w in group for p in w.parts]  # whole documents' passages: one commit
            bounds = slice_bounds(len(chunk), info.world_size)
            part = chunk[bounds[info.rank]:bounds[info.rank + 1]]
            vectors = (encoder.encode_document([d.text for d in part], [d.title for d in part], batch_size=batch_size,
                                               show_progress_bar=None if info.is_main else False)
                       if part else np.zeros((0, encoder.dim), np.float32))
            with _collective(info, f"gathering the vectors of documents {first + 1}-{first + len(group)}", committed):
                parts = dist.gather_objects(vectors)
            if info.is_main:
                stale = list(dict.fromkeys(i for w in group for i in w.stale))
                if stale:
                    store.delete(stale)
                if chunk:
                    store.upsert(chunk, np.concatenate(parts))
                store.commit()
                _committed.count = store.count()

        todo: list[Write] = []
        embedded = updated = skipped = relabeled = 0
        windows_read = 0
        stream = windows(docs, commit_every)
        while True:
            window = next(stream, None)
            if info.is_main:
                outcome = _status(lambda w=window: None if w is None else (len(w), *_plan(index, w, skip_unchanged, chunking)))
            else:
                outcome = (True, None)
            plan = _share(info, outcome, "planning what to embed")
            mine = None if window is None else len(window)
            if (plan[0] if plan is not None else None) != mine:
                raise JobFailedError(f"rank {info.rank} read {'no' if mine is None else mine} documents in window "
                                     f"{windows_read + 1} but rank 0 read {plan[0] if plan else 'none'}: every rank "
                                     "must read the same input")
            if plan is None:
                break
            windows_read += 1
            _, planned, up, sk, rl = plan
            todo += planned
            updated, skipped, relabeled = updated + up, skipped + sk, relabeled + rl
            groups = list(full_groups(todo, commit_every))
            for group in groups:
                write(group, embedded)
                embedded += len(group)
            todo = todo[sum(len(g) for g in groups):]
        if not windows_read:
            raise InputError("no documents to index")
        if todo:
            write(todo, embedded)
            embedded += len(todo)
        if not info.is_main:
            return None
        store.commit()
        return IndexReport(added=embedded - updated, updated=updated, skipped=skipped, total=store.count(),
                           metadata_updated=relabeled)
    finally:
        if store is not None:
            store.close()


def _plan(index: SearchIndex, window: list[Document], skip_unchanged: bool,
          chunking: ChunkConfig | None) -> tuple[list[Write], int, int, int]:
    """(the writes of ``window``: passages to embed and stale chunks to remove, how many replace stored
    documents, how many are unchanged, how many only changed metadata) -- ``SearchIndex.plan_add``,
    to broadcast."""
    plan = index.plan_add(window, skip_unchanged, chunking)
    return plan.writes, plan.updated, plan.skipped, plan.relabeled


def _server_job(docs, open_store, load_encoder, info, batch_size, commit_every, skip_unchanged, chunking) -> IndexReport | None:
    """Milvus server: rank 0 creates the collection if needed, then every rank writes its own shard."""
    shard = Shard(info.rank, info.world_size)
    store = None
    try:
        if info.is_main:
            def create():
                s = open_store()
                try:
                    encoder, source, adapter = load_encoder(s.manifest)
                    if s.manifest is None:
                        s.initialize(encoder.dim, model_record(encoder, source, adapter))
                    return s, encoder, source, adapter
                except BaseException:
                    s.close()
                    raise

            outcome = _status(create)
            if outcome[0]:
                store, encoder, source, adapter = outcome[1]
            _share(info, (outcome[0], None if outcome[0] else outcome[1]), "creating the collection")
        else:
            _share(info, (True, None), "creating the collection")
            store = open_store()
            encoder, source, adapter = load_encoder(store.manifest)
        index = SearchIndex(encoder, store, writing=True, model_source=source, adapter=adapter)
        report = _add_if_any(index, shard.select(docs), batch_size, commit_every, skip_unchanged, chunking)
        with _collective(info, "collecting the shards' reports"):
            reports = dist.gather_objects(report)
        if not info.is_main:
            return None
        return IndexReport(added=sum(r.added for r in reports), updated=sum(r.updated for r in reports),
                           skipped=sum(r.skipped for r in reports), total=store.count(),
                           metadata_updated=sum(r.metadata_updated for r in reports))
    finally:
        if store is not None:
            store.close()
