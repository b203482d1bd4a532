"""``e5rag eval``: score models on BEIR-format datasets (nDCG@10, MRR@10, recall@k, MAP@k)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate on BEIR-format datasets",
        description="Evaluate retrieval on BEIR-format folders (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) "
                    "with exact search. Document embeddings are cached, so other tasks or the no-instruction "
                    "ablation re-encode only the queries.")
    p.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="BEIR dataset folders")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    p.add_argument("--task", help="task name or sentence (default: the registered task named like the folder)")
    p.add_argument("--model", action="append", dest="models", metavar="M",
                   help="model dir, GGUF, hub id, sentence-transformers dir or all-MiniLM-L6-v2; repeat to "
                        "compare (default: the embedded SmolLM2-135M)")
    p.add_argument("--adapter", metavar="DIR",
                   help="LoRA adapter folder (or an `e5rag train --output` folder) for the E5 model(s)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-instruction", dest="instruction", action="store_const", const="without",
                       default="with", help="embed bare queries (the ablation)")
    group.add_argument("--both", dest="instruction", action="store_const", const="both",
                       help="run with and without the instruction (documents encoded once)")
    p.add_argument("--bm25", action="store_true",
                   help="add a BM25-alone row (bare queries, SQLite FTS5 as in the FAISS store); alone, no model "
                        "is loaded")
    p.add_argument("--hybrid", action="store_true",
                   help="add hybrid rows: the dense ranking fused with BM25's (see --fusion, --alpha)")
    p.add_argument("--fusion", action="append", choices=("rrf", "weighted"), default=None,
                   help="hybrid fusion; repeat for one row each (default: weighted)")
    p.add_argument("--alpha", type=float, default=None,
                   help="weighted fusion: the dense side's weight, 0 (BM25) to 1 (dense) (default: 0.4)")
    p.add_argument("--k", type=int, default=100, help="hits per query, for recall@k and MAP@k (default: 100)")
    p.add_argument("--batch-size", type=int, default=16, help="texts per forward pass (default 16)")
    p.add_argument("--max-length", type=int, help="token limit (default: 512; a baseline's own limit)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--compile", action="store_true",
                   help="run the E5 encoder through torch.compile: faster on CPU after a one-time compile "
                        "of a minute or more (large corpora)")
    p.add_argument("--quantize", choices=("int8", "none"), default=None,
                   help="int8: the E5 encoder with int8 weights and activations on CPU (needs e5rag[int8]); "
                        "document embeddings are cached apart from fp32 ones")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--output", dest="out", metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of nDCG@10 per dataset and model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from e5rag.retriever.evaluation.harness import EvalConfig, run_evaluation
    from e5rag.retriever.evaluation.report import format_table, report_dict, save_plot

    config = EvalConfig(datasets=tuple(args.datasets), split=args.split, models=tuple(args.models or [None]),
                        adapter=args.adapter, task=args.task, instruction=args.instruction, k=args.k,
                        batch_size=args.batch_size, max_length=args.max_length, device=args.device,
                        use_cache=not args.no_cache, compile=args.compile, quantize=args.quantize,
                        **retrieval_options(args))
    results = run_evaluation(config)
    report = report_dict(results, command=shlex.join(["e5rag", *sys.argv[1:]]))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        save_plot(results, args.plot)
    return 0


def retrieval_options(args: argparse.Namespace) -> dict:
    """``retrieval`` and ``fusions`` of the ``EvalConfig`` from --bm25/--hybrid/--fusion/--alpha."""
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, HybridConfig

    if not args.hybrid and (args.fusion or args.alpha is not None):
        raise InputError("--fusion and --alpha apply to hybrid rows: add --hybrid")
    fusions = list(dict.fromkeys(args.fusion or [DEFAULT_FUSION]))
    if args.alpha is not None and "weighted" not in fusions:
        raise InputError("--alpha weighs the weighted fusion and RRF has no weights: drop --alpha or add "
                         "--fusion weighted")
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    retrieval = (("bm25",) if args.bm25 else ()) + (("dense", "hybrid") if args.hybrid else ())
    return {"retrieval": retrieval or ("dense",),
            "fusions": tuple(HybridConfig(fusion=f, alpha=alpha) for f in fusions)}
