"""Deterministic request plans: everything about request ``i`` follows from (seed, i).

A restarted run therefore asks exactly the questions the killed run would have asked next,
which is what makes resuming safe (no skipped or repeated plan entries).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .kinds import KIND_SPECS
from .languages import sample_language
from .prompts import Messages, example_messages, prompt_hash, sample_placeholders


def derive_seed(seed: int, label: str, index: int) -> int:
    """A 31-bit seed for one request, independent across labels and indices."""
    digest = hashlib.sha256(f"{seed}:{label}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class ExamplePlan:
    """One example request: its kind, languages, task, placeholders, prompt and sampling seed."""

    index: int
    kind: str
    language: str
    target_language: str | None
    task: str
    placeholders: dict[str, str]
    messages: Messages
    seed: int

    @property
    def language_label(self) -> str:
        """The row's ``language``: a code, or ``"src-tgt"`` codes for bitext."""
        return f"{self.language}-{self.target_language}" if self.target_language else self.language

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.messages)


def plan_example(seed: int, index: int, kinds: Sequence[str], weights: Mapping[str, float],
                 pools: Mapping[str, Sequence[str]]) -> ExamplePlan:
    """The plan of example request ``index``. ``pools`` maps each asymmetric kind to its tasks.

    Kind is uniform over ``kinds``; the language follows ``weights``; a bitext target language is
    drawn from the same weights, never equal to the source.
    """
    request_seed = derive_seed(seed, "example", index)
    rng = random.Random(request_seed)
    kind = rng.choice(list(kinds))
    spec = KIND_SPECS[kind]
    language = sample_language(rng, dict(weights))
    target = sample_language(rng, dict(weights), exclude=language) if kind == "bitext" else None
    task = spec.fixed_task or rng.choice(list(pools[kind]))
    placeholders = sample_placeholders(kind, rng)
    messages = example_messages(kind, task, language, placeholders, target)
    return ExamplePlan(index, kind, language, target, task, placeholders, messages, request_seed)
