"""The model being trained: exactly the ``Encoder`` that serves (EOS, last-token pooling, instruction
format), with a PEFT LoRA adapter on its backbone.

The encoder's ``.model`` is replaced by the PEFT-wrapped backbone (or the DeepSpeed engine around it),
so ``Encoder.embed_tokens`` is the training forward as well: there is no second copy of pooling.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from e5rag.retriever._optional import require
from e5rag.retriever.device import pick_device
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.loading import BASE_MODEL_NAME, quiet_peft_wrap

from .config import TrainConfig

log = logging.getLogger(__name__)


def base_model_arg(model: str | None) -> str:
    """The backbone to train: None or "default" means the embedded default's *base* weights, so the
    exported adapter replaces (not stacks on) any adapter shipped with the default."""
    return BASE_MODEL_NAME if model in (None, "default") else model


def lora_config(config: TrainConfig, num_layers: int):
    """The PEFT ``LoraConfig`` of a run; ``lora_layers`` N targets layers [L-N, L) only."""
    peft = require("peft", "train", "LoRA training")
    layers = None
    if config.lora_layers is not None:
        if config.lora_layers > num_layers:
            from e5rag.retriever.errors import InputError

            raise InputError(f"lora_layers={config.lora_layers} but the model has only {num_layers} layers")
        layers = list(range(num_layers - config.lora_layers, num_layers))
    return peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                           target_modules=list(config.lora_targets), layers_to_transform=layers,
                           layers_pattern="layers" if layers is not None else None, bias="none")


def training_device(config: TrainConfig, local_rank: int = 0) -> torch.device:
    device = pick_device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def load_trainable_encoder(config: TrainConfig, device: torch.device) -> Encoder:
    """The serving encoder with fresh LoRA weights (seeded by ``config.seed``) in train mode.

    CPU trains in fp32; CUDA keeps the frozen backbone in bf16 (LoRA weights stay fp32, forward
    under bf16 autocast).
    """
    peft = require("peft", "train", "LoRA training")
    encoder = Encoder.from_pretrained(base_model_arg(config.model), device=device, max_length=config.max_length)
    backbone = encoder.model
    num_layers = int(backbone.config.num_hidden_layers)
    missing = [t for t in config.lora_targets if not any(n.endswith("." + t) for n, _ in backbone.named_modules())]
    if missing:
        from e5rag.retriever.errors import InputError

        raise InputError(f"lora_targets: the model has no module named {missing[0]!r}; "
                         f"this backbone is a {type(backbone).__name__}")
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input gradients and replays dropout with the saved RNG.
        kwargs = {"use_reentrant": False}
        if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5.2 name
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    torch.manual_seed(config.seed)  # same LoRA init on every rank and every run
    with quiet_peft_wrap():
        model = peft.get_peft_model(backbone, lora_config(config, num_layers))
    if config.init_adapter is not None:
        load_initial_adapter(model, Path(config.init_adapter))
    model.train()
    encoder.model = model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("LoRA: %d trainable parameters on %d of %d layers", trainable,
             config.lora_layers or num_layers, num_layers)
    return encoder


def load_initial_adapter(model: torch.nn.Module, directory: Path) -> None:
    """Copy a saved PEFT adapter's LoRA weights into ``model``'s fresh ones (warm start); the adapter
    must have exactly this run's LoRA shape (layers, targets, rank)."""
    from e5rag.retriever.errors import InputError

    weights = directory / "adapter_model.safetensors"
    if not weights.is_file():
        raise InputError(f"init_adapter: {directory} is not a PEFT adapter directory (no adapter_model.safetensors)")
    from safetensors.torch import load_file

    saved = load_file(str(weights))
    mine = {peft_key(n): p for n, p in model.named_parameters() if p.requires_grad}
    if saved.keys() != mine.keys():
        extra, missing = sorted(saved.keys() - mine.keys()), sorted(mine.keys() - saved.keys())
        raise InputError(f"init_adapter: {directory} does not match this run's LoRA layers/targets "
                         f"({len(missing)} of this run's LoRA weights missing, e.g. {missing[:1]}; "
                         f"{len(extra)} unexpected, e.g. {extra[:1]}): use the same --lora-layers and --lora-targets")
    for name, p in mine.items():
        if saved[name].shape != p.shape:
            raise InputError(f"init_adapter: {name} has shape {tuple(saved[name].shape)} in {directory} but "
                             f"{tuple(p.shape)} here: use the same --lora-r")
    with torch.no_grad():
        for name, p in mine.items():
            p.copy_(saved[name].to(p.dtype))


def peft_key(name: str) -> str:
    """The key PEFT saves a parameter under: ``named_parameters()`` names without the adapter name."""
    return name.replace(".default.", ".")


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def adapter_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the LoRA weights, keyed as in ``model.named_parameters()``."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def save_adapter(peft_model, directory: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
    peft_model.save_pretrained(str(directory), state_dict=state_dict, safe_serialization=True)
