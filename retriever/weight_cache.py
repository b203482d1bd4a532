"""The encoder's final weights cached as safetensors, so that a warm load is a memory map.

Loading a GGUF model the first time dequantises it (``loading.materialize_gguf``); every load after
that still runs ``from_pretrained`` and PEFT's adapter merge, about 5 s for the embedded default. This
cache stores the result of all of it, the backbone with its adapter merged, in the dtype and on the
device type it was made for, as one ``model.safetensors`` beside a byte-for-byte copy of the source's
``config.json`` and tokenizer files. A warm load builds the model on the meta device and assigns the
memory-mapped tensors: no pickle, no copy, no merge. Each tensor keeps the address alignment it had in
the uncached load (see ``_save``), so the vectors are the same to the last bit.

An entry lives in ``{cache_dir}/weights/{digest}/``, where the digest is over its key: the weight-content
identities e5rag already records (``loading.model_identity``, ``loading.adapter_identity``), the dtype,
the device type and the torch/transformers/peft versions that made it. It is published by rename
(``fsutil.publish_dir``), so a killed writer leaves no entry. ``e5rag-weights.json`` lists each file's
size and SHA-256; a load checks the sizes, the weights' SHA-256 (looked up by path, size and mtime in
``filehash``: computed once per file version) and the tensor names, and any mismatch, unreadable file or
failed load is a damaged entry, which is rebuilt and replaced (one warning line), never used.

Only GGUF sources are cached (they are converted anyway); a model directory is already safetensors and
loads as it is. ``E5RAG_WEIGHT_CACHE=0`` turns the cache off.

An entry is about the model's full size (517 MB for the embedded default), and every new adapter (each
checkpoint evaluated, each e5rag upgrade that ships a new default) makes one, so the cache keeps the
``E5RAG_WEIGHT_CACHE_KEEP`` most recently used entries (default 3; ``all`` keeps every one): writing
an entry removes the least recently used beyond that (a load marks its entry used), and temporary
folders of writers killed more than a day ago. Removal renames first, so a reader sees a whole entry
or none; a process that has the weights memory-mapped keeps them (POSIX keeps an unlinked file's data).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from e5rag.fsutil import publish_dir, remove_dir

from .filehash import cached_sha256
from .loading import cache_dir, load_tokenizer

log = logging.getLogger(__name__)

FORMAT = 1
ENTRY_FILE = "e5rag-weights.json"
WEIGHTS_FILE = "model.safetensors"
_BUFFER = "e5rag.buffer:"  # prefix of non-persistent buffers (rotary inv_freq), stored so the copy is exact
_PAD = "e5rag.pad:"  # filler between tensors (see ``_save``)
_ALIGN = 64
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}
_SKIPPED_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".index.json")
DEFAULT_KEEP = 3
_DIGEST_LEN = 24
_STALE_S = 24 * 3600  # a writer's temporary folder older than this was left by a killed writer


class DamagedEntry(Exception):
    """A cache entry that cannot be used as it is (the reason is the message)."""


def enabled() -> bool:
    """False when ``$E5RAG_WEIGHT_CACHE`` is 0, off, false or no."""
    return os.environ.get("E5RAG_WEIGHT_CACHE", "1").strip().lower() not in ("0", "off", "false", "no")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def entry_key(base_identity: str, adapter_identity: str | None, dtype: torch.dtype,
              device: torch.device | str) -> dict[str, Any]:
    """What a cached model depends on: its weights' identities, dtype, device type and the libraries
    that converted and merged it."""
    return {"format": FORMAT, "base": base_identity, "adapter": adapter_identity,
            "dtype": str(dtype).removeprefix("torch."), "device": torch.device(device).type,
            "torch": _version("torch"), "transformers": _version("transformers"),
            "peft": _version("peft") if adapter_identity else None}


def entry_dir(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:_DIGEST_LEN]
    return cache_dir() / "weights" / digest


def keep_count() -> int | None:
    """``$E5RAG_WEIGHT_CACHE_KEEP``: entries kept (default 3); None (``all`` or 0) keeps every one."""
    raw = os.environ.get("E5RAG_WEIGHT_CACHE_KEEP", "").strip().lower()
    if not raw:
        return DEFAULT_KEEP
    if raw in ("all", "0"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        log.warning("e5rag: E5RAG_WEIGHT_CACHE_KEEP=%r is not a number of entries (or 'all'); keeping %d",
                    raw, DEFAULT_KEEP)
        return DEFAULT_KEEP
    return value


def prune(root: Path, keep: int | None, protect: Path | None = None) -> list[Path]:
    """Remove the entries of the weights folder ``root`` beyond the ``keep`` most recently used (by the
    mtime of their ``e5rag-weights.json``; ``protect`` is never removed) and the temporary folders of
    writers killed over a day ago. -> the removed paths. Folders that are neither are left alone."""
    now = time.time()
    removed: list[Path] = []
    try:
        children = list(root.iterdir())
    except OSError:
        return removed
    entries = []
    for child in children:
        try:
            if child.name.startswith((".tmp-", ".old-")) and child.is_dir():
                if now - child.stat().st_mtime > _STALE_S:
                    removed += _remove(child)
            elif len(child.name) == _DIGEST_LEN and (child / ENTRY_FILE).is_file():
                entries.append(((child / ENTRY_FILE).stat().st_mtime, child))
        except OSError:  # removed meanwhile by another process
            continue
    if keep is not None:
        others = sorted((e for e in entries if e[1] != protect), key=lambda e: e[0], reverse=True)
        room = keep - any(e[1] == protect for e in entries)
        for _, entry in others[max(room, 0):]:
            removed += _remove(entry)
    return removed


def _remove(path: Path) -> list[Path]:
    """Delete ``path`` (``fsutil.remove_dir``: a reader sees all of it or nothing)."""
    try:
        if path.name.startswith(".old-"):
            shutil.rmtree(path)
        else:
            remove_dir(path)
    except OSError as exc:
        log.warning("e5rag: could not remove %s from the weight cache: %s", path, exc)
        return []
    log.info("removed %s from the weight cache", path)
    return [path]


def load(key: dict[str, Any], build: Callable[[], tuple[Path, Any, torch.nn.Module]], *,
         device: torch.device | str):
    """(tokenizer, model) from the entry for ``key``, on ``device``; on a miss (or a damaged entry)
    ``build()`` -> (source directory, tokenizer, model) makes them the uncached way, and its model's
    weights are cached for the next load. The model is what ``build`` returns, in both cases."""
    target = entry_dir(key)
    damaged = False
    if target.exists():
        try:
            loaded = _read(target, key, device)
            try:
                os.utime(target / ENTRY_FILE)  # used now: the least recently used entries go first
            except OSError:
                pass
            return loaded
        except DamagedEntry as exc:
            log.warning("e5rag: the cached weights in %s are damaged (%s); rebuilding them", target, exc)
            damaged = True
    directory, tokenizer, model = build()
    try:
        _write(target, key, directory, model, replace=damaged)
    except OSError as exc:  # a full or read-only cache costs speed, not the load
        log.warning("e5rag: could not cache the converted weights in %s: %s", target, exc)
    prune(target.parent, keep_count(), protect=target)
    return tokenizer, model


def _write(target: Path, key: dict[str, Any], directory: Path, model: torch.nn.Module, *, replace: bool) -> None:
    state = model.state_dict()
    tensors = dict(state)
    tensors.update({f"{_BUFFER}{n}": b for n, b in model.named_buffers() if n not in state})

    def write(tmp: Path) -> None:
        for f in directory.iterdir():  # config.json and the tokenizer files, as the uncached load read them
            if f.is_file() and not f.name.endswith(_SKIPPED_SUFFIXES):
                shutil.copy2(f, tmp / f.name)
        digest = _save(tensors, tmp / WEIGHTS_FILE)
        files = {f.name: {"size": f.stat().st_size} for f in sorted(tmp.iterdir()) if f.is_file()}
        files[WEIGHTS_FILE]["sha256"] = digest
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        (tmp / ENTRY_FILE).write_text(json.dumps({"key": key, "class": type(model).__name__, "files": files,
                                                  "frozen": frozen, "training": model.training}, indent=2) + "\n")

    log.info("caching the converted weights in %s", target)
    publish_dir(target, write, complete_marker=ENTRY_FILE, replace=replace)
    cached_sha256(target / WEIGHTS_FILE, cache_dir())  # hashed once now, so a warm load only looks it up


def _save(tensors: dict[str, torch.Tensor], path: Path) -> str:
    """Write ``tensors`` as a safetensors file in which each CPU tensor's data lies at the address it has
    now, modulo 64 bytes (once the file is memory-mapped), and return the file's SHA-256.

    Why: a model loaded the uncached way is partly memory-mapped from the converted file, at whatever
    offset its header left, and CPU matrix kernels round differently on differently aligned data (a
    last-bit difference in some vectors). Keeping each tensor's alignment keeps the vectors equal. The
    gaps are filled by ``e5rag.pad:N`` byte tensors, which a load skips.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    layout: list[tuple[str, torch.Tensor | None]] = []
    pos = 0
    for name, tensor in tensors.items():
        t = tensor.detach()
        want = t.data_ptr() % _ALIGN if t.device.type == "cpu" else 0
        gap = (want - pos) % _ALIGN
        if gap:
            pad = f"{_PAD}{len(layout)}"
            header[pad] = {"dtype": "U8", "shape": [gap], "data_offsets": [pos, pos + gap]}
            layout.append((pad, None))
            pos += gap
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + nbytes]}
        layout.append((name, t))
        pos += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((_ALIGN - 8 - len(text)) % _ALIGN)  # the data starts at a multiple of 64 bytes
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for chunk in (len(text).to_bytes(8, "little"), text):
            fh.write(chunk)
            digest.update(chunk)
        for name, t in layout:
            if t is None:
                data = bytes(header[name]["data_offsets"][1] - header[name]["data_offsets"][0])
            else:
                data = memoryview(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
            fh.write(data)
            digest.update(data)
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def _read(target: Path, key: dict[str, Any], device: torch.device | str):
    try:
        entry = json.loads((target / ENTRY_FILE).read_text())
        files = entry["files"]
        if entry["key"] != key:
            raise DamagedEntry(f"{ENTRY_FILE} is for another model ({entry['key']})")
        for name, info in files.items():
            size = (target / name).stat().st_size
            if size != info["size"]:
                raise DamagedEntry(f"{name} has {size} bytes, {info['size']} were written")
        weights = target / WEIGHTS_FILE
        if cached_sha256(weights, cache_dir()) != files[WEIGHTS_FILE]["sha256"]:
            raise DamagedEntry(f"{WEIGHTS_FILE} does not have the SHA-256 it was written with")
        model = _build_model(target, entry["class"], getattr(torch, key["dtype"]))
        frozen = set(entry.get("frozen", []))
        for name, param in model.named_parameters():
            param.requires_grad_(name not in frozen)
        model.train(bool(entry.get("training", False)))
        tokenizer = load_tokenizer(target)
    except DamagedEntry:
        raise
    except Exception as exc:  # unreadable JSON, a missing file, a tensor that does not fit the model
        raise DamagedEntry(f"{type(exc).__name__}: {exc}") from exc
    return tokenizer, model.to(device)


def _build_model(target: Path, class_name: str, dtype: torch.dtype) -> torch.nn.Module:
    """The backbone built on the meta device, then given the memory-mapped tensors of the entry."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(target)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa")
    finally:
        hf_logging.set_verbosity(level)
    if type(model).__name__ != class_name:
        raise DamagedEntry(f"the config makes a {type(model).__name__}, the weights are a {class_name}")
    offsets = _offsets(target / WEIGHTS_FILE)
    with safe_open(str(target / WEIGHTS_FILE), framework="pt") as f:
        names = [n for n in f.keys() if not n.startswith(_PAD)]
        loaded = {n: _aligned(f.get_tensor(n), offsets[n] % _ALIGN) for n in names}
    params = {n: t for n, t in loaded.items() if not n.startswith(_BUFFER)}
    buffers = {n.removeprefix(_BUFFER): t for n, t in loaded.items() if n.startswith(_BUFFER)}
    model.load_state_dict(params, strict=True, assign=True)
    for name, tensor in buffers.items():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        if leaf not in module._buffers:
            raise DamagedEntry(f"the model has no buffer {name}")
        module._buffers[leaf] = tensor
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise DamagedEntry(f"{len(left)} tensors were not in the cache, e.g. {left[0]}")
    return model



def _offsets(path: Path) -> dict[str, int]:
    """Each tensor's byte offset in a safetensors file's data section (read from its header)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return {n: int(v["data_offsets"][0]) for n, v in header.items() if n != "__metadata__"}


def _aligned(tensor: torch.Tensor, want: int) -> torch.Tensor:
    """``tensor`` itself when its data lies at ``want`` modulo 64 bytes (a memory map of a file ``_save``
    wrote does), else a copy placed so (should a safetensors version copy instead of mapping)."""
    if tensor.data_ptr() % _ALIGN == want:
        return tensor
    nbytes = tensor.numel() * tensor.element_size()
    buf = torch.empty(nbytes + _ALIGN, dtype=torch.uint8)
    start = (want - buf.data_ptr()) % _ALIGN
    out = buf[start:start + nbytes].view(tensor.dtype).view(tensor.shape)
    out.copy_(tensor)
    return out
