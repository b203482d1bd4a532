"""The chunker: passages fit by the model's own token count, cut at paragraph/sentence/word
boundaries, overlap by at most the asked tokens, and put back together give the parent text."""

from __future__ import annotations

import random

import pytest
from tiny_models import CORPUS, build_tokenizer

from e5rag.retriever.chunking import (
    PARAGRAPH,
    ChunkConfig,
    boundaries,
    chunk_spans,
    join_spans,
    token_count,
)
from e5rag.retriever.errors import InputError

SENTENCES = list(CORPUS[:8])


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def long_text(seed: int, paragraphs: int = 12) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 4))) for _ in range(paragraphs))


def parent_tokens(tok, text: str) -> list[int]:
    """End offset of each token of the whole text (an independent tokenization)."""
    return [e for _, e in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]


def tokens_between(ends: list[int], a: int, b: int) -> int:
    return sum(1 for e in ends if a < e <= b)


@pytest.mark.parametrize(("max_tokens", "overlap", "title"), [(32, 0, ""), (48, 6, ""), (64, 10, "A title"),
                                                             (40, 4, "Long title of the document")])
def test_passages_fit_cut_between_words_overlap_and_round_trip(tok, max_tokens, overlap, title):
    for seed in range(3):
        text = long_text(seed)
        spans = chunk_spans(text, tok, max_tokens, overlap, title)
        assert len(spans) > 2
        ends = parent_tokens(tok, text)
        for i, s in enumerate(spans):
            # the encoder's own count: BOS + title + passage + EOS
            assert len(tok(f"{title} {text[s.start:s.end]}".strip())["input_ids"]) + 1 <= max_tokens
            assert token_count(tok, text[s.start:s.end], title) <= max_tokens
            if i:
                assert text[s.start - 1].isspace() and not text[s.start].isspace()  # a word start
                prev = spans[i - 1]
                assert prev.start < s.start <= prev.end  # no gap, progress
                shared = tokens_between(ends, s.start, prev.end)
                assert shared <= overlap
                if overlap:
                    assert shared >= overlap - 6  # the window starts within one word of `overlap`
                else:
                    assert s.start == prev.end
            if i < len(spans) - 1:
                assert text[s.end - 1].isspace() and not text[s.end].isspace()  # never mid-word
        assert spans[0].start == 0 and spans[-1].end == len(text)
        assert join_spans([(s.start, s.end, text[s.start:s.end]) for s in spans]) == text


def test_cuts_fall_on_paragraph_breaks_when_one_is_near(tok):
    text = "\n\n".join(SENTENCES[i % 8] for i in range(20))  # paragraphs of ~15-25 tokens
    paragraph_starts = {o for o, kind in boundaries(text) if kind == PARAGRAPH}
    spans = chunk_spans(text, tok, 64, 0)
    assert len(spans) > 3
    assert all(s.end in paragraph_starts for s in spans[:-1])


def test_sentence_end_beats_a_word_boundary(tok):
    text = " ".join(SENTENCES * 3)  # no paragraphs or line breaks: sentences only
    kinds = dict(boundaries(text))
    spans = chunk_spans(text, tok, 48, 0)
    assert all(text[s.end - 2] in ".?" and kinds[s.end] > 0 for s in spans[:-1])


def test_a_word_longer_than_a_passage_is_cut_at_tokens(tok):
    text = "start " + "x" * 300 + " end of it"
    spans = chunk_spans(text, tok, 24, 0)
    assert len(spans) > 1
    assert all(token_count(tok, text[s.start:s.end]) <= 24 for s in spans)
    assert join_spans([(s.start, s.end, text[s.start:s.end]) for s in spans]) == text


def test_short_text_is_one_span(tok):
    text = SENTENCES[0]
    assert [(s.start, s.end) for s in chunk_spans(text, tok, 64, 6)] == [(0, len(text))]
    assert [(s.start, s.end) for s in chunk_spans("", tok, 64, 6, title="Only a title")] == [(0, 0)]


def test_join_spans_refuses_a_gap():
    with pytest.raises(InputError, match="gap"):
        join_spans([(0, 5, "hello"), (7, 10, "abc")])


def test_config_is_checked_against_the_encoder():
    assert ChunkConfig().resolve(512) == (512, 51)
    assert ChunkConfig(128, 0).resolve(512) == (128, 0)
    with pytest.raises(InputError, match="max length 64"):
        ChunkConfig(128).resolve(64)
    with pytest.raises(InputError, match="less than half"):
        ChunkConfig(64, 32).resolve(64)
    with pytest.raises(InputError, match="at least 8"):
        ChunkConfig(4)
    with pytest.raises(InputError, match="title takes"):
        chunk_spans("word " * 200, build_tokenizer(), 16, 0, title="a very long title " * 4)
