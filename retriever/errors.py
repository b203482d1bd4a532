"""Domain exceptions. Every message says what is wrong and what to do about it."""

from __future__ import annotations

from e5rag.errors import E5RagError

__all__ = ["E5RagError", "IndexMismatchError", "InputError", "MissingExtraError", "ModelLoadError"]


class InputError(E5RagError, ValueError):
    """Bad user input: empty text, malformed JSONL, wrong shape, unknown task, missing file."""


class ModelLoadError(E5RagError):
    """A model, GGUF file or adapter could not be found or loaded."""


class IndexMismatchError(E5RagError):
    """An index was built with another model (or dimension) than the one in use."""


class MissingExtraError(E5RagError, ImportError):
    """An optional dependency is not installed."""
