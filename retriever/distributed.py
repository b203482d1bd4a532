"""Where this process sits in a ``torchrun`` job, and the few collectives indexing needs.

``torchrun --nproc_per_node N -m e5rag index ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
``join`` opens the process group (gloo on CPU, NCCL on CUDA, one GPU per rank). A plain process is
rank 0 of 1 and every function here is then the identity. ``training.distributed`` builds on this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def current() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def launched_world_size() -> int:
    """WORLD_SIZE as set by torchrun/deepspeed launchers (1 when started directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device_type: str) -> DistInfo:
    """Join the process group the launcher prepared (gloo on CPU, NCCL on CUDA); no-op for one process.

    On CUDA each rank takes GPU ``LOCAL_RANK`` as its current device (so ``"cuda"`` means that GPU).
    """
    if launched_world_size() > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    info = current()
    if device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def leave() -> None:
    """End this process's part of a launched job: wait for every rank, then close the process group.

    A gloo group still open when the interpreter exits can abort the process ("terminate called
    without an active exception", exit -6), which torchrun reports as a failed job. No-op for one process.
    """
    if launched_world_size() > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0; None on the other ranks. One process: [obj]."""
    if not is_distributed():
        return [obj]
    rank, world = dist.get_rank(), dist.get_world_size()
    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out
