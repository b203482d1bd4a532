"""LangChain integration: ``E5Embeddings``, ``E5Retriever`` and ``E5VectorStore``.

What no other LangChain integration offers: one document index, and the task instruction chosen
per query (``retriever.invoke(q, task="scifact")``, ``store.similarity_search(q, task=...)``),
because E5 documents are embedded without instruction (arXiv 2401.00368, section 3).

Needs ``pip install 'e5rag[langchain]'``; nothing else in e5rag imports this package.
"""

from __future__ import annotations

from .._optional import require

require("langchain_core", "langchain", "the LangChain integration (e5rag.langchain)")

from .embeddings import E5Embeddings  # noqa: E402
from .retriever import E5Retriever  # noqa: E402
from .vectorstore import E5VectorStore  # noqa: E402

__all__ = ["E5Embeddings", "E5Retriever", "E5VectorStore"]
