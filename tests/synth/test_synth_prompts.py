"""Prompt rendering for every kind: all placeholders filled, the keys and language named."""

from __future__ import annotations

import random
import re

import pytest

from e5rag.synth.kinds import ALL_KINDS, KIND_SPECS
from e5rag.synth.languages import LANGUAGE_NAMES
from e5rag.synth.prompts import (
    brainstorm_messages,
    example_messages,
    json_prefill,
    prompt_hash,
    sample_placeholders,
)

LEFTOVER = re.compile(r"\{[a-z_]+\}")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_example_prompt_fills_every_placeholder(kind):
    spec = KIND_SPECS[kind]
    rng = random.Random(3)
    values = sample_placeholders(kind, rng)
    task = spec.fixed_task or "Given a bird's name, retrieve field-guide entries describing it."
    [message] = example_messages(kind, task, "sw", values, target_language="ja")
    text = message["content"]
    assert message["role"] == "user"
    assert not LEFTOVER.search(text)
    assert all(f'"{key}"' in text for key in spec.keys)
    assert all(str(v) in text for v in values.values())
    assert LANGUAGE_NAMES["sw"] in text
    if kind == "bitext":
        assert LANGUAGE_NAMES["ja"] in text
    if not spec.symmetric:
        assert task in text
    assert "JSON object only" in text
    assert json_prefill(kind) == '{"' + spec.keys[0] + '": "'


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if not KIND_SPECS[k].symmetric])
def test_brainstorm_prompt_asks_for_a_json_array(kind):
    [message] = brainstorm_messages(kind, random.Random(0))
    assert "JSON array of strings" in message["content"]
    assert not LEFTOVER.search(message["content"])
    assert brainstorm_messages(kind, random.Random(0)) == [message]  # seeded, reproducible


def test_symmetric_kinds_have_no_brainstorm_and_bitext_needs_a_target():
    with pytest.raises(ValueError):
        brainstorm_messages("sts", random.Random(0))
    with pytest.raises(ValueError, match="target_language"):
        example_messages("bitext", "x", "en", sample_placeholders("bitext", random.Random(0)))


def test_prompt_hash_is_stable_and_sensitive():
    a = [{"role": "user", "content": "hello"}]
    assert prompt_hash(a) == prompt_hash([dict(a[0])])
    assert len(prompt_hash(a)) == 16
    assert prompt_hash(a) != prompt_hash([{"role": "user", "content": "hello!"}])
