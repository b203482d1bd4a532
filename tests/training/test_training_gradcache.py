"""GradCache gives the plain full-batch gradients; the training forward is the serving format."""

from __future__ import annotations

import pytest
import torch

from e5rag.retriever.instructions import format_query
from e5rag.training.data import read_pairs
from e5rag.training.gradcache import chunk_plan, gradcache_step, plain_step, tokenize_batch
from e5rag.training.loss import info_nce
from e5rag.training.model import load_trainable_encoder, trainable_parameters


def _encoder(make_config, **overrides):
    encoder = load_trainable_encoder(make_config(**overrides), torch.device("cpu"))
    with torch.no_grad():  # LoRA B starts at zero; make it non-zero so every LoRA weight gets a gradient
        g = torch.Generator().manual_seed(1)
        for name, p in encoder.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return encoder


def _grads(encoder) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in trainable_parameters(encoder.model)]
    encoder.model.zero_grad(set_to_none=True)
    return grads


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    scale = max(g.abs().max().item() for g in a)
    assert scale > 0
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5 * scale, rtol=1e-4)


@pytest.fixture(scope="module")
def examples(pairs_file):
    return read_pairs(pairs_file)[:6]


def test_gradcache_equals_plain_step(make_config, examples):
    encoder = _encoder(make_config, lora_dropout=0.0)
    batch = tokenize_batch(encoder, examples)
    plain_loss, plain_stats = plain_step(encoder, batch, 0.02, lambda loss: loss.backward())
    plain = _grads(encoder)
    for chunk in (1, 4):
        cached_loss, stats = gradcache_step(encoder, batch, 0.02, chunk, lambda loss: loss.backward())
        assert cached_loss.item() == pytest.approx(plain_loss.item(), rel=1e-5)
        assert stats == pytest.approx(plain_stats, rel=1e-5)
        _assert_same(plain, _grads(encoder))


def test_gradcache_replays_dropout_masks(make_config, examples):
    """With dropout on, GradCache's second pass must reuse the first pass's masks: its gradients then
    equal those of embedding the same chunks, in the same order and RNG stream, with a graph."""
    encoder = _encoder(make_config, lora_dropout=0.3)
    batch = tokenize_batch(encoder, examples)
    torch.manual_seed(123)
    gradcache_step(encoder, batch, 0.02, 3, lambda loss: loss.backward())
    cached = _grads(encoder)

    torch.manual_seed(123)
    reps = []
    for seqs in (batch.queries, batch.docs):
        order, parts = [], []
        for idx in chunk_plan([len(s) for s in seqs], 3, lockstep=False):
            ids, mask = encoder.collate([seqs[i] for i in idx])
            parts.append(encoder.embed_tokens(ids, mask))
            order += idx
        inverse = torch.empty(len(order), dtype=torch.int64)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        reps.append(torch.cat(parts)[inverse])  # back to input order
    info_nce(reps[0], reps[1], 0.02).backward()
    _assert_same(_grads(encoder), cached)


def test_gradient_checkpointing_keeps_gradients(make_config, examples):
    plain_encoder = _encoder(make_config, lora_dropout=0.0)
    batch = tokenize_batch(plain_encoder, examples)
    plain_step(plain_encoder, batch, 0.02, lambda loss: loss.backward())
    checkpointed = _encoder(make_config, lora_dropout=0.0, gradient_checkpointing=True)
    gradcache_step(checkpointed, batch, 0.02, 4, lambda loss: loss.backward())
    _assert_same(_grads(plain_encoder), _grads(checkpointed))


def test_lora_on_top_layers_only(make_config):
    encoder = load_trainable_encoder(make_config(lora_layers=1), torch.device("cpu"))
    names = [n for n, p in encoder.model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)  # the tiny model has layers 0 and 1


def test_batch_uses_the_serving_format(tiny_encoder, examples):
    """Queries carry the instruction, documents none, ids end in EOS: what Encoder.encode_* embed."""
    batch = tokenize_batch(tiny_encoder, examples[:2])
    expected_q, _ = tiny_encoder.tokenize([format_query(e.task, e.query) for e in examples[:2]])
    expected_d, _ = tiny_encoder.tokenize([e.positive for e in examples[:2]] + [n for e in examples[:2] for n in e.negatives])
    assert batch.queries == expected_q and batch.docs == expected_d
    assert all(s[-1] == tiny_encoder.tokenizer.eos_token_id for s in batch.queries + batch.docs)
