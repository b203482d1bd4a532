"""``e5rag get``: print documents as they were indexed (a chunked one put back together)."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_store_args, store_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("get", help="print documents by id, a chunked one whole (its chunks put back together)",
                       description="Print each document's text, or with --json one JSON object a line "
                                   '{"_id", "title", "text", "metadata"} (corpus.jsonl style). A chunk id '
                                   "(ID#N) prints that chunk alone.")
    p.add_argument("ids", nargs="+", metavar="DOC_ID", help="document ids as indexed (a chunked document is put back together)")
    add_store_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per document on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.parents import get_document

    with open_store(args.index, readonly=True, **store_options(args)) as store:
        docs = [get_document(store, i) for i in args.ids]
    missing = [i for i, d in zip(args.ids, docs, strict=True) if d is None]
    if missing:
        raise InputError(f"no document {missing[0]!r} in {args.index}"
                         + (f" (and {len(missing) - 1} more ids)" if len(missing) > 1 else ""))
    for doc in docs:
        if args.json:
            print(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata},
                             ensure_ascii=False))
        else:
            sys.stdout.write(doc.text + ("" if doc.text.endswith("\n") else "\n"))
    return 0
