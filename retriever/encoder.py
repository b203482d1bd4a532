"""The E5 decoder embedder: EOS appended, last-token pooling, L2-normalised fp32 vectors.

``Encoder`` follows the sentence-transformers shape users know: ``encode_document`` and
``encode_query(task=...)`` return float32 arrays of shape (n, dim) for a list of texts and (dim,)
for one string; ``similarity(a, b)`` is their cosine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import weight_cache
from .compiled import CompiledForward
from .device import pick_device, pick_dtype
from .eos_forward import eos_hidden, supports_eos_forward
from .errors import InputError, ModelLoadError
from .fingerprint import ModelFingerprint
from .loading import (
    adapter_identity,
    load_backbone,
    load_tokenizer,
    model_identity,
    quiet_peft_wrap,
    resolve_adapter,
    resolve_source,
    weights_dir,
)
from .pooling import l2_normalize, last_token_pool, position_ids_from_mask
from .progress import progress
from .quantize import check_quantize, quantize_int8
from .text_api import TextEncoderAPI, check_texts
from .tokenization import PaddingSide, pad_batch, pad_id_of, tokenize_with_eos

log = logging.getLogger(__name__)

_PROGRESS_MIN_TEXTS = 256


class Encoder(TextEncoderAPI):
    """An embedding model: a causal LM backbone with last-token pooling on an appended EOS."""

    def __init__(self, model: torch.nn.Module, tokenizer, *, base_identity: str, adapter_identity: str | None = None,
                 max_length: int = 512, padding_side: PaddingSide | None = None) -> None:
        if max_length < 2:
            raise InputError(f"max_length must be at least 2, got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        # Right padding by default whatever the tokenizer says (its side matters for generation, not
        # here): right-padded batches take the EOS-only forward (see ``eos_forward``).
        self.padding_side: PaddingSide = padding_side or "right"
        self.pad_id = pad_id_of(tokenizer)
        self._base_identity = base_identity
        self._adapter_identity = adapter_identity
        # Where the weights came from, so an index can load the same model again (set by from_pretrained).
        self.source: str | None = None
        self.adapter_path: str | None = None
        self._compiled: CompiledForward | None = None  # the model's forward
        self._compiled_eos: CompiledForward | None = None  # eos_hidden over the model
        self.quantization: str | None = None  # "int8" once from_pretrained(quantize="int8") quantised the model

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, adapter: str | Path | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        max_length: int = 512, merge_adapter: bool = True, compile: bool = False,
                        quantize: str | None = None) -> Encoder:
        """Load a model directory, GGUF file or cached hub id; None is the embedded default.

        ``adapter`` is a PEFT LoRA directory (or an ``e5rag train --output`` folder holding one in
        ``adapter/``) applied on top (merged for inference by default,
        which costs nothing per token). The embedded default brings its shipped adapter, if any.
        ``compile=True`` runs inference through ``torch.compile`` (see ``compile()``).
        ``quantize="int8"``: int8 weights and per-token int8 activations on CPU, after the adapter is
        merged (``retriever/quantize.py``; needs ``e5rag[int8]``); refused on CUDA.
        """
        source = resolve_source(None if name_or_path is None else str(name_or_path))
        adapter_dir = resolve_adapter(adapter) if adapter is not None else source.adapter
        dev = pick_device(device)
        quantization = check_quantize(quantize, dev, None if dtype is None else pick_dtype(dtype, dev))
        if quantization is not None and not merge_adapter:
            raise InputError("quantize='int8' needs the adapter merged into the weights: drop merge_adapter=False")
        torch_dtype = pick_dtype(dtype, dev)

        def load() -> tuple[Path, object, torch.nn.Module]:
            directory = weights_dir(source)
            tokenizer = load_tokenizer(directory)
            model = load_backbone(directory, dtype=torch_dtype, device=dev)
            if adapter_dir is not None:
                model = _apply_adapter(model, adapter_dir, merge=merge_adapter)
            return directory, tokenizer, model

        base_id = model_identity(source)
        adapter_id = adapter_identity(adapter_dir) if adapter_dir is not None else None
        if source.kind == "gguf" and (adapter_dir is None or merge_adapter) and weight_cache.enabled():
            # converted and merged once, then memory-mapped (``weight_cache``)
            key = weight_cache.entry_key(base_id, adapter_id, torch_dtype, dev)
            tokenizer, model = weight_cache.load(key, load, device=dev)
        else:
            _, tokenizer, model = load()
        model.eval()
        if quantization == "int8":
            model = quantize_int8(model)
        encoder = cls(model, tokenizer, base_identity=base_id, adapter_identity=adapter_id, max_length=max_length)
        encoder.quantization = quantization
        encoder.source = None if name_or_path is None else str(name_or_path)
        encoder.adapter_path = str(adapter_dir.resolve()) if adapter is not None else None
        if compile:
            encoder.compile()
        return encoder

    def compile(self) -> Encoder:
        """Run inference through ``torch.compile`` with frozen weights (faster on CPU after a one-time
        compile of a minute or more; same vectors to float tolerance). Training is unaffected: with
        gradients on, or once ``.model`` is replaced, the eager model runs. Calling it again on the
        same model keeps the compiled graph. -> self"""
        if self._compiled is None or self._compiled.model is not self.model:
            model = self.model
            self._compiled = CompiledForward(model)
            self._compiled_eos = CompiledForward(lambda ids, lengths: eos_hidden(model, ids, lengths), model)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension (the backbone's hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def weights_dtype(self) -> str:
        """The backbone's parameter dtype as a name ("float32", "bfloat16"), as index manifests record it."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def fingerprint(self) -> ModelFingerprint:
        """Identity of the vector space this encoder produces (stored in index manifests)."""
        return ModelFingerprint(base=self._base_identity, adapter=self._adapter_identity, dim=self.dim,
                                max_length=self.max_length, quantization=self.quantization)

    # ------------------------------------------------------------------ core
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids ending in EOS (see ``tokenize_with_eos``) and the number truncated."""
        return tokenize_with_eos(self.tokenizer, texts, self.max_length)

    def collate(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad id lists on this encoder's padding side. -> input_ids, attention_mask (batch, seq)"""
        return pad_batch(seqs, self.pad_id, self.padding_side)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised embeddings, differentiable. (batch, seq) int64 x2 -> (batch, dim) float32"""
        return l2_normalize(self.eos_states(input_ids.to(self.device), attention_mask.to(self.device)))

    def eos_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Un-normalised final hidden state at each row's last real token. -> (batch, dim), model dtype

        Inference (eval mode, no gradients) on a right-padded batch of a supported architecture takes
        ``eos_hidden``, which skips the padding mask and computes the last layer at the EOS only;
        everything else (training, left padding) runs the model's own forward and pools.
        """
        compiled = self._compiled is not None and self._compiled.model is self.model
        lengths = attention_mask.sum(dim=1)
        if (not torch.is_grad_enabled() and not self.model.training
                and supports_eos_forward(self.model, input_ids.shape[1]) and _right_padded(attention_mask, lengths)):
            if compiled:
                return self._compiled_eos(input_ids, lengths)
            return eos_hidden(self.model, input_ids, lengths)
        forward = self._compiled if compiled else self.model  # the compiled one is eager when gradients are on
        out = forward(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=position_ids_from_mask(attention_mask), use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return last_token_pool(hidden, attention_mask)

    def encode(self, texts: Sequence[str], batch_size: int = 16, show_progress_bar: bool | None = None, *,
               normalize_embeddings: bool = True) -> np.ndarray:
        """Embed texts exactly as given. -> (n, dim) float32, L2-normalised, in input order.

        Texts are sorted by token length into batches (less padding), then put back in order.
        ``normalize_embeddings=False`` returns the raw EOS hidden states (in float32).
        """
        texts = check_texts(texts, "text")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        seqs, truncated = self.tokenize(texts)
        if truncated:
            log.warning("%d of %d texts were longer than max_length=%d tokens and were truncated",
                        truncated, len(texts), self.max_length)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = np.empty((len(seqs), self.dim), dtype=np.float32)
        # A bar on a terminal, periodic lines in logs (see ``progress``); by default only for large inputs.
        show = len(texts) >= _PROGRESS_MIN_TEXTS if show_progress_bar is None else show_progress_bar
        with torch.inference_mode(), progress(len(seqs), "encode", "texts", enabled=show) as bar:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                ids, mask = self.collate([seqs[i] for i in idx])
                if normalize_embeddings:
                    out[idx] = self.embed_tokens(ids, mask).cpu().numpy()
                else:
                    out[idx] = self.eos_states(ids.to(self.device), mask.to(self.device)).float().cpu().numpy()
                bar.update(len(idx))
        return out


def _right_padded(attention_mask: torch.Tensor, lengths: torch.Tensor) -> bool:
    """Every row is ``lengths[row]`` ones followed by zeros."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool(torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]))


def _apply_adapter(model: torch.nn.Module, adapter_dir: Path, *, merge: bool) -> torch.nn.Module:
    from ._optional import require

    peft = require("peft", "peft", "a LoRA adapter")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter_dir} is not a PEFT adapter directory (no adapter_config.json)")
    try:
        with quiet_peft_wrap():
            wrapped = peft.PeftModel.from_pretrained(model, str(adapter_dir))
    except Exception as exc:
        raise ModelLoadError(f"could not apply adapter {adapter_dir} to this model: {exc}") from exc
    return wrapped.merge_and_unload() if merge else wrapped
