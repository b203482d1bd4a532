"""`e5rag serve` as a user runs it, and `e5rag search --server` against it: the same results as a
search that loads the model, from a process that never imports torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e5rag.cli import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "corpus.jsonl"
QUERIES = "\n".join(json.dumps(q) for q in [
    {"id": "q1", "text": "Does coffee lower the risk of diabetes?", "task": "scifact"},
    {"id": "q2", "text": "Does coffee lower the risk of diabetes?", "task": "quora"}])
# Runs `e5rag search` in this interpreter and reports whether torch or transformers got imported.
SEARCH_NO_TORCH = ("import sys\nfrom e5rag.cli import main\nrc = main(sys.argv[1:])\n"
                   "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, "
                   "'transformers': 'transformers' in sys.modules}), file=sys.stderr)\nsys.exit(rc)\n")


@pytest.fixture
def served_index(mistral_dir, tmp_path):
    index = tmp_path / "idx"
    assert main(["index", str(CORPUS), "--index", str(index), "--model", str(mistral_dir), "--max-length", "192"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "e5rag", "serve", "--index", str(index), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield index, json.loads(line)["url"], proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_search_through_the_server_matches_a_local_search_without_importing_torch(served_index):
    index, url, proc = served_index
    local = subprocess.run([sys.executable, "-m", "e5rag", "search", "--index", str(index), "-k", "3", "--json"],
                           input=QUERIES, text=True, capture_output=True, timeout=300)
    assert local.returncode == 0, local.stderr
    remote = subprocess.run([sys.executable, "-c", "import json\n" + SEARCH_NO_TORCH, "search", "--index", str(index),
                             "-k", "3", "--json", "--server", url], input=QUERIES, text=True, capture_output=True,
                            timeout=300)
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stderr.strip().splitlines()[-1]) == {"rc": 0, "torch": False, "transformers": False}
    want = [json.loads(x) for x in local.stdout.splitlines()]
    got = [json.loads(x) for x in remote.stdout.splitlines()]
    assert [[h["id"] for h in q["results"]] for q in got] == [[h["id"] for h in q["results"]] for q in want]
    assert [[round(h["score"], 4) for h in q["results"]] for q in got] == \
        [[round(h["score"], 4) for h in q["results"]] for q in want]
    # the environment variable does the same as --server
    env = dict(os.environ, E5RAG_SERVER=url)
    via_env = subprocess.run([sys.executable, "-m", "e5rag", "search", "--index", str(index), "-k", "3", "--json"],
                             input=QUERIES, text=True, capture_output=True, timeout=300, env=env)
    assert via_env.returncode == 0 and via_env.stdout == remote.stdout
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert "stopped after embedding 4 texts" in proc.stderr.read()


def test_server_flags_refused_beside_local_model_flags(mistral_dir, tmp_path, capsys):
    index = tmp_path / "idx"
    assert main(["index", str(CORPUS), "--index", str(index), "--model", str(mistral_dir), "--max-length", "64"]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--server", "http://127.0.0.1:9", "--max-length", "32", "x"]) == 2
    err = capsys.readouterr().err
    assert "--max-length choose the model loaded here" in err and "Traceback" not in err
    assert main(["search", "--index", str(index), "--server", "http://127.0.0.1:9", "x"]) == 2  # nothing listens
    assert "no e5rag server answers at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["serve", "--index", str(tmp_path / "empty"), "--port", "0"]) == 2
    assert "no index at" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be 0 to 65535" in capsys.readouterr().err
