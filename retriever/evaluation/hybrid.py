"""BM25 and hybrid runs for the harness: the same BM25 the FAISS store keeps (``indexers.bm25``, SQLite
FTS5, built in memory over the corpus) and the same fusion ``SearchIndex.search(hybrid=...)`` uses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from e5rag.indexers import bm25
from e5rag.indexers.docstore import DocStore

from ..fusion import HybridConfig, fuse
from .beir import BeirDataset
from .exact import Run

BM25_NAME = "BM25 (SQLite FTS5)"


def bm25_run(dataset: BeirDataset, k: int = 100, qids: Sequence[str] | None = None) -> tuple[Run, float]:
    """Top-``k`` BM25 hits (each query's dict best first) of ``qids`` (default: every judged query),
    searched with the bare text, a hit equal to the query id dropped as in ``exact.build_run``.
    -> run, seconds (indexing included)"""
    start = time.perf_counter()
    store = DocStore(Path(":memory:"))
    try:
        ids = dict(zip(store.upsert(list(dataset.corpus)), dataset.doc_ids, strict=True))  # iid -> doc id
        run: Run = {}
        for qid in dataset.queries if qids is None else qids:
            text = dataset.queries[qid]
            hits = [(ids[i], s) for i, s in bm25.search(store.conn, text, k + 1) if ids[i] != qid]
            run[qid] = dict(hits[:k])
    finally:
        store.close()
    return run, time.perf_counter() - start


def fuse_runs(dense: Run, sparse: Run, config: HybridConfig, k: int = 100) -> Run:
    """Per query, the top-``k`` of the dense and BM25 hits (each best first) fused by ``config``."""
    return {qid: dict(fuse(list(hits.items()), list(sparse.get(qid, {}).items()), config)[:k])
            for qid, hits in dense.items()}
