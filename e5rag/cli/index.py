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
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.search import SearchIndex
    from e5rag.retriever.sources import FieldNames, read_documents

    from .common import load_encoder_for

    docs = read_documents(args.sources, FieldNames(args.id_field, args.text_field, args.title_field))
    store = open_store(args.index, index_type=args.index_type, **store_options(args))
    try:
        encoder, source, adapter = load_encoder_for(store, args)
        index = SearchIndex(encoder, store, writing=True, model_source=source, adapter=adapter)
        report = index.add(docs, batch_size=args.batch_size)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"index": args.index, **report.__dict__}))
    else:
        print(f"indexed {args.index}: {report.added} added, {report.updated} updated, "
              f"{report.metadata_updated} metadata-only (not re-embedded), "
              f"{report.skipped} unchanged (skipped); {report.total} documents in the index", file=sys.stderr)
    return 0
