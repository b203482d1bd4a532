"""info_nce against an independent numpy computation (softmax cross-entropy written out by hand)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e5rag.retriever.errors import InputError
from e5rag.training.loss import batch_stats, info_nce


def numpy_info_nce(q: np.ndarray, d: np.ndarray, tau: float) -> float:
    """-mean_i log( exp(cos(q_i, d_i)/tau) / sum_j exp(cos(q_i, d_j)/tau) ), in float64."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(q)):
        logits = np.array([q[i] @ d[j] for j in range(len(d))]) / tau
        top = logits.max()
        log_denominator = top + np.log(np.exp(logits - top).sum())
        total += log_denominator - logits[i]
    return total / len(q)


@pytest.mark.parametrize("batch, negatives, tau", [(4, 0, 0.02), (4, 4, 0.02), (3, 7, 0.05), (1, 2, 1.0)])
def test_info_nce_matches_numpy(batch, negatives, tau):
    rng = np.random.default_rng(batch * 10 + negatives)
    q = rng.normal(size=(batch, 16))
    d = rng.normal(size=(batch + negatives, 16))
    d[:batch] = q + 0.3 * rng.normal(size=(batch, 16))  # positives near their queries: a realistic loss
    got = info_nce(torch.tensor(q, dtype=torch.float32), torch.tensor(d, dtype=torch.float32), tau)
    assert got.dtype == torch.float32 and got.ndim == 0
    assert got.item() == pytest.approx(numpy_info_nce(q, d, tau), rel=1e-4, abs=1e-5)


def test_info_nce_is_cosine_and_fp32_for_bf16_inputs():
    rng = np.random.default_rng(0)
    q = torch.tensor(rng.normal(size=(3, 8)), dtype=torch.bfloat16)
    d = torch.tensor(rng.normal(size=(6, 8)), dtype=torch.bfloat16)
    got = info_nce(q, d, 0.02)
    assert got.dtype == torch.float32
    # Scaling a row does not change a cosine: the loss must not move.
    assert info_nce(q.float() * 7.0, d.float() * 0.1, 0.02).item() == pytest.approx(got.item(), rel=1e-5)
    assert got.item() == pytest.approx(numpy_info_nce(q.float().numpy(), d.float().numpy(), 0.02), rel=1e-4)


def test_info_nce_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    q = torch.tensor(rng.normal(size=(2, 5)), dtype=torch.float64, requires_grad=True)
    d = torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float64)
    info_nce(q, d, 0.5).backward()
    eps = 1e-6
    for i, j in [(0, 0), (1, 3)]:
        qp, qm = q.detach().numpy().copy(), q.detach().numpy().copy()
        qp[i, j] += eps
        qm[i, j] -= eps
        numeric = (numpy_info_nce(qp, d.numpy(), 0.5) - numpy_info_nce(qm, d.numpy(), 0.5)) / (2 * eps)
        assert q.grad[i, j].item() == pytest.approx(numeric, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("q_shape, d_shape", [((4, 8), (3, 8)), ((4, 8), (4, 7)), ((4,), (4, 8)), ((0, 8), (2, 8))])
def test_info_nce_rejects_bad_shapes(q_shape, d_shape):
    with pytest.raises(InputError, match="info_nce"):
        info_nce(torch.zeros(q_shape), torch.zeros(d_shape), 0.02)


def test_batch_stats_match_numpy():
    rng = np.random.default_rng(9)
    q, d = rng.normal(size=(4, 6)), rng.normal(size=(7, 6))
    d[1] = 3 * q[1]  # query 1 finds its positive
    stats = batch_stats(torch.tensor(q), torch.tensor(d))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    sims = qn @ dn.T
    off = ~np.eye(4, 7, dtype=bool)
    assert stats["accuracy"] == pytest.approx(np.mean(sims.argmax(axis=1) == np.arange(4)))
    assert stats["pos_cos"] == pytest.approx(np.diag(sims).mean(), rel=1e-5)
    assert stats["neg_cos"] == pytest.approx(sims[off].mean(), rel=1e-5)
    assert stats["accuracy"] >= 0.25
