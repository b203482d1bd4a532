"""``e5rag reindex``: re-embed every stored document with a new model and switch the index to it."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_model_args, add_store_args, encoder_kwargs, store_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reindex", help="re-embed an index's documents with another model (resumable; switches atomically)",
        description="Re-embed every document the index stores (no source files needed) with --model/--adapter "
                    "(default: the embedded default), beside the live index, then switch to it atomically. "
                    "Searches keep using the old index until the switch; killed, the same command resumes.")
    add_store_args(p)
    p.add_argument("--dry-run", action="store_true",
                   help="say how many documents would be re-embedded and how long it should take (measured on a "
                        "sample); writes nothing")
    p.add_argument("--discard", action="store_true",
                   help="remove the staged rebuild an interrupted reindex left (the live index is not touched)")
    p.add_argument("--commit-every", type=int, default=1024, metavar="N",
                   help="documents between durable checkpoints of the rebuild (default 1024)")
    p.add_argument("--sample", type=int, default=64, metavar="N",
                   help="documents embedded to measure the speed for --dry-run (default 64)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_args(p, default_note="the embedded default, whatever model the index has now")
    p.set_defaults(func=run)


def _max_length(args: argparse.Namespace) -> dict:
    """Keep the index's max length unless --max-length says otherwise."""
    if args.max_length is not None:
        return {}
    from e5rag.retriever.reindex import recorded_model

    recorded = recorded_model(args.index, store_options(args))
    return {"max_length": int(recorded["max_length"])} if recorded.get("max_length") else {}


def run(args: argparse.Namespace) -> int:
    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.reindex import discard, estimate, reindex

    if args.discard:
        held = discard(args.index, store_options(args))
        print(f"{args.index} has no staged rebuild" if held is None
              else f"removed the staged rebuild of {args.index} ({held} documents)", file=sys.stderr)
        return 0
    kw = {**encoder_kwargs(args), **_max_length(args)}
    encoder = Encoder.from_pretrained(args.model, **kw)
    if args.dry_run:
        est = estimate(args.index, encoder, store_options=store_options(args), batch_size=args.batch_size,
                       sample=args.sample)
        plan = est.plan
        if args.json:
            print(json.dumps({"index": args.index, "dry_run": True, "total": plan.total, "staged": plan.staged,
                              "todo": plan.todo, "up_to_date": plan.up_to_date, "sample": est.sample,
                              "docs_per_s": est.docs_per_s, "eta_s": est.eta_s}))
        elif plan.up_to_date:
            print(f"{args.index} already holds vectors of {encoder.fingerprint.describe()}: nothing to re-embed",
                  file=sys.stderr)
        else:
            print(f"would re-embed {plan.todo} of {plan.total} documents of {args.index} with "
                  f"{encoder.fingerprint.describe()} ({plan.staged} already staged by an interrupted run); "
                  f"measured {est.docs_per_s:.1f} docs/s on {est.sample} documents: about {_duration(est.eta_s)}",
                  file=sys.stderr)
        return 0
    report = reindex(args.index, encoder, store_options=store_options(args), model_source=args.model,
                     adapter=args.adapter, batch_size=args.batch_size, commit_every=args.commit_every)
    if args.json:
        print(json.dumps({"index": args.index, **report.__dict__, "docs_per_s": report.docs_per_s}))
    elif not report.switched:
        print(f"{args.index} already holds vectors of {encoder.fingerprint.describe()}: nothing to re-embed",
              file=sys.stderr)
    else:
        resumed = f" ({report.resumed} already done by an interrupted run)" if report.resumed else ""
        print(f"reindexed {args.index}: {report.embedded} documents re-embedded{resumed} in "
              f"{_duration(report.seconds)} ({report.docs_per_s:.1f} docs/s); {report.total} documents now "
              f"served with {encoder.fingerprint.describe()}", file=sys.stderr)
    return 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
