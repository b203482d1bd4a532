"""Running out of memory in a training step: recognise it, and say which flags use less.

A CUDA allocator failure raises ``torch.OutOfMemoryError``; a failed CPU allocation raises a plain
``RuntimeError`` from ``DefaultCPUAllocator`` (the kernel's OOM killer, the usual end on Linux, cannot
be caught). Flags outside ``TRAJECTORY_FIELDS`` (GradCache chunk, gradient checkpointing) may change
on ``--resume``; the others change the run and need a new ``--output``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from e5rag.retriever.errors import E5RagError

from .config import TrainConfig

_CPU_ALLOC_FAILED = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


class TrainingOutOfMemoryError(E5RagError, MemoryError):
    """A training step needed more memory than the device has; the message names what to change."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA (or other accelerator) OOM and for a failed CPU allocation."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in _CPU_ALLOC_FAILED))


def out_of_memory_advice(config: TrainConfig, step: int, total: int, device: str, checkpoint: Path | None,
                         cause: BaseException) -> str:
    """One message: where it failed, the allocator's own first line, then what to change and how to go on."""
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    texts = f"batch {config.batch_size}" + (f" + up to {config.hard_negatives} hard negative(s) a query"
                                            if config.hard_negatives else "")
    keep = []  # flags a resumed run may change
    if config.gradcache_chunk_size is None:
        keep.append(f"--gradcache-chunk-size {max(1, min(8, config.batch_size // 4))} (same loss; activations "
                    "for that many texts at a time)")
    elif config.gradcache_chunk_size > 1:
        keep.append(f"a smaller --gradcache-chunk-size (now {config.gradcache_chunk_size})")
    if not config.gradient_checkpointing:
        keep.append("--gradient-checkpointing (recomputes activations in backward)")
    change = [f"a smaller --max-length (now {config.max_length})", "a smaller --batch-size"]
    if config.lora_layers is None:
        change.append("--lora-layers N (backward stops below the top N layers)")
    how = (f"The last checkpoint is step {checkpoint.name.split('-')[-1].lstrip('0') or '0'} in {checkpoint.parent}: "
           "--resume latest continues it with the first kind of flag; the second kind needs a new --output."
           if checkpoint is not None else "No checkpoint was written yet (--save-every sets how often).")
    return (f"out of memory in training step {step} of {total} ({texts}, max length {config.max_length}, on {device}): "
            f"{first}. Flags that use less memory and keep the run resumable: {'; '.join(keep) or 'none left'}. "
            f"Flags that change the run: {'; '.join(change)}. {how}")
