"""Merging a LoRA adapter: the merged model embeds like base + adapter, and loads without PEFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e5rag.retriever.encoder import Encoder
from e5rag.retriever.errors import InputError, ModelLoadError
from e5rag.training.merge import embedding_gap, merge_adapter

TEXTS = ["a claim about cells", "Instruct: Find the phrase\nQuery: river stone", "omega garden"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, mistral_dir):
    """A LoRA adapter with random (non-zero) weights on every projection, saved in PEFT format."""
    from e5rag.training.config import TrainConfig
    from e5rag.training.model import load_trainable_encoder

    encoder = load_trainable_encoder(TrainConfig(data=("x",), model=str(mistral_dir), max_length=64),
                                     torch.device("cpu"))
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for name, p in encoder.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    encoder.model.save_pretrained(str(out))
    return out


def test_merged_model_matches_base_plus_adapter(adapter_dir, mistral_dir, tmp_path):
    from e5rag.cli import main

    out = tmp_path / "merged"
    assert main(["merge", "--model", str(mistral_dir), "--adapter", str(adapter_dir), "--output", str(out),
                 "--max-length", "64"]) == 0
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    unmerged = Encoder.from_pretrained(mistral_dir, adapter=adapter_dir, merge_adapter=False, max_length=64)
    merged = Encoder.from_pretrained(out, max_length=64)
    base = Encoder.from_pretrained(mistral_dir, max_length=64)
    np.testing.assert_allclose(merged.encode(TEXTS), unmerged.encode(TEXTS), atol=1e-5)
    assert embedding_gap(base, merged)[0] > 1e-2  # the adapter really changed the model


def test_merge_report_and_refusals(adapter_dir, mistral_dir, tmp_path):
    report = merge_adapter(str(mistral_dir), adapter_dir, tmp_path / "m", max_length=64)
    assert 0 <= report.max_abs_diff <= report.tolerance and report.texts > 0
    with pytest.raises(InputError, match="not empty"):
        merge_adapter(str(mistral_dir), adapter_dir, tmp_path / "m")
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        merge_adapter(str(mistral_dir), tmp_path, tmp_path / "other")


def test_peft_wrapping_does_not_surface_transformers_deprecation(adapter_dir, mistral_dir, tmp_path):
    """PEFT reads ``is_gradient_checkpointing`` (deprecated in transformers 5) whenever it wraps a model;
    users of the encoder, the trainer and merge should not see that warning, but see every other one."""
    import warnings

    from e5rag.retriever.loading import quiet_peft_wrap

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Encoder.from_pretrained(mistral_dir, adapter=adapter_dir, merge_adapter=False, max_length=64)
        merge_adapter(str(mistral_dir), adapter_dir, tmp_path / "m", max_length=64)
        with quiet_peft_wrap():
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed", FutureWarning, stacklevel=1)
            warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert not any("is_gradient_checkpointing" in m for m in messages), messages
    assert "something else is deprecated" in messages
