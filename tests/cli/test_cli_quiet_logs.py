"""No dependency progress bar reaches a log: the first use of the GGUF default converts it with
transformers' own tqdm, which must stay out of a piped stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow  # a real GGUF conversion into a fresh cache: 3-4 minutes on 2 loaded cores
@pytest.mark.smollm2
def test_gguf_conversion_draws_no_bar_into_a_log(tmp_path):
    corpus = tmp_path / "one.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Coffee and diabetes."}) + "\n")
    env = dict(os.environ, E5RAG_CACHE=str(tmp_path / "fresh-cache"))  # nothing converted yet
    env.pop("TQDM_DISABLE", None)
    r = subprocess.run([sys.executable, "-m", "e5rag", "index", str(corpus), "--index", str(tmp_path / "idx"),
                        "--model", "smollm2-135m"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert any((tmp_path / "fresh-cache").rglob("config.json"))  # it did convert in this run
    assert "Converting and de-quantizing" not in r.stderr and "\r" not in r.stderr
    assert "e5rag: loading model smollm2-135m ..." in r.stderr
