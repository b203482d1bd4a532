"""Token ids the E5 way: truncate to ``max_length - 1``, then append the EOS id ourselves.

Tokenizer flags (``add_eos_token`` and friends) differ between models and versions, so the EOS
is appended here, once, after truncation; a trailing EOS the tokenizer added on its own is
removed first so it is never doubled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported by pad_batch: chunking and search import this module without it
    import torch

PaddingSide = Literal["left", "right"]


def eos_id_of(tokenizer) -> int:
    """The tokenizer's EOS id, or a clear error when it has none."""
    eos = tokenizer.eos_token_id
    if eos is None:
        from .errors import ModelLoadError

        raise ModelLoadError("the tokenizer has no EOS token; last-token pooling needs one (set eos_token)")
    return int(eos)


def pad_id_of(tokenizer) -> int:
    """Pad with the pad token where there is one, else with EOS (the attention mask hides it)."""
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else eos_id_of(tokenizer)


def tokenize_with_eos(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of each text, truncated to ``max_length - 1`` and ended by EOS.

    Returns the id lists and how many texts were truncated.
    """
    if max_length < 2:
        from .errors import InputError

        raise InputError(f"max_length must be at least 2 (one token and the EOS), got {max_length}")
    eos = eos_id_of(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, padding=False,
                        return_attention_mask=False, verbose=False)["input_ids"]
    out: list[list[int]] = []
    truncated = 0
    for ids in encoded:
        ids = list(ids)
        if ids and ids[-1] == eos:
            ids = ids[:-1]
        if len(ids) > max_length - 1:
            truncated += 1
            ids = ids[: max_length - 1]
        out.append(ids + [eos])
    return out, truncated


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: PaddingSide = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists into ``input_ids`` and ``attention_mask``, both (batch, max_len) int64."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(seqs), width), dtype=torch.int64)
    for row, seq in enumerate(seqs):
        n = len(seq)
        sl = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, sl] = torch.tensor(seq, dtype=torch.int64)
        mask[row, sl] = 1
    return ids, mask
