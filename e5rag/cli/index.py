"""``e5rag index``: embed documents (no instruction) into a FAISS or Milvus index."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_model_args, add_store_args, store_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed documents into an index (adds new, updates changed, skips unchanged)",
                       description="Embed documents once, without an instruction. SOURCE: a BEIR corpus.jsonl, any "
                                   "JSONL with id/text(/title) fields, a .txt file (one document a line), a folder of "
                                   ".txt/.md files, or - for stdin.")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    add_store_args(p)
    p.add_argument("--index-type", default=None,
                   help="FAISS index_factory string (Flat, HNSW32, IVF256,Flat) or Milvus index type "
                        "(FLAT, IVF_FLAT, HNSW, AUTOINDEX); used when the index is created")
    p.add_argument("--id-field", default=None, help="JSONL id field (default: _id or id)")
    p.add_argument("--text-field", default="text", help="JSONL text field (default: text)")
    p.add_argument("--title-field", default="title", help="JSONL title field (default: title)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--commit-every", type=int, default=4096, metavar="N",
                   help="documents per commit: a crash loses at most this many (default 4096)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="index only shard I of N (0 <= I < N) into a Milvus server, one process per shard "
                        "(Slurm arrays, Kubernetes jobs); under torchrun each rank takes its shard by itself")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.device import pick_device
    from e5rag.retriever.distributed import launched_world_size
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.parallel_index import Shard, run_index_job
    from e5rag.retriever.search import SearchIndex
    from e5rag.retriever.sources import FieldNames, stream_documents

    from .common import load_encoder_for, load_encoder_for_manifest

    if args.commit_every < 1:
        raise InputError(f"--commit-every must be at least 1, got {args.commit_every}")
    fields = FieldNames(args.id_field, args.text_field, args.title_field)
    if "-" not in args.sources:  # files are checked whole first, streamed (a bad line fails before the model loads)
        for _ in stream_documents(args.sources, fields):
            pass
    docs = stream_documents(args.sources, fields)  # then streamed again into the index: bounded memory
    if args.shard is not None or launched_world_size() > 1:  # --shard I/N, or under torchrun
        report = run_index_job(docs, args.index, lambda: open_store(args.index, index_type=args.index_type,
                                                                   **store_options(args)),
                               lambda manifest: load_encoder_for_manifest(manifest, args),
                               device_type=pick_device(args.device).type, store_kind=args.store,
                               shard=Shard.parse(args.shard) if args.shard else None, batch_size=args.batch_size,
                               commit_every=args.commit_every)
        if report is None:  # a rank other than 0: rank 0 reports for the job
            return 0
    else:
        store = open_store(args.index, index_type=args.index_type, **store_options(args))
        try:
            encoder, source, adapter = load_encoder_for(store, args)
            index = SearchIndex(encoder, store, writing=True, model_source=source, adapter=adapter)
            report = index.add(docs, batch_size=args.batch_size, commit_every=args.commit_every)
        finally:
            store.close()
    if args.json:
        print(json.dumps({"index": args.index, **report.__dict__}))
    else:
        print(f"indexed {args.index}: {report.added} added, {report.updated} updated, "
              f"{report.metadata_updated} metadata-only (not re-embedded), "
              f"{report.skipped} unchanged (skipped); {report.total} documents in the index", file=sys.stderr)
    return 0
