"""Rank fusion on toy rankings, worked out by hand."""

from __future__ import annotations

import pytest

from e5rag.retriever.errors import InputError
from e5rag.retriever.fusion import HybridConfig, fuse, min_max, rrf, weighted

DENSE = [("a", 0.9), ("b", 0.8), ("c", 0.5)]
BM25 = [("c", 12.0), ("d", 6.0), ("a", 3.0)]


def test_rrf_by_hand():
    # a: 1/61 + 1/63; b: 1/62; c: 1/63 + 1/61; d: 1/62
    fused = rrf([DENSE, BM25], k=60)
    assert [key for key, _ in fused] == ["a", "c", "b", "d"]  # a/c and b/d tie: dense order first, then BM25's
    assert dict(fused) == pytest.approx({"a": 1 / 61 + 1 / 63, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 62})
    assert [key for key, _ in rrf([DENSE, BM25], k=1)] == ["a", "c", "b", "d"]
    assert [key for key, _ in rrf([DENSE[:1], BM25], k=1)] == ["a", "c", "d"]  # a: 1/2 + 1/4; c: 1/2; d: 1/3


def test_weighted_by_hand():
    # dense normalised: a 1, b 0.75, c 0;  BM25 normalised: c 1, d 1/3, a 0
    fused = dict(weighted(DENSE, BM25, alpha=0.5))
    assert fused == pytest.approx({"a": 0.5, "b": 0.375, "c": 0.5, "d": 1 / 6})
    assert [key for key, _ in weighted(DENSE, BM25, alpha=0.8)] == ["a", "b", "c", "d"]  # a .8, b .6, c .2, d 1/15
    assert [key for key, _ in weighted(DENSE, BM25, alpha=0.2)] == ["c", "d", "a", "b"]  # c .8, d 4/15, a .2, b .15
    assert [key for key, _ in weighted(DENSE, BM25, alpha=1.0)][:3] == ["a", "b", "c"]  # dense alone
    assert [key for key, _ in weighted(DENSE, BM25, alpha=0.0)][:3] == ["c", "d", "a"]  # BM25 alone


def test_edges():
    assert min_max([2.0, 2.0]) == [1.0, 1.0] and min_max([]) == []
    assert weighted(DENSE, [], alpha=0.3) == [("a", pytest.approx(0.3)), ("b", pytest.approx(0.225)), ("c", 0.0)]
    assert rrf([[], []]) == []
    assert fuse(DENSE, BM25, HybridConfig("rrf")) == rrf([DENSE, BM25])
    assert fuse(DENSE, BM25, HybridConfig("weighted", alpha=0.8)) == weighted(DENSE, BM25, 0.8)


def test_config_is_validated():
    assert (HybridConfig().fusion, HybridConfig().alpha) == ("weighted", 0.4)  # chosen on SciFact train
    assert HybridConfig().depth(10) == 100 and HybridConfig(fetch_k=20).depth(50) == 50
    for bad, message in [({"fusion": "sum"}, "fusion must be one of rrf, weighted"),
                         ({"alpha": 1.5}, "alpha must be between 0"), ({"rrf_k": 0}, "rrf_k"),
                         ({"fetch_k": 0}, "fetch_k")]:
        with pytest.raises(InputError, match=message):
            HybridConfig(**bad)
