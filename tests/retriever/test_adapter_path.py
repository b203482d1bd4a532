"""``adapter=`` (and ``--adapter``) takes the adapter folder or an ``e5rag train --output`` folder
(the adapter is its ``adapter/``); anything else is one clear error."""

from __future__ import annotations

import numpy as np
import pytest

peft = pytest.importorskip("peft")

from e5rag.retriever.encoder import Encoder  # noqa: E402
from e5rag.retriever.errors import ModelLoadError  # noqa: E402


@pytest.fixture(scope="module")
def train_output(tmp_path_factory, mistral_dir):
    """A folder laid out like `e5rag train --output RUN`: RUN/adapter is a PEFT LoRA adapter
    (random, non-zero weights, so it changes the embeddings)."""
    import torch
    from transformers import AutoModel

    model = peft.get_peft_model(AutoModel.from_pretrained(mistral_dir),
                                peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    run = tmp_path_factory.mktemp("run")
    model.save_pretrained(str(run / "adapter"))
    (run / "checkpoints").mkdir()
    return run


def test_train_output_folder_is_accepted_as_the_adapter(train_output, mistral_dir):
    texts = ["a claim about cells", "omega garden"]
    inner = Encoder.from_pretrained(mistral_dir, adapter=train_output / "adapter", max_length=64)
    outer = Encoder.from_pretrained(mistral_dir, adapter=train_output, max_length=64)
    plain = Encoder.from_pretrained(mistral_dir, max_length=64)
    assert outer.fingerprint == inner.fingerprint != plain.fingerprint
    assert outer.adapter_path == inner.adapter_path == str((train_output / "adapter").resolve())
    np.testing.assert_array_equal(outer.encode_document(texts), inner.encode_document(texts))
    assert np.abs(outer.encode_document(texts) - plain.encode_document(texts)).max() > 1e-3


def test_other_folders_are_refused_clearly(train_output, mistral_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"neither a PEFT adapter folder .* nor an `e5rag train --output`"):
        Encoder.from_pretrained(mistral_dir, adapter=train_output / "checkpoints")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Encoder.from_pretrained(mistral_dir, adapter=tmp_path / "nowhere")
