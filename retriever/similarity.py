"""Cosine similarity between embedding sets, as sentence-transformers' ``model.similarity`` returns it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InputError


def _rows(x: Any, name: str) -> torch.Tensor:
    """One vector (dim,) or a matrix (n, dim) as float32 rows. -> (n, dim)"""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    t = t.float()
    if t.ndim == 1:
        t = t[None, :]
    if t.ndim != 2:
        raise InputError(f"{name} must be one vector (dim,) or a matrix (n, dim), got shape {tuple(t.shape)}")
    return t


def cosine_similarity(a: Any, b: Any) -> torch.Tensor:
    """Cosine of every row of ``a`` with every row of ``b`` (zero rows give 0).

    a: (n, dim) or (dim,), b: (m, dim) or (dim,); numpy, torch or lists -> (n, m) float32 tensor.
    On the encoder's L2-normalised vectors this is their dot product.
    """
    x, y = _rows(a, "a"), _rows(b, "b")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"a has dimension {x.shape[1]} but b has {y.shape[1]}: compare vectors of one model")
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    y = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x @ y.T.to(x.device)
