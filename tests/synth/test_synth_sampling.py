"""Language, kind and placeholder draws follow the configured weights (chi-square, fixed seed),
and every request plan is a pure function of (seed, index)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from e5rag.retriever.errors import InputError
from e5rag.synth.kinds import ALL_KINDS, KIND_SPECS
from e5rag.synth.languages import (
    LANGUAGES,
    MAJOR_LANGUAGES,
    language_weights,
    paper_weights,
    resolve_language,
    sample_language,
)
from e5rag.synth.plan import plan_example
from e5rag.synth.prompts import sample_placeholders

# chi-square critical values at p = 0.001 for the degrees of freedom used below
CHI2_999 = {1: 10.83, 2: 13.82, 4: 18.47, 5: 20.52, 14: 36.12, 85: 124.1}


def chi2(observed: Counter, expected: dict[str, float]) -> float:
    return sum((observed.get(k, 0) - e) ** 2 / e for k, e in expected.items())


def test_language_list_and_paper_weights():
    codes = [c for c, _ in LANGUAGES]
    assert len(codes) == len(set(codes)) == 100
    weights = paper_weights()
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["en"] == 0.431
    assert len(MAJOR_LANGUAGES) == 13 and all(weights[c] == 0.029 for c in MAJOR_LANGUAGES)
    others = {w for c, w in weights.items() if c != "en" and c not in MAJOR_LANGUAGES}
    assert len(others) == 1 and others.pop() == pytest.approx(0.192 / 86)


def test_weighted_language_draws_match_the_weights():
    weights, n = paper_weights(), 40_000
    rng = random.Random(1234)
    counts = Counter(sample_language(rng, weights) for _ in range(n))
    grouped = Counter({c: counts[c] for c in ["en", *MAJOR_LANGUAGES]})
    grouped["other"] = n - sum(grouped.values())
    expected = {c: weights[c] * n for c in ["en", *MAJOR_LANGUAGES]}
    expected["other"] = n - sum(expected.values())
    assert chi2(grouped, expected) < CHI2_999[14]
    minor = [c for c in weights if c not in expected]
    assert chi2(counts, {c: weights[c] * n for c in minor}) < CHI2_999[85]  # the minor ones share equally
    assert len(counts) == 100  # every language shows up


def test_language_specs():
    assert language_weights(("en",)) == {"en": 1.0}
    assert language_weights(("German", "fr", "zh-Hant")) == {"de": 1 / 3, "fr": 1 / 3, "zh_Hant": 1 / 3}
    assert len(language_weights("uniform")) == 100
    assert resolve_language("Hindi") == "hi"
    with pytest.raises(InputError, match="unknown language 'klingon'"):
        language_weights(("klingon",))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_placeholder_values_are_uniform(kind):
    rng, n = random.Random(99), 6000
    draws = [sample_placeholders(kind, rng) for _ in range(n)]
    for name, values in KIND_SPECS[kind].placeholders.items():
        counts = Counter(d[name] for d in draws)
        assert set(counts) == set(values)
        assert chi2(counts, {v: n / len(values) for v in values}) < CHI2_999[len(values) - 1]


def test_plans_are_deterministic_and_follow_kind_and_language_settings():
    pools = {k: [f"{k} task {i}" for i in range(7)] for k in ALL_KINDS if not KIND_SPECS[k].symmetric}
    weights = paper_weights()
    plans = [plan_example(5, i, ALL_KINDS, weights, pools) for i in range(3000)]
    assert plans[17] == plan_example(5, 17, ALL_KINDS, weights, pools)
    assert plans[17].messages != plan_example(6, 17, ALL_KINDS, weights, pools).messages
    kinds = Counter(p.kind for p in plans)
    assert chi2(kinds, {k: 500 for k in ALL_KINDS}) < CHI2_999[5]
    english = sum(p.language == "en" for p in plans)
    assert abs(english / 3000 - 0.431) < 0.04
    for p in plans:
        if p.kind == "bitext":
            assert p.target_language and p.target_language != p.language
            assert p.language_label == f"{p.language}-{p.target_language}"
        else:
            assert p.target_language is None
        assert p.task in pools.get(p.kind, [KIND_SPECS[p.kind].fixed_task])
    # a single-language spec still gets a different target language for bitext
    only_en = [plan_example(0, i, ("bitext",), {"en": 1.0}, {}) for i in range(50)]
    assert all(p.language == "en" and p.target_language not in (None, "en") for p in only_en)
