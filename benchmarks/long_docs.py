"""Long documents: file-level recall@3 with and without chunking, and indexing time per 1M characters.

    .venv/bin/python benchmarks/long_docs.py beir/scifact --queries 30 --max-length 256

A corpus of long "files" is built from a BEIR dataset: for each sampled test query, one file of
``--distractors`` random abstracts (none relevant to that query) followed by the abstract that
answers it, last, as a real manual or report would bury it. Each file is indexed as one document
by ``SearchIndex.add``, once chunked (the default) and once with ``chunking=None`` (each file
truncated to the model's max length, the behaviour before chunking). A query is a hit when its own
file is among the top 3 *files* (search is grouped per document). Without chunking only each
file's first passage is embedded, so the answer at the end is invisible and recall falls to about
what chance gives (3 / number of files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from datetime import datetime
from pathlib import Path

from e5rag.indexers import Document, open_store
from e5rag.retriever.chunking import ChunkConfig
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.evaluation.beir import load_beir
from e5rag.retriever.search import SearchIndex


def build_files(dataset: Path, split: str, n_queries: int, distractors: int, seed: int):
    """(files, queries): files are Documents of concatenated abstracts, answer last; queries are
    (query text, id of its file)."""
    data = load_beir(dataset, split)
    corpus = {d.id: d for d in data.corpus}
    rng = random.Random(seed)
    qids = sorted(q for q in data.qrels if any(d in corpus for d, rel in data.qrels[q].items() if rel > 0))
    qids = rng.sample(qids, min(n_queries, len(qids)))
    ids = sorted(corpus)
    files, queries = [], []
    for i, qid in enumerate(qids):
        relevant = {d for d, rel in data.qrels[qid].items() if rel > 0}
        answer = corpus[sorted(relevant & corpus.keys())[0]]
        others = []
        while len(others) < distractors:
            pick = rng.choice(ids)
            if pick not in relevant and pick not in others:
                others.append(pick)
        parts = [corpus[d] for d in others] + [answer]
        text = "\n\n".join(f"{d.title}\n{d.text}".strip() for d in parts)
        files.append(Document(f"file{i:04d}", text, "", {"answer": answer.id}))
        queries.append((data.queries[qid], f"file{i:04d}"))
    return files, queries


def run(index_dir: Path, encoder: Encoder, files, queries, task: str, chunking: ChunkConfig | None, k: int = 3):
    with SearchIndex(encoder, open_store(index_dir), writing=True) as index:
        start, cpu = time.perf_counter(), time.process_time()
        index.add(files, batch_size=8, chunking=chunking)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        stored = index.store.count()
        hits = index.search([q for q, _ in queries], task=task, k=k)
    found = sum(1 for (_, want), h in zip(queries, hits, strict=True)
                if want in {x.document.metadata.get("parent_id", x.document.id) for x in h})
    chars = sum(len(f.text) for f in files)
    return {"chunking": chunking is not None, "recall@3": round(found / len(queries), 4), "stored_passages": stored,
            "index_s": round(seconds, 1), "s_per_1M_chars": round(seconds * 1e6 / chars, 1),
            "cpu_s_per_1M_chars": round(cpu * 1e6 / chars, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="BEIR folder, e.g. beir/scifact")
    p.add_argument("--split", default="test")
    p.add_argument("--queries", type=int, default=30, help="sampled queries = files in the corpus")
    p.add_argument("--distractors", type=int, default=8, help="abstracts before the answer in each file")
    p.add_argument("--model", default=None, help="model (default: the embedded SmolLM2 + adapter)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--chunk-tokens", type=int, default=None)
    p.add_argument("--chunk-overlap", type=int, default=None)
    p.add_argument("--task", default=None, help="task (default: the folder name, e.g. scifact)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = p.parse_args()
    files, queries = build_files(args.dataset, args.split, args.queries, args.distractors, args.seed)
    encoder = Encoder.from_pretrained(args.model, max_length=args.max_length)
    task = args.task or args.dataset.name
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, chunking in (("chunked", ChunkConfig(args.chunk_tokens, args.chunk_overlap)), ("truncated", None)):
            results.append(run(Path(tmp) / name, encoder, files, queries, task, chunking))
            print(json.dumps(results[-1]), flush=True)
    import torch

    report = {"date": datetime.now().isoformat(timespec="minutes"), "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "dataset": str(args.dataset), "files": len(files),
              "chars_per_file": round(sum(len(f.text) for f in files) / len(files)), "model": args.model or "default",
              "max_length": args.max_length, "chance_recall@3": round(min(1.0, 3 / len(files)), 4), "results": results}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
