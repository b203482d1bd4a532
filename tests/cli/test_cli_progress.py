"""`index` and `search` in logs: a line around the model load, periodic encode lines (no bar, no
carriage returns) when stderr is not a terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys


def _cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "e5rag", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)


def test_index_logs_model_load_and_periodic_progress_lines(mistral_dir, tmp_path):
    n = 300  # above the 256 texts from which encode reports progress by default
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document number {i} about topic {i % 7}"}) + "\n"
                              for i in range(n)))
    index = tmp_path / "idx"
    r = _cli("index", corpus, "--index", index, "--model", mistral_dir, "--max-length", 32, "--batch-size", 32,
             E5RAG_PROGRESS_SECONDS="0")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert f"e5rag: loading model {mistral_dir} ..." in lines
    assert any(re.fullmatch(r"e5rag: \.\.\. done in \d+\.\d s", line) for line in lines)
    counts = [int(m.group(1)) for line in lines if (m := re.match(rf"encode: (\d+)/{n} texts", line))]
    assert counts == sorted(counts) and counts[-1] == n and len(counts) == -(-n // 32)  # one per batch here
    assert "\r" not in r.stderr and "it/s" not in r.stderr

    r = _cli("search", "--index", index, "-k", "1", "topic 3")  # the default interval: no lines for 1 query
    assert r.returncode == 0, r.stderr
    assert f"e5rag: loading model {mistral_dir} ..." in r.stderr.splitlines()
    assert "encode:" not in r.stderr
