"""Frozen, validated configuration of a contrastive fine-tuning run.

Defaults follow E5-Mistral (arXiv 2401.00368, section 4.1 and the public recipe): LoRA rank 16,
alpha 32, dropout 0.1 on the attention and MLP projections, InfoNCE at temperature 0.02,
AdamW at 1e-4 with linear warm-up and decay, one epoch, max length 512.

Every field is also a ``e5rag train`` flag (``lora_r`` -> ``--lora-r``); a YAML file may set any of
them (``--config``), and flags override the file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e5rag.retriever.errors import InputError

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEEPSPEED_PRESETS = ("zero3",)


@dataclass(frozen=True)
class DataSpec:
    """One training source and its sampling weight.

    ``path`` is a JSONL file of ``{"task", "query", "positive", "negative"}`` rows (what ``e5rag synth``
    and ``e5rag mine`` write) or a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``).
    ``weight`` multiplies the source's share of an epoch: 2.0 shows each row twice, 0.5 half of them.
    ``task`` (BEIR only) is a registered task name or a sentence; None uses the task named like the folder.
    """

    path: str
    weight: float = 1.0
    task: str | None = None
    split: str = "train"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise InputError("data: each source needs a path (a JSONL file or a BEIR folder)")
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or not (
                math.isfinite(self.weight) and self.weight > 0):
            raise InputError(f"data: the weight of {self.path} must be a number > 0, got {self.weight!r}")
        if self.task is not None and (not isinstance(self.task, str) or not self.task.strip()):
            raise InputError(f"data: the task of {self.path} must be a non-empty string")
        if not isinstance(self.split, str) or not self.split:
            raise InputError(f"data: the split of {self.path} must be a non-empty string such as 'train'")

    @property
    def name(self) -> str:
        """A short label for logs: the file stem or folder name."""
        p = Path(self.path)
        return p.stem if p.suffix else p.name

    @classmethod
    def parse(cls, value: str | dict[str, Any] | DataSpec) -> DataSpec:
        """``"PATH"``, ``"PATH:WEIGHT"`` or a mapping ``{path, weight, task, split}``."""
        if isinstance(value, DataSpec):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise InputError(f"data: unknown key(s) {sorted(unknown)}; a source has path, weight, task, split")
            return cls(**value)
        if not isinstance(value, str):
            raise InputError(f"data: expected 'PATH[:WEIGHT]' or a mapping, got {type(value).__name__}")
        head, sep, tail = value.rpartition(":")
        if sep and head:
            try:
                weight = float(tail)
            except ValueError:  # a colon that is part of the path
                return cls(value)
            return cls(head, weight)
        return cls(value)


def _check(name: str, ok: bool, wanted: str, value: Any) -> None:
    if not ok:
        raise InputError(f"{name} must be {wanted}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run. ``batch_size`` is the global batch: queries per optimizer step over all ranks.

    ``model`` None trains the embedded default's base (SmolLM2-135M-Instruct). ``hard_negatives`` is how
    many mined/labelled negatives each query brings (rows without one bring none). ``gradcache_chunk_size``
    None embeds the whole batch with one graph; a number embeds it in chunks of that many texts with
    GradCache (same gradients, memory of one chunk). ``lora_layers`` puts LoRA on the top N layers only
    (backward stops there: CPU training). ``warmup_steps`` None is 10% of the steps. ``max_steps`` None
    runs ``epochs`` epochs. ``resume`` is "latest" (the output's newest checkpoint) or a checkpoint folder.
    ``deepspeed`` is a DeepSpeed JSON/YAML config file or "zero3" (the built-in ZeRO-3 preset).
    """

    data: tuple[DataSpec, ...] = ()
    output: str = "runs/e5rag-lora"
    model: str | None = None
    max_length: int = 512
    batch_size: int = 32
    hard_negatives: int = 1
    gradcache_chunk_size: int | None = None
    gradient_checkpointing: bool = False
    temperature: float = 0.02
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int | None = None
    max_grad_norm: float | None = 1.0
    epochs: float = 1.0
    max_steps: int | None = None
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lora_layers: int | None = None
    init_adapter: str | None = None  # start the LoRA weights from this PEFT adapter (same LoRA shape)
    seed: int = 42
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 1
    resume: str | None = None
    deepspeed: str | None = None
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(DataSpec.parse(d) for d in self.data))
        if isinstance(self.lora_targets, str):
            raise InputError("lora_targets must be a list of module names such as [q_proj, v_proj], not one string")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if not self.data:
            raise InputError("data: give at least one training source (--data FILE.jsonl or --data BEIR_DIR)")
        _check("output", isinstance(self.output, str) and bool(self.output), "a directory path", self.output)
        _check("model", self.model is None or (isinstance(self.model, str) and bool(self.model)),
               "a model directory, .gguf file or hub id (or omitted for the default)", self.model)
        for name, low in (("max_length", 2), ("batch_size", 1), ("lora_r", 1), ("save_every", 1),
                          ("keep_checkpoints", 1), ("log_every", 1)):
            value = getattr(self, name)
            _check(name, _is_int(value) and value >= low, f"an integer >= {low}", value)
        _check("hard_negatives", _is_int(self.hard_negatives) and self.hard_negatives >= 0,
               "an integer >= 0", self.hard_negatives)
        _check("seed", _is_int(self.seed), "an integer", self.seed)
        for name in ("gradcache_chunk_size", "max_steps", "lora_layers"):
            value = getattr(self, name)
            _check(name, value is None or (_is_int(value) and value >= 1), "an integer >= 1 or null", value)
        _check("warmup_steps", self.warmup_steps is None or (_is_int(self.warmup_steps) and self.warmup_steps >= 0),
               "an integer >= 0 or null", self.warmup_steps)
        for name in ("temperature", "lr", "lora_alpha", "epochs"):
            value = getattr(self, name)
            _check(name, _is_num(value) and value > 0, "a number > 0", value)
        _check("weight_decay", _is_num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0",
               self.weight_decay)
        _check("lora_dropout", _is_num(self.lora_dropout) and 0 <= self.lora_dropout < 1, "a number in [0, 1)",
               self.lora_dropout)
        _check("max_grad_norm", self.max_grad_norm is None or (_is_num(self.max_grad_norm) and self.max_grad_norm > 0),
               "a number > 0 or null (no clipping)", self.max_grad_norm)
        _check("lora_targets", bool(self.lora_targets) and all(isinstance(t, str) and t for t in self.lora_targets),
               "a non-empty list of module names (e.g. q_proj, v_proj)", self.lora_targets)
        for name in ("gradient_checkpointing", "progress"):
            _check(name, isinstance(getattr(self, name), bool), "true or false", getattr(self, name))
        _check("init_adapter", self.init_adapter is None or (isinstance(self.init_adapter, str) and bool(self.init_adapter)),
               "a PEFT adapter directory", self.init_adapter)
        _check("resume", self.resume is None or (isinstance(self.resume, str) and bool(self.resume)),
               "'latest' or a checkpoint folder", self.resume)
        _check("deepspeed", self.deepspeed is None or (isinstance(self.deepspeed, str) and bool(self.deepspeed)),
               f"a DeepSpeed config file or one of {DEEPSPEED_PRESETS}", self.deepspeed)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (recorded in checkpoints and next to the adapter)."""
        out = dataclasses.asdict(self)
        out["data"] = [dataclasses.asdict(d) for d in self.data]
        out["lora_targets"] = list(self.lora_targets)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (YAML or flags); keys may use ``-`` or ``_``; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise InputError(f"unknown training option {key!r}; known options: {', '.join(sorted(known))}")
            clean[name] = value
        if "data" in clean:
            data = clean["data"]
            clean["data"] = tuple(data) if isinstance(data, (list, tuple)) else (data,)
        if "lora_targets" in clean and isinstance(clean["lora_targets"], list):
            clean["lora_targets"] = tuple(clean["lora_targets"])
        return cls(**clean)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) config file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config {path}: no such file")
    from e5rag.retriever._optional import require

    yaml = require("yaml", "train", "reading a training config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"{path} must hold a mapping of option: value, got {type(values).__name__}")
    return values
