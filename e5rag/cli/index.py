"""``e5rag index``: embed documents (no instruction) into a FAISS or Milvus index."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .common import add_model_args, add_store_args, store_options

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="embed documents into an index (adds new, updates changed, skips unchanged)",
                       description="Embed documents once, without an instruction. SOURCE: a BEIR corpus.jsonl, any "
                                   "JSONL with id/text(/title) fields, a .txt, .md, .html or .pdf file (one document, "
                                   "id = the file name), a folder of them (recursively; id = the path inside it), or - "
                                   "for stdin (JSONL, or one document a line). Long documents are chunked.")
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="JSONL, a .txt/.md/.html/.pdf file, a folder of them, or - for stdin "
                        "(may be left out with --rebuild-bm25)")
    add_store_args(p)
    p.add_argument("--index-type", default=None,
                   help="FAISS index_factory string (Flat, HNSW32, IVF256,Flat) or Milvus index type "
                        "(FLAT, IVF_FLAT, HNSW, AUTOINDEX); used when the index is created")
    p.add_argument("--id-field", default=None, help="JSONL id field (default: _id or id)")
    p.add_argument("--text-field", default="text", help="JSONL text field (default: text)")
    p.add_argument("--title-field", default="title", help="JSONL title field (default: title)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sync", action="store_true",
                   help="also delete every document in the index that is not in this run's SOURCEs (a file, "
                        "or a JSONL id, that is gone), in the same commit; pass all the index's sources at once")
    g = p.add_argument_group("chunking (documents longer than a passage are stored as chunks ID#0, ID#1, ...)")
    g.add_argument("--chunk-tokens", type=int, default=None, metavar="N",
                   help="tokens per passage, title and EOS included (default: the model's --max-length)")
    g.add_argument("--chunk-overlap", type=int, default=None, metavar="N",
                   help="tokens shared by consecutive passages (default: 10%% of --chunk-tokens)")
    g.add_argument("--no-chunk", action="store_true",
                   help="embed each document whole, truncated to --max-length (the old behaviour)")
    p.add_argument("--rebuild-bm25", action="store_true",
                   help="(re)build the BM25 index of hybrid search from the stored texts, without re-embedding "
                        "(FAISS indexes built before hybrid search); SOURCE may then be left out")
    p.add_argument("--commit-every", type=int, default=4096, metavar="N",
                   help="documents per commit: a crash loses at most this many (default 4096)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="index only shard I of N (0 <= I < N) into a Milvus server, one process per shard "
                        "(Slurm arrays, Kubernetes jobs); under torchrun each rank takes its shard by itself")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.indexers import open_store
    from e5rag.retriever.chunking import ChunkConfig
    from e5rag.retriever.device import pick_device
    from e5rag.retriever.distributed import launched_world_size
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.parallel_index import Shard, run_index_job
    from e5rag.retriever.search import SearchIndex
    from e5rag.retriever.sources import FieldNames, stream_documents

    from .common import load_encoder_for, load_encoder_for_manifest

    if args.rebuild_bm25:
        rebuild_bm25(args)
        if not args.sources:
            return 0
    if not args.sources:
        raise InputError("no SOURCE: name documents to index (a JSONL, .txt file, folder or -), or pass --rebuild-bm25")
    if args.no_chunk and (args.chunk_tokens is not None or args.chunk_overlap is not None):
        raise InputError("--no-chunk cannot be combined with --chunk-tokens/--chunk-overlap")
    chunking = None if args.no_chunk else ChunkConfig(args.chunk_tokens, args.chunk_overlap)
    if args.commit_every < 1:
        raise InputError(f"--commit-every must be at least 1, got {args.commit_every}")
    fields = FieldNames(args.id_field, args.text_field, args.title_field)
    def again():  # the files once more (the first pass showed their warnings)
        return _quietly(stream_documents(args.sources, fields))

    count = None  # documents in the input, where it can be read twice
    if "-" in args.sources:  # stdin can be read once: streamed straight into the index
        docs = stream_documents(args.sources, fields)
    else:  # files are checked whole first (a bad line fails before the model loads), then streamed again
        count = sum(1 for _ in stream_documents(args.sources, fields))
        docs = again()
    if args.shard is not None or launched_world_size() > 1:  # --shard I/N, or under torchrun
        if args.sync:
            raise InputError("--sync needs every document in one process: run it without torchrun or --shard")
        report = run_index_job(docs, args.index, lambda: open_store(args.index, index_type=args.index_type,
                                                                   **store_options(args)),
                               lambda manifest: load_encoder_for_manifest(manifest, args),
                               device_type=pick_device(args.device).type, store_kind=args.store,
                               shard=Shard.parse(args.shard) if args.shard else None, batch_size=args.batch_size,
                               commit_every=args.commit_every, chunking=chunking)
        if report is None:  # a rank other than 0: rank 0 reports for the job
            return 0
    else:
        store = open_store(args.index, index_type=args.index_type, **store_options(args))
        try:
            report = None
            if count is not None:
                check_trainable(store, args, count, again, chunking)
                report = unchanged(store, args, again(), chunking)
            if report is None:  # something to write: the model is needed
                encoder, source, adapter = load_encoder_for(store, args)
                index = SearchIndex(encoder, store, writing=True, model_source=source, adapter=adapter)
                report = index.add(docs, batch_size=args.batch_size, commit_every=args.commit_every,
                                   chunking=chunking, sync=args.sync)
        finally:
            store.close()
    out = {"index": args.index, **report.__dict__}
    if not args.sync:
        out.pop("deleted")
    if args.json:
        print(json.dumps(out))
    else:
        gone = f", {report.deleted} deleted (source gone)" if args.sync else ""
        relabelled = f"{report.metadata_updated} metadata-only (not re-embedded), " if report.metadata_updated else ""
        print(f"indexed {args.index}: {report.added} added, {report.updated} updated, "
              f"{relabelled}{report.skipped} unchanged (skipped){gone}; {report.total} documents in the index",
              file=sys.stderr)
    return 0


def unchanged(store, args: argparse.Namespace, docs, chunking):
    """``add``'s report when every document is already stored as it would be written (and, with --sync,
    nothing else is), found with the index's tokenizer and no model; None when something must be written,
    or when the flags or the model's weights differ from what the index recorded."""
    from e5rag.errors import E5RagError
    from e5rag.retriever.search import split_for, unchanged_report

    from .common import recorded_model_tokenizer

    try:
        found = recorded_model_tokenizer(store.manifest, args)
    except (E5RagError, OSError) as exc:  # the model load that follows reports it properly
        log.info("could not check for unchanged documents without the model: %s", exc)
        return None
    if found is None:
        return None
    tokenizer, max_length = found
    report = unchanged_report(store, docs, lambda d: split_for(d, tokenizer, max_length, chunking),
                              commit_every=args.commit_every, sync=args.sync)
    if report is not None:
        log.info("every document is unchanged: the model was not loaded")
    return report


def check_trainable(store, args: argparse.Namespace, count: int, again, chunking) -> None:
    """Refuse, before any model load or write, a new FAISS IVF index that cannot be trained.

    The store trains an IVF index at its first commit, on the vectors of that commit: so it needs at least
    nlist passages in the input, and (as every commit but the last holds at least --commit-every passages)
    --commit-every of at least nlist. The documents are counted first; only when there are fewer than
    nlist are their passages counted, with the model's tokenizer (a document makes one or more passages).
    """
    from e5rag.indexers.faiss_store import ivf_lists
    from e5rag.retriever.errors import InputError

    if store.kind != "faiss" or store.manifest is not None or count == 0:
        return
    index_type = args.index_type or "Flat"
    nlist = ivf_lists(index_type)
    if nlist is None:
        return
    if args.commit_every < nlist:
        raise InputError(f"index type {index_type!r} is trained at the first commit on at least --commit-every "
                         f"passages, and its {nlist} lists need at least {nlist}: pass --commit-every {nlist} or more")
    passages, what = count, f"{count} documents"
    if count < nlist and chunking is not None:
        from e5rag.retriever.loading import load_tokenizer, resolve_source, weights_dir
        from e5rag.retriever.search import split_for

        tokenizer = load_tokenizer(weights_dir(resolve_source(args.model)))
        max_length = args.max_length or 512
        passages = 0
        for doc in again():
            passages += len(split_for(doc, tokenizer, max_length, chunking))
            if passages >= nlist:
                return
        what = f"{count} documents in {passages} passages"
    if passages < nlist:
        raise InputError(f"index type {index_type!r} needs at least {nlist} vectors to train its {nlist} lists, "
                         f"but the input makes {passages} ({what}): index more documents at once, or use Flat "
                         f"(or at most IVF{passages},Flat)")


def _quietly(items):
    """``items`` with the sources' warnings (skipped files) muted: they were shown on the first pass."""
    log = logging.getLogger("e5rag.retriever.sources")
    it = iter(items)
    while True:
        muted, log.disabled = log.disabled, True
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            log.disabled = muted
        yield item


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
