"""Which examples make up each step's batch: a pure function of (seed, step), so a resumed run
continues with exactly the batches the interrupted one would have seen.

Each batch comes from one source, so in-batch negatives share a task (E5-Mistral, section 3.1).
A source with ``n`` rows and weight ``w`` contributes ``max(1, floor(w * n / batch_size))`` batches
per epoch; the epoch's batches are interleaved at random. Rows are drawn from an endless stream of
fresh permutations of the source, so weights above 1 repeat rows and weights below 1 skip some.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from e5rag.retriever.errors import InputError

from .data import Example, Source

# Stream tags keep the random streams of different purposes independent for one seed.
_PERMUTATION, _SCHEDULE, _NEGATIVES = 1, 2, 3


@dataclass(frozen=True)
class Batch:
    """The global batch of one step: examples (each with at most ``hard_negatives`` negatives)."""

    step: int
    source: int
    examples: tuple[Example, ...]

    def shard(self, rank: int, world_size: int) -> tuple[Example, ...]:
        """This rank's contiguous slice: rank r holds examples [r*b, (r+1)*b)."""
        per = len(self.examples) // world_size
        return self.examples[rank * per:(rank + 1) * per]


class BatchPlan:
    """Deterministic batch schedule over several sources. ``rows(step)`` -> (source, row indices)."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], batch_size: int, seed: int) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise InputError("the batch plan needs one weight per source and at least one source")
        for i, n in enumerate(sizes):
            if n < batch_size:
                raise InputError(f"data source {i} has {n} examples, fewer than batch_size={batch_size}: "
                                 "lower --batch-size or add data")
        self.sizes = tuple(int(n) for n in sizes)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.per_epoch = tuple(max(1, int(w * n // batch_size)) for n, w in zip(self.sizes, weights, strict=True))
        self.steps_per_epoch = sum(self.per_epoch)
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each step, index of that batch among its source's batches this epoch)."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            schedule = np.repeat(np.arange(len(self.sizes)), self.per_epoch)
            np.random.default_rng([self.seed, _SCHEDULE, epoch]).shuffle(schedule)
            nth = np.zeros_like(schedule)
            for s in range(len(self.sizes)):
                where = schedule == s
                nth[where] = np.arange(int(where.sum()))
            self._epoch_cache = (epoch, schedule, nth)
        return self._epoch_cache[1], self._epoch_cache[2]

    def locate(self, step: int) -> tuple[int, int]:
        """(source, draw) of a 0-based step; draw counts that source's batches since the start."""
        epoch, t = divmod(int(step), self.steps_per_epoch)
        schedule, nth = self._epoch(epoch)
        source = int(schedule[t])
        return source, epoch * self.per_epoch[source] + int(nth[t])

    def rows(self, step: int) -> tuple[int, np.ndarray]:
        """(source, row indices (batch_size,)) of a step."""
        source, draw = self.locate(step)
        n = self.sizes[source]
        start = draw * self.batch_size
        positions = np.arange(start, start + self.batch_size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for p in np.unique(positions // n):
            sel = positions // n == p
            out[sel] = _permutation(self.seed, source, int(p), n)[positions[sel] % n]
        return source, out


@lru_cache(maxsize=8)
def _permutation(seed: int, source: int, index: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, _PERMUTATION, source, index]).permutation(n)


def choose_negatives(example: Example, k: int, rng: np.random.Generator) -> Example:
    """Keep ``k`` of the example's negatives, sampled without replacement (all of them if fewer)."""
    if len(example.negatives) <= k:
        return example
    keep = rng.choice(len(example.negatives), size=k, replace=False)
    return Example(example.task, example.query, example.positive, tuple(example.negatives[i] for i in sorted(keep)))


def make_batch(sources: Sequence[Source], plan: BatchPlan, step: int, hard_negatives: int) -> Batch:
    """The global batch of ``step`` with each example's hard negatives chosen (seeded by step)."""
    source, rows = plan.rows(step)
    rng = np.random.default_rng([plan.seed, _NEGATIVES, step])
    examples = tuple(choose_negatives(sources[source].examples[int(r)], hard_negatives, rng) for r in rows)
    return Batch(step, source, examples)
