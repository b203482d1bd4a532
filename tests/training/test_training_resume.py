"""A run killed (SIGKILL) after a checkpoint and resumed continues the interrupted run exactly:
same batches, same dropout masks, same per-step losses as a run that was never interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from training.checkpoint import list_checkpoints
from training.metrics import read_metrics
from training.trainer import train

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
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "retriever", "train", *_flags(config)], cwd=REPO, env=env,
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

    resumed = train(config.replace(resume="latest"))
    reference = train(config.replace(output=str(tmp_path / "reference")))
    got, want = read_metrics(resumed.metrics), read_metrics(reference.metrics)
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, STEPS + 1))
    for a, b in zip(got, want, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
        assert a["lr"] == pytest.approx(b["lr"])
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
