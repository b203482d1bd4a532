"""Mine hard negatives with an e5rag retriever (E5-Mistral trains on negatives "mined by a
retriever"): embed the corpus (or search an existing e5rag index), search each query with its
task, and keep documents ranked inside a window (e.g. 30-100: hard, but deep enough to hold few
unlabelled positives), the query's positives excluded.

Two inputs, one pipeline:

* a BEIR folder: the corpus, the split's queries and their relevant documents (qrels). The output
  is synthetic-format JSONL (``task, query, positive, negative``), one row per (query, positive),
  plus ``negatives`` (every kept negative; training samples from them) and ids.
* a training-pairs JSONL file (what ``e5rag train --data`` reads): the corpus is the file's
  distinct ``positive`` texts (id: a hash of the text), the queries its distinct (task, query)
  pairs, each searched with its own task; a query's positives are every positive it appears with
  anywhere in the file, and a document whose whitespace-normalised text equals one of them is never
  its negative. One row is written per input row, its fields kept, with ``negatives`` = the row's
  labelled ``negative`` (if any) first, then the mined ones (an input ``negatives`` list is replaced).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e5rag import fsutil
from e5rag.indexers import Document
from e5rag.retriever.errors import InputError
from e5rag.retriever.instructions import format_document
from e5rag.retriever.jsonl import iter_json_objects
from e5rag.retriever.tasks import resolve_task

from .beir import BeirDataset, beir_task, load_beir, positives
from .data import example_from_row

log = logging.getLogger(__name__)

DEFAULT_SPLIT = "train"
DEFAULT_BATCH_SIZE = 16
_ROW_HINT = ('each line of a training-pairs file is one object {"task": ..., "query": ..., "positive": ..., '
             '"negative": ... or null}, the rows `e5rag train --data` reads; fix or remove that line')



def parse_window(text: str | tuple[int, int]) -> tuple[int, int]:
    """"30-100" -> (30, 100): 1-based ranks, both ends included."""
    if isinstance(text, tuple):
        lo, hi = text
    else:
        try:
            lo, hi = (int(x) for x in str(text).split("-"))
        except ValueError:
            raise InputError(f"window must look like 30-100 (first and last rank), got {text!r}") from None
    if not 1 <= lo <= hi:
        raise InputError(f"window must satisfy 1 <= first <= last, got {lo}-{hi}")
    return lo, hi


BM25 = "bm25"


def is_bm25(model: str | None) -> bool:
    """Whether ``model`` names BM25 (any case) rather than an embedding model."""
    return model is not None and model.lower() == BM25


@dataclass(frozen=True)
class MineConfig:
    """What to mine. ``dataset``: a BEIR folder or a training-pairs JSONL file. ``index`` None embeds
    the corpus with ``model``/``adapter`` (None: the embedded default; "all-MiniLM-L6-v2" or a
    sentence-transformers folder also work, as in ``e5rag eval``; "bm25" ranks by BM25 with the
    bare query, no model at all); otherwise that e5rag index is
    searched (BEIR folders only). ``num_negatives`` 0 keeps the whole window. ``max_length`` None is
    the model's own (512 for E5 models). ``split`` (BEIR only) None is "train"; ``task`` is for
    BEIR folders (pairs rows carry theirs). ``max_queries`` mines a ``seed``-determined sample of that
    many distinct queries (the corpus stays whole); rows of the other queries are not written."""

    dataset: str
    out: str
    split: str | None = None
    index: str | None = None
    window: tuple[int, int] = (30, 100)
    num_negatives: int = 8
    task: str | None = None
    model: str | None = None
    adapter: str | None = None
    max_length: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    device: str | None = None
    use_cache: bool = True
    max_queries: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", parse_window(self.window))
        if self.num_negatives < 0:
            raise InputError(f"num_negatives must be >= 0 (0 keeps the whole window), got {self.num_negatives}")
        if self.max_length is not None and self.max_length < 2:
            raise InputError(f"max_length must be >= 2, got {self.max_length}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_queries is not None and self.max_queries < 1:
            raise InputError(f"max_queries must be >= 1 (leave it out to mine every query), got {self.max_queries}")
        if is_bm25(self.model) and self.adapter is not None:
            raise InputError("adapter: --model bm25 ranks by BM25 over the words (no neural model); "
                             "leave out --adapter, or give the E5 model it belongs to")
        if self.index is not None and (self.model is not None or self.adapter is not None):
            raise InputError("index: an index brings its own model; give either --index or --model/--adapter")

    def ignored_options(self) -> list[str]:
        """Options set here that do nothing with ``model="bm25"`` (no neural model: nothing is encoded)."""
        if not is_bm25(self.model):
            return []
        options = [("max_length (--max-length)", self.max_length is not None),
                   ("batch_size (--batch-size)", self.batch_size != DEFAULT_BATCH_SIZE),
                   ("device (--device)", self.device is not None),
                   ("use_cache (--no-cache)", not self.use_cache)]
        return [name for name, is_set in options if is_set]


@dataclass(frozen=True)
class MineReport:
    """``queries``: queries mined (after ``max_queries``) of ``queries_in_input``; ``without_negatives``
    of them found no document in the window, and ``rows_without_negatives`` rows belong to those
    (a pairs row keeps its labelled negative, if it had one)."""

    out: Path
    rows: int
    queries: int
    without_negatives: int
    rows_without_negatives: int = 0
    queries_in_input: int = 0


# ---------------------------------------------------------------------------------------- the pipeline
def _ranked_exact(config: MineConfig, data: BeirDataset, qids: list[str], task: str | list[str],
                  k: int) -> list[list[str]]:
    """Top-k document ids per query by exact inner product over the embedded corpus; ``task``: one
    for all queries or one per query.

    Corpus vectors come from (and go to) the evaluation's embedding cache, so mining after
    ``e5rag eval`` with the same model re-encodes only the queries.
    """
    from e5rag.retriever.evaluation.baselines import load_eval_encoder
    from e5rag.retriever.evaluation.cache import EmbeddingCache
    from e5rag.retriever.evaluation.exact import exact_topk
    from e5rag.retriever.evaluation.harness import document_vectors

    encoder, _ = load_eval_encoder(config.model, adapter=config.adapter, max_length=config.max_length,
                                   device=config.device)
    cache = EmbeddingCache() if config.use_cache else None
    d, _, _ = document_vectors(encoder, data, cache, config.batch_size)  # (n, dim)
    q = encoder.encode_query([data.queries[i] for i in qids], task=task, batch_size=config.batch_size)  # (m, dim)
    _, top = exact_topk(q, d, k)  # (m, k) indices, best first
    return [[data.corpus[int(j)].id for j in row] for row in top]


def _ranked_bm25(data: BeirDataset, qids: list[str], k: int) -> list[list[str]]:
    """Top-k document ids per query by BM25 over the corpus (the bare query; no task, no model): the
    BM25 of ``e5rag eval --bm25`` and of a FAISS store's hybrid search."""
    from e5rag.retriever.evaluation.hybrid import bm25_run

    run, _ = bm25_run(data, k, qids)
    return [list(run[q]) for q in qids]


def _ranked_index(config: MineConfig, data: BeirDataset, qids: list[str], task: str | list[str],
                  k: int) -> list[list[str]]:
    from e5rag.retriever.search import SearchIndex

    with SearchIndex.open(config.index) as index:
        hits = index.search([data.queries[i] for i in qids], task=task, k=k, batch_size=config.batch_size)
    return [[h.document.id for h in row] for row in hits]


def sample_queries(qids: Sequence[str], max_queries: int | None, seed: int) -> list[str]:
    """``max_queries`` of ``qids`` drawn with ``seed`` (kept in input order); all of them when None
    or when there are no more. The stream differs from the negatives' (``[seed, n]``)."""
    if max_queries is None or max_queries >= len(qids):
        return list(qids)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return [qids[i] for i in sorted(rng.choice(len(qids), max_queries, replace=False))]


def _mine_windows(config: MineConfig, data: BeirDataset, qids: list[str], task: str | list[str],
                  excluded: dict[str, frozenset[str]], stream: dict[str, int]) -> list[list[str]]:
    """Kept negative ids per query of ``qids``: its ranks inside the window, ``excluded[qid]``
    left out, then ``num_negatives`` of them (in rank order) drawn with ``[seed, stream[qid]]``."""
    lo, hi = config.window
    if is_bm25(config.model):
        ranked = _ranked_bm25(data, qids, hi)
    elif config.index is None:
        ranked = _ranked_exact(config, data, qids, task, hi)
    else:
        ranked = _ranked_index(config, data, qids, task, hi)
    known = {d.id for d in data.corpus}
    out = []
    for qid, ranking in zip(qids, ranked, strict=True):
        window = [d for d in ranking[lo - 1:hi] if d not in excluded[qid] and d in known]
        if config.num_negatives and len(window) > config.num_negatives:
            keep = np.random.default_rng([config.seed, stream[qid]]).choice(len(window), config.num_negatives,
                                                                             replace=False)
            window = [window[i] for i in sorted(keep)]
        out.append(window)
    return out


def mine_hard_negatives(config: MineConfig) -> MineReport:
    """Mine a BEIR folder or a training-pairs file; write the JSONL atomically (temp file, then rename)."""
    ignored = config.ignored_options()
    if ignored:
        log.warning("%s ignored: --model bm25 encodes nothing (they apply to neural models)", ", ".join(ignored))
    path = Path(config.dataset)
    if path.is_dir():
        return _mine_beir(config)
    if path.is_file():
        return _mine_pairs(config)
    raise InputError(f"{path}: no such file or folder; give a BEIR folder (corpus.jsonl, queries.jsonl, "
                     "qrels/) or a training-pairs JSONL file")


# ---------------------------------------------------------------------------------------- BEIR folders
def _mine_beir(config: MineConfig) -> MineReport:
    split = config.split if config.split is not None else DEFAULT_SPLIT
    task = beir_task(config.dataset, config.task)
    data = load_beir(config.dataset, split)
    relevant = positives(data)
    corpus = {d.id: d for d in data.corpus}
    lo, hi = config.window
    every = list(relevant)
    stream = {qid: n for n, qid in enumerate(every)}
    qids = sample_queries(every, config.max_queries, config.seed)
    mined = _mine_windows(config, data, qids, task, {q: frozenset(relevant[q]) for q in qids}, stream)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = empty = empty_rows = 0
    with fsutil.atomic_open(out) as fh:
        for qid, window in zip(qids, mined, strict=True):
            empty += not window
            empty_rows += 0 if window else len(relevant[qid])
            negatives = [format_document(corpus[d].text, corpus[d].title) for d in window]
            for pid in relevant[qid]:
                fh.write(json.dumps({
                    "task": task, "query": data.queries[qid],
                    "positive": format_document(corpus[pid].text, corpus[pid].title),
                    "negative": negatives[0] if negatives else None, "negatives": negatives,
                    "query_id": qid, "positive_id": pid, "negative_ids": window,
                    "source": f"e5rag mine {Path(config.dataset).name} {split} ranks {lo}-{hi}",
                }, ensure_ascii=False) + "\n")
                rows += 1
    return MineReport(out, rows, len(qids), empty, empty_rows, len(every))


# ---------------------------------------------------------------------------------------- pairs files
def text_id(text: str) -> str:
    """The id of a pairs-file text (a document, a labelled negative): a hash of its exact text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _query_id(task: str, query: str) -> str:
    return hashlib.sha256(f"{task}\0{query}".encode()).hexdigest()[:20]


def _normalised(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class PairsCorpus:
    """A pairs file as a retrieval problem. ``data``: the distinct positives (first-seen order) as the
    corpus, the distinct (task, query) pairs as queries, every positive a query appears with as its
    qrels; ``tasks``: query id -> task definition; ``rows``: (input object, its query id, positive id)
    in file order; ``excluded``: query id -> document ids never mined for it (its positives and
    their whitespace variants)."""

    data: BeirDataset
    tasks: dict[str, str]
    rows: tuple[tuple[dict[str, Any], str, str], ...]
    excluded: dict[str, frozenset[str]]


def _bad_row(where: str, row: dict[str, Any], exc: InputError) -> InputError:
    if "query" not in row and "_id" in row and "text" in row:
        return InputError(f"{where}: this looks like a BEIR corpus or queries line, not a training pair; "
                          "to mine a BEIR dataset give its folder (corpus.jsonl, queries.jsonl, qrels/)")
    return InputError(f"{exc}; {_ROW_HINT}")


def read_pairs_corpus(path: str | Path) -> PairsCorpus:
    """Read and validate a training-pairs file (the trainer's row rules, errors with file and line)."""
    path = Path(path)
    docs: dict[str, Document] = {}
    queries: dict[str, str] = {}
    tasks: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    rows: list[tuple[dict[str, Any], str, str]] = []
    checked: set[str] = set()
    for where, row in iter_json_objects(path):
        try:
            example = example_from_row(row, where)
        except InputError as exc:
            raise _bad_row(where, row, exc) from None
        if example.task not in checked:  # the encoder resolves tasks: a bad one fails here, not after the encoding
            try:
                resolve_task(example.task)
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
            checked.add(example.task)
        pid = text_id(example.positive)
        docs.setdefault(pid, Document(id=pid, text=example.positive))
        qid = _query_id(example.task, example.query)
        queries.setdefault(qid, example.query)
        tasks.setdefault(qid, example.task)
        qrels.setdefault(qid, {})[pid] = 1
        rows.append((row, qid, pid))
    if not rows:
        raise InputError(f"{path} holds no training rows (it is empty or blank); write one JSON object per line "
                         '{"task", "query", "positive", "negative"}, or give a BEIR folder')
    variants: dict[str, set[str]] = {}
    for d in docs.values():
        variants.setdefault(_normalised(d.text), set()).add(d.id)
    excluded = {qid: frozenset(v for pid in rel for v in variants[_normalised(docs[pid].text)])
                for qid, rel in qrels.items()}
    data = BeirDataset(name=path.stem, path=path, split="pairs", corpus=tuple(docs.values()), queries=queries,
                       qrels=qrels)
    return PairsCorpus(data, tasks, tuple(rows), excluded)


def _mine_pairs(config: MineConfig) -> MineReport:
    path = Path(config.dataset)
    if config.split is not None:
        raise InputError(f"{path} is a training-pairs file: --split picks the qrels of a BEIR folder; leave it out")
    if config.task is not None:
        raise InputError(f"{path} is a training-pairs file whose rows carry their own task; --task is for "
                         "BEIR folders: leave it out")
    if config.index is not None:
        raise InputError(f"{path} is a training-pairs file: its corpus is its positives, embedded now; "
                         "--index searches a BEIR corpus: leave it out (give --model instead)")
    pairs = read_pairs_corpus(path)
    data = pairs.data
    every = list(data.queries)
    stream = {qid: n for n, qid in enumerate(every)}
    qids = sample_queries(every, config.max_queries, config.seed)
    mined = dict(zip(qids, _mine_windows(config, data, qids, [pairs.tasks[q] for q in qids], pairs.excluded,
                                         stream), strict=True))
    text = {d.id: d.text for d in data.corpus}
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = empty_rows = 0
    with fsutil.atomic_open(out) as fh:
        for row, qid, pid in pairs.rows:
            if qid not in mined:
                continue
            labelled = row.get("negative")
            ids = [text_id(labelled)] if labelled is not None else []
            negatives = [labelled] if labelled is not None else []
            for d in mined[qid]:
                if text[d] != labelled:
                    ids.append(d)
                    negatives.append(text[d])
            empty_rows += not mined[qid]
            record = dict(row)
            record.update(negative=negatives[0] if negatives else None, negatives=negatives,
                          query_id=qid, positive_id=pid, negative_ids=ids)
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            rows += 1
    empty = sum(not w for w in mined.values())
    return MineReport(out, rows, len(qids), empty, empty_rows, len(every))
