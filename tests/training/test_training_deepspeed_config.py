"""The DeepSpeed config e5rag builds: the user's file plus the keys the training loop owns."""

from __future__ import annotations

import json

import pytest

from e5rag.retriever.errors import InputError
from e5rag.training.deepspeed_config import build_deepspeed_config
from e5rag.training.optim import linear_warmup_decay, warmup_steps_for


def test_preset_and_owned_keys():
    config = build_deepspeed_config("zero3", global_batch=32, world_size=4, max_grad_norm=1.0, bf16=True)
    assert config["zero_optimization"]["stage"] == 3
    assert (config["train_batch_size"], config["train_micro_batch_size_per_gpu"]) == (32, 8)
    assert config["gradient_accumulation_steps"] == 1 and config["managed_gradient_accumulation"] is False
    assert config["gradient_clipping"] == 1.0 and config["bf16"]["enabled"] is True


def test_user_file_auto_values_and_conflicts(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_batch_size": "auto", "bf16": {"enabled": False}}))
    config = build_deepspeed_config(str(path), global_batch=8, world_size=2, max_grad_norm=None, bf16=True)
    assert config["train_batch_size"] == 8 and config["gradient_clipping"] == 0.0
    assert config["bf16"]["enabled"] is False  # the user's explicit choice stands
    path.write_text(json.dumps({"train_batch_size": 64}))
    with pytest.raises(InputError, match="train_batch_size"):
        build_deepspeed_config(str(path), global_batch=8, world_size=2, max_grad_norm=1.0, bf16=False)
    path.write_text(json.dumps({"optimizer": {"type": "Adam"}}))
    with pytest.raises(InputError, match="optimizer"):
        build_deepspeed_config(str(path), global_batch=8, world_size=2, max_grad_norm=1.0, bf16=False)
    with pytest.raises(InputError, match="zero3"):
        build_deepspeed_config(str(tmp_path / "missing.json"), global_batch=8, world_size=2, max_grad_norm=1.0, bf16=False)


def test_linear_warmup_then_decay():
    total, warmup = 10, 3
    factors = [linear_warmup_decay(s, warmup, total) for s in range(total)]
    assert factors[:3] == pytest.approx([1 / 4, 2 / 4, 3 / 4]) and factors[3] == 1.0
    assert all(a > b > 0 for a, b in zip(factors[3:], factors[4:], strict=False))
    assert factors[-1] == pytest.approx(1 / 7)
    assert warmup_steps_for(100, None) == 10 and warmup_steps_for(5, 9) == 5
