"""``e5rag serve``: keep a model loaded behind the OpenAI embeddings API, for fast ``search --server``."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
import threading

from .common import add_model_args, add_store_args, store_options

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="keep a model loaded and serve embeddings over HTTP (OpenAI /v1/embeddings)",
        description="Load the model once and serve POST /v1/embeddings (OpenAI-compatible), GET /v1/models "
                    "and GET /health. `e5rag search --server URL` (or E5RAG_SERVER=URL) then embeds its "
                    "queries here instead of loading the model itself. Prints one JSON line "
                    '{"url", "model"} on stdout once it listens; Ctrl-C or SIGTERM stops it.')
    add_store_args(p, required=False)
    p.set_defaults(index=None)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every request (default: the E5RAG_API_KEY "
                        "environment variable, else none)")
    p.add_argument("--name", default=None, help="the model id clients see (default: the model's source)")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without a request (default: run until stopped)")
    add_model_args(p, default_note="the model recorded in --index, else the embedded default")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from e5rag.retriever.errors import InputError
    from e5rag.retriever.serving import EmbeddingServer, served_model

    from .common import load_encoder_for_manifest

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0 to 65535, got {args.port}")
    if args.idle_timeout is not None and args.idle_timeout <= 0:
        raise InputError(f"--idle-timeout must be positive, got {args.idle_timeout}")
    api_key = args.api_key if args.api_key is not None else os.environ.get("E5RAG_API_KEY")
    if not api_key and not _loopback(args.host):
        log.warning("listening on %s with no --api-key: anyone who reaches this port can use the model",
                    args.host)
    manifest = None
    if args.index is not None:
        from e5rag.indexers import open_store

        store = open_store(args.index, readonly=True, **store_options(args))
        try:
            manifest = store.manifest
        finally:
            store.close()
        if manifest is None:
            raise InputError(f"{args.index} holds no index yet: build it with `e5rag index`, or drop --index "
                             "to serve --model (default: the embedded default)")
    encoder, source, adapter = load_encoder_for_manifest(manifest, args)
    try:
        server = EmbeddingServer((args.host, args.port), encoder, served_model(encoder, args.name, source, adapter),
                                 batch_size=args.batch_size, api_key=api_key, idle_timeout=args.idle_timeout)
    except OSError as exc:
        raise InputError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): pick another "
                         "--port (0: any free one) or stop what holds it") from None
    with server:
        previous = signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print(json.dumps({"url": server.url, "model": server.model.id}), flush=True)
        print(f"e5rag: serving {server.model.id} ({encoder.fingerprint.describe()}) on {server.url}: "
              f"POST /v1/embeddings; search with `e5rag search --server {server.url}`; Ctrl-C stops",
              file=sys.stderr, flush=True)
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    print(f"e5rag: stopped after embedding {server.served} texts", file=sys.stderr, flush=True)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
