"""Nothing e5rag reads back is unpickled: the RNG state is JSON, and a checkpoint written the old
way (a pickled ``rng-rank0.pt``) is refused with a clear message instead of being run."""

from __future__ import annotations

import json
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from e5rag.retriever.errors import InputError
from e5rag.training.checkpoint import list_checkpoints, rng_state, set_rng_state
from e5rag.training.trainer import train

REPO = Path(__file__).resolve().parents[2]


def _draws():
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_rng_state_round_trips_through_json():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's generator state
    state = json.loads(json.dumps(rng_state()))
    want = _draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(state)
    assert _draws() == want


class _RunsCode:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return (Path.write_text, (self.canary, "code ran"))


def test_a_checkpoint_with_a_pickled_rng_state_is_refused_not_run(make_config, tmp_path):
    config = make_config(output=str(tmp_path / "run"), max_steps=3, save_every=2)
    train(config)
    checkpoint = list_checkpoints(config.output)[-1]
    assert [p.name for p in checkpoint.glob("rng-*")] == ["rng-rank0.json"]
    checkpoint = list_checkpoints(config.output)[-1]
    # What an e5rag of before this change left, with a payload an attacker put in it.
    for old in checkpoint.glob("rng-rank0.*"):
        old.unlink()
    canary = tmp_path / "canary"
    (checkpoint / "rng-rank0.pt").write_bytes(pickle.dumps(_RunsCode(canary)))
    with pytest.raises(InputError, match=r"saved its state as a pickle \(rng-rank0.pt\); e5rag never loads"):
        train(config.replace(resume="latest"))
    assert not canary.exists()


_UNSAFE = re.compile(r"weights_only\s*=\s*False|\bimport pickle\b|\bpickle\.loads?\(|allow_pickle\s*=\s*True"
                     r"|\bimport (dill|cloudpickle|joblib)\b|\btorch\.(load|save)\(")


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    from e5rag.training.statefile import load_state, save_state

    param = torch.nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.AdamW([param], lr=1e-3, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(3):
        param.grad = torch.randn(4, 3)
        opt.step()
        sched.step()
    want = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    save_state(want, tmp_path, "optimizer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.json", "optimizer.safetensors"]
    got = load_state(tmp_path, "optimizer")
    assert got["scheduler"] == want["scheduler"]
    assert got["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]
    assert set(got["optimizer"]["state"]) == {0}  # int keys stay ints
    for name, value in want["optimizer"]["state"][0].items():
        assert torch.equal(got["optimizer"]["state"][0][name], value), name
    with pytest.raises(TypeError, match="without pickle"):
        save_state({"f": object()}, tmp_path, "bad")


def test_no_source_file_unpickles():
    roots = [REPO / d for d in ("e5rag", "retriever", "indexers", "training", "synth", "benchmarks", "examples",
                                "scripts")]
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for root in roots if root.is_dir() for path in sorted(root.rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _UNSAFE.search(line)]
    assert found == []
