"""The EOS-only inference forward against the model's own masked forward, and when it is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import build_model
from transformers import AutoModel, MistralConfig, Qwen2Config

from e5rag.retriever.encoder import Encoder
from e5rag.retriever.eos_forward import eos_hidden, supports_eos_forward
from e5rag.retriever.pooling import last_token_pool
from e5rag.retriever.tokenization import pad_batch

LENGTHS = [7, 3, 11, 1, 9]


def right_padded_batch(vocab: int, lengths=LENGTHS, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]
    return pad_batch(seqs, pad_id=0, side="right")


def qwen2_backbone():
    config = Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=40, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(1)
    return AutoModel.from_config(config, dtype=torch.float32, attn_implementation="sdpa").eval()


def backbone(arch: str):
    if arch == "qwen2":
        return qwen2_backbone()
    model = build_model(arch, vocab_size=300, num_layers=3).model  # the AutoModel inside the causal LM
    model.config._attn_implementation = "sdpa"
    return model


@pytest.mark.parametrize("arch", ["mistral", "llama", "qwen2"])
def test_eos_hidden_equals_masked_forward_at_eos(arch):
    model = backbone(arch)
    ids, mask = right_padded_batch(model.config.vocab_size)
    assert supports_eos_forward(model, ids.shape[1])
    with torch.no_grad():
        want = last_token_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        got = eos_hidden(model, ids, mask.sum(dim=1))
        # the same rows one at a time, unpadded: padding changes nothing
        single = torch.cat([model(input_ids=ids[i:i + 1, :n]).last_hidden_state[:, -1] for i, n in enumerate(LENGTHS)])
    assert got.shape == (len(LENGTHS), model.config.hidden_size)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, single, atol=1e-5, rtol=1e-5)


def test_refused_where_it_would_not_be_exact():
    model = backbone("mistral")
    model.config._attn_implementation = "eager"  # no mask means no causal mask at all there
    assert not supports_eos_forward(model, 8)
    config = MistralConfig(vocab_size=300, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    windowed = AutoModel.from_config(config, attn_implementation="sdpa")
    assert supports_eos_forward(windowed, 4) and not supports_eos_forward(windowed, 5)
    causal_lm = build_model("llama", vocab_size=300)  # an LM head on top: not the backbone this reads
    assert not supports_eos_forward(causal_lm, 8)


def test_encoder_uses_it_for_right_padded_inference_only(tiny_encoder):
    """The last layer's MLP sees one row per text on the fast path, every position otherwise."""
    seen: list[int] = []
    mlp = tiny_encoder.model.layers[-1].mlp
    handle = mlp.register_forward_hook(lambda module, args, out: seen.append(args[0].dim()))
    texts = ["a short one", "a somewhat longer text about rivers", "x"]
    try:
        right = tiny_encoder.encode(texts, batch_size=3)
        tiny_encoder.padding_side = "left"
        left = tiny_encoder.encode(texts, batch_size=3)
        tiny_encoder.padding_side = "right"
        ids, mask = tiny_encoder.collate(tiny_encoder.tokenize(texts)[0])
        trained = tiny_encoder.embed_tokens(ids, mask)  # gradients on: the model's own forward
    finally:
        handle.remove()
    assert seen == [2, 3, 3]
    np.testing.assert_allclose(right, left, atol=1e-5)
    np.testing.assert_allclose(trained.detach().numpy(), right, atol=1e-5)


def test_eval_mode_only(mistral_dir):
    enc = Encoder.from_pretrained(mistral_dir, max_length=32)
    ids, mask = enc.collate(enc.tokenize(["one text", "and another, longer text"])[0])
    seen: list[int] = []
    enc.model.layers[-1].mlp.register_forward_hook(lambda module, args, out: seen.append(args[0].dim()))
    enc.model.train()  # dropout / LoRA dropout would consume randomness differently on fewer rows
    with torch.no_grad():
        enc.embed_tokens(ids, mask)
    assert seen == [3]
