"""JSON extraction from messy replies, schema checks with drop reasons, the kind -> row mapping,
Retry-After parsing and config validation."""

from __future__ import annotations

import email.utils

import pytest

from e5rag.retriever.errors import InputError
from e5rag.synth import HttpBackendConfig, LocalBackendConfig, SynthConfig
from e5rag.synth.http_backend import backoff_seconds, retry_after_seconds
from e5rag.synth.kinds import resolve_kind, row_fields
from e5rag.synth.validate import check_example, extract_json, parse_example, parse_task_list

GOOD = {"user_query": "q", "positive_document": "pos", "hard_negative_document": "neg"}


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    'Sure!\n```json\n{"a": 1}\n```\nAnything else?',
    "```\n{\"a\": 1}\n```",
    'Here: {"a": 1} and that is all {broken',
    'noise { not json } then {"a": 1}',
    '{"a": 1}\n\nNote: I wrote {this} in English.',
])
def test_extract_json_finds_the_object(text):
    assert extract_json(text) == {"a": 1}


@pytest.mark.parametrize("text", ["", "no json here", '{"a": ', "[1, 2]", '{"a": 1'])
def test_extract_json_gives_none_when_there_is_no_object(text):
    assert extract_json(text) is None


@pytest.mark.parametrize("obj, reason", [
    ([1], "no_json"),
    ({"user_query": "q", "positive_document": "p"}, "missing_key"),
    ({**GOOD, "positive_document": {"text": "p"}}, "not_string"),
    ({**GOOD, "hard_negative_document": "  "}, "empty_field"),
    ({**GOOD, "positive_document": "x" * 9000}, "too_long"),
    ({**GOOD, "hard_negative_document": "  POS "}, "positive_equals_negative"),
    ({**GOOD, "positive_document": "Q"}, "query_equals_positive"),
    ({**GOOD, "user_query": "User_Query:"}, "echoed_key_name"),
])
def test_schema_failures_are_named(obj, reason):
    assert check_example("short-long", obj) == (None, reason)


def test_valid_example_is_stripped_and_extra_keys_ignored():
    example, reason = parse_example("short-long", '```json\n{"user_query": " q ", "positive_document": "pos", '
                                                  '"hard_negative_document": "neg", "notes": 3}\n```')
    assert reason is None and example == GOOD


@pytest.mark.parametrize("kind, keys", [
    ("short-long", ("user_query", "positive_document", "hard_negative_document")),
    ("long-short", ("input_text", "label", "misleading_label")),
    ("short-short", ("input", "positive_document", "hard_negative_document")),
    ("long-long", ("input", "positive_document", "hard_negative_document")),
    ("sts", ("S1", "S2", "S3")),
    ("bitext", ("S1", "S2", "S3")),
])
def test_row_mapping_per_kind(kind, keys):
    example = dict(zip(keys, ("the query", "the positive", "the negative"), strict=True))
    assert row_fields(kind, example) == ("the query", "the positive", "the negative")


def test_task_lists_from_arrays_objects_and_noise():
    assert parse_task_list('["A task.", "B  task.", "A task.", 3, ""]') == ["A task.", "B task."]
    assert parse_task_list('Tasks:\n{"tasks": ["One.", "Two."]}') == ["One.", "Two."]
    assert parse_task_list("I would rather not.") == []
    # a list cut off by the token limit keeps its complete items
    assert parse_task_list('["Find recipes.", "Sort \\"mail\\" by team.", "Given a que') == [
        "Find recipes.", 'Sort "mail" by team.']


def test_retry_after_header_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.25") == 0.25
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000) == pytest.approx(10, abs=1)
    assert retry_after_seconds("99999") == 600.0


def test_backoff_grows_and_is_capped():
    import random

    rng = random.Random(0)
    assert all(0 <= backoff_seconds(0, 1.0, 60, rng) <= 1.0 for _ in range(100))
    assert max(backoff_seconds(3, 1.0, 60, rng) for _ in range(200)) > 4.0
    assert all(backoff_seconds(20, 1.0, 5.0, rng) <= 5.0 for _ in range(100))


@pytest.mark.parametrize("kwargs, field", [
    ({"num_examples": 0}, "num_examples"),
    ({"kinds": ("sts", "nope")}, "kinds"),
    ({"kinds": ()}, "kinds"),
    ({"languages": "mostly-english"}, "languages"),
    ({"languages": ("xx-unknown",)}, "unknown language"),
    ({"concurrency": 0}, "concurrency"),
    ({"top_p": 0}, "top_p"),
    ({"max_requests": 0}, "max_requests"),
    ({"price_prompt": -1.0}, "price_prompt"),
])
def test_config_errors_name_the_field(tmp_path, kwargs, field):
    base = {"out": tmp_path / "o.jsonl", "num_examples": 3, "backend": LocalBackendConfig()}
    with pytest.raises(InputError, match=field):
        SynthConfig(**{**base, **kwargs})


def test_backend_config_errors_and_defaults(tmp_path):
    with pytest.raises(InputError, match="base_url"):
        HttpBackendConfig("localhost:8000", "m")
    with pytest.raises(InputError, match="model"):
        HttpBackendConfig("http://localhost:8000/v1", "")
    with pytest.raises(InputError, match="unknown task kind 'foo'"):
        resolve_kind("foo")
    assert resolve_kind("STS") == "sts" and resolve_kind("short_long") == "short-long"
    cfg = SynthConfig(tmp_path / "d.jsonl", 120, HttpBackendConfig("http://h/v1", "m"), kinds=("sts", "long-long"))
    assert cfg.tasks_path.name == "d.jsonl.tasks.jsonl"
    assert (cfg.request_cap, cfg.example_max_tokens, cfg.rounds_per_kind()) == (544, 2048, 1)
