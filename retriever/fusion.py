"""Rank fusion of a dense and a BM25 ranking (hybrid search). Pure functions over (id, score) lists.

* ``rrf``: Reciprocal Rank Fusion, score(d) = sum over rankings of 1 / (k + rank(d)), rank 1-based,
  k = 60 (Cormack, Clarke & Buettcher, SIGIR 2009). Uses ranks only, so the scales of the two
  scores do not matter; a document absent from a ranking gets nothing from it.
* ``weighted``: convex combination of min-max normalised scores,
  score(d) = alpha * dense_norm(d) + (1 - alpha) * bm25_norm(d), each side scaled to [0, 1] over its own
  candidates (Weaviate's "relativeScoreFusion"); a document absent from a side gets 0 there. ``alpha=1``
  is dense alone, ``alpha=0`` BM25 alone. It can follow the stronger side where RRF, which weighs both
  rankings equally, is pulled down by a much weaker one.

The default is weighted with alpha 0.4 (chosen on SciFact train, see ``DEFAULT_FUSION``).
Ties in the fused score keep the order of first appearance: the dense ranking's order, then BM25's.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

K = TypeVar("K", bound=Hashable)
Ranking = Sequence[tuple[K, float]]  # (id, score), best first
Fusion = Literal["rrf", "weighted"]
FUSIONS: tuple[str, ...] = ("rrf", "weighted")
RRF_K = 60
# Chosen on SciFact train (809 queries, never test) with all-MiniLM-L6-v2 as the dense side:
# weighted 0.4 gave nDCG@10 73.58 (0.3-0.6 all >= 72.57), RRF 71.58, dense 66.02, BM25 70.09
# (benchmarks/README.md, benchmarks/hybrid_sweep.py).
DEFAULT_FUSION: Fusion = "weighted"
DEFAULT_ALPHA = 0.4


@dataclass(frozen=True)
class HybridConfig:
    """How a hybrid search fuses its two rankings.

    ``fusion``: "rrf" or "weighted"; ``alpha``: the dense side's weight in [0, 1] (weighted fusion);
    ``rrf_k``: RRF's constant; ``fetch_k``: candidates taken from each side (None: max(k, 100)).
    """

    fusion: Fusion = DEFAULT_FUSION
    alpha: float = DEFAULT_ALPHA
    rrf_k: int = RRF_K
    fetch_k: int | None = None

    def __post_init__(self) -> None:
        from .errors import InputError

        if self.fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise InputError(f"alpha must be between 0 (BM25 only) and 1 (dense only), got {self.alpha}")
        if int(self.rrf_k) < 1:
            raise InputError(f"rrf_k must be a positive integer, got {self.rrf_k}")
        if self.fetch_k is not None and int(self.fetch_k) < 1:
            raise InputError(f"fetch_k must be at least 1, got {self.fetch_k}")

    def depth(self, k: int) -> int:
        """Candidates to fetch from each side for a final top-``k``."""
        return max(int(k), int(self.fetch_k)) if self.fetch_k is not None else max(int(k), 100)

    def describe(self) -> str:
        return f"rrf k={self.rrf_k}" if self.fusion == "rrf" else f"weighted alpha={self.alpha:g}"


def rrf(rankings: Sequence[Ranking], k: int = RRF_K) -> list[tuple[K, float]]:
    """Reciprocal Rank Fusion of any number of rankings. -> (id, fused score), best first"""
    fused: dict = {}
    for ranking in rankings:
        for rank, (key, _) in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return _sorted(fused)


def min_max(scores: Sequence[float]) -> list[float]:
    """Scores scaled to [0, 1] (all 1.0 when they are all equal, so a lone hit counts fully)."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def weighted(dense: Ranking, sparse: Ranking, alpha: float = DEFAULT_ALPHA) -> list[tuple[K, float]]:
    """alpha * normalised dense score + (1 - alpha) * normalised BM25 score. -> (id, score), best first"""
    fused: dict = {}
    for ranking, weight in ((dense, alpha), (sparse, 1.0 - alpha)):
        for (key, _), norm in zip(ranking, min_max([s for _, s in ranking]), strict=True):
            fused[key] = fused.get(key, 0.0) + weight * norm
    return _sorted(fused)


def fuse(dense: Ranking, sparse: Ranking, config: HybridConfig) -> list[tuple[K, float]]:
    """The fusion ``config`` names over a dense and a BM25 ranking. -> (id, score), best first"""
    if config.fusion == "rrf":
        return rrf([dense, sparse], config.rrf_k)
    return weighted(dense, sparse, config.alpha)


def _sorted(fused: dict) -> list:
    # dicts keep insertion order and sorted() is stable: ties stay in order of first appearance
    return sorted(fused.items(), key=lambda kv: -kv[1])
