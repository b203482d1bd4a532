"""The text-level encode API shared by the in-process ``Encoder`` and the HTTP ``RemoteEncoder``.

Subclasses provide ``encode(texts) -> (n, dim)``; this class turns documents and queries into the
texts E5 embeds (a title prefixed; ``Instruct: {task}\\nQuery: {query}``) and shapes the result as
sentence-transformers does. No torch here: a served model's client never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .instructions import format_document, format_queries
from .tasks import resolve_task

if TYPE_CHECKING:
    import torch


def check_texts(texts: Sequence[str], what: str) -> list[str]:
    """A list of non-empty strings, or an ``InputError`` naming the first bad one."""
    if isinstance(texts, str):
        raise InputError(f"{what} must be a list of strings, not one string: wrap it as [text]")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InputError(f"{what} {i} is {type(t).__name__}, not a string")
        if not t.strip():
            raise InputError(f"{what} {i} is empty: remove it or give it some text")
    return out


def as_requested(out: np.ndarray, single: bool, convert_to_tensor: bool) -> np.ndarray | torch.Tensor:
    """(n, dim) -> (dim,) for one input string; a torch tensor if asked."""
    if single:
        out = out[0]
    if convert_to_tensor:
        import torch

        return torch.from_numpy(out)
    return out


class TextEncoderAPI:
    """``encode_document`` / ``encode_query`` / ``similarity`` over a subclass's ``encode``."""

    similarity_fn_name = "cosine"

    def encode(self, texts: Sequence[str], batch_size: int = 16, show_progress_bar: bool | None = None, *,
               normalize_embeddings: bool = True) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_document(self, texts: str | Sequence[str], titles: str | Sequence[str | None] | None = None,
                        batch_size: int = 16, show_progress_bar: bool | None = None, *,
                        normalize_embeddings: bool = True, convert_to_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Embed documents with no instruction; a title is prefixed as ``f"{title} {text}"``.

        A list gives (n, dim), one string (dim,); float32 numpy, or a torch tensor with
        ``convert_to_tensor=True``. ``normalize_embeddings=False``: raw EOS states (see ``encode``).
        """
        single = isinstance(texts, str)
        if single:
            texts, titles = [texts], (None if titles is None else [titles])
        if titles is not None:
            if isinstance(texts, str):
                raise InputError("document must be a list of strings, not one string: wrap it as [text]")
            texts, titles = list(texts), list(titles)
            if len(titles) != len(texts):
                raise InputError(f"got {len(titles)} titles for {len(texts)} documents")
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise InputError(f"document {i} is {type(t).__name__}, not a string")
            texts = [format_document(t, ti) for t, ti in zip(texts, titles, strict=True)]
        texts = check_texts(texts, "document")
        out = self.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar,
                          normalize_embeddings=normalize_embeddings)
        return as_requested(out, single, convert_to_tensor)

    def encode_query(self, texts: str | Sequence[str], task: str | Sequence[str] | None = None, batch_size: int = 16,
                     show_progress_bar: bool | None = None, use_instruction: bool = True, *,
                     normalize_embeddings: bool = True, convert_to_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Embed queries as ``Instruct: {task}\\nQuery: {query}``. A list -> (n, dim), one string -> (dim,)

        ``task`` is one registered name or sentence for all queries, or one per query; None is
        the default web-search task. ``use_instruction=False`` embeds bare queries (the ablation).
        ``convert_to_tensor`` / ``normalize_embeddings`` as in ``encode_document``.
        """
        single = isinstance(texts, str)
        texts = check_texts([texts] if single else texts, "query")
        if not use_instruction:
            tasks = None
        elif task is None or isinstance(task, str):
            tasks = resolve_task(task)
        else:
            tasks = [resolve_task(t) for t in task]
        out = self.encode(format_queries(tasks, texts), batch_size=batch_size, show_progress_bar=show_progress_bar,
                          normalize_embeddings=normalize_embeddings)
        return as_requested(out, single, convert_to_tensor)

    def similarity(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every row of ``a`` with every row of ``b``, as sentence-transformers'
        ``model.similarity``. (n, dim) or (dim,), (m, dim) or (dim,) -> (n, m) float32 tensor"""
        from .similarity import cosine_similarity

        return cosine_similarity(a, b)
