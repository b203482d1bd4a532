"""Split a long text into passages that fit the encoder: pure functions, text + tokenizer -> spans.

Tokens are counted with the model's own tokenizer, exactly as the encoder will see each passage
(BOS, the title prefix of ``format_document`` and the appended EOS included). Cuts fall at a
paragraph break, else a sentence end, else a line break, else between words, whichever is the
best kind in the second half of the passage; a text is cut inside a word only where a single
"word" (a URL, unspaced script) is longer than a whole passage. Passages overlap by at most
``overlap`` tokens and leave no gap: ``spans[i + 1].start <= spans[i].end``, so the text can be put
back together from them (``join_spans``).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from .errors import InputError
from .instructions import format_document
from .tokenization import tokenize_with_eos

# Boundary kinds, best last: between words, after a line break, after a sentence, between paragraphs.
WORD, LINE, SENTENCE, PARAGRAPH = 0, 1, 2, 3
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")
_NO_LIMIT = 1 << 30


@dataclass(frozen=True)
class ChunkConfig:
    """How documents are split: passages of at most ``tokens`` tokens (EOS included; None: the
    encoder's max length) overlapping by ``overlap`` tokens (None: 10% of ``tokens``)."""

    tokens: int | None = None
    overlap: int | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens < 8:
            raise InputError(f"chunk tokens must be at least 8, got {self.tokens}")
        if self.overlap is not None and self.overlap < 0:
            raise InputError(f"chunk overlap must be 0 or more tokens, got {self.overlap}")

    def resolve(self, max_length: int) -> tuple[int, int]:
        """(tokens, overlap) for an encoder of ``max_length``; both checked against it."""
        tokens = max_length if self.tokens is None else self.tokens
        if tokens > max_length:
            raise InputError(f"--chunk-tokens {tokens} is more than the encoder's max length {max_length}: "
                             f"use at most {max_length} (or a larger --max-length)")
        overlap = tokens // 10 if self.overlap is None else self.overlap
        if overlap >= tokens // 2:
            raise InputError(f"--chunk-overlap {overlap} must be less than half of --chunk-tokens {tokens}")
        return tokens, overlap


DEFAULT_CHUNKING = ChunkConfig()


@dataclass(frozen=True)
class Span:
    """A passage of the parent text: ``text[start:end]`` (character offsets)."""

    start: int
    end: int


def token_count(tokenizer, text: str, title: str = "") -> int:
    """Tokens the encoder feeds for this document: BOS (if the tokenizer adds one), title, text, EOS."""
    return len(tokenize_with_eos(tokenizer, [format_document(text, title)], _NO_LIMIT)[0][0])


def boundaries(text: str) -> list[tuple[int, int]]:
    """Every place a passage may end: (offset, kind), where ``offset`` is the start of a word that
    follows whitespace (the whitespace stays with the passage before). Sorted by offset."""
    out: list[tuple[int, int]] = []
    for m in re.finditer(r"\s+", text):
        if m.start() == 0 or m.end() == len(text):
            continue
        space = m.group()
        if space.count("\n") >= 2:
            kind = PARAGRAPH
        elif _SENTENCE_END.search(text[max(0, m.start() - 4):m.start()]):
            kind = SENTENCE
        elif "\n" in space:
            kind = LINE
        else:
            kind = WORD
        out.append((m.end(), kind))
    return out


def chunk_spans(text: str, tokenizer, max_tokens: int, overlap: int = 0, title: str = "") -> list[Span]:
    """Passages of ``text`` that each embed (with ``title``) in at most ``max_tokens`` tokens.

    A text that fits is one span ``(0, len(text))``. ``overlap``: tokens shared by consecutive
    passages (at most this many; the next passage starts at the first word inside the window).
    """
    if overlap < 0 or overlap >= max_tokens // 2:
        raise InputError(f"overlap must be between 0 and half of max_tokens ({max_tokens}), got {overlap}")
    if token_count(tokenizer, text, title) <= max_tokens:
        return [Span(0, len(text))]
    reserved = token_count(tokenizer, "", title)
    if max_tokens - reserved < 4:
        raise InputError(f"the title takes {reserved} of the {max_tokens} tokens of a passage: "
                         "use more --chunk-tokens or a shorter title")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    ends = list(accumulate((e for _, e in offsets), max))  # token end offsets, never decreasing
    cuts = boundaries(text)
    cut_offsets = [c for c, _ in cuts]
    spans: list[Span] = []
    start = previous_end = 0
    while True:
        budget = max_tokens - reserved
        while True:
            end = _pick_end(text, ends, cuts, cut_offsets, start, previous_end, budget)
            excess = token_count(tokenizer, text[start:end], title) - max_tokens
            if excess <= 0:
                break
            budget -= max(1, excess)
            if budget < 1:
                raise InputError(f"cannot fit any text at offset {start} into {max_tokens} tokens")
        if end <= previous_end:
            raise InputError(f"cannot split the text at offset {start} into passages of {max_tokens} tokens "
                             "with this overlap: use a smaller --chunk-overlap")
        spans.append(Span(start, end))
        previous_end = end
        if end >= len(text):
            return spans
        start = _next_start(ends, cut_offsets, start, end, overlap)


def _tokens_before(ends: Sequence[int], offset: int) -> int:
    """How many tokens end at or before ``offset``."""
    return bisect_right(ends, offset)


def _pick_end(text: str, ends: Sequence[int], cuts, cut_offsets, start: int, previous_end: int, budget: int) -> int:
    """Where the passage from ``start`` ends: the best boundary after ``previous_end`` within ``budget``."""
    first = _tokens_before(ends, start)
    if first + budget >= len(ends):
        return len(text)
    limit = max(ends[first + budget - 1], start + 1)  # the end of the last token that fits
    lo, hi = bisect_right(cut_offsets, max(start, previous_end)), bisect_right(cut_offsets, limit)
    if lo == hi:
        return limit  # one "word" longer than the passage: cut at a token boundary
    half = ends[first + budget // 2 - 1] if budget >= 2 else start
    best = max(range(lo, hi), key=lambda i: (cuts[i][0] >= half and cuts[i][1], cuts[i][0]))
    return cuts[best][0]


def _next_start(ends: Sequence[int], cut_offsets, start: int, end: int, overlap: int) -> int:
    """The first word start whose distance to ``end`` is at most ``overlap`` tokens (``end`` itself
    with no overlap or no word inside the window)."""
    if overlap == 0:
        return end
    want = _tokens_before(ends, end) - overlap  # the overlap begins after this many tokens
    floor = ends[want - 1] if want >= 1 else 0
    i = bisect_left(cut_offsets, floor)
    while i < len(cut_offsets) and cut_offsets[i] <= start:
        i += 1
    if i < len(cut_offsets) and cut_offsets[i] < end:
        return cut_offsets[i]
    return end


def join_spans(pieces: Sequence[tuple[int, int, str]]) -> str:
    """The parent text from its passages ``(start, end, text)``, in any order. Raises if they leave
    a gap (a passage is missing)."""
    out = ""
    for start, end, text in sorted(pieces):
        if start > len(out):
            raise InputError(f"passages leave a gap at offset {len(out)}: a chunk is missing")
        out += text[len(out) - start:] if end > len(out) else ""
    return out
