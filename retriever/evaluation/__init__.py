"""Evaluate embedders on BEIR-format datasets: nDCG@10, MRR@10, recall@k and MAP@k by trec_eval,
exact search, cached document embeddings, and sentence-transformers baselines in the same harness.
"""

from __future__ import annotations

from .baselines import SentenceTransformerBaseline, load_eval_encoder, minilm_path
from .beir import BeirDataset, load_beir
from .cache import EmbeddingCache, corpus_hash
from .exact import build_run, exact_topk
from .harness import EvalConfig, RunResult, evaluate_dataset, run_evaluation
from .metrics import evaluate_run, metric_names

__all__ = [
    "BeirDataset", "EmbeddingCache", "EvalConfig", "RunResult", "SentenceTransformerBaseline", "build_run",
    "corpus_hash", "evaluate_dataset", "evaluate_run", "exact_topk", "load_beir", "load_eval_encoder",
    "metric_names", "minilm_path", "run_evaluation",
]
