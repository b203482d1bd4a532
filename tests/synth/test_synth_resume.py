"""Resumability: a run killed with SIGKILL mid-way and restarted finishes with exactly N valid,
unique rows; torn last lines are repaired; the API key never reaches a file or the console."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from e5rag.synth.kinds import KIND_SPECS
from e5rag.synth.store import example_key, load_existing, repair_tail
from e5rag.synth.validate import check_example

REPO = Path(__file__).resolve().parents[2]
# The CLI module driven on its own (independent of the other e5rag sub-commands).
DRIVER = ("import argparse, sys; from e5rag.cli import synth as s; p = argparse.ArgumentParser(); "
          "s.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
SECRET = "sk-test-never-write-me-42"


def _start(url: str, out: Path, n: int, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-c", DRIVER, "synth", "--base-url", url, "--model", "fake-model",
            "--num-examples", str(n), "--output", str(out), "--concurrency", "4", "--seed", "7",
            "--api-key-env", "E5RAG_TEST_KEY", "--timeout", "5", *extra]
    env = dict(os.environ, E5RAG_TEST_KEY=SECRET)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_after(proc: subprocess.Popen, out: Path, rows: int, limit_s: float = 30.0) -> str:
    deadline = time.monotonic() + limit_s
    while _lines(out) < rows and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    return err


def test_sigkill_and_restart_gives_exactly_n_unique_valid_rows(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.delay_s = 0.1  # 40 replies a second at most: the poller below sees each kill point on a loaded host
    fake.script.extend(["malformed", "dup", "good", "dup", "fenced", "500", "good", "dup"] * 6)
    out, n = tmp_path / "data.jsonl", 60
    logs = [_kill_after(_start(url, out, n), out, 10)]
    with open(out, "ab") as fh:  # what a kill in the middle of a write leaves behind
        fh.write(b'{"id": "7-999", "kind": "sts", "query": "torn')
    logs.append(_kill_after(_start(url, out, n), out, 30))
    final = _start(url, out, n, "--summary-json", "-")
    stdout, stderr = final.communicate(timeout=60)
    logs.append(stderr)
    assert final.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["complete"] and summary["total"] == n and summary["resumed"] >= 30

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == n
    assert len({r["id"] for r in rows}) == n
    assert len({example_key(r["query"], r["positive"], r["negative"]) for r in rows}) == n
    for r in rows:
        keys = KIND_SPECS[r["kind"]].keys
        example = dict(zip(keys, (r["query"], r["positive"], r["negative"]), strict=True))
        assert check_example(r["kind"], example)[1] is None
    assert sum(1 for r in rows if r["query"] == "query number 0") == 1  # the scripted duplicate, once

    # the brainstormed pools were made once (first run) and reused by both restarts
    brainstorms = [e for e in fake.log if "JSON array" in e["body"]["messages"][0]["content"]]
    assert len(brainstorms) == 4
    assert len(Path(f"{out}.tasks.jsonl").read_text().splitlines()) == 4

    # the key went to the server in the header, and nowhere else
    assert all(e["headers"]["Authorization"] == f"Bearer {SECRET}" for e in fake.log)
    for f in tmp_path.rglob("*"):
        assert not f.is_file() or SECRET not in f.read_text(errors="ignore")
    assert all(SECRET not in text for text in logs + [stdout])


def test_repair_tail_cuts_only_an_unterminated_last_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert repair_tail(path) == len(b'{"c": ')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert repair_tail(path) == 0
    path.write_bytes(b'{"only": "torn')
    repair_tail(path)
    assert path.read_bytes() == b""


def test_load_existing_rebuilds_count_seen_set_and_next_index(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"id": "3-5", "query": "q1", "positive": "p1", "negative": "n1"},
            {"id": "3-2", "query": "q2", "positive": "p2", "negative": "n2"},
            {"id": "9-50", "query": "q3", "positive": "p3", "negative": "n3"}]  # another seed's row
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "3-77", "qu')
    state = load_existing(path, seed=3)
    assert (state.count, state.next_index) == (3, 6)
    assert state.seen == {example_key(f"q{i}", f"p{i}", f"n{i}") for i in (1, 2, 3)}
    assert state.torn_bytes > 0
    assert load_existing(tmp_path / "missing.jsonl", seed=3).count == 0
