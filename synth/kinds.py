"""The six synthetic task kinds: their JSON keys, row mapping, fixed tasks and placeholder values.

Values are the paper's (arXiv 2401.00368, section 3.1 and appendix prompts). Four kinds are
asymmetric (a brainstormed task definition, then one example); STS and bitext are symmetric and
use a fixed task definition, so they skip the brainstorm step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from e5rag.retriever.errors import InputError

Kind = Literal["short-long", "long-short", "short-short", "long-long", "sts", "bitext"]
ALL_KINDS: tuple[Kind, ...] = ("short-long", "long-short", "short-short", "long-long", "sts", "bitext")

_DIFFICULTY = ("high school", "college", "PhD")
_CLARITY = ("clear", "understandable with some effort", "ambiguous")
_SYM_DIFFICULTY = ("elementary school", "high school", "college")
_UNIT = ("sentence", "phrase", "passage")
_HIGH_SCORE = ("4", "4.5", "5")


@dataclass(frozen=True)
class KindSpec:
    """What one kind asks for. ``keys`` are the example's JSON keys in (query, positive, negative) order."""

    name: Kind
    keys: tuple[str, str, str]
    placeholders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fixed_task: str | None = None

    @property
    def symmetric(self) -> bool:
        return self.fixed_task is not None


KIND_SPECS: dict[str, KindSpec] = {
    "short-long": KindSpec(
        "short-long", ("user_query", "positive_document", "hard_negative_document"),
        {"query_type": ("extremely long-tail", "long-tail", "common"),
         "query_length": ("less than 5 words", "5 to 15 words", "at least 10 words"),
         "difficulty": _DIFFICULTY, "clarity": _CLARITY,
         "num_words": ("50", "100", "200", "300", "400", "500")},
    ),
    "long-short": KindSpec(
        "long-short", ("input_text", "label", "misleading_label"),
        {"num_words": ("less than 10", "at least 10", "at least 50", "at least 100", "at least 200"),
         "difficulty": _DIFFICULTY, "clarity": _CLARITY},
    ),
    "short-short": KindSpec("short-short", ("input", "positive_document", "hard_negative_document")),
    "long-long": KindSpec("long-long", ("input", "positive_document", "hard_negative_document")),
    "sts": KindSpec(
        "sts", ("S1", "S2", "S3"),
        {"high_score": _HIGH_SCORE, "low_score": ("2.5", "3", "3.5"), "unit": _UNIT,
         "difficulty": _SYM_DIFFICULTY},
        fixed_task="Retrieve semantically similar text.",
    ),
    "bitext": KindSpec(
        "bitext", ("S1", "S2", "S3"),
        {"high_score": _HIGH_SCORE, "low_score": ("1.5", "2", "2.5"), "unit": _UNIT,
         "difficulty": _SYM_DIFFICULTY},
        fixed_task="Retrieve parallel sentences.",
    ),
}


def resolve_kind(text: str) -> Kind:
    """A canonical kind name from user text ("STS", "short_long", "Bitext")."""
    key = text.strip().lower().replace("_", "-")
    if key not in KIND_SPECS:
        raise InputError(f"unknown task kind {text!r}: use one of {', '.join(ALL_KINDS)}")
    return key  # type: ignore[return-value]


def row_fields(kind: str, example: Mapping[str, str]) -> tuple[str, str, str]:
    """(query, positive, negative) from a validated example of ``kind``.

    short-long: user_query / positive_document / hard_negative_document; long-short: input_text /
    label / misleading_label; short-short and long-long: input / positive_document /
    hard_negative_document; STS and bitext: S1 / S2 / S3.
    """
    q, p, n = KIND_SPECS[kind].keys
    return example[q], example[p], example[n]
