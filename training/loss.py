"""InfoNCE over in-batch and hard negatives (E5-Mistral, arXiv 2401.00368, eq. 2): cosine similarity,
temperature 0.02, computed in fp32.

Across ranks the loss sees the global batch: documents of every rank are gathered (with gradients)
and each rank scores its own queries against all of them, labels offset by its position. The
gather, the offset and the scaling all live here (nowhere else), so the gradient a rank gets,
averaged over ranks as DDP/ZeRO do, equals the gradient of the single-process loss on the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from e5rag.retriever.errors import InputError

from .distributed import gather_rows

TEMPERATURE = 0.02


def info_nce(q: torch.Tensor, d: torch.Tensor, temperature: float = TEMPERATURE, *,
             gather: bool = True) -> torch.Tensor:
    """Mean InfoNCE loss of the queries.  q (B, dim), d (B + N, dim) -> scalar float32

    Row ``i`` of ``d`` is the positive of query ``i`` (i < B); rows B.. are hard negatives, any
    number in any order (e.g. B*H laid out query by query). Every row of ``d`` is a candidate for
    every query: the other positives are the in-batch negatives. With ``gather`` and several ranks,
    ``d`` is the concatenation of all ranks' positives, then all ranks' negatives.
    """
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise InputError(f"info_nce needs q (B, dim) and d (B + N, dim), got {tuple(q.shape)} and {tuple(d.shape)}")
    batch = q.shape[0]
    if batch == 0 or d.shape[0] < batch:
        raise InputError(f"info_nce needs B >= 1 queries and at least B documents, got {batch} and {d.shape[0]}")
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    q = F.normalize(q.float(), dim=-1)  # (B, dim)
    d = F.normalize(d.float(), dim=-1)  # (B + N, dim)
    offset = 0
    if gather:
        positives, offset = gather_rows(d[:batch])  # (sum B_r, dim)
        negatives, _ = gather_rows(d[batch:])  # (sum N_r, dim)
        d = torch.cat([positives, negatives])
    logits = q @ d.T / temperature  # (B, docs)
    labels = torch.arange(batch, device=q.device) + offset  # (B,)
    return F.cross_entropy(logits, labels)


def batch_stats(q: torch.Tensor, d: torch.Tensor) -> dict[str, float]:
    """Diagnostics on this rank's batch: top-1 accuracy of the positive among all of ``d``, mean cosine
    of positives and of the other documents. q (B, dim), d (B + N, dim) laid out as in ``info_nce``.

    A collapse (every embedding alike) shows as ``neg_cos`` rising to ``pos_cos`` near 1 while
    accuracy stays at chance and the loss sits at log(B + N).
    """
    with torch.no_grad():
        batch = q.shape[0]
        sims = F.normalize(q.float(), dim=-1) @ F.normalize(d.float(), dim=-1).T  # (B, B + N)
        rows = torch.arange(batch, device=sims.device)
        others = torch.ones_like(sims, dtype=torch.bool)
        others[rows, rows] = False
        return {"accuracy": (sims.argmax(dim=1) == rows).float().mean().item(),
                "pos_cos": sims[rows, rows].mean().item(),
                "neg_cos": sims[others].mean().item() if bool(others.any()) else float("nan")}
