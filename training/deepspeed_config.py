"""The DeepSpeed config of a run: the user's file (or the ZeRO-3 preset) plus the keys e5rag owns.

e5rag drives the optimizer step itself (GradCache backpropagates several chunks per step), so it
sets the batch sizes, clipping and precision, and turns DeepSpeed's own gradient-accumulation
counting off (``managed_gradient_accumulation: false``: every ``engine.step()`` is a boundary).
A value the user set to anything but "auto" that disagrees is an error, never silently replaced.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from e5rag.retriever.errors import InputError

ZERO3_PRESET: dict[str, Any] = {
    "zero_optimization": {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 5e7,
        "stage3_prefetch_bucket_size": 5e7,
        "stage3_param_persistence_threshold": 1e5,
    },
    "steps_per_print": 1_000_000_000,
    "wall_clock_breakdown": False,
}

_REFUSED = {"optimizer": "e5rag uses AdamW with --lr and --weight-decay",
            "scheduler": "e5rag uses linear warm-up and decay (--warmup-steps)"}


def read_deepspeed_config(spec: str) -> dict[str, Any]:
    """The preset named ``spec`` ("zero3") or the JSON/YAML file at ``spec``."""
    if spec == "zero3":
        return copy.deepcopy(ZERO3_PRESET)
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"deepspeed: {spec} is neither a file nor the preset 'zero3'")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as exc:  # json and yaml raise different types; both mean a bad file
        raise InputError(f"deepspeed: could not parse {path}: {exc}") from None
    if not isinstance(values, dict):
        raise InputError(f"deepspeed: {path} must hold a JSON object")
    return values


def build_deepspeed_config(spec: str, *, global_batch: int, world_size: int, max_grad_norm: float | None,
                           bf16: bool) -> dict[str, Any]:
    """The complete config passed to ``deepspeed.initialize``."""
    config = read_deepspeed_config(spec)
    for key, why in _REFUSED.items():
        if key in config:
            raise InputError(f"deepspeed: remove the {key!r} section from the DeepSpeed config ({why})")
    owned = {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": global_batch // world_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": float(max_grad_norm or 0.0),
        "managed_gradient_accumulation": False,
    }
    for key, value in owned.items():
        if key in config and config[key] != "auto" and config[key] != value:
            raise InputError(f"deepspeed: {key}={config[key]!r} in the DeepSpeed config disagrees with the run "
                             f"({value!r}); set it to \"auto\" or remove it")
        config[key] = value
    if config.get("fp16", {}).get("enabled") is True:
        raise InputError("deepspeed: fp16 is not supported (e5rag trains in bf16 on CUDA, fp32 on CPU); use bf16")
    bf16_cfg = config.setdefault("bf16", {})
    if bf16_cfg.get("enabled") in (None, "auto"):
        bf16_cfg["enabled"] = bf16
    return config
