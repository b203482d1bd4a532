"""Fold a LoRA adapter into the base weights (in fp32) and save a plain model directory, after
checking that the merged model embeds like the base + adapter it came from.

``W' = W + (alpha / r) * B @ A`` for every adapted projection (PEFT's ``merge_and_unload``). The
result loads without PEFT (``Encoder.from_pretrained(OUTDIR)``, ``e5rag index --model OUTDIR``) and
costs nothing extra per token.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from e5rag import fsutil
from e5rag.retriever._optional import require
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.errors import E5RagError, InputError
from e5rag.retriever.loading import (
    load_backbone,
    load_tokenizer,
    quiet_peft_wrap,
    resolve_adapter,
    resolve_source,
    weights_dir,
)

from .model import base_model_arg

PROBE_DOCUMENTS = (
    "The mitochondrion is the powerhouse of the cell, producing most of its chemical energy.",
    "Paris is the capital of France and its most populous city.",
    "Interest rates rose by a quarter point, and stock markets fell sharply.",
    "To reset a password, open the settings page and choose 'Security'.",
)
PROBE_QUERIES = ("what produces energy in a cell", "capital of France", "why did stocks fall")


class MergeMismatchError(E5RagError):
    """The merged model's embeddings differ from base + adapter by more than the tolerance."""


@dataclass(frozen=True)
class MergeReport:
    out: Path
    max_abs_diff: float
    tolerance: float
    texts: int


def merged_backbone(model: str | None, adapter: str | Path) -> tuple[torch.nn.Module, object]:
    """(backbone with the adapter folded in, fp32 on CPU; its tokenizer)."""
    peft = require("peft", "train", "merging a LoRA adapter")
    adapter = resolve_adapter(adapter)
    directory = weights_dir(resolve_source(base_model_arg(model)))
    backbone = load_backbone(directory, dtype=torch.float32, device=torch.device("cpu"))
    with quiet_peft_wrap():
        merged = peft.PeftModel.from_pretrained(backbone, str(adapter)).merge_and_unload()
    return merged.eval(), load_tokenizer(directory)


def embedding_gap(a: Encoder, b: Encoder) -> tuple[float, int]:
    """Max |difference| of two encoders' embeddings of the probe documents and instructed queries."""
    gaps = [np.abs(a.encode_document(list(PROBE_DOCUMENTS)) - b.encode_document(list(PROBE_DOCUMENTS))).max(),
            np.abs(a.encode_query(list(PROBE_QUERIES)) - b.encode_query(list(PROBE_QUERIES))).max()]
    return float(max(gaps)), len(PROBE_DOCUMENTS) + len(PROBE_QUERIES)


def merge_adapter(model: str | None, adapter: str | Path, out: str | Path, tolerance: float = 1e-4,
                  max_length: int = 512) -> MergeReport:
    """Save base + adapter merged to ``out`` (a new folder), or raise ``MergeMismatchError``.

    The folder is written under a temporary name and renamed only after the parity check passes.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"out: {out} exists and is not empty; choose a new folder")
    if tolerance <= 0:
        raise InputError(f"tolerance must be > 0, got {tolerance}")
    merged, tokenizer = merged_backbone(model, adapter)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        del merged
        reference = Encoder.from_pretrained(base_model_arg(model), adapter=adapter, merge_adapter=False,
                                            device="cpu", dtype="float32", max_length=max_length)
        candidate = Encoder.from_pretrained(tmp, device="cpu", dtype="float32", max_length=max_length)
        gap, texts = embedding_gap(reference, candidate)
        if not gap <= tolerance:
            raise MergeMismatchError(f"merged and unmerged embeddings differ by up to {gap:.3g} (> tolerance "
                                     f"{tolerance:g}); nothing was written to {out}")
        fsutil.replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return MergeReport(out, gap, tolerance, texts)
