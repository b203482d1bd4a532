"""``Encoder.compile()``: the torch.compile'd inference path gives the eager vectors, leaves training
(gradients on) eager, and falls back to eager with a warning when compilation fails."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from e5rag.retriever.encoder import Encoder

TEXTS = ["a short one", "a somewhat longer text about rivers and stones", "x", "alpha beta gamma " * 5]


@pytest.mark.timeout(600)
def test_compiled_encoder_matches_eager(llama_dir):
    eager = Encoder.from_pretrained(llama_dir, max_length=32)  # pad token; right padding: the EOS-only forward
    compiled = Encoder.from_pretrained(llama_dir, max_length=32, compile=True)
    want = eager.encode_query(TEXTS, task="scifact", batch_size=3)
    got = compiled.encode_query(TEXTS, task="scifact", batch_size=3)  # two batch shapes: dynamic, no recompile
    assert not compiled._compiled_eos.failed
    np.testing.assert_allclose(got, want, atol=1e-5)
    compiled.padding_side = "left"  # the model's own forward, compiled
    np.testing.assert_allclose(compiled.encode_query(TEXTS, task="scifact", batch_size=3), want, atol=1e-5)
    assert not compiled._compiled.failed
    compiled.padding_side = "right"
    np.testing.assert_allclose(compiled.encode_document(TEXTS[::-1], batch_size=4), eager.encode_document(TEXTS[::-1]),
                               atol=1e-5)
    assert compiled.fingerprint == eager.fingerprint  # same vector space: an index accepts either

    ids, mask = compiled.collate(compiled.tokenize(TEXTS)[0])
    out = compiled.embed_tokens(ids, mask)  # gradients on: the eager model, so training still works
    out.sum().backward()
    assert any(p.grad is not None for p in compiled.model.parameters())


@pytest.mark.timeout(600)
def test_compile_failure_falls_back_to_eager(mistral_dir, caplog):
    import torch._inductor.config as inductor

    torch._dynamo.reset()
    eager = Encoder.from_pretrained(mistral_dir, max_length=32)
    compiled = Encoder.from_pretrained(mistral_dir, max_length=32, compile=True)
    # a machine without a C++ compiler; config.patch restores inductor's settings (monkeypatch's undo
    # would delete them from torch's config module and break every later compile in the session)
    with inductor.patch({"fx_graph_cache": False, "cpp.cxx": ("/nonexistent/c++",)}), \
            caplog.at_level(logging.WARNING, logger="e5rag.retriever.compiled"):
        got = compiled.encode_document(TEXTS)
    torch._dynamo.reset()
    assert compiled._compiled_eos.failed
    assert "torch.compile failed" in caplog.text
    np.testing.assert_allclose(got, eager.encode_document(TEXTS), atol=1e-6)
