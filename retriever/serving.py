"""A long-lived encoder behind an OpenAI-compatible HTTP API (``e5rag serve``).

Loading a model costs seconds (importing torch and transformers dominates), so clients that embed a
few queries at a time (``e5rag search --server``, ``RemoteEncoder``) talk to one process that keeps
the model loaded. The API is the one text-embeddings-inference, vLLM and Ollama serve:

- ``POST /v1/embeddings`` ``{"input": str | [str], "encoding_format": "float" | "base64"}`` ->
  ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}], "model", "usage"}``;
  texts are embedded exactly as given (EOS appended, last-token pooling, L2-normalised): the client
  adds ``Instruct: {task}\\nQuery: `` to queries, as with any E5 model behind such a server.
- ``GET /v1/models``: the model, with e5rag's fingerprint under ``"e5rag"`` so a client can refuse an
  index built with another model.
- ``GET /health``.

Errors are OpenAI-shaped: ``{"error": {"message", "type", "code"}}`` with 400/401/404/413/500.
One forward runs at a time (a lock): on a CPU the cores are the limit, not the connections.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from .errors import InputError
from .text_api import check_texts

log = logging.getLogger(__name__)

MAX_INPUTS = 2048  # texts per request, as OpenAI's embeddings endpoint
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ServedModel:
    """What ``/v1/models`` reports: the id clients name, the fingerprint and where it was loaded from."""

    id: str
    fingerprint: dict[str, Any]
    dtype: str
    source: str | None
    adapter_path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "owned_by": "e5rag",
                "e5rag": {"fingerprint": self.fingerprint, "dtype": self.dtype, "source": self.source,
                          "adapter_path": self.adapter_path}}


def served_model(encoder, name: str | None = None, source: str | None = None,
                 adapter_path: str | None = None) -> ServedModel:
    """The description of ``encoder`` a server hands out (``name`` defaults to its source or "e5rag-default")."""
    source = source if source is not None else encoder.source
    return ServedModel(id=name or source or "e5rag-default", fingerprint=encoder.fingerprint.to_dict(),
                       dtype=encoder.weights_dtype, source=source,
                       adapter_path=adapter_path if adapter_path is not None else encoder.adapter_path)


class RequestError(Exception):
    """A client error: HTTP ``status`` with an OpenAI-style body."""

    def __init__(self, status: int, message: str, code: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code = status, code


def parse_embeddings_request(body: bytes, max_inputs: int = MAX_INPUTS) -> tuple[list[str], str]:
    """The texts and encoding format of a ``/v1/embeddings`` body; ``RequestError`` (400/413), or for a
    text that is empty or not a string ``InputError``, naming the problem otherwise."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the request body is not JSON ({exc}): send "
                                '{"input": ["text", ...]}') from None
    if not isinstance(payload, dict) or "input" not in payload:
        raise RequestError(400, 'the request needs an "input": a string or a list of strings')
    texts = payload["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise RequestError(400, '"input" must be a string or a non-empty list of strings '
                                "(token-id lists are not accepted: send text)")
    if len(texts) > max_inputs:
        raise RequestError(413, f'"input" has {len(texts)} texts; at most {max_inputs} a request: '
                                "send them in several requests", code="too_many_inputs")
    texts = check_texts(texts, "input")  # the encoder's own rule; the handler answers its InputError with 400
    fmt = payload.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise RequestError(400, f'"encoding_format" must be "float" or "base64", got {fmt!r}')
    return texts, fmt


def encode_vector(vector: np.ndarray, fmt: str) -> list[float] | str:
    """One embedding as OpenAI returns it: a float list, or base64 of little-endian float32."""
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


class EmbeddingServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound to one encoder. ``idle_timeout`` (s): stop after that long with
    no request (None: run until ``shutdown``). ``api_key``: require ``Authorization: Bearer KEY``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], encoder, model: ServedModel, *, batch_size: int = 16,
                 api_key: str | None = None, idle_timeout: float | None = None) -> None:
        super().__init__(address, _Handler)
        self.encoder, self.model, self.batch_size = encoder, model, batch_size
        self.api_key = api_key or None
        self.idle_timeout = idle_timeout
        self.lock = threading.Lock()
        self.last_request = time.monotonic()
        self.served = 0  # texts embedded

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def embed(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            out = self.encoder.encode(texts, batch_size=self.batch_size, show_progress_bar=False)
            self.served += len(texts)
            return out

    def service_actions(self) -> None:  # called by serve_forever about every poll interval
        if self.idle_timeout is not None and time.monotonic() - self.last_request > self.idle_timeout:
            log.info("no request for %.0f s: stopping", self.idle_timeout)
            threading.Thread(target=self.shutdown, daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    server: EmbeddingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, code: str) -> None:
        kind = "authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": code}})

    def _authorized(self) -> bool:
        if self.server.api_key is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.server.api_key}".encode())

    def _route(self, method: str) -> None:
        self.server.last_request = time.monotonic()
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if not self._authorized():
                raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' "
                                        "(the key `e5rag serve --api-key` was given)", code="invalid_api_key")
            if method == "GET" and path == "/health":
                self._send(200, {"status": "ok"})
            elif method == "GET" and path == "/v1/models":
                self._send(200, {"object": "list", "data": [self.server.model.to_dict()]})
            elif method == "POST" and path == "/v1/embeddings":
                self._embeddings()
            else:
                raise RequestError(404, f"no {method} {path}: e5rag serves POST /v1/embeddings, GET /v1/models "
                                        "and GET /health", code="not_found")
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.code)
        except InputError as exc:
            self._error(400, str(exc), "invalid_request_error")
        except Exception as exc:  # the server keeps serving; the client learns what failed
            log.exception("request failed")
            self._error(500, f"the server failed to embed the input: {exc}", "server_error")
        finally:
            self.server.last_request = time.monotonic()

    def _embeddings(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(411, "send a Content-Length header with the JSON body", code="length_required") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            raise RequestError(413, f"the request body is {length} bytes; at most {MAX_BODY_BYTES}: send the "
                                    "texts in several requests", code="request_too_large")
        texts, fmt = parse_embeddings_request(self.rfile.read(length))
        vectors = self.server.embed(texts)
        tokens = sum(len(s) for s in self.server.encoder.tokenize(texts)[0])
        self._send(200, {"object": "list", "model": self.server.model.id,
                         "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, fmt)}
                                  for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")
