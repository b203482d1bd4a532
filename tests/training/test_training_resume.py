"""A run killed (SIGKILL) after a checkpoint, or stopped by Ctrl-C / SIGTERM (which checkpoints the
finished steps first), and resumed continues the interrupted run exactly: same batches, same dropout
masks, same per-step losses as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from e5rag.training.checkpoint import list_checkpoints
from e5rag.training.metrics import read_metrics
from e5rag.training.trainer import train

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
STEPS = 16


def _flags(config) -> list[str]:
    return ["--data", config.data[0].path, "--output", config.output, "--model", config.model,
            "--max-length", str(config.max_length), "--batch-size", str(config.batch_size), "--lr", str(config.lr),
            "--max-steps", str(config.max_steps), "--save-every", str(config.save_every), "--no-progress",
            "--hard-negatives", "1", "--seed", str(config.seed)]


def test_killed_run_resumes_with_the_same_losses(make_config, tmp_path):
    # Dropout stays on (0.1): the resumed run must restore the RNG to repeat the masks.
    config = make_config(output=str(tmp_path / "killed"), max_steps=STEPS, save_every=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "e5rag", "train", *_flags(config)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(config.output) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        assert list_checkpoints(config.output), "no checkpoint appeared within 120 s"
        proc.kill()  # SIGKILL: no chance to clean up
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert not (tmp_path / "killed" / "adapter").exists()  # it really died mid-run
    resumed_from = list_checkpoints(config.output)[-1]
    assert int(resumed_from.name.split("-")[1]) < STEPS

    _assert_resume_matches_an_uninterrupted_run(config, tmp_path)


def _assert_resume_matches_an_uninterrupted_run(config, tmp_path) -> None:
    resumed = train(config.replace(resume="latest"))
    reference = train(config.replace(output=str(tmp_path / "reference")))
    got, want = read_metrics(resumed.metrics), read_metrics(reference.metrics)
    steps = config.max_steps
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, steps + 1))
    for a, b in zip(got, want, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
        assert a["lr"] == pytest.approx(b["lr"])
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_continues_exactly(make_config, tmp_path, signum):
    from conftest import wait_for_steps  # tests/training/conftest.py

    # no periodic checkpoint: the only one is what the stop writes
    config = make_config(output=str(tmp_path / "stopped"), max_steps=40, save_every=1000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "e5rag", "train", *_flags(config)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    try:
        wait_for_steps(proc, metrics, 3)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, stderr[-2000:]
    checkpoints = list_checkpoints(config.output)
    assert len(checkpoints) == 1
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert 3 <= stopped_at < config.max_steps
    assert f"stopped by {signal.Signals(signum).name} after step {stopped_at} of 40" in stderr
    assert "--resume latest" in stderr
    assert not (tmp_path / "stopped" / "adapter").exists()
    assert len(read_metrics(metrics)) == stopped_at  # every finished step was logged, none after

    _assert_resume_matches_an_uninterrupted_run(config, tmp_path)
