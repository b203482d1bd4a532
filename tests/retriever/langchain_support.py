"""Fixtures and helpers shared by the LangChain plugin tests (imported by tests/retriever/test_langchain_*.py).

The standard ``langchain_tests`` suites build their objects from class properties, not fixtures, so
class-scoped fixtures put what they need (an encoder, an index) on the test class.
"""

from __future__ import annotations

import importlib.util
import uuid

import numpy as np
import pytest
from tiny_models import CORPUS

TITLES = ["Animals", "France", "Biology", "Science", "Health", "Support", "RAG", "Finance", "Meta"]
DOCS = [{"id": f"d{i}", "text": text, "title": title, "lang": "en" if i % 2 == 0 else "fr"}
        for i, (text, title) in enumerate(zip(CORPUS, TITLES, strict=True))]
QUERY = "How do plants turn light into energy?"
# Two tasks that differ only in the instruction: a registered name and a free sentence.
TASK_A = "scifact"
TASK_B = "Given a question, retrieve questions that are semantically equivalent to the given question"


def milvus_ready() -> bool:
    """Milvus Lite and the e5rag Milvus store are both importable."""
    if importlib.util.find_spec("milvus_lite") is None or importlib.util.find_spec("pymilvus") is None:
        return False
    try:
        import e5rag.indexers.milvus_store  # noqa: F401
    except Exception:
        return False
    return True


requires_milvus = [pytest.mark.milvus,
                   pytest.mark.skipif(not milvus_ready(), reason="needs milvus-lite and pymilvus")]


def fresh_collection() -> str:
    """A new Milvus collection name: an empty store per test inside one Milvus Lite database."""
    return f"lc_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def lc_encoder(mistral_dir):
    """The tiny random Mistral encoder, loaded once per module (never mutated by these tests)."""
    from e5rag.retriever.encoder import Encoder

    return Encoder.from_pretrained(mistral_dir, max_length=256)  # long enough for any instruction + query


def build_index(location, encoder, **store_options):
    """A SearchIndex over DOCS (titles embedded, ``lang`` in metadata), opened for reading."""
    from e5rag.indexers import Document
    from e5rag.retriever.search import SearchIndex

    docs = [Document(d["id"], d["text"], d["title"], {"lang": d["lang"]}) for d in DOCS]
    with SearchIndex.open(location, encoder, readonly=False, **store_options) as index:
        index.add(docs)
    return SearchIndex.open(location, encoder, readonly=True, **store_options)


def expected_scores(encoder, task_definition: str, query: str) -> dict[str, float]:
    """Cosine of ``query`` under ``task_definition`` to every doc, computed without the plugin:
    raw ``encoder.encode`` of ``Instruct: ...\\nQuery: ...`` and of ``"title text"``. -> id -> score"""
    from e5rag.retriever.instructions import format_query

    docs = encoder.encode([f"{d['title']} {d['text']}" for d in DOCS])  # (n, dim)
    q = encoder.encode([format_query(task_definition, query)])[0]  # (dim,)
    return {d["id"]: float(s) for d, s in zip(DOCS, docs @ q, strict=True)}


def assert_ranking_matches(got: list[tuple[str, float]], expected: dict[str, float], k: int) -> None:
    """``got`` (id, score) is a correct top-k of ``expected``: scores agree, order is by score
    (ties may come in any order), and nothing better was left out."""
    assert len(got) == min(k, len(expected))
    for id_, score in got:
        assert score == pytest.approx(expected[id_], abs=1e-5)
    scores = [s for _, s in got]
    assert all(a >= b - 1e-6 for a, b in zip(scores, scores[1:], strict=False))
    best_missing = max((s for i, s in expected.items() if i not in {g for g, _ in got}), default=-np.inf)
    assert min(scores) >= best_missing - 1e-5
