"""Frozen, validated run configuration: what to generate, where, and with which backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from e5rag.redact import redact_url
from e5rag.retriever.errors import InputError

from .kinds import ALL_KINDS, KIND_SPECS, Kind
from .languages import LANGUAGE_MODES, language_weights


def _positive(name: str, value: float | int | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class HttpBackendConfig:
    """An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama ...).

    ``base_url`` is the API root, e.g. ``http://localhost:8000/v1``; requests go to
    ``{base_url}/chat/completions``. The key is read from the environment variable ``api_key_env``
    at run time and is never stored or logged; an unset variable means no Authorization header.
    """

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    send_seed: bool = True
    kind: Literal["http"] = "http"

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise InputError(f"base_url must start with http:// or https://, got {redact_url(self.base_url)!r}")
        if not self.model:
            raise InputError("model: name the model the endpoint serves (e.g. --model gpt-4o-mini)")
        _positive("timeout_s", self.timeout_s)
        _positive("max_retries", self.max_retries, allow_zero=True)
        _positive("backoff_base_s", self.backoff_base_s, allow_zero=True)
        _positive("backoff_max_s", self.backoff_max_s, allow_zero=True)


@dataclass(frozen=True)
class LocalBackendConfig:
    """A local transformers causal LM (``None`` = the embedded SmolLM2-135M-Instruct), batched.

    ``prefill`` starts the assistant turn with the opening of the expected JSON, which raises the
    valid rate of small models a lot.
    """

    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    prefill: bool = True
    kind: Literal["local"] = "local"


@dataclass(frozen=True)
class SynthConfig:
    """One synthetic-data run. ``languages`` is "weighted", "uniform" or a tuple of language codes.

    ``max_tokens`` None means 2048 for HTTP and 512 for local. ``max_requests`` caps the total
    number of example requests (counted across resumed runs); None means ``4 * num_examples + 64``.
    ``brainstorm_rounds`` is per asymmetric kind; None means one round per 60 expected examples.
    Prices are per 1M tokens.
    """

    out: Path
    num_examples: int
    backend: HttpBackendConfig | LocalBackendConfig
    kinds: tuple[Kind, ...] = ALL_KINDS
    languages: str | tuple[str, ...] = "weighted"
    seed: int = 0
    concurrency: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    brainstorm_rounds: int | None = None
    max_requests: int | None = None
    max_field_chars: int = 8000
    price_prompt: float | None = None
    price_completion: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.num_examples < 1:
            raise InputError(f"num_examples must be >= 1, got {self.num_examples}")
        if not self.kinds or any(k not in KIND_SPECS for k in self.kinds):
            raise InputError(f"kinds must be a non-empty tuple of {', '.join(ALL_KINDS)}; got {self.kinds!r}")
        if len(set(self.kinds)) != len(self.kinds):
            raise InputError(f"kinds has duplicates: {self.kinds!r}")
        if isinstance(self.languages, str) and self.languages not in LANGUAGE_MODES:
            raise InputError(f"languages must be one of {', '.join(LANGUAGE_MODES)} or a tuple of codes, "
                             f"got {self.languages!r}")
        language_weights(self.languages)  # raises InputError on unknown languages
        if self.concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {self.concurrency}")
        if not 0 <= self.temperature <= 2:
            raise InputError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("max_tokens", "brainstorm_rounds", "max_requests", "max_field_chars"):
            _positive(name, getattr(self, name))
        _positive("price_prompt", self.price_prompt, allow_zero=True)
        _positive("price_completion", self.price_completion, allow_zero=True)

    @property
    def tasks_path(self) -> Path:
        """Where brainstormed task pools are kept: ``<out>.tasks.jsonl``."""
        return self.out.with_name(self.out.name + ".tasks.jsonl")

    @property
    def request_cap(self) -> int:
        return self.max_requests if self.max_requests is not None else 4 * self.num_examples + 64

    @property
    def example_max_tokens(self) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        return 512 if self.backend.kind == "local" else 2048

    def rounds_per_kind(self) -> int:
        if self.brainstorm_rounds is not None:
            return self.brainstorm_rounds
        return max(1, -(-self.num_examples // (60 * len(self.kinds))))
