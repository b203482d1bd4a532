"""Fixtures for training tests: a small learnable pairs file, a tiny BEIR folder, a config factory."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("peft") is None:  # training needs the `train` extra
    collect_ignore_glob = ["test_training_*.py"]

WORDS = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud "
         "forest bridge candle mirror rocket garden").split()
TASK = "Find the phrase"  # short: the tiny tokenizer spends ~1 token a character


def write_pairs(path: Path, n: int = 48, seed: int = 0, negatives: bool = True) -> Path:
    """A learnable task: the positive starts with the query's words; the negative shares none of them."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            a, b, c, x, y = rng.sample(WORDS, 5)
            row = {"task": TASK, "query": f"{a} {b}", "positive": f"{a} {b} {c} again",
                   "negative": f"{x} {y} {c} again" if negatives else None, "source": "test", "id": rng.random()}
            fh.write(json.dumps(row) + "\n")
    return path


def wait_for_steps(proc: subprocess.Popen, metrics: Path, steps: int, timeout_s: float = 300) -> None:
    """Block until the training run ``proc`` has logged ``steps`` metrics lines; fail if it ended first."""
    deadline = time.monotonic() + timeout_s
    while (not metrics.is_file() or len(metrics.read_text().splitlines()) < steps) and proc.poll() is None:
        assert time.monotonic() < deadline, f"fewer than {steps} steps logged in {timeout_s} s"
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before the signal: {proc.stderr.read()[-3000:]}"


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture(scope="session")
def beir_dir(tmp_path_factory) -> Path:
    """A BEIR folder named ``scifact`` (so its task resolves by name): 30 documents, 6 train queries."""
    root = tmp_path_factory.mktemp("beir") / "scifact"
    (root / "qrels").mkdir(parents=True)
    rng = random.Random(1)
    docs = [{"_id": f"d{i}", "title": f"{WORDS[i % len(WORDS)]}", "text": " ".join(rng.sample(WORDS, 6))}
            for i in range(30)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": " ".join(rng.sample(WORDS, 3))} for i in range(8)]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    train = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{3 * i}\t1" for i in range(6)] + ["q0\td1\t1", "q1\td2\t0"]
    (root / "qrels" / "train.tsv").write_text("\n".join(train) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq6\td5\t1\nq7\td6\t1\n")
    return root


@pytest.fixture
def make_config(mistral_dir, pairs_file, tmp_path):
    """TrainConfig factory on the tiny Mistral with fast defaults; keyword arguments override."""
    from e5rag.training.config import TrainConfig

    def make(**overrides):
        values = dict(data=(str(pairs_file),), output=str(tmp_path / "run"), model=str(mistral_dir), max_length=48,
                      batch_size=8, lr=2e-3, max_steps=4, save_every=1000, progress=False)
        values.update(overrides)
        return TrainConfig(**values)

    return make
