"""What the pipeline needs from a chat model: one async ``complete`` call per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from e5rag.retriever.errors import E5RagError

if TYPE_CHECKING:
    from .config import SynthConfig


class SynthError(E5RagError):
    """The run cannot go on: the endpoint refuses us, or the model never produces usable output."""


class RequestFailed(Exception):
    """One request gave no completion after all retries; ``reason`` is counted as a drop."""

    def __init__(self, reason: str, retries: int = 0, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.retries, self.detail = reason, retries, detail


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. ``prefill`` is the opening of the assistant reply, used only by
    backends that can continue an assistant turn (the local one); their text then includes it."""

    messages: list[dict[str, str]]
    seed: int
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    prefill: str = ""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    finish_reason: str | None = None


class ChatBackend(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion:
        """The model's reply, or ``RequestFailed`` (counted, run continues) / ``SynthError`` (fatal)."""
        ...

    async def aclose(self) -> None: ...


def make_backend(config: SynthConfig) -> ChatBackend:
    """The backend ``config.backend`` describes (heavy imports happen here, not at module import)."""
    if config.backend.kind == "http":
        from .http_backend import OpenAIChatBackend

        return OpenAIChatBackend(config.backend, concurrency=config.concurrency)
    from .local_backend import LocalChatBackend

    return LocalChatBackend.load(config.backend, max_batch=config.concurrency)
