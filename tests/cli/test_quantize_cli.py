"""--quantize reaches the encoder from index, search and eval; an index's int8 is kept by later calls."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from e5rag.cli import main

pytest.importorskip("torchao")

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "corpus.jsonl"


def test_index_and_search_flags_reach_the_encoder(mistral_dir, tmp_path, capsys, caplog):
    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.instructions import format_query
    from e5rag.retriever.tasks import resolve_task

    index = str(tmp_path / "idx")
    assert main(["index", str(CORPUS), "--index", index, "--model", str(mistral_dir), "--max-length", "64", "--no-chunk",
                 "--quantize", "int8"]) == 0
    capsys.readouterr()
    assert main(["info", "--index", index, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["quantization"] == "int8"

    # search without --quantize uses the index's int8: the scores are an int8 encoder's, and no warning
    query = "where is the Louvre"
    with caplog.at_level(logging.WARNING, logger="e5rag.retriever.search"):
        assert main(["search", "--index", index, "--json", "-k", "1", "--task", "nq", query]) == 0
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert not [r for r in caplog.records if r.name == "e5rag.retriever.search"]
    int8 = Encoder.from_pretrained(mistral_dir, max_length=64, quantize="int8")
    fp32 = Encoder.from_pretrained(mistral_dir, max_length=64)
    doc = [d for d in map(json.loads, CORPUS.read_text().splitlines()) if d["_id"] == hit["id"]][0]
    text = f"{doc['title']} {doc['text']}" if doc.get("title") else doc["text"]
    q = format_query(resolve_task("nq"), query)

    def score(enc):
        return float(enc.encode([q])[0] @ enc.encode([text])[0])

    assert hit["score"] == pytest.approx(score(int8), abs=1e-5)
    assert abs(score(int8) - score(fp32)) > 1e-5  # so the check above tells them apart

    # --quantize none searches the int8 index with fp32 queries: allowed, with the warning
    with caplog.at_level(logging.WARNING, logger="e5rag.retriever.search"):
        assert main(["search", "--index", index, "--json", "-k", "1", "--quantize", "none", query]) == 0
    assert any("same model" in r.getMessage() for r in caplog.records)
    # ... but adding fp32 vectors to it is one clear error
    capsys.readouterr()
    assert main(["index", str(CORPUS), "--index", index, "--quantize", "none"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("e5rag: error: ") and "--quantize int8" in err


def test_eval_quantize_reaches_the_encoder(mistral_dir, tmp_path, capsys):
    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.evaluation import evaluate_dataset, load_beir
    data = tmp_path / "scifact"  # a small BEIR folder
    (data / "qrels").mkdir(parents=True)
    docs = {"d1": "Plants convert light energy into chemical energy.", "d2": "Paris is the capital of France.",
            "d3": "Vaccines train the immune system.", "d4": "Reset your password in the security settings."}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs.items()))
    queries = {"q1": "how do plants make energy", "q2": "capital of France"}
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    assert main(["eval", str(data), "--model", str(mistral_dir), "--max-length", "64", "--k", "10",
                 "--quantize", "int8", "--no-cache", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["fingerprint"]["quantization"] == "int8" and result["model"].endswith(", int8")
    enc = Encoder.from_pretrained(mistral_dir, max_length=64, quantize="int8")
    want = evaluate_dataset(enc, load_beir(data), model_name="tiny", k=10)[0]
    assert result["metrics"] == pytest.approx(want.metrics, abs=1e-6)
    assert np.isfinite(list(result["metrics"].values())).all()


def test_torchao_import_noise_is_not_shown(mistral_dir, tmp_path):
    """Importing torchao on a CPU-only torch logs CUDA-library, triton and pytree notices the user cannot
    act on; an int8 run in a fresh process shows none of them."""
    env = dict(os.environ, E5RAG_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "e5rag", "index", str(CORPUS), "--index", str(tmp_path / "i"),
                           "--model", str(mistral_dir), "--max-length", "32", "--quantize", "int8"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "indexed" in done.stderr
    if torch.version.cuda is None:
        for noise in ("Failed to load", "Detected no triton", "is an Enum subclass"):
            assert noise not in done.stderr
