"""benchmarks/zeroshot.py turns a pair source into a BEIR folder that e5rag's own loader reads, with
every query's positives (and only those) relevant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from e5rag.retriever.evaluation.beir import load_beir

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "zeroshot.py"


def _zeroshot():
    spec = importlib.util.spec_from_file_location("zeroshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_writes_a_beir_folder_with_exact_qrels(tmp_path):
    rows = [{"task": "Given a question, retrieve answers", "query": f"question {i % 7}", "positive": f"answer {i}"}
            for i in range(30)]
    rows.append({"task": "Given a question, retrieve answers", "query": "", "positive": "no query"})
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    counts = _zeroshot().build(src, tmp_path / "zs", queries=3, corpus=10, seed=1)
    data = load_beir(tmp_path / "zs")
    assert counts["queries"] == len(data.queries) == 3 and counts["task"] == "Given a question, retrieve answers"
    texts = {doc.id: doc.text for doc in data.corpus}
    for qid, query in data.queries.items():
        expected = {r["positive"] for r in rows if r["query"] == query}
        assert {texts[d] for d in data.qrels[qid]} == expected  # every positive of the query, nothing else
    # the corpus keeps the sampled queries' positives and fills up to --corpus with other answers
    assert len(texts) == max(10, counts["qrels"]) and "no query" not in texts.values()
    assert (tmp_path / "zs" / "task.txt").read_text(encoding="utf-8").strip() == counts["task"]
