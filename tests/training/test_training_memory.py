"""Out of memory in a training step: a real failed allocation (the address space of a subprocess is
capped with RLIMIT_AS) becomes a TrainingOutOfMemoryError that names the flags, and the flag it
advises first (GradCache) really lets the same step run under the same cap."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from e5rag.training.config import TrainConfig
from e5rag.training.memory import TrainingOutOfMemoryError, is_out_of_memory, out_of_memory_advice

REPO = Path(__file__).resolve().parents[2]
# Caps the address space at what it is after a warm-up step + HEADROOM_MB, then trains one step on
# 32 texts of 1,500 tokens. Measured on the 2-core dev machine: without GradCache the step failed with
# 100-400 MB of headroom and ran with 500; with chunks of 4 it ran with 100. 220 sits in between.
HEADROOM_MB = 220
DRIVER = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from e5rag.training.config import TrainConfig
from e5rag.training.trainer import train
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
# one uncapped step on short texts first: every lazy import and one-time set-up is then in place,
# so the cap below only meets the activations of the step under test
train(TrainConfig.from_dict({**config.to_dict(), "data": [{"path": sys.argv[3]}], "max_length": 32,
                             "batch_size": 4, "output": config.output + "-warmup", "gradcache_chunk_size": None}))
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]) * 2**20, resource.RLIM_INFINITY))
try:
    train(config)
except Exception as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"type": None}))
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc and RLIMIT_AS")


def long_pairs(path: Path, n: int = 32, tokens: int = 1500) -> Path:
    rng = random.Random(0)  # the tiny tokenizer spends one token a character
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"task": "Find it", "query": f"query {i}",
                                 "positive": " ".join(rng.choice("abcdefgh") for _ in range(tokens // 2))}) + "\n")
    return path


def run_capped(config: dict, warmup_data: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(config), str(HEADROOM_MB), str(warmup_data)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_step_that_does_not_fit_names_the_flags_and_gradcache_makes_it_fit(tmp_path, mistral_dir, pairs_file):
    base = {"data": [str(long_pairs(tmp_path / "long.jsonl"))], "model": str(mistral_dir), "max_length": 1600,
            "batch_size": 32, "max_steps": 1, "progress": False}
    failed = run_capped({**base, "output": str(tmp_path / "plain")}, pairs_file)
    assert failed["type"] == "TrainingOutOfMemoryError", failed
    message = failed["message"]
    assert message.startswith("out of memory in training step 1 of 1 (batch 32")
    assert "can't allocate memory" in message  # the allocator's own line is kept
    assert "--gradcache-chunk-size 8" in message and "--gradient-checkpointing" in message
    assert "No checkpoint was written yet" in message
    assert not (tmp_path / "plain" / "adapter").exists()

    advised = run_capped({**base, "output": str(tmp_path / "chunked"), "gradcache_chunk_size": 4}, pairs_file)
    assert advised == {"type": None}
    assert (tmp_path / "chunked" / "adapter" / "adapter_model.safetensors").is_file()


def test_advice_follows_the_config_and_names_the_checkpoint_to_resume():
    config = TrainConfig(data=("pairs.jsonl",), output="runs/x", model="m", batch_size=64, hard_negatives=0,
                         gradcache_chunk_size=16, gradient_checkpointing=True, lora_layers=4, max_length=256)
    try:
        torch.empty(2**62, dtype=torch.uint8)  # a real failed CPU allocation
    except RuntimeError as exc:
        cause = exc
    assert is_out_of_memory(cause) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    message = out_of_memory_advice(config, 251, 400, "cuda:0", Path("runs/x/checkpoints/step-00000250"), cause)
    assert "step 251 of 400 (batch 64, max length 256, on cuda:0)" in message
    assert "a smaller --gradcache-chunk-size (now 16)" in message
    assert "--gradient-checkpointing" not in message and "--lora-layers" not in message  # already in use
    assert "The last checkpoint is step 250 in runs/x/checkpoints: --resume latest" in message
    assert issubclass(TrainingOutOfMemoryError, MemoryError)
