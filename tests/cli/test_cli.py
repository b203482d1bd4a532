"""The CLI: end to end in a subprocess, and every bad input as one clear line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e5rag.cli import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "corpus.jsonl"


def run_cli(*args, stdin=None):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "e5rag", *map(str, args)], input=stdin, text=True,
                          capture_output=True, env=env, timeout=300)


def test_index_and_search_end_to_end_in_a_subprocess(mistral_dir, tmp_path):
    index = tmp_path / "idx"
    r = run_cli("index", CORPUS, "--index", index, "--model", mistral_dir, "--max-length", 64, "--json")
    assert r.returncode == 0, r.stderr
    n_docs = sum(1 for line in CORPUS.read_text().splitlines() if line.strip())
    assert json.loads(r.stdout) == {"index": str(index), "added": n_docs, "updated": 0, "skipped": 0, "total": n_docs,
                                       "metadata_updated": 0}
    queries = "\n".join(json.dumps(q) for q in [
        {"id": "q1", "text": "Does coffee lower the risk of diabetes?", "task": "scifact"},
        {"id": "q2", "text": "Does coffee lower the risk of diabetes?", "task": "quora"}])
    r = run_cli("search", "--index", index, "-k", 3, "--json", stdin=queries)  # model read from the manifest
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["id"] for row in rows] == ["q1", "q2"]
    assert rows[0]["task"].startswith("Given a scientific claim") and rows[1]["task"].startswith("Given a question")
    assert [len(row["results"]) for row in rows] == [3, 3]
    assert [x["rank"] for x in rows[0]["results"]] == [1, 2, 3]
    assert rows[0]["results"][0]["score"] != rows[1]["results"][0]["score"]
    assert set(rows[0]["results"][0]) == {"id", "score", "rank", "title", "text", "metadata"}
    r = run_cli("index", CORPUS, "--index", index, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["skipped"] == n_docs


@pytest.fixture
def built_index(mistral_dir, tmp_path):
    index = tmp_path / "idx"
    assert main(["index", str(CORPUS), "--index", str(index), "--model", str(mistral_dir), "--max-length", "64"]) == 0
    return index


def test_table_output_delete_info_tasks(built_index, capsys):
    capsys.readouterr()
    assert main(["search", "--index", str(built_index), "--task", "nq", "-k", "2", "where is the Louvre"]) == 0
    out = capsys.readouterr().out
    assert "query: where is the Louvre" in out and "retrieve Wikipedia passages" in out
    assert len([line for line in out.splitlines() if line.startswith("    ")]) == 2
    assert main(["delete", "--index", str(built_index), "web-paris", "nope"]) == 0
    assert "deleted 1 of 2 ids" in capsys.readouterr().err
    assert main(["info", "--index", str(built_index)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["store"] == "faiss" and info["count"] == 29 and info["model"]["max_length"] == 64
    assert main(["tasks"]) == 0
    assert "scifact" in capsys.readouterr().out


def _error(capsys, argv, match):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("e5rag: error: ") and match in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_clear_line(built_index, mistral_dir, tmp_path, capsys, monkeypatch):
    from tiny_models import save_tiny_model

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2", "text": \n')
    _error(capsys, ["index", str(bad), "--index", str(tmp_path / "n")], "bad.jsonl line 2: not valid JSON")
    assert not (tmp_path / "n").exists()  # input is validated before anything is created
    _error(capsys, ["index", str(tmp_path / "nope.jsonl"), "--index", str(tmp_path / "n")], "no such file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    _error(capsys, ["index", str(empty), "--index", str(tmp_path / "n")], "no documents")
    noid = tmp_path / "noid.jsonl"
    noid.write_text('{"text": "x"}\n')
    _error(capsys, ["index", str(noid), "--index", str(tmp_path / "n")], "--id-field")
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "1", "text": "x"}\n{"id": "1", "text": "y"}\n')
    _error(capsys, ["index", str(dup), "--index", str(tmp_path / "n")], "appears twice")
    _error(capsys, ["search", "--index", str(built_index), "--task", "scifcat", "q"], "unknown task name 'scifcat'")
    _error(capsys, ["search", "--index", str(built_index), "   "], "empty")
    _error(capsys, ["search", "--index", str(tmp_path / "missing"), "q"], "no index at")
    other = save_tiny_model(tmp_path / "other", "llama", seed=3)
    _error(capsys, ["search", "--index", str(built_index), "--model", str(other), "q"], "was built with")
    _error(capsys, ["index", str(CORPUS), "--index", str(built_index), "--model", str(other)], "was built with")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"text": "q", "task": ""}\n'))
    _error(capsys, ["search", "--index", str(built_index)], "line 1")
    _error(capsys, ["search", "--index", str(built_index), "--model", str(tmp_path / "nomodel"), "q"], "not found")
    _error(capsys, ["search", "--index", str(built_index), "--filter", 'metadata.x > 1', "q"], "attribute .x")


def test_txt_dir_and_stdin_sources(mistral_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Coffee\nCoffee is brewed from roasted beans.")
    (folder / "sub" / "b.txt").write_text("Tea is brewed from leaves.")
    lines = tmp_path / "lines.txt"
    lines.write_text("first line document\n\nsecond line document\n")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("from stdin\n"))
    index = tmp_path / "i"
    assert main(["index", str(folder), str(lines), "-", "--index", str(index), "--model", str(mistral_dir),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 5
    from e5rag.indexers import open_store

    with open_store(index, readonly=True) as store:
        a, b, l1, l3, s1 = store.get(["a.md", "sub/b.txt", "lines:1", "lines:3", "stdin:1"])
    assert a.text.startswith("# Coffee") and b.text == "Tea is brewed from leaves."
    assert (l1.text, l3.text, s1.text) == ("first line document", "second line document", "from stdin")


@pytest.mark.milvus
def test_milvus_lite_through_the_cli_matches_faiss(built_index, mistral_dir, tmp_path, capsys):
    pytest.importorskip("milvus_lite")
    db = tmp_path / "demo.db"
    assert main(["index", str(CORPUS), "--index", str(db), "--model", str(mistral_dir), "--max-length", "64"]) == 0
    assert main(["info", "--index", str(db)]) == 0
    capsys.readouterr()
    results = {}
    for location in (db, built_index):
        assert main(["search", "--index", str(location), "--task", "scifact", "-k", "5", "--json",
                     "coffee and diabetes"]) == 0
        results[location] = json.loads(capsys.readouterr().out)["results"]
    assert [r["id"] for r in results[db]] == [r["id"] for r in results[built_index]]
    assert [r["score"] for r in results[db]] == pytest.approx([r["score"] for r in results[built_index]], abs=1e-5)
    assert main(["search", "--index", str(db), "--filter", 'metadata["category"] == "travel"', "-k", "10",
                 "--json", "city"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert len(hits) == 3 and {h["metadata"]["category"] for h in hits} == {"travel"}
    other = tmp_path / "faiss.db"
    assert main(["index", str(CORPUS), "--index", str(other), "--store", "faiss", "--model", str(mistral_dir),
                 "--max-length", "64"]) == 0
    assert (other / "CURRENT").is_file()  # --store overrides the .db suffix
