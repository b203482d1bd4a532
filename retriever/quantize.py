"""int8 CPU inference: int8 weights per output channel, activations quantised per token at run time.

The method was chosen by measurement on the shipped default (SmolLM2-135M + adapter, SciFact
documents at max_length 256; benchmarks/README.md, "int8 inference"). torch's own ``quantize_dynamic``
(per-channel weights) quantises each Linear's input with one scale for the whole batch: min cosine to
fp32 0.81 over 64 documents, 0.82 with the last layer kept fp32, 0.97 with every MLP ``down_proj``
kept fp32. torchao's ``Int8DynamicActivationInt8WeightConfig``
takes one scale per token and per weight row: min cosine 0.9937 over 300 documents with every Linear
quantised, so nothing needs to stay in fp32. The token embedding stays fp32 (a lookup, no matmul).

int8 is a CPU path: on CUDA bf16 is the fast one, and ``check_quantize`` refuses the combination.
"""

from __future__ import annotations

from typing import Literal

import torch

from ._optional import require
from .errors import InputError

Quantization = Literal["int8"]
QUANTIZATIONS: tuple[str, ...] = ("int8",)


def check_quantize(quantize: str | None, device: torch.device | str, dtype: torch.dtype | None = None
                   ) -> Quantization | None:
    """Validate a quantization request for a device (and the dtype asked for, None = the default).

    None and "none" mean fp32/bf16 as usual. -> "int8" or None; raises ``InputError`` otherwise.
    """
    if quantize is None or str(quantize).lower() in ("none", "fp32", "float32"):
        return None
    name = str(quantize).lower()
    if name not in QUANTIZATIONS:
        raise InputError(f"unknown quantization {quantize!r}: use int8 (CPU) or none")
    if torch.device(device).type != "cpu":
        raise InputError(f"int8 quantization is a CPU path, not for device {torch.device(device)}: "
                         "on a GPU drop --quantize (bf16 is the fast GPU path) or pass --device cpu")
    if dtype is not None and dtype != torch.float32:
        raise InputError(f"int8 quantization runs on fp32 weights, not {dtype}: drop --dtype or use float32")
    return "int8"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Quantise every ``nn.Linear`` of an fp32 CPU model in place: int8 weights with one scale per
    output channel, activations quantised to int8 per token at run time (torchao). -> the model"""
    require("torchao", "int8", "int8 quantization")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    # set_inductor_config=False: torchao would otherwise change process-wide inductor settings.
    config = Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    quantize_(model, config, filter_fn=lambda module, _name: isinstance(module, torch.nn.Linear))
    return model


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether any Linear weight of ``model`` is a torchao quantised tensor."""
    return any(type(m.weight).__module__.startswith("torchao") for m in model.modules()
               if isinstance(m, torch.nn.Linear))
