"""SIGTERM to a running ``synth`` (a real signal to a subprocess talking to the loopback fake
server): the summary is written, every row already in the file is whole and kept, the exit code
is 143, and rerunning the same command resumes. Progress lines (not a bar) go to a piped stderr."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = ("import argparse, sys; from e5rag.cli import synth as s; p = argparse.ArgumentParser(); "
          "s.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")


def _start(url: str, out: Path, n: int) -> subprocess.Popen:
    args = [sys.executable, "-c", DRIVER, "synth", "--base-url", url, "--model", "fake-model",
            "--num-examples", str(n), "--out", str(out), "--concurrency", "2", "--seed", "3",
            "--kinds", "sts", "--summary-json", "-"]
    env = dict(os.environ, OPENAI_API_KEY="unused", E5RAG_PROGRESS_SECONDS="0")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigterm_writes_the_summary_keeps_the_rows_and_exits_143(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.delay_s = 0.05
    fake.script.extend(["malformed", "good", "good"] * 20)
    out, n = tmp_path / "data.jsonl", 500
    proc = _start(url, out, n)
    deadline = time.monotonic() + 60
    while len(out.read_text().splitlines() if out.exists() else []) < 5 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr

    rows = _rows(out)  # every line parses: nothing torn
    summary = json.loads(stdout)
    assert summary["interrupted"] == "SIGTERM" and not summary["complete"]
    assert summary["total"] == summary["kept"] == len(rows) >= 5
    assert f"synth: {len(rows)}/{n} examples" in stderr and "stopped by SIGTERM" in stderr
    assert "interrupted by SIGTERM" in stderr and "rerun the same command" in stderr

    # progress lines, one per answered request here (interval 0), never a carriage-return bar
    progress = [line for line in stderr.splitlines() if re.match(rf"synth: \d+/{n} examples \(\d+%\)", line)]
    assert len(progress) >= 5 and "\r" not in stderr
    assert "requests answered" in progress[-1]

    again = _start(url, out, len(rows) + 3)  # the same command with a reachable target resumes
    stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    resumed = json.loads(stdout)
    assert resumed["resumed"] == len(rows) and resumed["total"] == len(rows) + 3 and resumed["interrupted"] is None
    assert len(_rows(out)) == len(rows) + 3
