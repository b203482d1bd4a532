"""Two processes on gloo see the global batch: per-step losses, gradient norms and the trained
adapter equal a single process training on the same global batch (DeepSpeed ZeRO-3 + GradCache,
and plain torch with averaged gradients)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from e5rag.training.checkpoint import list_checkpoints
from e5rag.training.metrics import read_metrics
from e5rag.training.trainer import train

pytest.importorskip("deepspeed")
REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("mp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adapter(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.mark.multiprocess
@pytest.mark.timeout(600)  # the first DeepSpeed run on a machine JIT-builds its CPU comm op (about a minute)
def test_two_processes_equal_one(make_config, tmp_path):
    from conftest import write_pairs  # tests/training/conftest.py

    # Rows with and without a negative: ranks hold different numbers of documents.
    data = tmp_path / "mixed.jsonl"
    write_pairs(data, n=24, seed=5)
    rows = data.read_text().splitlines()
    rows[1::2] = [r.replace('"negative": "', '"unused": "') for r in rows[1::2]]
    data.write_text("\n".join(rows) + "\n")
    config = make_config(data=(str(data),), lora_dropout=0.0, max_steps=3, lr=1e-2, output=str(tmp_path / "one"))
    flags = ["--data", str(data), "--model", config.model, "--max-length", str(config.max_length),
             "--batch-size", str(config.batch_size), "--lr", str(config.lr), "--max-steps", str(config.max_steps),
             "--lora-dropout", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), str(WORKER), str(tmp_path / "ds"), str(tmp_path / "torch"),
                           *flags], cwd=REPO, env=env, capture_output=True, text=True, timeout=570)
    assert proc.returncode == 0, proc.stderr[-4000:]

    single = train(config)
    want = read_metrics(single.metrics)
    for run in ("ds", "torch"):
        got = read_metrics(tmp_path / run / "metrics.jsonl")
        assert [r["step"] for r in got] == [1, 2, 3], run
        for a, b in zip(got, want, strict=True):
            assert a["tokens"] == b["tokens"], run  # the two shards add up to the global batch
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), run
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3), run
        reference, weights = _adapter(single.output), _adapter(tmp_path / run)
        assert weights.keys() == reference.keys()
        for name in reference:
            torch.testing.assert_close(weights[name], reference[name], atol=2e-4, rtol=1e-3, msg=f"{run} {name}")


@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_deepspeed_launcher_runs_the_cli_like_one_process(make_config, tmp_path):
    """`deepspeed --num_accelerators 2 --module e5rag train ... --deepspeed zero3`, the launcher
    users run (it puts --local_rank=N before the command), trains what one process trains."""
    from conftest import write_pairs  # tests/training/conftest.py

    data = write_pairs(tmp_path / "pairs.jsonl", n=24, seed=7)
    config = make_config(data=(str(data),), lora_dropout=0.0, max_steps=2, lr=1e-2, output=str(tmp_path / "one"))
    flags = ["--data", str(data), "--model", config.model, "--max-length", str(config.max_length),
             "--batch-size", str(config.batch_size), "--lr", str(config.lr), "--max-steps", str(config.max_steps),
             "--lora-dropout", "0", "--no-progress", "--deepspeed", "zero3", "--output", str(tmp_path / "launched")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "deepspeed.launcher.runner", "--num_accelerators", "2",
                           "--master_port", str(_free_port()), "--module", "e5rag", "train", *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=570)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    want = read_metrics(train(config).metrics)
    got = read_metrics(tmp_path / "launched" / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2]
    for a, b in zip(got, want, strict=True):
        assert a["tokens"] == b["tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    reference, weights = _adapter(tmp_path / "one"), _adapter(tmp_path / "launched")
    for name in reference:
        torch.testing.assert_close(weights[name], reference[name], atol=2e-4, rtol=1e-3, msg=name)


def _worker_pids(parent: int) -> dict[int, int]:
    """LOCAL_RANK -> pid of the launcher's worker processes (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = [v for v in environ if v.startswith(b"LOCAL_RANK=")]
        if ppid == parent and rank:
            found[int(rank[0].split(b"=")[1])] = int(entry.name)
    return found


@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(make_config, tmp_path):
    """SIGTERM to rank 1 only: the stop request is summed over ranks with the step's metrics, so both
    ranks write one checkpoint of the same step together and exit 143; nothing hangs."""
    from conftest import wait_for_steps  # tests/training/conftest.py

    config = make_config(max_steps=400, output=str(tmp_path / "run"))
    flags = ["--data", config.data[0].path, "--model", config.model, "--max-length", str(config.max_length),
             "--batch-size", str(config.batch_size), "--max-steps", str(config.max_steps), "--save-every", "1000",
             "--no-progress", "--output", config.output]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", str(_free_port()), "-m", "e5rag", "train", *flags],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    try:
        wait_for_steps(proc, metrics, 3)
        workers = _worker_pids(proc.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    checkpoints = list_checkpoints(config.output)
    assert len(checkpoints) == 1, stderr[-3000:]
    step = int(checkpoints[0].name.split("-")[1])
    assert 3 <= step < config.max_steps
    assert {p.name for p in checkpoints[0].glob("rng-rank*")} == {"rng-rank0.json", "rng-rank1.json"}
    assert json.loads((checkpoints[0] / "trainer_state.json").read_text())["world_size"] == 2
    # rank 1 was signalled, rank 0 learned it through the all-reduce: both name the same step
    assert stderr.count(f"after step {step} of {config.max_steps}") == 2, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "a signal on another rank" in stderr
    assert len(read_metrics(metrics)) == step
    assert not (tmp_path / "run" / "adapter").exists()
