"""Pure tensor functions of the E5 recipe: last-token pooling and L2 normalisation."""

from __future__ import annotations

import torch


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last non-pad token in each row; right or left padding. (batch, seq) -> (batch,)"""
    seq_len = attention_mask.shape[1]
    # argmax of the flipped mask finds the first 1 from the right, whatever the padding side.
    return seq_len - 1 - attention_mask.flip(dims=[1]).to(torch.int64).argmax(dim=1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state at the last non-pad (EOS) position. (batch, seq, dim), (batch, seq) -> (batch, dim)"""
    idx = last_token_index(attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise L2 normalisation, computed in fp32. (batch, dim) -> (batch, dim) float32"""
    x = x.float()
    return x / x.norm(p=2, dim=-1, keepdim=True).clamp_min(eps)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip padding, so left padding embeds exactly like right padding. (batch, seq)"""
    return (attention_mask.to(torch.int64).cumsum(dim=1) - 1).clamp_min(0)
