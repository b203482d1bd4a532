"""``e5rag search``: embed queries with a task instruction and print the top documents."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_model_args, add_store_args, store_options


def add_hybrid_args(p: argparse.ArgumentParser) -> None:
    from e5rag.retriever.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, FUSIONS

    g = p.add_argument_group("hybrid search (BM25 of the bare query fused with the dense ranking)")
    g.add_argument("--hybrid", action="store_true", help="fuse BM25 with the dense ranking")
    g.add_argument("--fusion", choices=FUSIONS, default=None,
                   help=f"rrf (reciprocal rank fusion, k=60) or weighted (min-max normalised scores) "
                        f"(default: {DEFAULT_FUSION})")
    g.add_argument("--alpha", type=float, default=None,
                   help=f"weighted fusion: the dense side's weight, 0 (BM25) to 1 (dense) (default: {DEFAULT_ALPHA})")


def hybrid_from_args(args: argparse.Namespace):
    """The ``HybridConfig`` the flags ask for, or None without --hybrid."""
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, HybridConfig

    if not args.hybrid:
        if args.fusion is not None or args.alpha is not None:
            raise InputError("--fusion and --alpha apply to hybrid search: add --hybrid")
        return None
    fusion = args.fusion or DEFAULT_FUSION
    if args.alpha is not None and fusion != "weighted":
        raise InputError("--alpha weighs the weighted fusion and RRF has no weights: drop --alpha or use "
                         "--fusion weighted")
    return HybridConfig(fusion=fusion, alpha=DEFAULT_ALPHA if args.alpha is None else args.alpha)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index; the task instruction is chosen per query",
                       description="With no QUERY, queries are read from stdin: plain lines, or JSONL "
                                   '{"id", "text", "task"} where "task" overrides --task for that query.')
    p.add_argument("queries", nargs="*", metavar="QUERY", help="query text(s); none: read them from stdin")
    add_store_args(p)
    p.add_argument("--task", default=None,
                   help="a registered task name (see `e5rag tasks`) or a one-sentence task definition "
                        "(default: web-search)")
    p.add_argument("--no-instruction", action="store_true", help="embed bare queries (the ablation)")
    p.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--filter", default=None,
                   help='filter, e.g. \'metadata["year"] >= 2020 and (title == "x" or not id in ["a"])\' '
                        '(the same grammar on every store; Milvus also takes its own expressions)')
    p.add_argument("--nprobe", type=int, default=None,
                   help="IVF indexes: lists scanned per query (default: the index's, recorded in its manifest)")
    p.add_argument("--ef", type=int, default=None,
                   help="HNSW indexes: candidates kept per query, at least k (default: the index's)")
    p.add_argument("--json", action="store_true", help="one JSON object per query on stdout")
    p.add_argument("--per-chunk", action="store_true",
                   help="return raw chunks (a long document can appear several times); by default each "
                        "document appears once, as its best chunk")
    add_hybrid_args(p)
    add_model_args(p, default_note="the model recorded in the index")
    p.add_argument("--server", default=None, metavar="URL",
                   help="embed the queries with a running `e5rag serve` at URL instead of loading the model "
                        "here (starts in well under a second; default: the E5RAG_SERVER environment variable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.parents import position
    from e5rag.retriever.search import SearchIndex
    from e5rag.retriever.sources import Query, read_queries
    from e5rag.retriever.tasks import resolve_task

    from .common import load_encoder_for

    if args.k < 1:
        raise InputError(f"-k must be at least 1, got {args.k}")
    if args.queries:
        queries = [Query(str(i + 1), q) for i, q in enumerate(args.queries)]
    else:
        queries = read_queries(sys.stdin)
    for q in queries:
        if not q.text.strip():
            raise InputError(f"query {q.id} is empty: give it some text")
    if not queries:
        raise InputError("no queries: pass QUERY arguments or pipe them on stdin")
    tasks = [resolve_task(q.task if q.task is not None else args.task) for q in queries]
    hybrid = hybrid_from_args(args)
    store = open_store(args.index, readonly=True, **store_options(args))
    try:
        check_search_flags(store, args)
        server = server_url(args)
        if server is not None:
            from e5rag.retriever.remote import RemoteEncoder

            encoder = RemoteEncoder(server)
            source, adapter = encoder.source, encoder.adapter_path
        else:
            encoder, source, adapter = load_encoder_for(store, args)
        index = SearchIndex(encoder, store, model_source=source, adapter=adapter)
        results = index.search([q.text for q in queries], task=tasks, k=args.k, filter=args.filter,
                               use_instruction=not args.no_instruction, batch_size=args.batch_size,
                               per_chunk=args.per_chunk, hybrid=hybrid, nprobe=args.nprobe, ef=args.ef)
    finally:
        store.close()
    for query, task, hits in zip(queries, tasks, results, strict=True):
        shown_task = None if args.no_instruction else task
        if args.json:
            extra = {"fusion": hybrid.describe()} if hybrid is not None else {}
            print(json.dumps({"query": query.text, "id": query.id, "task": shown_task, **extra, "results": [
                {"id": h.document.id, "score": round(h.score, 6), "rank": h.rank, "title": h.document.title,
                 "text": h.document.text, "metadata": h.document.metadata, **position(h.document)}
                for h in hits]}, ensure_ascii=False))
        else:
            print(format_table(query.text, shown_task, hits))
    return 0


_LOCAL_MODEL_FLAGS = ("model", "adapter", "max_length", "device", "dtype", "quantize")


def server_url(args: argparse.Namespace) -> str | None:
    """--server, else $E5RAG_SERVER, else None (load the model here). Flags that choose or shape a local
    model are refused beside a server: the server's model is the one it was started with."""
    import os

    from e5rag.retriever.errors import InputError

    url = args.server if args.server is not None else os.environ.get("E5RAG_SERVER") or None
    if url is None:
        return None
    given = [f"--{name.replace('_', '-')}" for name in _LOCAL_MODEL_FLAGS if getattr(args, name) is not None]
    given += ["--compile"] if args.compile else []
    if given:
        where = "--server" if args.server is not None else "E5RAG_SERVER"
        raise InputError(f"{', '.join(given)} choose the model loaded here, but {where} names a server, whose "
                         "model is the one `e5rag serve` loaded: drop them, or drop the server to load here")
    return url


def check_search_flags(store, args: argparse.Namespace) -> None:
    """Refuse, before the model loads, a --filter the store cannot evaluate and an --nprobe/--ef the index
    does not have: the same checks the store makes at search time, with the same messages."""
    import numpy as np

    from e5rag.indexers.filters import parse_filter
    from e5rag.indexers.search_params import SearchParams, check_applies

    manifest = store.manifest
    if manifest is None:
        return
    if args.filter is not None and args.filter.strip():
        if store.kind == "faiss":
            parse_filter(args.filter)  # FAISS evaluates e5rag's grammar only
        else:  # Milvus also takes its own expressions, which only the server can judge: one 1-result probe
            store.search(np.zeros((1, manifest.dim), dtype=np.float32), 1, filter=args.filter)
    check_applies(SearchParams(nprobe=args.nprobe, ef=args.ef), manifest.index_type,
                  lite_autoindex_is_hnsw=bool(getattr(store, "lite", False)))


def format_table(query: str, task: str | None, hits) -> str:
    """A readable block: the query, its task, then rank, score, id and a text snippet per hit
    (the id column is as wide as the block's longest id, at least 14)."""
    lines = [f"query: {query}", f"task:  {task if task else '(no instruction)'}"]
    if not hits:
        lines.append("  (no results)")
    width = max([14, *(len(h.document.id) for h in hits)])
    for h in hits:
        text = " ".join((f"{h.document.title}: {h.document.text}" if h.document.title else h.document.text).split())
        lines.append(f"  {h.rank:>3}  {h.score:7.4f}  {h.document.id:<{width}} {text[:90]}{'…' if len(text) > 90 else ''}")
    return "\n".join(lines) + "\n"
