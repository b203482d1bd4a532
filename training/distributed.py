"""The few collectives training needs, on top of ``torch.distributed`` (gloo on CPU, NCCL on CUDA).

Launch with ``torchrun --nproc_per_node N -m e5rag train ...`` or ``deepspeed --num_gpus N``;
a plain ``e5rag train`` is one process and every function here is then the identity.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from e5rag.retriever.distributed import (  # noqa: F401  (re-exported: training code uses them from here)
    DistInfo,
    barrier,
    current,
    is_distributed,
    launched_world_size,
)


def init(use_deepspeed: bool, device_type: str) -> DistInfo:
    """Join the process group the launcher prepared (gloo on CPU, NCCL on CUDA); no-op for one process.

    DeepSpeed always needs a process group, so a single process started without a launcher gets a
    one-member group on a free local port.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if use_deepspeed:
        if "RANK" not in os.environ:
            _single_process_env()
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)
    elif launched_world_size() > 1:
        dist.init_process_group(backend=backend)
    info = current()
    if device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def _single_process_env() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


class _GatherRows(torch.autograd.Function):
    """All-gather rows of every rank (sizes may differ); backward sums each rank's gradient of the
    gathered tensor and returns this rank's slice, so every rank's loss reaches every embedding."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        width = max(sizes)
        buf = x.new_zeros((width, *x.shape[1:]))
        buf[: x.shape[0]] = x
        parts = [torch.empty_like(buf) for _ in sizes]
        dist.all_gather(parts, buf)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows of ``x`` from every rank in rank order, differentiable. (n_r, ...) -> (sum n, ...), offset

    ``offset`` is where this rank's rows start in the result. One process: (x, 0).
    """
    if not is_distributed():
        return x, 0
    rank, world = dist.get_rank(), dist.get_world_size()
    size = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    return _GatherRows.apply(x.contiguous(), counts, rank), sum(counts[:rank])


def all_reduce_max(value: int, device: torch.device | str = "cpu") -> int:
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_reduce_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in one flat all-reduce (what DDP does, for small LoRA weights)."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(params: list[torch.nn.Parameter]) -> None:
    """Make every rank start from rank 0's weights."""
    if not is_distributed():
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)
