"""Choose hybrid search's default fusion on a tuning split (SciFact train, never test): dense, BM25, RRF
and weighted fusion over a grid of alpha, all from one dense run.

    .venv/bin/python benchmarks/hybrid_sweep.py beir/scifact --split train --max-length 256

Uses the harness's pieces (``retriever.evaluation``): document vectors from the embedding cache (an
``e5rag eval`` of the same model and max length fills it; an interrupted encode resumes), one dense run
of the split's queries with their task, the FTS5 BM25 run of the bare queries, then every fusion of the
two, scored by the same trec_eval metrics. Prints one JSON object per row.
"""

from __future__ import annotations

import argparse
import json

from e5rag.retriever.evaluation import EmbeddingCache, evaluate_run, load_beir, load_eval_encoder
from e5rag.retriever.evaluation.baselines import uses_instruction
from e5rag.retriever.evaluation.harness import dataset_task, dense_run, document_vectors
from e5rag.retriever.evaluation.hybrid import bm25_run, fuse_runs
from e5rag.retriever.fusion import HybridConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument("--split", default="train")
    p.add_argument("--model", default=None)
    p.add_argument("--adapter", default=None)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    args = p.parse_args()
    if args.split == "test":
        p.error("tune on train or dev, never on test")
    dataset = load_beir(args.dataset, args.split)
    encoder, name = load_eval_encoder(args.model, adapter=args.adapter, max_length=args.max_length)
    vectors, source, seconds = document_vectors(encoder, dataset, EmbeddingCache())
    instructed = uses_instruction(encoder)  # sentence-transformers baselines take no instruction
    dense, _, _ = dense_run(encoder, dataset, vectors, task=dataset_task(dataset, None) if instructed else None,
                            use_instruction=instructed, k=args.k)
    sparse, _ = bm25_run(dataset, args.k)
    rows = [("dense", dense), ("bm25", sparse)]
    rows += [(c.describe(), fuse_runs(dense, sparse, c, args.k))
             for c in [HybridConfig("rrf"), *(HybridConfig("weighted", alpha=a) for a in args.alphas)]]
    for label, run in rows:
        metrics = evaluate_run(dataset.qrels, run, args.k)
        print(json.dumps({"dataset": dataset.name, "split": args.split, "model": name, "docs": source,
                          "doc_seconds": round(seconds, 1), "retrieval": label,
                          **{m: round(100 * v, 2) for m, v in metrics.items()}}), flush=True)


if __name__ == "__main__":
    main()
