"""A small BEIR folder cut from a large one, for a retrieval check that fits a loaded CPU: the first
``--queries`` judged queries of a split (by numeric id), every document judged for them, and
``--distractors`` other documents drawn at random (seed 0).

    python benchmarks/beir_subset.py beir/scifact /tmp/sub/scifact --queries 50 --distractors 150
    e5rag eval /tmp/sub/scifact --max-length 128 --no-cache --json --out fp32.json
    e5rag eval /tmp/sub/scifact --max-length 128 --no-cache --json --quantize int8 --out int8.json

Keep the folder's name (``scifact``) so ``e5rag eval`` picks the dataset's registered task.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--distractors", type=int, default=150)
    args = ap.parse_args()

    lines = (args.source / "qrels" / f"{args.split}.tsv").read_text().splitlines()[1:]
    qrels = [line.split("\t") for line in lines if line.strip()]
    qids = sorted({q for q, _, _ in qrels}, key=lambda q: int(q) if q.isdigit() else q)[:args.queries]
    kept = [row for row in qrels if row[0] in set(qids)]
    judged = {d for _, d, _ in kept}
    corpus = [json.loads(line) for line in (args.source / "corpus.jsonl").read_text().splitlines() if line.strip()]
    others = [doc for doc in corpus if doc["_id"] not in judged]
    random.Random(0).shuffle(others)
    docs = [doc for doc in corpus if doc["_id"] in judged] + others[:args.distractors]
    queries = [json.loads(line) for line in (args.source / "queries.jsonl").read_text().splitlines() if line.strip()]

    (args.target / "qrels").mkdir(parents=True, exist_ok=True)
    (args.target / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (args.target / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries if q["_id"] in set(qids)))
    (args.target / "qrels" / f"{args.split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(row) + "\n" for row in kept))
    print(f"{args.target}: {len(qids)} queries, {len(judged)} judged + {len(docs) - len(judged)} other documents")


if __name__ == "__main__":
    main()
