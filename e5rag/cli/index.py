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
    p.add_argument("sources", nargs="*", metavar="SOURCE")
    add_store_args(p)
    p.add_argument("--index-type", default=None,
                   help="FAISS index_factory string (Flat, HNSW32, IVF256,Flat) or Milvus index type "
                        "(FLAT, IVF_FLAT, HNSW, AUTOINDEX); used when the index is created")
    p.add_argument("--id-field", default=None, help="JSONL id field (default: _id or id)")
    p.add_argument("--text-field", default="text", help="JSONL text field (default: text)")
    p.add_argument("--title-field", default="title", help="JSONL title field (default: title)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--rebuild-bm25", action="store_true",
                   help="(re)build the BM25 index of hybrid search from the stored texts, without re-embedding "
                        "(FAISS indexes built before hybrid search); SOURCE may then be left out")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.search import SearchIndex
    from e5rag.retriever.sources import FieldNames, read_documents

    from .common import load_encoder_for

    if args.rebuild_bm25:
        rebuild_bm25(args)
        if not args.sources:
            return 0
    if not args.sources:
        from e5rag.retriever.errors import InputError

        raise InputError("no SOURCE: name documents to index (a JSONL, .txt file, folder or -), or pass --rebuild-bm25")
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
              f"{report.skipped} unchanged (skipped); {report.total} documents in the index", file=sys.stderr)
    return 0


def rebuild_bm25(args: argparse.Namespace) -> None:
    """Re-derive an existing index's BM25 table from its stored texts (no model is loaded)."""
    from e5rag.indexers import StoreError, open_store

    store = open_store(args.index, **store_options(args))
    try:
        if store.manifest is None:
            raise StoreError(f"no index at {args.index} to rebuild BM25 for: build one with `e5rag index SOURCE`")
        rebuild = getattr(store, "rebuild_keyword_index", None)
        if rebuild is None:
            raise StoreError(f"the {store.kind} store keeps no BM25 index of its own to rebuild: Milvus computes BM25 "
                             "itself in collections made with it (Milvus Lite, servers 2.5+); for an older collection, "
                             "index into a new --collection")
        rebuild()
        store.commit()
        count = store.count()
    finally:
        store.close()
    print(f"rebuilt the BM25 index of {args.index} from {count} stored documents", file=sys.stderr)
