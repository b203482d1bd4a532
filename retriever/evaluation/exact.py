"""Exact nearest neighbours by inner product (a matrix product and top-k, no approximation),
and the run dictionary that trec_eval scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Run = dict[str, dict[str, float]]  # query id -> {document id: score}


def exact_topk(queries: np.ndarray, docs: np.ndarray, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products. (q, dim), (n, dim), k -> scores (q, min(k, n)) float32, indices (q, min(k, n)) int64

    Queries are processed in chunks so the (chunk, n) score matrix stays small for big corpora.
    """
    import torch

    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise ValueError(f"expected (q, dim) and (n, dim) arrays, got {queries.shape} and {docs.shape}")
    k = min(k, docs.shape[0])
    d = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    scores, idx = [], []
    for start in range(0, queries.shape[0], chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[start:start + chunk], dtype=np.float32))
        top = torch.topk(q @ d.T, k, dim=1)  # (chunk, n) -> (chunk, k), sorted descending
        scores.append(top.values.numpy())
        idx.append(top.indices.numpy())
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(idx)


def build_run(query_ids: Sequence[str], doc_ids: Sequence[str], scores: np.ndarray, indices: np.ndarray,
              k: int, ignore_identical_ids: bool = True) -> Run:
    """The top-k hits per query; a hit whose id equals the query id is dropped first, as BEIR does
    (ArguAna and Quora queries are themselves in the corpus). scores, indices: (q, >=k) from ``exact_topk``.
    """
    run: Run = {}
    for row, qid in enumerate(query_ids):
        hits: dict[str, float] = {}
        for score, i in zip(scores[row], indices[row], strict=True):
            did = doc_ids[int(i)]
            if ignore_identical_ids and did == qid:
                continue
            hits[did] = float(score)
            if len(hits) == k:
                break
        run[qid] = hits
    return run
