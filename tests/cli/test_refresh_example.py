"""examples/refresh.sh end to end on a tiny model and a tiny BEIR folder: mine, train, evaluate against
the model the index serves, re-embed the index only when the new adapter is better."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from e5rag.cli import main
from e5rag.indexers import open_store
from e5rag.retriever.loading import adapter_identity

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "refresh.sh"
WORDS = ("vaccine immune cell protein market rate bond city river capital energy plant light claim evidence "
         "study trial dose risk gene coffee diabetes heart brain").split()


def tiny_beir(root: Path) -> Path:
    """A BEIR folder named scifact: 24 documents, 8 train and 4 test queries."""
    rng = random.Random(3)
    data = root / "scifact"
    (data / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": WORDS[i % len(WORDS)], "text": " ".join(rng.sample(WORDS, 6))} for i in range(24)]
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": " ".join(docs[2 * i]["text"].split()[:3])} for i in range(12)]
    (data / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    rows = lambda ids: "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{2 * i}\t1\n" for i in ids)  # noqa: E731
    (data / "qrels" / "train.tsv").write_text(rows(range(8)))
    (data / "qrels" / "test.tsv").write_text(rows(range(8, 12)))
    return data


def run_script(index: Path, data: Path, run: Path, min_gain: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "MAX_LENGTH": "48", "MIN_GAIN": min_gain,
           "TRAIN_ARGS": "--max-steps 3 --batch-size 4 --lr 2e-3 --save-every 1000 --lora-r 4",
           "MINE_ARGS": "--window 2-10 --num-negatives 2"}
    return subprocess.run(["bash", str(SCRIPT), str(index), str(data), str(run)], capture_output=True, text=True,
                          env=env, timeout=900)


def metric(path: Path) -> float:
    return json.loads(path.read_text())["results"][0]["metrics"]["ndcg@10"]


def test_refresh_loop_reindexes_only_when_better(mistral_dir, tmp_path):
    data = tiny_beir(tmp_path)
    index, run = tmp_path / "idx", tmp_path / "run"
    assert main(["index", str(data / "corpus.jsonl"), "--index", str(index), "--model", str(mistral_dir),
                 "--max-length", "48"]) == 0

    # MIN_GAIN=-1: any new adapter counts as better, so the index is re-embedded with it.
    r = run_script(index, data, run, "-1")
    assert r.returncode == 0, r.stderr[-3000:]
    old, new = metric(run / "eval-current.json"), metric(run / "eval-new.json")
    assert f"== current model: --model={mistral_dir.resolve()}\n" in r.stderr  # read from the index's record
    assert f"== better ndcg@10 {old:.4f} -> {new:.4f}" in r.stderr and "1. mine" in r.stderr
    assert (run / "mined.jsonl").stat().st_size > 0
    with open_store(index, readonly=True) as store:
        record, count = store.manifest.model, store.count()
    assert record["adapter"] == adapter_identity(run / "adapter") and count == 24
    assert record["source"] == str(mistral_dir.resolve()) and record["adapter_path"] == str((run / "adapter").resolve())

    # A gain of 1 is never reached: the rerun reuses the mined data and adapter, and keeps the index.
    before = (index / "CURRENT").read_text()
    r = run_script(index, data, run, "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1. mine" not in r.stderr and "2. train" not in r.stderr
    assert "== kept ndcg@10" in r.stderr and "keeps its model" in r.stderr
    # the current model is now the one the first run switched to: both evaluations score it
    assert metric(run / "eval-current.json") == metric(run / "eval-new.json") == new
    assert (index / "CURRENT").read_text() == before
