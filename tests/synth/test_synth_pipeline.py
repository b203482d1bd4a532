"""The whole pipeline against a real loopback HTTP server speaking the chat-completions protocol."""

from __future__ import annotations

import json

import pytest

from e5rag.retriever.errors import E5RagError
from e5rag.synth import HttpBackendConfig, SynthConfig, SynthError, synthesize
from e5rag.synth.kinds import KIND_SPECS
from e5rag.synth.store import ROW_KEYS, example_key
from e5rag.synth.validate import check_example


def make_config(tmp_path, base_url, n, **kw) -> SynthConfig:
    backend = HttpBackendConfig(base_url, "fake-model", api_key_env=kw.pop("api_key_env", None),
                                timeout_s=kw.pop("timeout_s", 5.0), max_retries=kw.pop("max_retries", 4),
                                backoff_base_s=0.01, backoff_max_s=0.05)
    return SynthConfig(out=tmp_path / "data.jsonl", num_examples=n, backend=backend, progress=False,
                       concurrency=kw.pop("concurrency", 4), **kw)


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_valid_unique(rows, n):
    assert len(rows) == n
    assert len({r["id"] for r in rows}) == n
    assert len({example_key(r["query"], r["positive"], r["negative"]) for r in rows}) == n
    for r in rows:
        assert tuple(r) == ROW_KEYS
        keys = KIND_SPECS[r["kind"]].keys
        example = dict(zip(keys, (r["query"], r["positive"], r["negative"]), strict=True))
        assert check_example(r["kind"], example) == (example, None)


def test_every_kind_end_to_end_with_mixed_replies(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.script.extend(["fenced", "prose", "malformed", "missing_key", "same_pos_neg", "empty", "dup", "dup"])
    fake.brainstorm_script.append("malformed")  # one brainstorm reply without a list: that round retries
    summary = synthesize(make_config(tmp_path, url, 24, price_prompt=1.0, price_completion=2.0))
    rows = read_rows(tmp_path / "data.jsonl")
    assert_valid_unique(rows, 24)
    assert summary.complete and summary.total == summary.kept == 24
    assert summary.dropped == {"no_json": 1, "missing_key": 1, "positive_equals_negative": 1, "empty_field": 1}
    assert summary.duplicates == 1
    assert summary.requests == 24 + 4 + 1 + summary.surplus  # surplus: replies in flight at the end
    assert summary.surplus <= 3
    # brainstorm: one round per asymmetric kind (24 examples < 60 per kind), 5 tasks each
    assert summary.brainstorm_requests == 5 and summary.brainstorm_dropped == {"no_tasks": 1}
    assert summary.task_pool_sizes == {k: 5 for k in ("short-long", "long-short", "short-short", "long-long")}
    assert summary.prompt_tokens == 100 * (summary.requests + 5)
    assert summary.cost_usd == pytest.approx((summary.prompt_tokens * 1 + summary.completion_tokens * 2) / 1e6)
    pools = read_rows(tmp_path / "data.jsonl.tasks.jsonl")
    assert sorted(p["kind"] for p in pools) == ["long-long", "long-short", "short-long", "short-short"]
    pool_tasks = {t for p in pools for t in p["tasks"]}
    for r in rows:
        assert r["model"] == "fake-model"
        if r["kind"] == "sts":
            assert r["task"] == "Retrieve semantically similar text."
        elif r["kind"] == "bitext":
            assert r["task"] == "Retrieve parallel sentences."
            src, tgt = r["language"].split("-")
            assert src != tgt
        else:
            assert r["task"] in pool_tasks
    # the request carried the paper's sampling settings and a per-request seed
    bodies = [e["body"] for e in fake.log]
    assert all(b["temperature"] == 1.0 and b["top_p"] == 1.0 and isinstance(b["seed"], int) for b in bodies)


def test_retries_on_429_500_and_timeouts_then_succeeds(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.script.extend(["429", "500", "slow", "500"])
    # margins sized for a loaded CI host: a good loopback reply must not hit the 1 s timeout
    fake.slow_s, fake.retry_after = 3.0, "0.5"
    config = make_config(tmp_path, url, 3, kinds=("sts",), concurrency=1, timeout_s=1.0)
    summary = synthesize(config)
    assert summary.total == 3 and summary.retries == 4 and summary.dropped == {}
    assert fake.actions() == ["429", "500", "slow", "500", "good", "good", "good"]
    # Retry-After: 0.5 was honoured even though the jittered backoff is at most 0.05 s
    assert fake.log[1]["t"] - fake.log[0]["t"] >= 0.45
    assert fake.log[1]["t"] - fake.log[0]["t"] < 5.0


def test_exhausted_retries_drop_the_request_and_the_run_goes_on(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.script.extend(["500", "500", "500", "bad_body"])
    summary = synthesize(make_config(tmp_path, url, 2, kinds=("sts",), concurrency=1, max_retries=2))
    assert summary.total == 2
    assert summary.dropped == {"request_failed": 1, "bad_response": 1}
    assert summary.retries == 2


def test_unauthorised_endpoint_stops_the_run_without_leaking_the_key(tmp_path, fake_openai, monkeypatch):
    fake, url = fake_openai
    monkeypatch.setenv("E5RAG_TEST_KEY", "sk-secret-123")
    # A wrong key is rejected on every request. One scripted 401 among concurrent workers could be
    # cancelled unanswered once the others had written the 2 examples (a race CI once lost).
    fake.script.extend(["401"] * 8)
    with pytest.raises(E5RagError, match="HTTP 401") as info:
        synthesize(make_config(tmp_path, url, 2, kinds=("sts",), api_key_env="E5RAG_TEST_KEY"))
    assert "sk-secret-123" not in str(info.value)
    assert fake.log[0]["headers"]["Authorization"] == "Bearer sk-secret-123"


def test_endpoint_that_keeps_failing_is_a_clear_error(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.script.extend(["500"] * 100)
    with pytest.raises(SynthError, match="in a row failed"):
        synthesize(make_config(tmp_path, url, 5, kinds=("sts",), concurrency=2, max_retries=0))


def test_brainstorm_that_never_parses_is_a_clear_error(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.brainstorm_script.extend(["malformed"] * 3)
    with pytest.raises(SynthError, match="no task definitions could be brainstormed for short-long"):
        synthesize(make_config(tmp_path, url, 2, kinds=("short-long",)))
    assert not (tmp_path / "data.jsonl").exists() or not read_rows(tmp_path / "data.jsonl")


def test_request_cap_stops_short_and_resume_with_more_finishes(tmp_path, fake_openai):
    fake, url = fake_openai
    fake.script.extend(["malformed"] * 4 + ["dup"])
    first = synthesize(make_config(tmp_path, url, 4, kinds=("sts",), concurrency=1, max_requests=6))
    assert (first.total, first.complete, first.requests) == (2, False, 6)
    # duplicates across runs: the resumed run is served an example the first run already wrote
    fake.script.append("dup")
    second = synthesize(make_config(tmp_path, url, 4, kinds=("sts",), concurrency=1, max_requests=20))
    rows = read_rows(tmp_path / "data.jsonl")
    assert_valid_unique(rows, 4)
    assert (second.resumed, second.kept, second.duplicates) == (2, 2, 1)
    assert [r["id"] for r in rows] == ["0-4", "0-5", "0-7", "0-8"]  # 6 was the duplicate


def test_resume_reuses_the_saved_task_pool(tmp_path, fake_openai):
    fake, url = fake_openai
    synthesize(make_config(tmp_path, url, 3, kinds=("long-short",)))
    brainstorms = sum(1 for e in fake.log if "JSON array" in e["body"]["messages"][0]["content"])
    synthesize(make_config(tmp_path, url, 6, kinds=("long-short",)))
    assert sum(1 for e in fake.log if "JSON array" in e["body"]["messages"][0]["content"]) == brainstorms == 1
    assert_valid_unique(read_rows(tmp_path / "data.jsonl"), 6)


def test_finished_output_needs_no_requests(tmp_path, fake_openai):
    fake, url = fake_openai
    synthesize(make_config(tmp_path, url, 2, kinds=("sts",)))
    n = len(fake.log)
    again = synthesize(make_config(tmp_path, url, 2, kinds=("sts",)))
    assert len(fake.log) == n and again.total == 2 and again.requests == 0
