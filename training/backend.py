"""Who owns the optimizer step: plain PyTorch (one process or torchrun), or a DeepSpeed engine.

Both expose the same small surface to the training loop: ``backward(loss)`` (called once per
plain step, or once per GradCache chunk), ``step() -> grad norm``, ``lr``, the adapter weights, and
saving/loading the optimizer state. Gradients are averaged over ranks, as DDP and ZeRO do; the
InfoNCE loss is written so that this average is the single-process gradient (see ``loss.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from e5rag.retriever.encoder import Encoder

from .config import TrainConfig
from .deepspeed_config import build_deepspeed_config
from .distributed import average_gradients, broadcast_parameters
from .model import adapter_state_dict, trainable_parameters
from .optim import make_optimizer, warmup_steps_for
from .statefile import load_state, save_state


class TorchBackend:
    """AdamW on the LoRA weights; with several ranks, one flat all-reduce averages the gradients."""

    lockstep = False  # ranks may run different numbers of forward passes

    def __init__(self, encoder: Encoder, config: TrainConfig, total_steps: int) -> None:
        self.model = encoder.model
        self.peft_model = encoder.model
        self.params = trainable_parameters(self.model)
        broadcast_parameters(self.params)
        self.max_grad_norm = config.max_grad_norm
        self.optimizer, self.scheduler = make_optimizer(self.params, config.lr, config.weight_decay,
                                                        warmup_steps_for(total_steps, config.warmup_steps), total_steps)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def step(self) -> float:
        """Average, clip and apply the accumulated gradients. -> the global norm before clipping"""
        average_gradients(self.params)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm or math.inf)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return adapter_state_dict(self.model)

    def save_state(self, directory: Path, is_main: bool) -> None:
        if is_main:
            save_state({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                       directory, "optimizer")

    def load_state(self, directory: Path, adapter: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            named = dict(self.model.named_parameters())
            for name, value in adapter.items():
                named[name].copy_(value)
        state = load_state(directory, "optimizer")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class DeepSpeedBackend:
    """A DeepSpeed engine (e.g. ZeRO-3) around the PEFT model; the encoder's ``.model`` becomes the engine."""

    def __init__(self, encoder: Encoder, config: TrainConfig, total_steps: int, world_size: int) -> None:
        import deepspeed

        self.peft_model = encoder.model
        params = trainable_parameters(self.peft_model)
        optimizer, scheduler = make_optimizer(params, config.lr, config.weight_decay,
                                              warmup_steps_for(total_steps, config.warmup_steps), total_steps)
        ds_config = build_deepspeed_config(config.deepspeed, global_batch=config.batch_size, world_size=world_size,
                                           max_grad_norm=config.max_grad_norm, bf16=encoder.device.type == "cuda")
        self.stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
        self.lockstep = self.stage == 3  # every forward gathers partitioned weights: ranks run in step
        self.engine, _, _, _ = deepspeed.initialize(model=self.peft_model, optimizer=optimizer, lr_scheduler=scheduler,
                                                    config=ds_config, model_parameters=params)
        encoder.model = _EngineForward(self.engine, self.peft_model.config)
        self.params = params

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    @property
    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def step(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Full LoRA weights on every rank (gathered from the ZeRO-3 partitions; collective)."""
        import deepspeed

        with deepspeed.zero.GatheredParameters(self.params, modifier_rank=None, enabled=self.stage == 3):
            return adapter_state_dict(self.peft_model)

    def save_state(self, directory: Path, is_main: bool) -> None:
        self.engine.save_checkpoint(str(directory), tag="deepspeed", save_latest=False,
                                    exclude_frozen_parameters=True)

    def load_state(self, directory: Path, adapter: dict[str, Any]) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed", load_module_strict=False,
                                              load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            from e5rag.retriever.errors import InputError

            raise InputError(f"{directory} holds no DeepSpeed state: it was not written by a --deepspeed run")


class _EngineForward(torch.nn.Module):
    """Calls go through the engine (its forward arms ZeRO's backward hooks) while ``.config`` stays the
    model's config (the engine's own ``.config`` is the DeepSpeed dict), so ``Encoder.dim`` keeps working."""

    def __init__(self, engine, model_config) -> None:
        super().__init__()
        self.engine = engine
        self.config = model_config

    def forward(self, *args, **kwargs):
        return self.engine(*args, **kwargs)


def make_backend(encoder: Encoder, config: TrainConfig, total_steps: int, world_size: int):
    if config.deepspeed:
        return DeepSpeedBackend(encoder, config, total_steps, world_size)
    return TorchBackend(encoder, config, total_steps)
