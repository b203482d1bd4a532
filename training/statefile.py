"""Nested training state (optimizer / scheduler ``state_dict``s) saved without pickle.

``save_state(state, directory, stem)`` writes ``{stem}.safetensors`` (every tensor) and
``{stem}.json`` (the structure: dicts, lists, tuples, numbers, strings, None, with tensors as
``{"__tensor__": key}``). ``load_state`` reads them back on CPU. Anything else (a function, an
arbitrary object) is refused when saving, so loading can never construct one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from e5rag import fsutil

_TENSOR, _ITEMS, _TUPLE = "__tensor__", "__items__", "__tuple__"


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {_TENSOR: key}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {_ITEMS: [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in training state without pickle")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and _TENSOR in value:
        return tensors[value[_TENSOR]]
    if len(value) == 1 and _ITEMS in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
    if len(value) == 1 and _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    return {k: _decode(v, tensors) for k, v in value.items()}


def save_state(state: Any, directory: Path, stem: str) -> None:
    """Write ``state`` as ``{stem}.safetensors`` + ``{stem}.json`` in ``directory``."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    save_file(tensors, str(directory / f"{stem}.safetensors"))
    fsutil.atomic_write_json(directory / f"{stem}.json", tree, indent=None)


def load_state(directory: Path, stem: str) -> Any:
    """What ``save_state`` wrote (tensors on CPU)."""
    from safetensors.torch import load_file

    tensors = load_file(str(directory / f"{stem}.safetensors"), device="cpu")
    return _decode(json.loads((directory / f"{stem}.json").read_text(encoding="utf-8")), tensors)
