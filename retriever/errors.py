"""Domain exceptions. Every message says what is wrong and what to do about it."""

from __future__ import annotations


class E5RagError(Exception):
    """Base class of every error e5rag raises on purpose (the CLI prints these as one line)."""


class InputError(E5RagError, ValueError):
    """Bad user input: empty text, malformed JSONL, wrong shape, unknown task, missing file."""


class ModelLoadError(E5RagError):
    """A model, GGUF file or adapter could not be found or loaded."""


class IndexMismatchError(E5RagError):
    """An index was built with another model (or dimension) than the one in use."""


class IndexError_(E5RagError):
    """An index is missing, damaged, locked by another process, or cannot do what was asked."""


class MissingExtraError(E5RagError, ImportError):
    """An optional dependency is not installed."""
