"""``E5Embeddings``: LangChain's ``Embeddings`` over an e5rag ``Encoder``.

Documents are embedded without instruction; queries as ``Instruct: {task}\\nQuery: {query}``
with the configured task. ``with_task`` gives the same model with another task, at no cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from ..errors import InputError
from ..tasks import resolve_task

if TYPE_CHECKING:
    from ..encoder import Encoder


class E5Embeddings(Embeddings):
    """LangChain embeddings for an E5 encoder. Vectors are L2-normalised lists of Python floats.

    ``encoder`` None loads the embedded default model (``E5Embeddings()``, like
    ``HuggingFaceEmbeddings()``); ``from_pretrained`` loads any other. ``task`` is a registered task
    name (``e5rag tasks``) or a one-sentence task definition; None is the default web-search task.
    """

    def __init__(self, encoder: Encoder | None = None, task: str | None = None, *, batch_size: int = 16,
                 model_source: str | None = None, adapter: str | None = None) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        resolve_task(task)  # a bad task fails before a model is loaded
        if encoder is None:
            from ..encoder import Encoder

            encoder = Encoder.from_pretrained(model_source, adapter=adapter)
        self.encoder = encoder
        self.task = task
        self.instruction = resolve_task(task)  # validates now, not at the first query
        self.batch_size = int(batch_size)
        # Where the model came from, recorded in indexes this object creates (see SearchIndex.open).
        self.model_source = model_source
        self.adapter = adapter

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, adapter: str | Path | None = None,
                        task: str | None = None, *, batch_size: int = 16, **encoder_kwargs: Any) -> E5Embeddings:
        """Load the encoder (None: the embedded default model); ``encoder_kwargs`` go to
        ``Encoder.from_pretrained`` (device, dtype, max_length, merge_adapter)."""
        from ..encoder import Encoder

        encoder = Encoder.from_pretrained(model, adapter=adapter, **encoder_kwargs)
        return cls(encoder, task, batch_size=batch_size, model_source=None if model is None else str(model),
                   adapter=None if adapter is None else str(adapter))

    def with_task(self, task: str | None) -> E5Embeddings:
        """The same embeddings (sharing the loaded encoder) with another query task."""
        return type(self)(self.encoder, task, batch_size=self.batch_size, model_source=self.model_source,
                          adapter=self.adapter)

    # ------------------------------------------------------------------ arrays
    def document_vectors(self, texts: list[str]) -> np.ndarray:
        """Documents, no instruction. -> (n, dim) float32, L2-normalised"""
        return self.encoder.encode_document(list(texts), batch_size=self.batch_size)

    def query_vectors(self, texts: list[str], task: str | None = None) -> np.ndarray:
        """Queries with ``task`` (None: this object's task). -> (n, dim) float32, L2-normalised"""
        instruction = self.instruction if task is None else resolve_task(task)
        return self.encoder.encode_query(list(texts), task=instruction, batch_size=self.batch_size)

    # ------------------------------------------------------------------ LangChain API
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (no instruction). -> n lists of dim floats"""
        return self.document_vectors(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the configured task. -> dim floats"""
        if not isinstance(text, str):
            raise InputError(f"embed_query takes one string, got {type(text).__name__}")
        return self.query_vectors([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await run_in_executor(None, self.embed_query, text)

    def __repr__(self) -> str:
        return (f"E5Embeddings(model={self.encoder.fingerprint.describe()}, task={self.task!r}, "
                f"batch_size={self.batch_size})")
