"""int8 CPU inference: vectors near fp32 and equal to an independent int8 computation, the fingerprint,
the CUDA refusal, and the rule for int8 queries against an fp32 index (and the reverse)."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from tiny_models import CORPUS

from e5rag.indexers import Document, open_store
from e5rag.retriever import IndexMismatchError, InputError, ModelFingerprint
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.quantize import check_quantize, is_quantized
from e5rag.retriever.search import SearchIndex

pytest.importorskip("torchao")

DOCS = [Document(str(i), text) for i, text in enumerate(CORPUS)]


@pytest.fixture(scope="module")
def encoders(mistral_dir):
    """(fp32, int8) encoders of the same tiny Mistral."""
    return (Encoder.from_pretrained(mistral_dir, max_length=64),
            Encoder.from_pretrained(mistral_dir, max_length=64, quantize="int8"))


def _fake_int8_linear(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """int8 Linear written out: symmetric int8 per output row of the weight and per token of the input
    (scale = max |value| / 127.5 over [-128, 127], values times 1/scale rounded: torchao's convention,
    so the row maximum, a tie at 127.5, rounds the same way), integer products, then both scales.
    (..., in) -> (..., out), fp32"""
    w = linear.weight.detach()
    w_scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-7) / 127.5     # (out, 1)
    x_scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-7) / 127.5    # (..., 1)
    w_q = torch.round(w * (1.0 / w_scale)).clamp(-128, 127)
    x_q = torch.round(x * (1.0 / x_scale)).clamp(-128, 127)
    # integer products are exact in fp32 here (|sum| < 2^24); then the token scale, then the channel scale
    out = (x_q @ w_q.T) * x_scale * w_scale.T
    return out + linear.bias if linear.bias is not None else out


def test_int8_vectors_match_an_independent_int8_forward_and_stay_near_fp32(encoders):
    fp32, int8 = encoders
    assert is_quantized(int8.model) and not is_quantized(fp32.model)
    want_fp32 = fp32.encode(CORPUS)
    got = int8.encode(CORPUS)
    reference = copy.deepcopy(fp32)
    for module in reference.model.modules():
        if isinstance(module, torch.nn.Linear):
            module.forward = lambda x, m=module: _fake_int8_linear(m, x)
    want_int8 = reference.encode(CORPUS)
    quant_error = np.abs(got - want_fp32).mean()
    assert quant_error > 1e-5  # quantisation really happened
    # The library's int8 output is the written-out int8 forward: most vectors equal it to float precision;
    # a value that lands within float error of a rounding boundary may round the other way in one of them.
    ref_error = np.abs(got - want_int8)
    assert ref_error.mean() < 0.1 * quant_error
    assert np.median(ref_error.max(axis=1)) < 1e-5
    # stated tolerance on the tiny model: every vector within cosine 0.999 of fp32
    assert (got * want_fp32).sum(axis=1).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_fingerprint_records_int8_and_old_records_read_back(encoders, tmp_path):
    fp32, int8 = encoders
    assert int8.fingerprint.quantization == "int8" and fp32.fingerprint.quantization is None
    assert int8.fingerprint.to_dict()["quantization"] == "int8"
    assert "quantization" not in fp32.fingerprint.to_dict()  # fp32 records (and eval cache keys) are unchanged
    assert ModelFingerprint.from_dict(int8.fingerprint.to_dict()) == int8.fingerprint
    assert int8.fingerprint.same_model(fp32.fingerprint) and int8.fingerprint != fp32.fingerprint
    assert "int8" in int8.fingerprint.describe()
    from e5rag.retriever.evaluation.cache import cache_key

    assert cache_key(int8.fingerprint, "corpus") != cache_key(fp32.fingerprint, "corpus")  # eval caches apart
    with SearchIndex(int8, open_store(tmp_path / "i"), writing=True) as index:
        index.add(DOCS)
    with open_store(tmp_path / "i", readonly=True) as store:
        assert store.manifest.model["quantization"] == "int8"


@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_int8_is_refused_on_cuda(device):
    with pytest.raises(InputError, match="CPU path.*bf16"):
        check_quantize("int8", device)


def test_check_quantize_names_and_dtype():
    assert check_quantize("int8", "cpu") == "int8" and check_quantize("INT8", torch.device("cpu")) == "int8"
    assert check_quantize(None, "cuda") is None and check_quantize("none", "cuda") is None
    with pytest.raises(InputError, match="unknown quantization 'int4'"):
        check_quantize("int4", "cpu")
    with pytest.raises(InputError, match="fp32 weights, not torch.bfloat16"):
        check_quantize("int8", "cpu", torch.bfloat16)


def test_from_pretrained_refuses_before_loading(mistral_dir):
    with pytest.raises(InputError, match="fp32 weights"):
        Encoder.from_pretrained(mistral_dir, quantize="int8", dtype="bfloat16")
    with pytest.raises(InputError, match="merged"):
        Encoder.from_pretrained(mistral_dir, quantize="int8", merge_adapter=False)


def test_int8_queries_on_an_fp32_index_warn_and_writing_is_refused(encoders, tmp_path, caplog):
    """The rule: searching across int8/fp32 is allowed with a warning (same model otherwise);
    adding vectors of the other kind to an index is refused, both ways."""
    fp32, int8 = encoders
    for built, other, name in ((fp32, int8, "fp32"), (int8, fp32, "int8")):
        path = tmp_path / name
        with SearchIndex(built, open_store(path), writing=True) as index:
            index.add(DOCS)
        with caplog.at_level(logging.WARNING, logger="e5rag.retriever.search"):
            caplog.clear()
            with SearchIndex(other, open_store(path, readonly=True)) as index:
                hits = index.search(["where is Paris"], k=3)[0]
        assert len(hits) == 3
        assert any("same model" in r.getMessage() for r in caplog.records)
        with pytest.raises(IndexMismatchError, match="--quantize"):
            SearchIndex(other, open_store(path), writing=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="e5rag.retriever.search"):
        SearchIndex(int8, open_store(tmp_path / "int8"), writing=True).close()  # same kind: no warning
    assert not caplog.records


def test_open_loads_the_recorded_quantization(mistral_dir, encoders, tmp_path):
    _, int8 = encoders
    with SearchIndex(int8, open_store(tmp_path / "i"), writing=True, model_source=str(mistral_dir)) as index:
        index.add(DOCS)
    with SearchIndex.open(tmp_path / "i") as index:
        assert index.encoder.fingerprint == int8.fingerprint and is_quantized(index.encoder.model)
