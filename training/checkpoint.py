"""Atomic checkpoints a killed run resumes from: adapter, optimizer, scheduler, every rank's RNG
and the data position (the step: batches are a pure function of it, see ``sampler.py``).

A checkpoint is written to ``checkpoints/.tmp-step-N`` and renamed to ``checkpoints/step-N`` when
complete, then ``checkpoints/latest`` is replaced (write + rename): a kill at any moment leaves
either the previous checkpoint or the new one, never half of one. Nothing is pickled: the RNG
state is JSON (``rng-rankN.json``), the adapter safetensors, the optimizer and scheduler state
safetensors + JSON (``statefile.py``).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from e5rag import fsutil
from e5rag.retriever.errors import InputError

from .distributed import DistInfo, barrier

PREFIX = "step-"
STATE_FILE = "trainer_state.json"
ADAPTER = "adapter"
# Options that change the sequence of batches or the updates: a resumed run must keep them.
TRAJECTORY_FIELDS = ("data", "model", "max_length", "batch_size", "hard_negatives", "temperature", "lr",
                     "weight_decay", "warmup_steps", "max_grad_norm", "epochs", "max_steps", "lora_r", "lora_alpha",
                     "lora_dropout", "lora_targets", "lora_layers", "seed")


def checkpoints_dir(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def list_checkpoints(output: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoints_dir(output)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                   and (p / STATE_FILE).is_file()), key=lambda p: int(p.name[len(PREFIX):]))


def rng_state() -> dict[str, Any]:
    """Python's, numpy's, torch's (and CUDA's) generator states as plain JSON values (no pickle)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def rng_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rng-rank{rank}.json"


def _refuse_pickled_rng(checkpoint: Path) -> None:
    """Earlier e5rag checkpoints kept the RNG and optimizer state as ``*.pt`` pickles: never loaded."""
    pickled = sorted(checkpoint.glob("rng-rank*.pt")) + sorted(checkpoint.glob("optimizer.pt"))
    if pickled and not any(checkpoint.glob("rng-rank*.json")):
        raise InputError(f"resume: {checkpoint} was written by an older e5rag that saved its state as a pickle "
                         f"({pickled[0].name}); e5rag never loads pickles (they can run code): start a new "
                         "--output, or resume that run with the e5rag version that wrote it")


def save_checkpoint(output: str | Path, step: int, backend, state: dict[str, Any], info: DistInfo,
                    keep: int) -> Path:
    """Write checkpoint ``step-{step}`` (collective: every rank calls it). -> its final path"""
    from .model import save_adapter

    root = checkpoints_dir(output)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}"
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    backend.save_state(tmp, info.is_main)
    adapter = backend.adapter_state()
    fsutil.atomic_write_json(rng_file(tmp, info.rank), rng_state(), indent=None)
    if info.is_main:
        save_adapter(backend.peft_model, tmp / ADAPTER, adapter)
        fsutil.atomic_write_json(tmp / STATE_FILE, {**state, "step": step, "world_size": info.world_size})
    barrier()
    if info.is_main:
        fsutil.replace_dir(tmp, final)
        fsutil.atomic_write_json(root / "latest", {"checkpoint": final.name})
        for old in list_checkpoints(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def find_checkpoint(output: str | Path, resume: str) -> Path:
    """``resume`` "latest" -> the run's newest complete checkpoint; else a checkpoint folder."""
    if resume != "latest":
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise InputError(f"resume: {path} is not a checkpoint folder (no {STATE_FILE})")
        return path
    found = list_checkpoints(output)
    if not found:
        raise InputError(f"resume: {checkpoints_dir(output)} holds no complete checkpoint to resume from")
    return found[-1]


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def check_resumable(saved: dict[str, Any], config_now: dict[str, Any], world_size: int, deepspeed: bool) -> None:
    """Refuse to continue a run with options that would change its trajectory."""
    before = saved.get("config", {})
    for name in TRAJECTORY_FIELDS:
        if before.get(name) != config_now.get(name):
            raise InputError(f"resume: {name} was {before.get(name)!r} in the interrupted run but is "
                             f"{config_now.get(name)!r} now; resume with the same value or start a new --output")
    if deepspeed and saved.get("world_size") != world_size:
        raise InputError(f"resume: the DeepSpeed checkpoint was written by {saved.get('world_size')} processes; "
                         f"resume with the same number (now {world_size})")


def load_checkpoint(checkpoint: Path, backend, info: DistInfo) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and this rank's RNG. -> the saved trainer state"""
    from safetensors.torch import load_file

    from .model import adapter_state_dict, peft_key

    _refuse_pickled_rng(checkpoint)
    saved = load_file(str(checkpoint / ADAPTER / "adapter_model.safetensors"))
    # PEFT stores keys without the adapter name ("...lora_A.weight"); map them onto our parameters.
    # A DeepSpeed engine restores the module itself (from its own files in the checkpoint).
    current = {} if hasattr(backend, "engine") else adapter_state_dict(backend.peft_model)
    adapter = {name: saved[peft_key(name)] for name in current}
    backend.load_state(checkpoint, adapter)
    path = rng_file(checkpoint, info.rank)
    if path.is_file():
        set_rng_state(json.loads(path.read_text(encoding="utf-8")))
    return read_state(checkpoint)
