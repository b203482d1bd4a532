"""``e5rag eval`` end to end in a subprocess: JSON, cache reuse across calls, plot, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_evaluation_beir import write_beir

from e5rag.retriever.evaluation import evaluate_dataset, load_beir

REPO = Path(__file__).resolve().parents[2]


def e5rag(*args, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, E5RAG_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "e5rag", "eval", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)


def test_eval_json_plot_and_cache_in_a_subprocess(mistral_dir, tiny_encoder, tmp_path):
    data, cache = write_beir(tmp_path / "scifact"), tmp_path / "cache"
    first = e5rag(data, "--model", mistral_dir, "--max-length", 64, "--k", 10, "--both", "--json",
                  "--output", tmp_path / "r.json", "--plot", tmp_path / "r.png", cache=cache)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert json.loads((tmp_path / "r.json").read_text())["results"] == report["results"]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with_i, without = report["results"]
    assert (with_i["instruction"], without["instruction"]) == (True, False)
    assert (with_i["doc_source"], without["doc_source"]) == ("encoded", "reused")
    # the same numbers as the library computes in this process with the same tiny model
    want = evaluate_dataset(tiny_encoder, load_beir(data), model_name="tiny", modes=(True, False), k=10)
    for got, expected in zip(report["results"], want, strict=True):
        assert got["metrics"] == pytest.approx(expected.metrics, abs=1e-6)

    second = e5rag(data, "--model", mistral_dir, "--max-length", 64, "--k", 10, "--task", "arguana", cache=cache)
    assert second.returncode == 0, second.stderr
    assert "cached" in second.stdout and "scifact" in second.stdout and "ndcg@10" in second.stdout


def test_bad_folder_is_one_line_and_exit_2(tmp_path):
    data = write_beir(tmp_path / "scifact")
    (data / "qrels" / "test.tsv").unlink()
    done = e5rag(data, "--model", "all-MiniLM-L6-v2", cache=tmp_path / "cache")
    assert done.returncode == 2
    assert done.stderr.startswith("e5rag: error: ") and "split 'test'" in done.stderr
    assert "Traceback" not in done.stderr
