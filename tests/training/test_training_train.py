"""End-to-end training on the tiny model: it learns, it exports an adapter the encoder serves,
it logs metrics, and it refuses unsafe restarts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from e5rag.retriever.encoder import Encoder
from e5rag.retriever.errors import InputError
from e5rag.training.data import read_pairs
from e5rag.training.gradcache import tokenize_batch
from e5rag.training.loss import info_nce
from e5rag.training.metrics import read_metrics
from e5rag.training.model import load_trainable_encoder
from e5rag.training.optim import linear_warmup_decay
from e5rag.training.trainer import train


def served_loss(encoder: Encoder, examples) -> float:
    """InfoNCE of every example against every positive and negative, as the served encoder embeds them."""
    q = encoder.encode_query([e.query for e in examples], task=[e.task for e in examples])
    d = encoder.encode_document([e.positive for e in examples] + [n for e in examples for n in e.negatives])
    return info_nce(torch.from_numpy(q), torch.from_numpy(d), 0.02, gather=False).item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mistral_dir, pairs_file):
    from e5rag.training.config import TrainConfig

    config = TrainConfig(data=(str(pairs_file),), output=str(tmp_path_factory.mktemp("run") / "out"),
                         model=str(mistral_dir), max_length=48, batch_size=8, lr=3e-3, max_steps=24, warmup_steps=2,
                         save_every=10, keep_checkpoints=1, lora_dropout=0.0, gradcache_chunk_size=6, progress=False)
    return config, train(config)


def test_training_lowers_the_served_loss(trained, mistral_dir, pairs_file):
    config, result = trained
    examples = read_pairs(pairs_file)
    before = served_loss(Encoder.from_pretrained(mistral_dir, max_length=48), examples)
    after = served_loss(Encoder.from_pretrained(mistral_dir, adapter=result.adapter, max_length=48), examples)
    assert after < 0.8 * before, (before, after)


def test_adapter_embeds_like_the_training_forward(trained, mistral_dir, pairs_file):
    """The exported adapter, served by Encoder.encode_query/encode_document, gives the vectors the
    training forward (tokenize_batch + embed_tokens) gives with the same weights."""
    from safetensors.torch import load_file

    config, result = trained
    examples = read_pairs(pairs_file)[:4]
    trainer_side = load_trainable_encoder(config, torch.device("cpu"))
    saved = load_file(str(result.adapter / "adapter_model.safetensors"))
    with torch.no_grad():
        for name, p in trainer_side.model.named_parameters():
            if p.requires_grad:
                p.copy_(saved[name.replace(".default.", ".")])
    trainer_side.model.eval()
    batch = tokenize_batch(trainer_side, examples)
    with torch.no_grad():
        q = trainer_side.embed_tokens(*trainer_side.collate(batch.queries)).numpy()
        d = trainer_side.embed_tokens(*trainer_side.collate(batch.docs)).numpy()
    served = Encoder.from_pretrained(mistral_dir, adapter=result.adapter, max_length=48)
    np.testing.assert_allclose(served.encode_query([e.query for e in examples], task=[e.task for e in examples]), q,
                               atol=1e-5)
    np.testing.assert_allclose(served.encode_document([e.positive for e in examples]), d[:4], atol=1e-5)


def test_metrics_log_and_outputs(trained):
    config, result = trained
    rows = read_metrics(result.metrics)
    assert [r["step"] for r in rows] == list(range(1, 25))
    for r in rows:
        assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "peak_memory_mb", "source", "accuracy", "pos_cos",
                "neg_cos", "truncated_texts"} <= set(r)
        assert r["tokens_per_s"] > 0 and r["peak_memory_mb"] > 0 and np.isfinite(r["grad_norm"])
        assert r["lr"] == pytest.approx(config.lr * linear_warmup_decay(r["step"] - 1, 2, 24))
    assert [p.name for p in result.checkpoints] == ["step-00000020"]  # keep_checkpoints=1
    assert (result.adapter / "adapter_config.json").is_file()
    assert json.loads((result.output / "train_config.json").read_text())["lr"] == config.lr


def test_index_command_accepts_the_adapter(trained, mistral_dir, tmp_path):
    from e5rag.cli import main
    from e5rag.retriever.search import SearchIndex

    config, result = trained
    corpus = tmp_path / "docs"  # a folder of .txt files: one document each
    corpus.mkdir()
    (corpus / "a.txt").write_text("alpha beta gamma again\n")
    (corpus / "b.txt").write_text("river stone cloud again\n")
    index = tmp_path / "index"
    assert main(["index", str(corpus), "--index", str(index), "--model", str(mistral_dir),
                 "--adapter", str(result.adapter), "--max-length", "48"]) == 0
    served = Encoder.from_pretrained(mistral_dir, adapter=result.adapter, max_length=48)
    with SearchIndex.open(index) as opened:
        assert opened.encoder.fingerprint == served.fingerprint
        hits = opened.search(["alpha beta"], task="scifact", k=2)
    assert len(hits[0]) == 2


def test_existing_run_needs_resume_and_the_same_options(trained):
    config, _ = trained
    with pytest.raises(InputError, match="--resume"):
        train(config)
    with pytest.raises(InputError, match="lr"):
        train(config.replace(resume="latest", lr=1e-3))


def test_init_adapter_warm_starts_from_a_trained_adapter(trained, mistral_dir, pairs_file, tmp_path):
    """--init-adapter: the run starts from the saved LoRA weights (the served encoder's loss before
    any step is the trained adapter's, not the base's); another LoRA shape is refused clearly."""
    from safetensors.torch import load_file

    config, result = trained
    warm = config.replace(init_adapter=str(result.adapter), output=str(tmp_path / "warm"))
    encoder = load_trainable_encoder(warm, torch.device("cpu"))
    saved = load_file(str(result.adapter / "adapter_model.safetensors"))
    got = {n.replace(".default.", "."): p.detach() for n, p in encoder.model.named_parameters() if p.requires_grad}
    assert got.keys() == saved.keys()
    for name, tensor in saved.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0)
    cold = load_trainable_encoder(config.replace(output=str(tmp_path / "cold")), torch.device("cpu"))
    assert any(not torch.equal(p.detach(), got[n.replace(".default.", ".")])
               for n, p in cold.model.named_parameters() if p.requires_grad)

    with pytest.raises(InputError, match="--lora-r"):
        load_trainable_encoder(warm.replace(lora_r=8), torch.device("cpu"))
    with pytest.raises(InputError, match="--lora-layers"):
        load_trainable_encoder(warm.replace(lora_layers=1), torch.device("cpu"))
    with pytest.raises(InputError, match="no adapter_model.safetensors"):
        load_trainable_encoder(warm.replace(init_adapter=str(tmp_path)), torch.device("cpu"))
