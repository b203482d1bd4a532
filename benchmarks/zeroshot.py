"""Zero-shot retrieval sets in BEIR format, built from a pair source that a training run leaves out.

Issue 19 asks the next default to be scored on collections it never saw. The pair sources in
``../shared/train-data`` (JSONL rows ``{"task", "query", "positive", ...}``) become BEIR folders:
the corpus is the source's distinct positives (all of them, or a sample that always keeps the
sampled queries' own positives), the queries are sampled rows, and a query's relevant documents are
every corpus entry equal to one of its positives. The folder also gets ``task.txt``, the source's
task sentence, for ``e5rag eval --task``. A source used here must then be left out of training
(``e5rag train --data`` without it), or the score is not zero-shot.

    .venv/bin/python benchmarks/zeroshot.py ../shared/train-data/medquad.jsonl --out data/zs-medquad \
        --queries 500 --corpus 5000
    .venv/bin/e5rag eval data/zs-medquad --task "$(cat data/zs-medquad/task.txt)" --model all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
from pathlib import Path


def _doc_id(text: str) -> str:
    return "d" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build(source: Path, out: Path, queries: int, corpus: int | None, seed: int = 0) -> dict:
    """Write ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv`` and ``task.txt`` under ``out``.

    Returns counts. Queries asked more than once (same text) are merged: their positives all count.
    """
    by_query: dict[str, set[str]] = collections.defaultdict(set)
    tasks: collections.Counter[str] = collections.Counter()
    with open(source, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            query, positive = str(row["query"]).strip(), str(row["positive"]).strip()
            if not query or not positive:
                continue
            by_query[query].add(positive)
            tasks[str(row.get("task", ""))] += 1
    if not by_query:
        raise SystemExit(f"{source}: no rows with a query and a positive")
    rng = random.Random(seed)
    picked = sorted(by_query)
    rng.shuffle(picked)
    picked = picked[:queries]
    needed = {p for q in picked for p in by_query[q]}
    others = sorted({p for ps in by_query.values() for p in ps} - needed)
    rng.shuffle(others)
    room = len(others) if corpus is None else max(0, corpus - len(needed))
    docs = sorted(needed | set(others[:room]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for text in docs:
            fh.write(json.dumps({"_id": _doc_id(text), "title": "", "text": text}, ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as qf, \
            open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as rf:
        rf.write("query-id\tcorpus-id\tscore\n")
        for i, query in enumerate(picked):
            qid = f"q{i}"
            qf.write(json.dumps({"_id": qid, "text": query}, ensure_ascii=False) + "\n")
            for positive in sorted(by_query[query]):
                rf.write(f"{qid}\t{_doc_id(positive)}\t1\n")
    task = tasks.most_common(1)[0][0]
    (out / "task.txt").write_text(task + "\n", encoding="utf-8")
    return {"source": source.name, "queries": len(picked), "corpus": len(docs),
            "qrels": sum(len(by_query[q]) for q in picked), "task": task}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="pair JSONL: {task, query, positive, ...} rows")
    p.add_argument("--out", type=Path, required=True, help="BEIR folder to write")
    p.add_argument("--queries", type=int, default=500, help="queries to sample (default: 500)")
    p.add_argument("--corpus", type=int, default=None,
                   help="corpus size (default: every distinct positive of the source)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(json.dumps(build(args.source, args.out, args.queries, args.corpus, args.seed)))


if __name__ == "__main__":
    main()
