"""The root of every error e5rag raises on purpose; standard library only, so every layer can import it.

``e5rag.indexers.StoreError`` and the retriever's ``InputError``, ``ModelLoadError`` ... all
derive from ``E5RagError``: ``except E5RagError`` catches any of them (the CLI prints one line).
"""

from __future__ import annotations


class E5RagError(Exception):
    """Base class of every error e5rag raises on purpose (the CLI prints these as one line)."""
