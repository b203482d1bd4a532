"""Pooling and tokenization: pure functions checked against independent computations."""

from __future__ import annotations

import torch

from e5rag.retriever.pooling import l2_normalize, last_token_index, last_token_pool, position_ids_from_mask
from e5rag.retriever.tokenization import pad_batch, tokenize_with_eos


def test_last_token_index_right_and_left_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert last_token_index(left).tolist() == [4, 4, 4]


def test_last_token_pool_picks_rows_at_index():
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    pooled = last_token_pool(hidden, mask)
    for row, pos in enumerate([2, 4, 0]):
        assert torch.equal(pooled[row], hidden[row, pos])


def test_l2_normalize_is_fp32_unit_norm():
    x = torch.randn(4, 7, dtype=torch.bfloat16)
    y = l2_normalize(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(4))


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_pad_batch_both_sides():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_eos_appended_after_truncation_and_never_doubled(tiny_encoder):
    tok = tiny_encoder.tokenizer
    eos = tok.eos_token_id
    long_text = "the quick brown fox " * 40
    seqs, truncated = tokenize_with_eos(tok, [long_text, "hi"], max_length=10)
    assert truncated == 1
    assert len(seqs[0]) == 10 and seqs[0][-1] == eos and eos not in seqs[0][:-1]
    assert seqs[0][:9] == tok(long_text)["input_ids"][:9]  # BOS kept, text truncated, then EOS
    assert seqs[1] == tok("hi")["input_ids"] + [eos]
    # a tokenizer that already appends EOS does not get a second one
    seqs2, _ = tokenize_with_eos(tok, ["hi</s>"], max_length=10)
    assert seqs2[0].count(eos) == 1 and seqs2[0][-1] == eos
