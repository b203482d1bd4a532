"""The local transformers backend on a tiny random Llama (garbage output, real code path), and
optionally on the real embedded SmolLM2 (marked slow)."""

from __future__ import annotations

import json

import pytest

from e5rag.synth import LocalBackendConfig, SynthConfig, synthesize
from e5rag.synth.backend import ChatRequest
from e5rag.synth.kinds import KIND_SPECS
from e5rag.synth.local_backend import LocalChatBackend
from e5rag.synth.validate import check_example


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("E5RAG_CACHE", str(tmp_path / "cache"))


def test_batched_generation_keeps_prefill_and_counts_tokens(tiny_llama_dir):
    backend = LocalChatBackend.load(LocalBackendConfig(str(tiny_llama_dir), device="cpu"), max_batch=3)
    requests = [ChatRequest([{"role": "user", "content": f"write {'the cat ' * i}sentences"}], seed=i,
                            max_tokens=6, prefill='{"S1": "') for i in range(3)]
    results = backend.generate(requests)
    assert len(results) == 3
    assert all(r.text.startswith('{"S1": "') for r in results)
    assert all(0 < r.completion_tokens <= 6 for r in results)
    assert results[0].prompt_tokens < results[2].prompt_tokens  # left padding is not counted
    assert backend.generate(requests[:1])[0].text == backend.generate(requests[:1])[0].text  # seeded


def test_offline_pipeline_runs_counts_drops_and_writes_only_valid_rows(tiny_llama_dir, tmp_path):
    config = SynthConfig(out=tmp_path / "local.jsonl", num_examples=3,
                         backend=LocalBackendConfig(str(tiny_llama_dir), device="cpu"),
                         kinds=("sts", "bitext"), concurrency=3, max_tokens=12, max_requests=6, progress=False)
    summary = synthesize(config)
    assert summary.requests == 6
    assert summary.kept + summary.duplicates + sum(summary.dropped.values()) + summary.surplus == 6
    assert summary.completion_tokens > 0 and summary.prompt_tokens > 0
    assert set(summary.dropped) <= {"no_json", "missing_key", "not_string", "empty_field", "too_long",
                                    "positive_equals_negative", "query_equals_positive"}
    assert summary.complete == (summary.total == 3)
    rows = [json.loads(line) for line in config.out.read_text().splitlines()] if config.out.exists() else []
    assert len(rows) == summary.kept
    for r in rows:
        example = dict(zip(KIND_SPECS[r["kind"]].keys, (r["query"], r["positive"], r["negative"]), strict=True))
        assert check_example(r["kind"], example)[1] is None
        assert r["model"] == tiny_llama_dir.name


@pytest.mark.slow
@pytest.mark.smollm2
def test_embedded_smollm2_end_to_end(tmp_path):
    config = SynthConfig(out=tmp_path / "smol.jsonl", num_examples=2, backend=LocalBackendConfig(device="cpu"),
                         kinds=("sts",), languages=("en",), concurrency=4, max_tokens=160, max_requests=8,
                         temperature=0.7, progress=False)
    summary = synthesize(config)
    assert summary.requests >= 2 and summary.total <= 2
