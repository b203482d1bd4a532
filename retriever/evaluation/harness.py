"""The evaluation harness: BEIR datasets x models x instruction settings, exact search, trec_eval.

Per (model, dataset) the documents are embedded once (or read from the embedding cache); every
instruction setting then encodes only the queries. Timings say which was which.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from e5rag.indexers import bm25

from ..errors import InputError
from ..fusion import HybridConfig
from ..tasks import get_task, resolve_task
from .baselines import EvalEncoder, is_baseline, load_eval_encoder, uses_instruction
from .beir import BeirDataset, load_beir
from .cache import EmbeddingCache
from .exact import Run, build_run, exact_topk
from .hybrid import BM25_NAME, bm25_run, fuse_runs
from .metrics import NDCG_AT, evaluate_run

log = logging.getLogger(__name__)

InstructionMode = Literal["with", "without", "both"]
Retrieval = Literal["dense", "bm25", "hybrid"]
RETRIEVALS = ("dense", "bm25", "hybrid")
DocSource = Literal["encoded", "resumed", "cache", "reused"]
DOC_CHUNK = 512  # documents per resumable unit of work
_MODES = ("with", "without", "both")


@dataclass(frozen=True)
class EvalConfig:
    """One ``e5rag eval`` call. ``models``: None is the embedded default; ``max_length`` None is
    512 for E5 models and the model's own limit for sentence-transformers baselines."""

    datasets: tuple[str, ...]
    split: str = "test"
    models: tuple[str | None, ...] = (None,)
    adapter: str | None = None
    task: str | None = None
    instruction: InstructionMode = "with"
    k: int = 100
    batch_size: int = 16
    max_length: int | None = None
    device: str | None = None
    use_cache: bool = True
    compile: bool = False  # torch.compile the E5 encoder (faster on CPU after a one-time compile)
    retrieval: tuple[Retrieval, ...] = ("dense",)  # rows: dense, BM25 alone (no model), hybrid (fusions)
    fusions: tuple[HybridConfig, ...] = (HybridConfig(),)  # one hybrid row per fusion
    quantize: str | None = None  # "int8": the E5 encoder with int8 weights and activations (CPU)

    def __post_init__(self) -> None:
        bad = [r for r in self.retrieval if r not in RETRIEVALS]
        if bad or not self.retrieval:
            raise InputError(f"retrieval must be some of {', '.join(RETRIEVALS)}, got {self.retrieval!r}")
        if "hybrid" in self.retrieval and not self.fusions:
            raise InputError("fusions: hybrid evaluation needs at least one HybridConfig")
        if not self.datasets:
            raise InputError("datasets: give at least one BEIR dataset folder")
        if not self.models:
            raise InputError("models: give at least one model (None is the embedded default)")
        if self.instruction not in _MODES:
            raise InputError(f"instruction must be one of {', '.join(_MODES)}, got {self.instruction!r}")
        if self.k < NDCG_AT:
            raise InputError(f"k must be at least {NDCG_AT} (nDCG@{NDCG_AT} needs that many hits), got {self.k}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise InputError(f"max_length must be at least 2, got {self.max_length}")
        if not self.split.strip():
            raise InputError("split must be a name such as test, dev or train")


@dataclass(frozen=True)
class RunResult:
    """One row of results. ``metrics`` are fractions in [0, 1]; times in seconds."""

    dataset: str
    split: str
    model: str
    instruction: bool
    task: str | None
    metrics: dict[str, float]
    n_queries: int
    n_documents: int
    doc_source: DocSource
    doc_seconds: float
    query_seconds: float
    search_seconds: float
    k: int
    fingerprint: dict[str, Any] = field(default_factory=dict)
    retrieval: str = "dense"  # "dense", "bm25" or "hybrid <fusion>" (e.g. "hybrid rrf k=60")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dataset_task(dataset: BeirDataset, override: str | None) -> str:
    """The task definition: ``override`` (name or sentence), else the registry entry for the folder name."""
    if override is not None:
        return resolve_task(override)
    task = get_task(dataset.name)
    if task is None:
        raise InputError(f"no registered task for dataset {dataset.name!r}: pass --task with a task name "
                         "or a one-sentence definition (or --no-instruction)")
    return task.definition


def document_vectors(encoder: EvalEncoder, dataset: BeirDataset, cache: EmbeddingCache | None,
                     batch_size: int = 16, chunk: int = DOC_CHUNK,
                     compile: bool = False) -> tuple[np.ndarray, DocSource, float]:
    """Corpus vectors (n, dim) float32, where they came from, and seconds this call spent.

    Documents are encoded ``chunk`` at a time and each finished chunk is cached, so an interrupted
    run resumes ("resumed") rather than starting over. ``compile``: ``torch.compile`` an E5 encoder
    first, only when documents must be encoded (a cached corpus leaves a few queries: eager is faster).
    """
    start = time.perf_counter()
    fp, docs = encoder.fingerprint, dataset.corpus
    if cache is not None and (vectors := cache.load(fp, docs)) is not None:
        return vectors, "cache", time.perf_counter() - start
    if compile and hasattr(encoder, "compile"):
        encoder.compile()
    parts = cache.load_chunks(fp, docs, chunk) if cache is not None else []
    resumed = bool(parts)
    if resumed:
        log.info("resuming %s: %d of %d documents already encoded", dataset.name,
                 min(len(parts) * chunk, len(docs)), len(docs))
    for index, first in enumerate(range(0, len(docs), chunk)):
        if index < len(parts):
            continue
        piece = docs[first:first + chunk]
        parts.append(encoder.encode_document([d.text for d in piece], [d.title for d in piece], batch_size=batch_size))
        if cache is not None:
            cache.save_chunk(fp, docs, chunk, index, parts[-1])
        log.info("%s: encoded %d/%d documents (%.0fs)", dataset.name, min(first + chunk, len(docs)), len(docs),
                 time.perf_counter() - start)
    vectors = np.concatenate(parts) if parts else np.zeros((0, fp.dim), np.float32)
    seconds = time.perf_counter() - start
    if cache is not None:
        cache.save(fp, docs, vectors, extra={"dataset": dataset.name, "encode_seconds": seconds, "resumed": resumed})
        cache.drop_chunks(fp, docs, chunk)
    return vectors, "resumed" if resumed else "encoded", seconds


def score_queries(encoder: EvalEncoder, dataset: BeirDataset, doc_vectors: np.ndarray, *, task: str | None,
                  use_instruction: bool, k: int = 100, batch_size: int = 16) -> tuple[dict[str, float], float, float]:
    """Encode the judged queries, search exactly, score with trec_eval. -> metrics, query s, search s"""
    run, query_seconds, search_seconds = dense_run(encoder, dataset, doc_vectors, task=task,
                                                   use_instruction=use_instruction, k=k, batch_size=batch_size)
    return evaluate_run(dataset.qrels, run, k), query_seconds, search_seconds


def dense_run(encoder: EvalEncoder, dataset: BeirDataset, doc_vectors: np.ndarray, *, task: str | None,
              use_instruction: bool, k: int = 100, batch_size: int = 16) -> tuple[Run, float, float]:
    """Encode the judged queries and search exactly. -> run (top-k per query), query s, search s"""
    qids = list(dataset.queries)
    start = time.perf_counter()
    q = encoder.encode_query([dataset.queries[i] for i in qids], task=task, batch_size=batch_size,
                             use_instruction=use_instruction)
    query_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores, idx = exact_topk(q, doc_vectors, k + 1)  # one spare for the dropped hit equal to the query id
    run = build_run(qids, dataset.doc_ids, scores, idx, k)
    return run, query_seconds, time.perf_counter() - start


def evaluate_dataset(encoder: EvalEncoder, dataset: BeirDataset, *, model_name: str, task: str | None = None,
                     modes: tuple[bool, ...] = (True,), k: int = 100, batch_size: int = 16,
                     cache: EmbeddingCache | None = None, compile: bool = False,
                     fusions: tuple[HybridConfig, ...] = (), sparse: Run | None = None,
                     dense: bool = True) -> list[RunResult]:
    """One result per instruction setting in ``modes`` (True = with); documents encoded at most once.

    ``task`` overrides the task the registry gives for the dataset's folder name; ``compile`` see
    ``document_vectors``. With ``fusions`` and the BM25 run ``sparse`` (``bm25_run``), each setting
    also gets one hybrid row per fusion; ``dense=False`` leaves out the dense rows themselves.
    """
    instructed = uses_instruction(encoder)
    modes = modes if instructed else (False,)
    definition = dataset_task(dataset, task) if any(modes) else None
    vectors, source, doc_seconds = document_vectors(encoder, dataset, cache, batch_size,
                                                       compile=compile)
    results = []
    for i, use in enumerate(modes):
        run, q_s, s_s = dense_run(encoder, dataset, vectors, task=definition, use_instruction=use, k=k,
                                  batch_size=batch_size)
        row = dict(dataset=dataset.name, split=dataset.split, instruction=use, task=definition if use else None,
                   n_queries=len(dataset.queries), n_documents=len(dataset.corpus), k=k,
                   fingerprint=encoder.fingerprint.to_dict())
        first = {"doc_source": source, "doc_seconds": doc_seconds} if i == 0 else {"doc_source": "reused",
                                                                                  "doc_seconds": 0.0}
        if dense:
            results.append(RunResult(model=model_name, metrics=evaluate_run(dataset.qrels, run, k), **first,
                                     query_seconds=q_s, search_seconds=s_s, **row))
            first = {"doc_source": "reused", "doc_seconds": 0.0}
        for config in fusions:
            start = time.perf_counter()
            fused = fuse_runs(run, sparse or {}, config, k)
            results.append(RunResult(model=f"{model_name} + BM25 ({config.describe()})",
                                     metrics=evaluate_run(dataset.qrels, fused, k), **first, query_seconds=q_s,
                                     search_seconds=s_s + time.perf_counter() - start,
                                     retrieval=f"hybrid {config.describe()}", **row))
            first = {"doc_source": "reused", "doc_seconds": 0.0}
    return results


def bm25_result(dataset: BeirDataset, run: Run, seconds: float, k: int = 100) -> RunResult:
    """The BM25-alone row of a dataset (``run`` from ``bm25_run``; ``seconds``: indexing and search,
    reported as the documents' time)."""
    return RunResult(dataset=dataset.name, split=dataset.split, model=BM25_NAME, instruction=False, task=None,
                     metrics=evaluate_run(dataset.qrels, run, k), n_queries=len(dataset.queries),
                     n_documents=len(dataset.corpus), doc_source="encoded", doc_seconds=seconds, query_seconds=0.0,
                     search_seconds=0.0, k=k, fingerprint={"tokenizer": bm25.TOKENIZER}, retrieval="bm25")


def run_evaluation(config: EvalConfig, on_result: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Every model on every dataset. All datasets are read and checked before a model is loaded."""
    datasets = [load_beir(path, config.split) for path in config.datasets]
    results: list[RunResult] = []
    sparse: dict[str, Run] = {}
    if "bm25" in config.retrieval or "hybrid" in config.retrieval:
        for dataset in datasets:
            sparse[dataset.name], seconds = bm25_run(dataset, config.k)
            if "bm25" in config.retrieval:
                results.append(bm25_result(dataset, sparse[dataset.name], seconds, config.k))
                if on_result is not None:
                    on_result(results[-1])
    if "dense" not in config.retrieval and "hybrid" not in config.retrieval:
        return results
    fusions = config.fusions if "hybrid" in config.retrieval else ()
    modes = {"with": (True,), "without": (False,), "both": (True, False)}[config.instruction]
    if True in modes and config.task is None and not all(is_baseline(m) for m in config.models):
        for d in datasets:
            dataset_task(d, None)  # fail now, not after encoding the first corpus
    cache = EmbeddingCache() if config.use_cache else None
    for model in config.models:
        encoder, name = load_eval_encoder(model, adapter=config.adapter, max_length=config.max_length,
                                          device=config.device, quantize=config.quantize)
        for dataset in datasets:
            for result in evaluate_dataset(encoder, dataset, model_name=name, task=config.task, modes=modes,
                                           k=config.k, batch_size=config.batch_size, cache=cache,
                                           compile=config.compile, fusions=fusions,
                                           sparse=sparse.get(dataset.name), dense="dense" in config.retrieval):
                results.append(result)
                if on_result is not None:
                    on_result(result)
        del encoder
    return results
