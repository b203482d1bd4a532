"""The training loop: ``train(config)`` fine-tunes a LoRA adapter on the serving encoder.

One step: the global batch of the step (one source) -> this rank's slice -> tokens -> embeddings
(plain or GradCache) -> InfoNCE over the gathered global batch -> AdamW step. Every ``save_every``
steps an atomic checkpoint; at the end the adapter is exported to ``{output}/adapter`` in PEFT
format, loadable by ``Encoder.from_pretrained(model, adapter=...)`` and ``e5rag index --adapter``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from e5rag import fsutil
from e5rag.retriever.errors import InputError

from . import distributed as dist
from .backend import make_backend
from .checkpoint import (
    check_resumable,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_state,
    save_checkpoint,
)
from .config import TrainConfig
from .data import load_sources
from .gradcache import gradcache_step, plain_step, tokenize_batch
from .interrupt import StopRequest, TrainingStopped
from .memory import TrainingOutOfMemoryError, is_out_of_memory, out_of_memory_advice
from .metrics import MetricsLog, peak_memory_mb, reset_peak_memory
from .model import load_trainable_encoder, save_adapter, training_device
from .sampler import BatchPlan, make_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the run left its adapter, metrics and checkpoints; its last loss."""

    output: Path
    adapter: Path
    metrics: Path
    steps: int
    last_loss: float | None
    checkpoints: tuple[Path, ...]


def total_steps(config: TrainConfig, plan: BatchPlan) -> int:
    return config.max_steps or max(1, math.ceil(config.epochs * plan.steps_per_epoch))


def _start_step(config: TrainConfig, backend, info: dist.DistInfo) -> int:
    """0 for a fresh run; the checkpoint's step (everything restored) for ``resume``."""
    if config.resume is None:
        if list_checkpoints(config.output):
            raise InputError(f"{config.output} holds checkpoints of an earlier run: pass --resume to continue it "
                             "or choose another --output")
        return 0
    checkpoint = find_checkpoint(config.output, config.resume)
    check_resumable(read_state(checkpoint), config.to_dict(), info.world_size, bool(config.deepspeed))
    state = load_checkpoint(checkpoint, backend, info)
    log.info("resumed from %s (step %d)", checkpoint, state["step"])
    return int(state["step"])


def _export_adapter(config: TrainConfig, backend, info: dist.DistInfo) -> Path:
    """Write ``{output}/adapter`` atomically (temp folder, then rename) plus the run's config."""
    final = Path(config.output) / "adapter"
    adapter = backend.adapter_state()  # collective under ZeRO-3
    if info.is_main:
        tmp = final.with_name(".adapter.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_adapter(backend.peft_model, tmp, adapter)
        (tmp / "e5rag_training.json").write_text(json.dumps({"config": config.to_dict()}, indent=2) + "\n")
        fsutil.replace_dir(tmp, final)
    dist.barrier()
    return final


def train(config: TrainConfig) -> TrainResult:
    """Run (or resume) a fine-tuning run; every rank of a torchrun/deepspeed job calls this."""
    device_type = training_device(config).type
    info = dist.init(bool(config.deepspeed), device_type)
    if config.batch_size % info.world_size:
        raise InputError(f"batch_size={config.batch_size} must be divisible by the number of processes "
                         f"({info.world_size})")
    device = training_device(config, info.local_rank)
    sources = load_sources(config.data)
    plan = BatchPlan([len(s.examples) for s in sources], [s.spec.weight for s in sources], config.batch_size,
                     config.seed)
    steps = total_steps(config, plan)
    encoder = load_trainable_encoder(config, device)
    backend = make_backend(encoder, config, steps, info.world_size)
    start = _start_step(config, backend, info)
    output = Path(config.output)
    metrics = MetricsLog(output / "metrics.jsonl", start if config.resume else None) if info.is_main else None
    if info.is_main:
        (output / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, disable=not (info.is_main and config.progress), desc="train",
               unit="step", mininterval=1.0)
    last_loss = None
    try:
        with StopRequest() as stop:
            for step in range(start, steps):
                try:
                    row = _train_step(config, encoder, backend, sources, plan, step, info, device, stop)
                except (torch.OutOfMemoryError, RuntimeError) as exc:
                    _explain_out_of_memory(exc, config, step, steps, device)
                    raise
                stopping = row.pop("stop_requested")
                last_loss = row["loss"]
                if metrics is not None and ((step + 1) % config.log_every == 0 or step + 1 == steps):
                    metrics.write(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", tok_s=f"{row['tokens_per_s']:.0f}")
                if step + 1 < steps and ((step + 1) % config.save_every == 0 or stopping):
                    checkpoint = save_checkpoint(output, step + 1, backend, {"config": config.to_dict()}, info,
                                                 config.keep_checkpoints)
                    if stopping:
                        signame = signal.Signals(stop.signum).name if stop.signum else "a signal on another rank"
                        raise TrainingStopped(f"stopped by {signame} after step {step + 1} of {steps}; checkpoint "
                                              f"{checkpoint}: continue with --resume latest and the same flags",
                                              stop.signum or signal.SIGTERM, str(checkpoint))
        adapter = _export_adapter(config, backend, info)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    return TrainResult(output, adapter, output / "metrics.jsonl", steps, last_loss, tuple(list_checkpoints(output)))


def _explain_out_of_memory(exc: BaseException, config: TrainConfig, step: int, steps: int,
                           device: torch.device) -> None:
    """Raise ``TrainingOutOfMemoryError`` (with the flags to change) if ``exc`` is an allocation failure."""
    if is_out_of_memory(exc):
        latest = list_checkpoints(config.output)
        raise TrainingOutOfMemoryError(out_of_memory_advice(
            config, step + 1, steps, str(device), latest[-1] if latest else None, exc)) from exc


def _train_step(config: TrainConfig, encoder, backend, sources, plan: BatchPlan, step: int,
                info: dist.DistInfo, device: torch.device, stop: StopRequest | None = None) -> dict:
    """One optimizer step. -> its metrics row (tokens summed over ranks; loss, in-batch accuracy and
    cosines averaged over ranks, each rank scoring its own batch for the latter two) and
    ``stop_requested``: whether any rank was asked to stop by now, this step included (read at the
    reduction, so every rank stops after the same step)"""
    batch = make_batch(sources, plan, step, config.hard_negatives)
    tokens = tokenize_batch(encoder, batch.shard(info.rank, info.world_size))
    lr = backend.lr
    reset_peak_memory(device)
    t0 = time.perf_counter()
    if config.gradcache_chunk_size:
        loss, stats = gradcache_step(encoder, tokens, config.temperature, config.gradcache_chunk_size,
                                     backend.backward, lockstep=backend.lockstep)
    else:
        loss, stats = plain_step(encoder, tokens, config.temperature, backend.backward)
    grad_norm = backend.step()
    elapsed = time.perf_counter() - t0
    loss_sum, token_sum, peak, cut, stops, *stat_sums = dist.all_reduce_sum(
        [float(loss), tokens.num_tokens, peak_memory_mb(device), tokens.truncated, float(bool(stop and stop.requested)),
         *stats.values()])
    return {"step": step + 1, "epoch": round((step + 1) / plan.steps_per_epoch, 4), "source": sources[batch.source].name,
            "loss": loss_sum / info.world_size, "lr": lr, "grad_norm": grad_norm, "tokens": int(token_sum),
            "truncated_texts": int(cut), **{k: v / info.world_size for k, v in zip(stats, stat_sums, strict=True)},
            "tokens_per_s": token_sum / elapsed, "step_time_s": elapsed,
            "peak_memory_mb": peak / info.world_size, "time": time.time(), "stop_requested": stops > 0}
