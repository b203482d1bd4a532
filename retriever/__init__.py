"""e5rag retriever: the E5 decoder embedder, task instructions, search and integrations."""

from __future__ import annotations

from .errors import E5RagError, IndexMismatchError, InputError, ModelLoadError
from .fingerprint import ModelFingerprint
from .instructions import format_document, format_query
from .tasks import Task, list_tasks, resolve_task

__all__ = [
    "E5RagError", "Encoder", "IndexMismatchError", "InputError", "ModelFingerprint", "ModelLoadError",
    "Task", "format_document", "format_query", "list_tasks", "resolve_task",
]


def __getattr__(name: str):
    # torch is imported only when the encoder is used, so `e5rag --help` and the task list stay fast.
    if name == "Encoder":
        from .encoder import Encoder

        return Encoder
    raise AttributeError(name)
