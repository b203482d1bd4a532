"""Metrics against first-principles computations, exact search against numpy, BEIR's id rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from e5rag.retriever.evaluation.exact import build_run, exact_topk
from e5rag.retriever.evaluation.metrics import cut_run, evaluate_run


def reference(qrels, run, k):
    """nDCG@10, MRR@10, recall@k, AP@k from their textbook definitions (graded gain = relevance)."""
    out = {"ndcg@10": [], "mrr@10": [], f"recall@{k}": [], f"map@{k}": []}
    for q, rel in qrels.items():
        ranked = [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])]
        gains = [rel.get(d, 0) for d in ranked]
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains[:10]))
        ideal = sorted((g for g in rel.values() if g > 0), reverse=True)
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal[:10]))
        out["ndcg@10"].append(dcg / idcg if idcg else 0.0)
        first = next((r for r, g in enumerate(gains[:10]) if g > 0), None)
        out["mrr@10"].append(0.0 if first is None else 1 / (first + 1))
        n_rel = sum(1 for g in rel.values() if g > 0)
        hits = [g > 0 for g in gains[:k]]
        out[f"recall@{k}"].append(sum(hits) / n_rel if n_rel else 0.0)
        precisions = [sum(hits[:r + 1]) / (r + 1) for r, h in enumerate(hits) if h]
        out[f"map@{k}"].append(sum(precisions) / n_rel if n_rel else 0.0)
    return {m: sum(v) / len(v) for m, v in out.items()}


def test_hand_checked_ranking():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}, "q3": {"d9": 1}}
    run = {
        "q1": {"d5": 0.9, "d1": 0.8, "d7": 0.7, "d3": 0.6},  # relevant at ranks 2 and 4
        "q2": {f"x{i}": 1 - i / 100 for i in range(11)} | {"d2": 0.5},  # relevant at rank 12
        "q3": {"d9": 0.99, "d4": 0.1},  # relevant at rank 1
    }
    got = evaluate_run(qrels, run, k=12)
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg_q1 + 0 + 1) / 3)
    assert got["mrr@10"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert got["recall@12"] == pytest.approx((1 + 1 + 1) / 3)
    assert got["map@12"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 / 12 + 1) / 3)
    # with k=10 the rank-12 hit no longer counts for recall or MAP
    assert evaluate_run(qrels, cut_run(run, 10), k=10)["recall@10"] == pytest.approx(2 / 3)


def test_a_judged_query_missing_from_the_run_scores_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    got = evaluate_run(qrels, {"q1": {"d1": 1.0}}, k=10)
    assert got == pytest.approx({"ndcg@10": 0.5, "mrr@10": 0.5, "recall@10": 0.5, "map@10": 0.5})


def test_random_runs_match_the_reference_definitions():
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(25):
        rel = rng.choice(60, size=rng.integers(1, 5), replace=False)
        qrels[f"q{q}"] = {docs[i]: int(rng.integers(1, 3)) for i in rel}
        scores = rng.permutation(60)[:40] / 60.0  # distinct scores, 40 hits
        run[f"q{q}"] = {docs[i]: float(s) for i, s in zip(rng.permutation(60)[:40], scores, strict=True)}
    got, want = evaluate_run(qrels, run, k=20), reference(qrels, cut_run(run, 20), 20)
    assert got == pytest.approx(want)


def test_k_below_ten_is_refused():
    with pytest.raises(ValueError, match="k must be at least 10"):
        evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, k=5)


def test_exact_topk_equals_numpy_brute_force():
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((70, 16)).astype(np.float32)
    scores, idx = exact_topk(queries, docs, 12, chunk=32)
    full = queries @ docs.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(scores, np.take_along_axis(full, want, axis=1), rtol=1e-5, atol=1e-5)
    assert exact_topk(queries, docs[:5], 12)[1].shape == (70, 5)


def test_hits_equal_to_the_query_id_are_ignored():
    # Documents "a" and "q1" ranked first for q1: "q1" is the query itself and must vanish, and k hits remain.
    doc_ids = ["q1", "a", "b", "c"]
    docs = np.eye(4, dtype=np.float32)
    queries = np.array([[1.0, 0.9, 0.5, 0.1], [1.0, 0.9, 0.5, 0.1]], dtype=np.float32)
    scores, idx = exact_topk(queries, docs, 3)
    run = build_run(["q1", "q2"], doc_ids, scores, idx, k=2)
    assert list(run["q1"]) == ["a", "b"]
    assert list(run["q2"]) == ["q1", "a"]
    assert build_run(["q1"], doc_ids, scores, idx, k=2, ignore_identical_ids=False)["q1"].keys() == {"q1", "a"}
    # and in the metrics: q1 judged relevant to itself (as in ArguAna's qrels) cannot be found
    assert evaluate_run({"q1": {"a": 1}}, run, k=10)["mrr@10"] == 1.0
