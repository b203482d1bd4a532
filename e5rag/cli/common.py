"""Flags shared by several commands (model choice, store location) and their conversion."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def add_model_args(p: argparse.ArgumentParser, *, default_note: str = "the embedded default") -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help=f"model directory, .gguf file or cached hub id (default: {default_note}; "
                        "'smollm2-135m' is the untrained base)")
    g.add_argument("--adapter", default=None, help="PEFT LoRA adapter folder (or an `e5rag train --output` folder) applied on the model")
    g.add_argument("--max-length", type=int, default=None,
                   help="tokens per text, EOS included (default: the length recorded in the index, else 512)")
    g.add_argument("--batch-size", type=int, default=16, help="texts per forward pass (default 16)")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    g.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: fp32 on CPU, bf16 on CUDA)")
    g.add_argument("--compile", action="store_true",
                   help="run the encoder through torch.compile: faster on CPU after a one-time compile of a "
                        "minute or more (worth it for large corpora)")
    g.add_argument("--quantize", choices=("int8", "none"), default=None,
                   help="int8: int8 weights and per-token int8 activations, CPU only (needs e5rag[int8]; the "
                        "default model's vectors stay within cosine 0.99 of fp32); default: the index's, else none")


def add_store_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--index", required=required, metavar="PATH",
                   help="index location: NAME.db (Milvus Lite file), http://host:19530 (Milvus server) "
                        "or a directory (FAISS)")
    g = p.add_argument_group("store")
    g.add_argument("--store", choices=("faiss", "milvus"), default=None, help="override the store chosen from --index")
    g.add_argument("--token", default=None, help="Milvus server token (user:password or API key)")
    g.add_argument("--collection", default=None, help="Milvus collection name (default: e5rag)")
    g.add_argument("--db-name", default=None, help="Milvus database name")


def store_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword options for ``indexers.open_store`` from the parsed store flags."""
    opts: dict[str, Any] = {"store": args.store}
    for name in ("token", "collection", "db_name"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    return opts


def encoder_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"adapter": args.adapter, "device": args.device, "dtype": args.dtype,
                          "compile": args.compile, "quantize": getattr(args, "quantize", None)}
    if args.max_length is not None:
        kw["max_length"] = args.max_length
    return kw


def load_encoder_for(store, args: argparse.Namespace):
    """The encoder for an existing index (its recorded model unless --model/--adapter say otherwise)
    or for a new one (--model, else the embedded default). Returns (encoder, source, adapter)."""
    return load_encoder_for_manifest(store.manifest, args)


def load_encoder_for_manifest(manifest, args: argparse.Namespace):
    """``load_encoder_for`` given the index's manifest (None: a new index)."""
    from e5rag.retriever.encoder import Encoder

    recorded = (manifest.model if manifest is not None else {}) or {}
    source = args.model if args.model is not None else recorded.get("source")
    adapter = args.adapter if args.adapter is not None else (
        recorded.get("adapter_path") if args.model is None else None)
    kw = encoder_kwargs(args)
    kw["adapter"] = adapter
    if args.max_length is None and recorded.get("max_length"):
        kw["max_length"] = int(recorded["max_length"])
    if kw["quantize"] is None:
        kw["quantize"] = recorded.get("quantization")  # an int8 index is searched with int8 queries
    label = (source or "the embedded default") + (f" + adapter {adapter}" if adapter else "")
    print(f"e5rag: loading model {label} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    encoder = Encoder.from_pretrained(source, **kw)
    print(f"e5rag: ... done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return encoder, source, adapter


def recorded_model_tokenizer(manifest, args: argparse.Namespace):
    """(tokenizer, max_length) of the model an index was built with, without loading the model, when the
    flags choose that model (``load_encoder_for_manifest``'s choice has the recorded weight identities,
    max length and quantization); None otherwise (then load the model and let it decide)."""
    from e5rag.retriever.loading import (
        adapter_identity,
        load_tokenizer,
        model_identity,
        resolve_adapter,
        resolve_source,
        weights_dir,
    )

    recorded = (manifest.model if manifest is not None else {}) or {}
    if not recorded.get("base"):
        return None
    max_length = int(recorded.get("max_length", 512))
    if args.max_length is not None and args.max_length != max_length:
        return None
    quantize = getattr(args, "quantize", None)
    if quantize is not None and quantize != (recorded.get("quantization") or "none"):
        return None
    source = resolve_source(args.model if args.model is not None else recorded.get("source"))
    adapter = args.adapter if args.adapter is not None else (
        recorded.get("adapter_path") if args.model is None else None)
    adapter_dir = resolve_adapter(adapter) if adapter is not None else source.adapter
    if model_identity(source) != recorded["base"] or \
            (adapter_identity(adapter_dir) if adapter_dir is not None else None) != recorded.get("adapter"):
        return None
    return load_tokenizer(weights_dir(source)), max_length
