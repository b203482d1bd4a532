"""Retrieval metrics computed by trec_eval (through ``pytrec_eval``), as BEIR and MTEB do.

nDCG@10, recall@k and MAP@k come straight from trec_eval's ``ndcg_cut``, ``recall`` and
``map_cut``; MRR@10 is trec_eval's ``recip_rank`` on each run cut to its first 10 documents in
trec_eval's own order (score descending, then document id descending), since trec_eval has no
cut-off for it. Each metric is the mean over the judged queries, as a fraction in [0, 1].
"""

from __future__ import annotations

from .._optional import require
from .beir import Qrels
from .exact import Run

NDCG_AT = 10
MRR_AT = 10


def metric_names(k: int) -> tuple[str, ...]:
    """The reported metrics, in table order."""
    return (f"ndcg@{NDCG_AT}", f"mrr@{MRR_AT}", f"recall@{k}", f"map@{k}")


def _trec_order(hits: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(hits.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def cut_run(run: Run, depth: int) -> Run:
    """Each query's first ``depth`` hits in trec_eval's ranking order."""
    return {q: dict(_trec_order(hits)[:depth]) for q, hits in run.items()}


def _mean(per_query: dict[str, dict[str, float]], measure: str, queries: list[str]) -> float:
    return sum(per_query[q][measure] if q in per_query else 0.0 for q in queries) / len(queries)


def evaluate_run(qrels: Qrels, run: Run, k: int = 100) -> dict[str, float]:
    """Mean nDCG@10, MRR@10, recall@k and MAP@k over the queries of ``qrels``.

    A judged query missing from ``run`` (or with no hits) scores 0, so a broken run cannot look
    better by answering fewer queries.
    """
    if k < NDCG_AT:
        raise ValueError(f"k must be at least {NDCG_AT} (nDCG@{NDCG_AT} needs that many hits), got {k}")
    pytrec_eval = require("pytrec_eval", "eval", "evaluation metrics")
    # Every judged query counts, even one judged only non-relevant (it scores 0), as in BEIR.
    queries = sorted(qrels)
    if not queries:
        raise ValueError("the qrels are empty")
    full = {q: hits for q, hits in run.items() if hits}
    deep = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{NDCG_AT}", f"recall.{k}", f"map_cut.{k}"})
    shallow = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    per_query = deep.evaluate(full)
    rr = shallow.evaluate(cut_run(full, MRR_AT))
    ndcg, mrr, recall, map_ = metric_names(k)
    return {
        ndcg: _mean(per_query, f"ndcg_cut_{NDCG_AT}", queries),
        mrr: _mean(rr, "recip_rank", queries),
        recall: _mean(per_query, f"recall_{k}", queries),
        map_: _mean(per_query, f"map_cut_{k}", queries),
    }
