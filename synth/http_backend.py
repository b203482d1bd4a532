"""An async client for OpenAI-compatible ``/chat/completions`` endpoints, with retries.

Retries cover 429, 5xx, timeouts and connection errors: exponential backoff with full jitter
(AWS architecture blog, "Exponential Backoff And Jitter"), and a server's ``Retry-After`` is
honoured when present. 401/403/404 stop the run (wrong key, model or URL); other 4xx drop the
request. The API key is read from the environment and only ever placed in the request header;
every message that carries the URL or a server's reply goes through ``e5rag.redact`` first, so
neither the key nor a ``user:password@`` in ``--base-url`` is ever printed.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from e5rag.redact import redact, redact_url
from e5rag.retriever._optional import require

from .backend import ChatRequest, Completion, RequestFailed, SynthError

if TYPE_CHECKING:
    from .config import HttpBackendConfig

_FATAL = {401: "the endpoint rejected the API key", 403: "the API key may not use this model",
          404: "no such model or URL"}
_MAX_RETRY_AFTER_S = 600.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


class OpenAIChatBackend:
    """``complete`` posts one chat completion; concurrency is bounded by the caller's workers and
    by the connection pool size."""

    def __init__(self, config: HttpBackendConfig, concurrency: int = 8) -> None:
        httpx = require("httpx", "synth", "the HTTP synth backend")
        self.config, self.name = config, config.model
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._shown_url = redact_url(self._url)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self._secrets = (key, urlsplit(self._url).password)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(config.timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
        self._httpx = httpx
        self._rng = random.Random()  # jitter only; need not be reproducible

    def _payload(self, request: ChatRequest) -> dict:
        body = {"model": self.config.model, "messages": request.messages,
                "temperature": request.temperature, "top_p": request.top_p,
                "max_tokens": request.max_tokens}
        if self.config.send_seed:
            body["seed"] = request.seed
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        httpx, cfg, retries = self._httpx, self.config, 0
        for attempt in range(cfg.max_retries + 1):
            wait = backoff_seconds(attempt, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
            try:
                resp = await self._client.post(self._url, json=self._payload(request))
            except httpx.TimeoutException:
                reason = "timeout"
            except httpx.TransportError as exc:
                reason = f"connection_error ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    return _completion(resp, retries, self._secrets)
                if resp.status_code in _FATAL:
                    raise SynthError(f"{self._shown_url} answered HTTP {resp.status_code}: "
                                     f"{_FATAL[resp.status_code]} (check --base-url, --model and the {cfg.api_key_env or 'API key'} "
                                     f"variable)")
                if resp.status_code != 429 and resp.status_code < 500:
                    raise RequestFailed(f"http_{resp.status_code}", retries,
                                        redact(resp.text, self._secrets)[:200].replace("\n", " "))
                reason = f"http_{resp.status_code}"
                hinted = retry_after_seconds(resp.headers.get("retry-after"))
                wait = hinted if hinted is not None else wait
            if attempt == cfg.max_retries:
                break
            retries += 1
            await asyncio.sleep(wait)
        raise RequestFailed("request_failed", retries, reason)

    async def aclose(self) -> None:
        await self._client.aclose()


def _completion(resp, retries: int, secrets: tuple[str | None, ...] = ()) -> Completion:
    try:
        body = resp.json()
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise RequestFailed("bad_response", retries, redact(repr(exc), secrets)[:200]) from None
    usage = body.get("usage") or {}
    return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                      retries, choice.get("finish_reason"))
