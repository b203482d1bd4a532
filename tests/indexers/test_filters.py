"""One table of filters, run on FAISS, Milvus Lite and (with E5RAG_MILVUS_URI) a Milvus server.

Each case is an expression string or a LangChain-style dict (translated by
``e5rag.retriever.langchain.convert``) and a Python predicate over the documents, computed
independently: every store must return exactly the accepted documents, ranked like a numpy
brute-force search over them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from e5rag.indexers import Document, UnsupportedFilterError, open_store
from e5rag.indexers.filters import And, Compare, In, Not, Or, format_filter, parse_filter

SERVER_URI = os.environ.get("E5RAG_MILVUS_URI")
N, DIM = 32, 8
TEXTS = ["salt and pepper", "salt", "pepper (hot)", 'it\'s "quoted"', "crème brûlée", "a or b"]
LANGS = ["en", "fr", "de"]


def make_docs() -> list[Document]:
    docs = []
    for i in range(N):
        meta = {"year": 2000 + i, "score": i / 4, "even": i % 2 == 0, "t": TEXTS[i % len(TEXTS)],
                "n": "1" if i % 5 == 0 else i % 3}
        if i % 8 != 7:
            meta["lang"] = LANGS[i % 3]  # every 8th document has no "lang"
        docs.append(Document(f"d{i}", f"text {i}", f"t{i:02d}", meta))
    return docs


def lang(d: Document):
    return d.metadata.get("lang")


# (filter, predicate): a missing key or another type never matches; !=, not in and not negate.
CASES = [
    ('metadata["t"] == "salt and pepper"', lambda d: d.metadata["t"] == "salt and pepper"),
    ('metadata["t"] == "a or b"', lambda d: d.metadata["t"] == "a or b"),
    ('metadata["t"] in ["salt", "pepper (hot)"]', lambda d: d.metadata["t"] in ("salt", "pepper (hot)")),
    ("metadata['t'] == 'it\\'s \"quoted\"'", lambda d: d.metadata["t"] == 'it\'s "quoted"'),
    ('metadata["t"] == "crème brûlée"', lambda d: d.metadata["t"] == "crème brûlée"),
    ('(metadata["lang"] == "en" or metadata["lang"] == "fr") and metadata["even"] == true',
     lambda d: lang(d) in ("en", "fr") and d.metadata["even"]),
    ('not metadata["lang"] == "en"', lambda d: lang(d) != "en"),
    ('metadata["lang"] != "en"', lambda d: lang(d) != "en"),
    ('metadata["lang"] not in ["en", "de"]', lambda d: lang(d) not in ("en", "de")),
    ('not (metadata["lang"] in ["en", "de"] or metadata["year"] > 2020)',
     lambda d: not (lang(d) in ("en", "de") or d.metadata["year"] > 2020)),
    ('2005 <= metadata["year"] < 2012', lambda d: 2005 <= d.metadata["year"] < 2012),
    ('metadata["score"] > 6.5 or id in ["d1", "d2"]', lambda d: d.metadata["score"] > 6.5 or d.id in ("d1", "d2")),
    ('title == "t03" or title >= "t29"', lambda d: d.title == "t03" or d.title >= "t29"),
    ('id not in ["d0", "d3"] and not (metadata["even"] == false)', lambda d: d.id not in ("d0", "d3") and d.metadata["even"]),
    ('metadata["n"] == "1"', lambda d: d.metadata["n"] == "1"),
    ('metadata["n"] == 1', lambda d: d.metadata["n"] == 1 and not isinstance(d.metadata["n"], str)),
    ('metadata["n"] in [2, "1"]', lambda d: d.metadata["n"] in (2, "1")),
    ('metadata["year"] == -1 or metadata["score"] == 1.5', lambda d: d.metadata["score"] == 1.5),
    ('metadata["lang"] == "de" && metadata["even"] == false', lambda d: lang(d) == "de" and not d.metadata["even"]),
    ('metadata["year"] < 2003 || metadata["year"] > 2029 AND NOT metadata["even"] == true',
     lambda d: d.metadata["year"] < 2003 or (d.metadata["year"] > 2029 and not d.metadata["even"])),
    ('metadata["missing"] == 1', lambda d: False),
    # LangChain dict filters
    ({"lang": "en"}, lambda d: lang(d) == "en"),
    ({"lang": ["en", "fr"]}, lambda d: lang(d) in ("en", "fr")),
    ({"t": {"$eq": "salt and pepper"}}, lambda d: d.metadata["t"] == "salt and pepper"),
    ({"year": {"$gte": 2005, "$lt": 2012}}, lambda d: 2005 <= d.metadata["year"] < 2012),
    ({"year": {"$lte": 2003}}, lambda d: d.metadata["year"] <= 2003),
    ({"score": {"$gt": 2.5}, "even": False}, lambda d: d.metadata["score"] > 2.5 and not d.metadata["even"]),
    ({"$or": [{"lang": "de"}, {"even": True}]}, lambda d: lang(d) == "de" or d.metadata["even"]),
    ({"$and": [{"lang": {"$ne": "en"}}, {"t": {"$nin": ["salt", "a or b"]}}]},
     lambda d: lang(d) != "en" and d.metadata["t"] not in ("salt", "a or b")),
    ({"title": {"$in": ["t01", "t02"]}}, lambda d: d.title in ("t01", "t02")),
    ({"lang": {"$in": ["de"]}, "$or": [{"year": {"$lt": 2010}}, {"n": "1"}]},
     lambda d: lang(d) == "de" and (d.metadata["year"] < 2010 or d.metadata["n"] == "1")),
]

BAD = [  # (filter, what the FAISS store's message names, refused by Milvus too)
    ('__import__("os").system("touch {marker}")', "function call", True),
    ('metadata.keys() == 1', "function call", True),
    ('metadata.get == 1', "attribute", True),
    ('foo == 1', "'foo'", True),
    ('metadata["lang"] == None', "None", True),
    ('id == 3', "id is a string", True),
    ('metadata["lang"] in []', "non-empty list", True),
    ('metadata["lang"] === "en"', "cannot parse", True),
    ('lambda: 1', "not a condition", True),
    ('metadata["year"] + 1 == 2001', "is not a field", False),  # Milvus arithmetic: Milvus evaluates it
]


def expression(filter) -> str:
    if isinstance(filter, str):
        return filter
    pytest.importorskip("langchain_core")
    from e5rag.retriever.langchain.convert import filter_expression

    return filter_expression(filter)


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module", params=["faiss", "lite", "server"])
def filled(request, tmp_path_factory):
    """(store, docs, vectors) for one backend, filled once for the module."""
    docs, vecs = make_docs(), unit(N, 0)
    name = f"filters_{uuid.uuid4().hex[:10]}"
    if request.param == "faiss":
        pytest.importorskip("faiss")
        store = open_store(tmp_path_factory.mktemp("faiss") / "idx", store="faiss")
    else:
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
        if request.param == "server" and not SERVER_URI:
            pytest.skip("set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
        location = SERVER_URI if request.param == "server" else str(tmp_path_factory.mktemp("milvus") / "f.db")
        store = open_store(location, store="milvus", collection=name)
    store.initialize(DIM, {"base": "test"})
    store.upsert(docs, vecs)
    store.commit()
    yield store, docs, vecs
    store.close()
    if request.param == "server":
        from pymilvus import MilvusClient

        client = MilvusClient(SERVER_URI)
        client.drop_collection(name)
        client.close()


@pytest.mark.parametrize("filter, keep", CASES, ids=[str(c[0])[:60] for c in CASES])
def test_filter_table_on_every_store(filled, filter, keep):
    store, docs, vecs = filled
    q = unit(2, 1)
    subset = [i for i, d in enumerate(docs) if keep(d)]
    got = store.search(q, N, filter=expression(filter))
    for row, qv in zip(got, q, strict=True):
        scores = vecs[subset] @ qv
        order = np.argsort(-scores, kind="stable")
        assert [h.document.id for h in row] == [docs[subset[i]].id for i in order], filter
        np.testing.assert_allclose([h.score for h in row], scores[order], atol=1e-5)


@pytest.mark.parametrize("filter, names, everywhere", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_filters_are_refused_and_run_nothing(filled, filter, names, everywhere, tmp_path):
    store, _, _ = filled
    marker = tmp_path / "ran"
    if store.kind != "faiss" and not everywhere:
        pytest.skip("an expression in Milvus' own language, outside e5rag's grammar")
    with pytest.raises(UnsupportedFilterError) as err:
        store.search(unit(1, 2), 3, filter=filter.replace("{marker}", str(marker)))
    if store.kind == "faiss":  # Milvus judges expressions outside e5rag's grammar with its own message
        assert names in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_parse_tree_and_round_trip():
    tree = parse_filter('2010 <= metadata["y"] < 2015 and (id != "a" or not title in ["x", "y"])')
    y = ("metadata", "y")
    assert tree == And((And((Compare(y, ">=", 2010), Compare(y, "<", 2015))),
                        Or((Not(Compare(("column", "id"), "==", "a")), Not(In(("column", "title"), ("x", "y")))))))
    for case, _ in CASES:
        if isinstance(case, str):
            assert parse_filter(format_filter(parse_filter(case))) == parse_filter(case)


def test_parser_never_evaluates(tmp_path: Path):
    marker = tmp_path / "ran"
    for expr in (f'__import__("os").system("touch {marker}") == 0', f'open("{marker}", "w") == 1',
                 '(lambda: 1)() == 1', '[x for x in metadata] == 1', 'metadata["a"] == 2**100000**100',
                 'not ' * 5000 + 'id == "a"'):
        with pytest.raises(UnsupportedFilterError):
            parse_filter(expr)
    assert not marker.exists()


@pytest.mark.parametrize("bad, message", [
    ({"lang": {"$regex": "e."}}, "unknown operator '$regex'"),
    ({"$not": {"lang": "en"}}, "unknown filter operator '$not'"),
    ({"$or": []}, "non-empty list"),
    ({"lang": None}, "values must be"),
    ({"title": 3}, "values must be strings"),
    ({"lang": {"$in": []}}, "non-empty list"),
])
def test_bad_dict_filters(bad, message):
    pytest.importorskip("langchain_core")
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.langchain.convert import filter_expression

    with pytest.raises(InputError, match=message.replace("$", r"\$")):
        filter_expression(bad)
