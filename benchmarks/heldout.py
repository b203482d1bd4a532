"""Held-out pairs for training runs: split a folder of training JSONL files into training files and a held-out
set (whole positives held out, chosen by SHA-256, so no held-out document is ever trained on), and
score an adapter on the held-out set (MRR of each query's positive among its source's positives).

    .venv/bin/python benchmarks/heldout.py split train-data --out data/
    .venv/bin/python benchmarks/heldout.py score data/heldout.jsonl --adapter runs/x/adapter --max-length 128

This is a quick check that a run learns something that transfers (the base scores at chance);
the real measurement is `e5rag eval` on BEIR test splits.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
from pathlib import Path

import numpy as np

HELD = {"arxiv_title_abstract": 150, "scitldr": 150, "squad_dev": 100}


def split(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "heldout.jsonl", "w", encoding="utf-8") as held_fh:
        for f in sorted(source.glob("*.jsonl")):
            rows = [json.loads(line) for line in f.open(encoding="utf-8")]
            positives = sorted({r["positive"] for r in rows}, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
            held = set(positives[:HELD.get(f.stem, 0)])
            seen: set[str] = set()
            kept = 0
            with open(out / f"train_{f.stem}.jsonl", "w", encoding="utf-8") as fh:
                for r in rows:
                    if r["positive"] not in held:
                        fh.write(json.dumps(r) + "\n")
                        kept += 1
                    elif r["positive"] not in seen:
                        seen.add(r["positive"])
                        held_fh.write(json.dumps(r) + "\n")
            print(f"{f.stem}: {len(rows)} rows -> train {kept}, held out {len(seen)}")


def score(path: Path, model: str | None, adapter: str | None, max_length: int) -> dict:
    from e5rag.retriever.encoder import Encoder

    enc = Encoder.from_pretrained(model, adapter=adapter, max_length=max_length)
    by_source: dict[str, list[dict]] = collections.defaultdict(list)
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        by_source[row["source"]].append(row)
    out = {}
    for source, rows in by_source.items():
        q = enc.encode_query([r["query"] for r in rows], task=rows[0]["task"], batch_size=32)
        d = enc.encode_document([r["positive"] for r in rows], batch_size=32)
        sims = q @ d.T  # (n, n): row i's positive is column i
        ranks = (sims > np.diag(sims)[:, None]).sum(1) + 1
        out[source] = {"n": len(rows), "mrr": round(float((1 / ranks).mean()), 4),
                       "top1": round(float((ranks == 1).mean()), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("source", type=Path)
    s.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("score")
    c.add_argument("heldout", type=Path)
    c.add_argument("--model", default="smollm2-135m", help="default: the untrained base")
    c.add_argument("--adapter", default=None)
    c.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    if args.cmd == "split":
        split(args.source, args.out)
    else:
        print(json.dumps({"model": args.model, "adapter": args.adapter, **score(args.heldout, args.model, args.adapter,
                                                                                  args.max_length)}))


if __name__ == "__main__":
    main()
