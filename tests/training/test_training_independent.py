"""`e5rag train` against a hand-written loop that shares no e5rag code: HF AutoModel + PEFT LoRA,
EOS appended by hand, last-token states picked by hand, InfoNCE written out, AdamW with the
warm-up/decay schedule written out. Same per-step losses and the same trained adapter."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from e5rag.training.metrics import read_metrics
from e5rag.training.trainer import train

peft = pytest.importorskip("peft")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _hand_written_run(model_dir, rows, steps: int, lr: float, warmup: int, max_length: int, temperature: float,
                      seed: int) -> list[float]:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    torch.manual_seed(seed)
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS))
    model.train()
    eos = tok.eos_token_id

    def embed(texts):
        ids = []
        for t in texts:
            x = tok(t)["input_ids"]
            x = x[:-1] if x and x[-1] == eos else x
            ids.append(x[: max_length - 1] + [eos])
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), eos)
        mask = torch.zeros((len(ids), width), dtype=torch.int64)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return F.normalize(hidden[torch.arange(len(ids)), mask.sum(1) - 1], dim=-1)

    queries = [f"Instruct: {r['task']}\nQuery: {r['query']}" for r in rows]
    docs = [r["positive"] for r in rows] + [r["negative"] for r in rows]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = [(s + 1) / (warmup + 1) if s < warmup else (steps - s) / (steps - warmup) for s in range(steps)]
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * schedule[step]
        sims = embed(queries) @ embed(docs).T  # (B, 2B): positives first, then the hard negatives
        loss = F.cross_entropy(sims / temperature, torch.arange(len(rows)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_train_matches_a_hand_written_loop(make_config, mistral_dir, tmp_path):
    from conftest import write_pairs  # tests/training/conftest.py

    data = write_pairs(tmp_path / "pairs.jsonl", n=8, seed=11)  # one batch: every step sees all 8 rows
    config = make_config(data=(str(data),), batch_size=8, hard_negatives=1, lora_dropout=0.0, max_steps=4,
                         warmup_steps=1, lr=5e-3, max_length=48)
    got = [r["loss"] for r in read_metrics(train(config).metrics)]
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    want = _hand_written_run(mistral_dir, rows, steps=4, lr=5e-3, warmup=1, max_length=48, temperature=0.02,
                             seed=config.seed)
    assert got == pytest.approx(want, rel=1e-4)
    assert want[-1] < want[0]  # the run moves: equal losses are not equal constants
