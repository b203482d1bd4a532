"""``RemoteEncoder``: the ``Encoder`` API over an ``e5rag serve`` process (or any server of the
OpenAI embeddings API that runs an E5 model).

It imports neither torch nor transformers, so a command that embeds a few queries starts in a
fraction of a second; the server keeps the model loaded. Queries get their instruction here, as
in-process: ``Instruct: {task}\\nQuery: {query}``; the server embeds texts as given.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError, ModelLoadError
from .fingerprint import ModelFingerprint
from .serving import MAX_INPUTS
from .text_api import TextEncoderAPI, check_texts

SERVER_ENV = "E5RAG_SERVER"
API_KEY_ENV = "E5RAG_API_KEY"


class ServerError(ModelLoadError):
    """The server could not be reached or answered with an error."""


class RemoteEncoder(TextEncoderAPI):
    """An encoder served over HTTP. ``url``: ``http://host:port`` of ``e5rag serve`` (default: the
    ``E5RAG_SERVER`` environment variable); ``api_key``: its ``--api-key`` (default ``E5RAG_API_KEY``).

    ``dim``, ``max_length`` and ``fingerprint`` are the served model's, so an index built with another
    model is refused exactly as with an in-process ``Encoder``.
    """

    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 300.0) -> None:
        url = url or os.environ.get(SERVER_ENV)
        if not url:
            raise InputError(f"no server given: pass its URL (e.g. http://127.0.0.1:8765) or set {SERVER_ENV}")
        if not url.startswith(("http://", "https://")):
            raise InputError(f"server URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout = timeout
        models = self._request("GET", "/v1/models").get("data") or []
        info = models[0] if models else {}
        record = info.get("e5rag") if isinstance(info, dict) else None
        if not isinstance(record, dict) or "fingerprint" not in record:
            raise ServerError(f"{self.url} serves no e5rag model description (GET /v1/models has no \"e5rag\" "
                              "entry): an index can only check an `e5rag serve` server's model")
        self.model_id: str = info["id"]
        self._fingerprint = ModelFingerprint.from_dict(record["fingerprint"])
        self.weights_dtype: str = record.get("dtype") or "float32"
        self.source: str | None = record.get("source")
        self.adapter_path: str | None = record.get("adapter_path")

    # ------------------------------------------------------------------ the served model
    @property
    def fingerprint(self) -> ModelFingerprint:
        return self._fingerprint

    @property
    def dim(self) -> int:
        return self._fingerprint.dim

    @property
    def max_length(self) -> int:
        return self._fingerprint.max_length

    @property
    def quantization(self) -> str | None:
        return self._fingerprint.quantization

    def __repr__(self) -> str:
        return f"RemoteEncoder({self.url!r}, model={self.model_id!r})"

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) checked above
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise ServerError(f"the server at {self.url} answered {method} {path} with {exc.code}: "
                              f"{_error_message(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"no e5rag server answers at {self.url} ({reason}): start one with "
                              f"`e5rag serve`, or drop --server / unset {SERVER_ENV} to load the model here") from None
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ServerError(f"the server at {self.url} answered {method} {path} with something that is not "
                              "JSON: is it an e5rag server?") from None

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: Sequence[str], batch_size: int = 16, show_progress_bar: bool | None = None, *,
               normalize_embeddings: bool = True) -> np.ndarray:
        """Embed texts exactly as given, on the server. -> (n, dim) float32, L2-normalised.

        ``batch_size`` is the server's business (its ``--batch-size``); requests carry up to 2,048 texts.
        """
        texts = check_texts(texts, "text")
        if not normalize_embeddings:
            raise InputError("a served model returns normalised embeddings only: drop normalize_embeddings=False")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), MAX_INPUTS):
            part = texts[start:start + MAX_INPUTS]
            reply = self._request("POST", "/v1/embeddings", {"input": part, "model": self.model_id,
                                                             "encoding_format": "base64"})
            if reply.get("model") != self.model_id:
                raise ServerError(f"the server at {self.url} now serves {reply.get('model')!r}, not "
                                  f"{self.model_id!r}: it was restarted with another model; open it again")
            rows = sorted(reply.get("data") or [], key=lambda d: d.get("index", 0))
            if len(rows) != len(part):
                raise ServerError(f"the server returned {len(rows)} embeddings for {len(part)} texts")
            for i, row in enumerate(rows):
                out[start + i] = _vector(row.get("embedding"), self.dim)
        return out


def _vector(embedding: Any, dim: int) -> np.ndarray:
    if isinstance(embedding, str):
        vec = np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    else:
        vec = np.asarray(embedding, dtype=np.float32)
    if vec.shape != (dim,):
        raise ServerError(f"the server returned an embedding of shape {vec.shape}, not ({dim},)")
    return vec


def _error_message(body: bytes) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:300] or "(no body)"
