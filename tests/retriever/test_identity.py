"""Model identities hash weight contents: same-shape models in same-named folders differ, the digest
is cached by path, size and mtime, and indexes recorded with the old identity keep opening."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_model

from e5rag.indexers import Document, open_store
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.errors import IndexMismatchError
from e5rag.retriever.filehash import CACHE_FILE, sha256_file
from e5rag.retriever.loading import (
    adapter_identity,
    cache_dir,
    legacy_model_identity,
    model_identity,
    quiet_peft_wrap,
    resolve_source,
)
from e5rag.retriever.search import SearchIndex

DOCS = [Document(f"d{i}", text) for i, text in enumerate(
    ["Paris is the capital of France.", "Vaccines train the immune system.", "The fox jumps over the dog.",
     "Interest rates moved the stock market.", "Plants turn light into chemical energy."])]


@pytest.fixture(scope="module")
def twin_models(tmp_path_factory):
    """``run-a/merged`` and ``run-b/merged``: same config and file sizes, different weights."""
    root = tmp_path_factory.mktemp("runs")
    return (save_tiny_model(root / "run-a" / "merged", seed=0), save_tiny_model(root / "run-b" / "merged", seed=7))


def test_same_shape_models_in_same_named_folders_get_different_identities(twin_models):
    a, b = (resolve_source(str(p)) for p in twin_models)
    assert a.name == b.name == "merged"
    assert (a.path / "config.json").read_bytes() == (b.path / "config.json").read_bytes()
    assert (a.path / "model.safetensors").stat().st_size == (b.path / "model.safetensors").stat().st_size
    assert legacy_model_identity(a) == legacy_model_identity(b)  # the bug: the old identity cannot tell them apart
    assert model_identity(a) != model_identity(b)
    fa, fb = (Encoder.from_pretrained(p, max_length=32).fingerprint for p in twin_models)
    assert fa.dim == fb.dim and not fa.same_model(fb)
    # the identity is a digest of the contents: an identical copy elsewhere has the same one
    copy = twin_models[0].parent.parent / "copy" / "merged"
    shutil.copytree(twin_models[0], copy)
    assert model_identity(resolve_source(str(copy))) == model_identity(a)


def test_weight_digests_are_cached_by_path_size_and_mtime(tmp_path):
    model = save_tiny_model(tmp_path / "m", seed=3)
    weights = model / "model.safetensors"
    first = model_identity(resolve_source(str(model)))
    cache = cache_dir() / CACHE_FILE
    keys = [json.loads(line)["key"] for line in cache.read_text().splitlines()]
    assert sum(k.startswith(f"{weights.resolve()}|") for k in keys) == 1
    assert model_identity(resolve_source(str(model))) == first
    assert len(cache.read_text().splitlines()) == len(keys)  # the second identity read no weights
    # Same size and mtime, other bytes: the cached digest is used (proof that nothing was re-read) ...
    st = weights.stat()
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model_identity(resolve_source(str(model))) == first
    # ... and a new mtime makes it hash the contents again.
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert model_identity(resolve_source(str(model))) != first


def _lora(model_dir: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    base = AutoModel.from_pretrained(model_dir)
    with quiet_peft_wrap():
        peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


def test_adapters_are_identified_by_their_weights(mistral_dir, tmp_path):
    a = _lora(mistral_dir, tmp_path / "a" / "adapter", seed=1)
    b = _lora(mistral_dir, tmp_path / "b" / "adapter", seed=2)
    assert (a / "adapter_config.json").read_bytes() == (b / "adapter_config.json").read_bytes()
    assert adapter_identity(a) != adapter_identity(b)
    ea = Encoder.from_pretrained(mistral_dir, adapter=a, max_length=32)
    eb = Encoder.from_pretrained(mistral_dir, adapter=b, max_length=32)
    assert ea.fingerprint.base == eb.fingerprint.base and not ea.fingerprint.same_model(eb.fingerprint)
    assert ea.fingerprint.adapter == "lora:sha256=" + _adapter_digest(a)


def _adapter_digest(adapter: Path) -> str:
    """Independent computation: SHA-256 over each present file's name then bytes."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        if (adapter / name).is_file():
            digest.update(name.encode() + (adapter / name).read_bytes())
    return digest.hexdigest()[:16]


def _write_legacy_record(location: Path, store_kind: str, model_dir: Path) -> str:
    """Rewrite the index's model base the way e5rag recorded it before contents were hashed."""
    legacy = legacy_model_identity(resolve_source(str(model_dir)))
    with open_store(location) as store:
        store.set_model({**store.manifest.model, "base": legacy})
        store.commit()
    return legacy


@pytest.mark.parametrize("kind", ["faiss", pytest.param("milvus", marks=pytest.mark.milvus)])
def test_old_records_keep_opening_with_their_model_and_are_migrated_once(twin_models, tmp_path, kind, caplog):
    if kind == "milvus":
        pytest.importorskip("milvus_lite")
    location = tmp_path / ("idx.db" if kind == "milvus" else "idx")
    model_a, model_b = twin_models
    encoder = Encoder.from_pretrained(model_a, max_length=32)
    with SearchIndex(encoder, open_store(location), writing=True) as index:
        index.add(DOCS)
        before = index.search(["capital of France"], k=5)
    legacy = _write_legacy_record(location, kind, model_a)
    with open_store(location, readonly=True) as store:
        assert store.manifest.model["base"] == legacy

    with caplog.at_level("WARNING"), SearchIndex.open(location) as index:  # loads the recorded model
        after = index.search(["capital of France"], k=5)
    assert [h.document.id for h in after[0]] == [h.document.id for h in before[0]]
    np.testing.assert_allclose([h.score for h in after[0]], [h.score for h in before[0]], atol=1e-5)
    assert sum("was upgraded" in r.getMessage() for r in caplog.records) == 1
    with open_store(location, readonly=True) as store:
        assert store.manifest.model["base"] == encoder.fingerprint.base and store.count() == len(DOCS)
    caplog.clear()
    with caplog.at_level("WARNING"), SearchIndex.open(location) as index:
        index.search(["capital of France"], k=1)
    assert not any("was upgraded" in r.getMessage() for r in caplog.records)

    # A legacy record is never upgraded to another model that happened to share the old identity.
    _write_legacy_record(location, kind, model_a)
    other = Encoder.from_pretrained(model_b, max_length=32)
    assert legacy_model_identity(resolve_source(str(model_b))) == legacy
    with pytest.raises(IndexMismatchError, match="built with"), open_store(location) as store:
        SearchIndex(other, store, writing=True)
    with open_store(location, readonly=True) as store:
        assert store.manifest.model["base"] == legacy


def test_file_digest_matches_hashlib(tmp_path):
    import hashlib

    f = tmp_path / "blob"
    f.write_bytes(os.urandom(5 << 20))
    assert sha256_file(f) == hashlib.sha256(f.read_bytes()).hexdigest()
