"""e5rag: E5-Mistral-style LLM embeddings for retrieval and RAG — index once, ask many ways.

One import package over the repository's folders (``pyproject.toml`` maps them):
``e5rag.retriever`` (encoder, tasks, search, evaluation, LangChain), ``e5rag.indexers`` (FAISS,
Milvus), ``e5rag.training`` (LoRA contrastive fine-tuning), ``e5rag.synth`` (synthetic data) and
``e5rag.cli`` (the ``e5rag`` command, the only part that reaches all of them).

    from e5rag import Encoder, SearchIndex
    from e5rag.langchain import E5Retriever
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("e5rag")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"

# Every public name is resolved on first use: importing a low-level module (``e5rag.indexers``)
# never runs the retriever, and torch is imported only when the encoder or the index is used.
_PUBLIC = {
    "Encoder": "e5rag.retriever.encoder", "SearchIndex": "e5rag.retriever.search",
    "E5RagError": "e5rag.errors", "IndexMismatchError": "e5rag.retriever.errors",
    "InputError": "e5rag.retriever.errors", "ModelLoadError": "e5rag.retriever.errors",
    "ModelFingerprint": "e5rag.retriever.fingerprint", "Task": "e5rag.retriever.tasks",
    "list_tasks": "e5rag.retriever.tasks", "resolve_task": "e5rag.retriever.tasks",
    "format_document": "e5rag.retriever.instructions", "format_query": "e5rag.retriever.instructions",
}
__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'e5rag' has no attribute {name!r}")
