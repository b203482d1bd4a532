"""Pure helpers of the Milvus store: UTF-8 truncation, request batching, id quoting, filter rewriting."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from e5rag.indexers import Document, StoreInputError
from e5rag.indexers.milvus_filter import expand_json_in
from e5rag.indexers.milvus_rows import batches, id_chunks, ids_expr, to_rows, truncate_utf8
from e5rag.indexers.milvus_schema import IndexConfig, normalize_index_type


@pytest.mark.parametrize("text", ["", "ascii only", "é" * 10, "日本語テキスト", "mixed é😀 ✓ x" * 3])
def test_truncate_utf8_is_the_longest_whole_character_prefix(text):
    for limit in range(0, len(text.encode()) + 2):
        cut = truncate_utf8(text, limit)
        assert text.startswith(cut) and len(cut.encode()) <= limit
        longest = max((text[:i] for i in range(len(text) + 1) if len(text[:i].encode()) <= limit), key=len)
        assert cut == longest


def test_batches_cover_everything_in_order_within_limits():
    rng = random.Random(0)
    for _ in range(50):
        sizes = [rng.randint(1, 50) for _ in range(rng.randint(0, 40))]
        items = list(range(len(sizes)))
        max_bytes, max_items = rng.randint(20, 120), rng.randint(1, 10)
        out = [list(b) for b in batches(items, sizes, max_bytes, max_items)]
        assert [i for b in out for i in b] == items
        for b in out:
            assert len(b) <= max_items
            assert len(b) == 1 or sum(sizes[i] for i in b) <= max_bytes


def test_oversized_item_gets_its_own_batch():
    assert [list(b) for b in batches(["a", "b", "c"], [5, 100, 5], max_bytes=10)] == [["a"], ["b"], ["c"]]


def test_ids_expr_round_trips_any_id_through_json_quoting():
    ids = ["plain", "it's", 'say "hi"', "back\\slash", "new\nline", "é ✓ 😀"]
    expr = ids_expr(ids)
    assert expr.startswith("id in [") and json.loads(expr[len("id in "):]) == ids
    chunks = list(id_chunks([f"id{i}" for i in range(2500)]))
    assert [i for c in chunks for i in c] == [f"id{i}" for i in range(2500)] and max(map(len, chunks)) <= 1000


def test_to_rows_keeps_full_hash_and_refuses_what_cannot_be_cut():
    docs = [Document("a", "é" * 40_000, "t", {"k": 1}), Document("b", "short")]
    rows, sizes = to_rows(docs, np.zeros((2, 4), np.float32))
    assert [r["content_hash"] for r in rows] == [d.content_hash for d in docs]
    assert len(rows[0]["text"].encode()) <= 65535 and rows[1]["text"] == "short"
    assert sizes[0] > 65535 > sizes[1]
    with pytest.raises(StoreInputError, match="not JSON-serialisable"):
        to_rows([Document("c", "x", metadata={"k": object()})], np.zeros((1, 4), np.float32))


@pytest.mark.parametrize("expr, expected", [
    ('metadata["lang"] in ["en", "fr"]', '(metadata["lang"] == "en" or metadata["lang"] == "fr")'),
    ("metadata['a'][0] not in [1, 2] and x", "not (metadata['a'][0] == 1 or metadata['a'][0] == 2) and x"),
    ('id in ["a", "b"]', 'id in ["a", "b"]'),  # plain fields support `in` natively
    ('title == "metadata[\\"k\\"] in [1]"', 'title == "metadata[\\"k\\"] in [1]"'),  # inside a string literal
    ('metadata["k"] in ["x,]", "y"]', '(metadata["k"] == "x,]" or metadata["k"] == "y")'),
    ('metadata["k"] in []', 'metadata["k"] in []'),  # left for Milvus to judge
])
def test_expand_json_in(expr, expected):
    assert expand_json_in(expr) == expected


def test_index_types_normalised_per_deployment():
    assert normalize_index_type("hnsw", lite=True) == "HNSW"
    assert normalize_index_type("brute_force", lite=True) == "FLAT"
    assert normalize_index_type("DISKANN", lite=False) == "DISKANN"
    with pytest.raises(StoreInputError, match="not built by Milvus Lite"):
        normalize_index_type("DISKANN", lite=True)
    hnsw = IndexConfig("HNSW", lite=True, search={"ef": 8})
    assert hnsw.build == {"M": 16, "efConstruction": 200}
    assert hnsw.search_params(100)["params"]["ef"] == 100  # ef is never below k
    assert IndexConfig("IVF_FLAT", lite=False, build={"nlist": 4}).build == {"nlist": 4}
