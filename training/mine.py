"""Mine hard negatives for a BEIR dataset with an e5rag retriever (E5-Mistral trains on negatives
"mined by a retriever"): embed the corpus (or search an existing e5rag index), search each query
of the split with its task, and keep documents ranked inside a window (e.g. 30-100: hard, but
deep enough to hold few unlabelled positives), labelled positives excluded.

The output is synthetic-format JSONL (``task, query, positive, negative``), one row per
(query, positive), plus ``negatives`` (every kept negative; training samples from them) and ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from e5rag import fsutil
from e5rag.retriever.errors import InputError
from e5rag.retriever.instructions import format_document

from .beir import BeirDataset, beir_task, load_beir, positives


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


@dataclass(frozen=True)
class MineConfig:
    """What to mine. ``index`` None embeds the corpus with ``model``/``adapter`` (None: the embedded
    default; "all-MiniLM-L6-v2" or a sentence-transformers folder also work, as in ``e5rag eval``);
    otherwise that e5rag index is searched. ``num_negatives`` 0 keeps the whole window.
    ``max_length`` None is the model's own (512 for E5 models)."""

    dataset: str
    out: str
    split: str = "train"
    index: str | None = None
    window: tuple[int, int] = (30, 100)
    num_negatives: int = 8
    task: str | None = None
    model: str | None = None
    adapter: str | None = None
    max_length: int | None = None
    batch_size: int = 16
    seed: int = 0
    device: str | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", parse_window(self.window))
        if self.num_negatives < 0:
            raise InputError(f"num_negatives must be >= 0 (0 keeps the whole window), got {self.num_negatives}")
        if self.max_length is not None and self.max_length < 2:
            raise InputError(f"max_length must be >= 2, got {self.max_length}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.index is not None and (self.model is not None or self.adapter is not None):
            raise InputError("index: an index brings its own model; give either --index or --model/--adapter")


@dataclass(frozen=True)
class MineReport:
    out: Path
    rows: int
    queries: int
    without_negatives: int


def _ranked_exact(config: MineConfig, data: BeirDataset, qids: list[str], task: str, k: int) -> list[list[str]]:
    """Top-k document ids per query by exact inner product over the embedded corpus.

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


def _ranked_index(config: MineConfig, data: BeirDataset, qids: list[str], task: str, k: int) -> list[list[str]]:
    from e5rag.retriever.search import SearchIndex

    with SearchIndex.open(config.index) as index:
        hits = index.search([data.queries[i] for i in qids], task=task, k=k, batch_size=config.batch_size)
    return [[h.document.id for h in row] for row in hits]


def mine_hard_negatives(config: MineConfig) -> MineReport:
    """Write the mined JSONL (atomically: temp file, then rename)."""
    task = beir_task(config.dataset, config.task)
    data = load_beir(config.dataset, config.split)
    relevant = positives(data)
    corpus = {d.id: d for d in data.corpus}
    lo, hi = config.window
    qids = list(relevant)
    if config.index is None:
        ranked = _ranked_exact(config, data, qids, task, hi)
    else:
        ranked = _ranked_index(config, data, qids, task, hi)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = empty = 0
    with fsutil.atomic_open(out) as fh:
        for n, (qid, ranking) in enumerate(zip(qids, ranked, strict=True)):
            window = [d for d in ranking[lo - 1:hi] if d not in relevant[qid] and d in corpus]
            if config.num_negatives and len(window) > config.num_negatives:
                keep = np.random.default_rng([config.seed, n]).choice(len(window), config.num_negatives, replace=False)
                window = [window[i] for i in sorted(keep)]
            empty += not window
            negatives = [format_document(corpus[d].text, corpus[d].title) for d in window]
            for pid in relevant[qid]:
                fh.write(json.dumps({
                    "task": task, "query": data.queries[qid],
                    "positive": format_document(corpus[pid].text, corpus[pid].title),
                    "negative": negatives[0] if negatives else None, "negatives": negatives,
                    "query_id": qid, "positive_id": pid, "negative_ids": window,
                    "source": f"e5rag mine {Path(config.dataset).name} {config.split} ranks {lo}-{hi}",
                }, ensure_ascii=False) + "\n")
                rows += 1
    return MineReport(out, rows, len(qids), empty)
