"""MilvusStore against a real Milvus Lite file (and a Milvus server when E5RAG_MILVUS_URI is set).

Results are compared with a numpy brute-force search and with the FAISS store on the same random
normalised vectors (ties are improbable). One Lite directory is shared by the module; each test
uses its own collection.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from e5rag.indexers import Document, StoreError, StoreInputError, UnsupportedFilterError, open_store  # noqa: E402
from e5rag.indexers.milvus_store import MilvusStore  # noqa: E402

pytestmark = pytest.mark.milvus
SERVER_URI = os.environ.get("E5RAG_MILVUS_URI")
MODEL = {"base": "org/model", "revision": None, "max_length": 512, "nested": {"a": [1, 2.5, True]}, "name": "é ✓"}


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32, rows L2-normalised."""
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_docs(n: int) -> list[Document]:
    langs = ["en", "fr", "de"]
    return [Document(f"d{i}", f"text {i}", f"t{i}", {"year": 2000 + i % 25, "lang": langs[i % 3], "even": i % 2 == 0})
            for i in range(n)]


def exact_topk(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy brute force: (n_q, k) indices and scores by inner product."""
    scores = q @ d.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1)


@pytest.fixture(scope="module")
def lite_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("milvus") / "shared.db"
    keeper = MilvusStore(path, collection="keeper")  # keeps the module's Lite server running
    yield path
    keeper.close()


@pytest.fixture(params=["lite", "server"])
def make_store(request, lite_db):
    """Factory: a MilvusStore on a fresh collection of the module's Lite db or of the server."""
    if request.param == "server" and not SERVER_URI:
        pytest.skip("set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
    location = str(lite_db) if request.param == "lite" else SERVER_URI
    opened: list[MilvusStore] = []
    names: list[str] = []

    def make(collection: str | None = None, **options) -> MilvusStore:
        name = collection or f"t_{uuid.uuid4().hex[:12]}"
        store = MilvusStore(location, collection=name, **options)
        opened.append(store)
        names.append(name)
        return store

    make.location = location
    yield make
    for store in opened:
        store.close()
    if request.param == "server":
        from pymilvus import MilvusClient

        client = MilvusClient(SERVER_URI)
        for name in set(names):
            if client.has_collection(name):
                client.drop_collection(name)
        client.close()


def filled(make_store, n: int = 300, dim: int = 32, seed: int = 0, **options):
    store = make_store(**options)
    store.initialize(dim, MODEL)
    docs, vecs = make_docs(n), unit_vectors(n, dim, seed)
    store.upsert(docs, vecs)
    store.commit()
    return store, docs, vecs


def test_manifest_round_trips_and_survives_reopen(make_store):
    store = make_store()
    assert store.manifest is None and store.count() == 0
    store.initialize(16, MODEL)
    m = store.manifest
    assert (m.store, m.dim, m.model, m.count, m.metric) == ("milvus", 16, MODEL, 0, "ip")
    with pytest.raises(StoreError, match="already initialised"):
        store.initialize(16, MODEL)
    store.upsert(make_docs(3), unit_vectors(3, 16, 1))
    store.commit()
    store.close()
    again = make_store(store.collection, readonly=True)
    assert again.manifest.to_dict() == {**m.to_dict(), "count": 3}


def test_upsert_get_hashes_delete(make_store):
    store = make_store()
    store.initialize(8, MODEL)
    docs = [Document("plain", "a"), Document("it's \"quoted\" \\ ✓", "b", "T", {"k": [1, {"x": None}]}),
            Document("third", "c", metadata={"lang": "en"})]
    vecs = unit_vectors(3, 8, 2)
    store.upsert(docs, vecs)
    assert store.count() == 3
    assert store.get(["third", "missing", docs[1].id]) == [docs[2], None, docs[1]]
    assert store.content_hashes([d.id for d in docs] + ["missing"]) == {d.id: d.content_hash for d in docs}

    changed = Document("plain", "a changed", "new title", {"v": 2})
    store.upsert([changed], vecs[:1])
    assert store.count() == 3 and store.get(["plain"]) == [changed]
    assert store.content_hashes(["plain"]) == {"plain": changed.content_hash} != {"plain": docs[0].content_hash}

    assert store.delete([docs[1].id, docs[1].id, "missing"]) == 1  # a real count, not the ids asked
    assert store.delete(["missing"]) == 0
    assert store.count() == 2 and store.get([docs[1].id]) == [None]
    hits = store.search(vecs, k=3)
    assert all(h.document.id != docs[1].id for row in hits for h in row)

    with pytest.raises(StoreInputError, match="appears twice"):
        store.upsert([docs[0], docs[0]], vecs[:2])
    with pytest.raises(StoreInputError, match="dimension"):
        store.upsert(docs[:1], unit_vectors(1, 9, 0))


def test_search_equals_numpy_and_faiss(make_store, tmp_path):
    store, docs, vecs = filled(make_store)
    queries = unit_vectors(200, 32, 7)
    for k in (10, 100):  # k=100: 200 queries take several requests
        got = store.search(queries, k)
        top, scores = exact_topk(queries, vecs, k)
        assert [[h.document.id for h in row] for row in got] == [[docs[i].id for i in row] for row in top]
        np.testing.assert_allclose([[h.score for h in row] for row in got], scores, atol=1e-5)
        assert [h.rank for h in got[0]] == list(range(1, k + 1))
        assert got[0][0].document == docs[top[0, 0]]

    faiss_store = open_store(tmp_path / "faiss", store="faiss")
    faiss_store.initialize(32, MODEL)
    faiss_store.upsert(docs, vecs)
    faiss_store.commit()
    theirs, ours = faiss_store.search(queries, 10), store.search(queries, 10)
    faiss_store.close()
    assert [[(h.document, h.rank) for h in row] for row in ours] == [[(h.document, h.rank) for h in row] for row in theirs]
    np.testing.assert_allclose([[h.score for h in r] for r in ours], [[h.score for h in r] for r in theirs], atol=1e-5)


@pytest.mark.parametrize("index_type, index_params, exhaustive, restrictive", [
    ("HNSW", {"M": 8, "efConstruction": 100}, {"ef": 2000}, {"ef": 10}),
    ("IVF_FLAT", {"nlist": 32}, {"nprobe": 32}, {"nprobe": 1}),
    ("AUTOINDEX", {}, {"ef": 2000}, {"ef": 10}),  # Lite's AUTOINDEX is HNSW
])
def test_index_types_are_built_and_used(make_store, index_type, index_params, exhaustive, restrictive):
    """The index really is built (its search knob changes results) and is exact when searching everything."""
    from pymilvus import MilvusClient

    server = make_store.location == SERVER_URI
    if server and index_type == "AUTOINDEX":
        pytest.skip("a server's AUTOINDEX search parameters depend on its version")
    store, docs, vecs = filled(make_store, n=2000, dim=16, index_type=index_type.lower(), index_params=index_params)
    client = MilvusClient(make_store.location)
    assert client.describe_index(store.collection, "vector")["index_type"] == index_type == store.manifest.index_type
    if not server:  # Lite builds indexes in the background after a flush, and at load
        client.release_collection(store.collection)
        client.load_collection(store.collection)
    client.close()
    queries = unit_vectors(20, 16, 3)
    top, _ = exact_topk(queries, vecs, 10)
    expected = [[docs[i].id for i in row] for row in top]
    exact = make_store(store.collection, readonly=True, search_params=exhaustive)
    assert [[h.document.id for h in row] for row in exact.search(queries, 10)] == expected
    if not server:  # a server may still be building the index and search by brute force meanwhile
        rough = make_store(store.collection, readonly=True, search_params=restrictive)
        assert [[h.document.id for h in row] for row in rough.search(queries, 10)] != expected


def test_filters_match_numpy_and_faiss(make_store, tmp_path, capfd):
    store, docs, vecs = filled(make_store, n=120)
    queries = unit_vectors(5, 32, 11)
    shared = {  # the FAISS store's subset (indexers.filters) too
        'metadata["lang"] == "en"': lambda d: d.metadata["lang"] == "en",
        'metadata["lang"] in ["en", "de"] and metadata["even"] == true':
            lambda d: d.metadata["lang"] in ("en", "de") and d.metadata["even"] is True,
        'id == "d7"': lambda d: d.id == "d7",
        'title == "t8" and metadata["year"] == 2008': lambda d: d.title == "t8" and d.metadata["year"] == 2008,
        'metadata["year"] in [2001, 2003]': lambda d: d.metadata["year"] in (2001, 2003),
    }
    milvus_only = {
        'metadata["year"] >= 2010 and metadata["year"] < 2015': lambda d: 2010 <= d.metadata["year"] < 2015,
        'metadata["lang"] != "en" or id like "d1%"': lambda d: d.metadata["lang"] != "en" or d.id.startswith("d1"),
    }
    faiss = open_store(tmp_path / "faiss", store="faiss")
    faiss.initialize(32, MODEL)
    faiss.upsert(docs, vecs)
    faiss.commit()
    for expr, keep in {**shared, **milvus_only}.items():
        subset = np.flatnonzero([keep(d) for d in docs])
        assert len(subset), expr
        top, scores = exact_topk(queries, vecs[subset], 10)
        got = store.search(queries, 10, filter=expr)
        assert [[h.document.id for h in row] for row in got] == [[docs[subset[i]].id for i in row] for row in top], expr
        np.testing.assert_allclose([[h.score for h in r] for r in got], scores, atol=1e-5)
        if expr in shared:
            theirs = faiss.search(queries, 10, filter=expr)
            assert [[h.document for h in r] for r in got] == [[h.document for h in r] for r in theirs], expr
    faiss.close()

    capfd.readouterr()
    with pytest.raises(UnsupportedFilterError, match="could not evaluate the filter"):
        store.search(queries, 3, filter='metadata["year"] >>= 2')
    with pytest.raises(UnsupportedFilterError, match="nofield"):
        store.search(queries, 3, filter="nofield == 2")
    assert "Traceback" not in capfd.readouterr().err  # pymilvus' logged traceback is suppressed


def test_long_texts_are_truncated_with_warning(make_store, caplog):
    store = make_store()
    store.initialize(4, MODEL)
    long_multibyte = Document("mb", "é" * 40_000 + "tail", "title")  # 80,004 bytes
    long_ascii = Document("ascii", "x" * 70_000, "y" * 70_000)
    normal = Document("ok", "short")
    with caplog.at_level(logging.WARNING, logger="e5rag.indexers.milvus_rows"):
        store.upsert([long_multibyte, long_ascii, normal], unit_vectors(3, 4, 0))
    assert "2 document(s)" in caplog.text and "'mb'" in caplog.text
    got = dict(zip(["mb", "ascii", "ok"], store.get(["mb", "ascii", "ok"]), strict=True))
    for doc in (long_multibyte, long_ascii):
        for stored, full in ((got[doc.id].text, doc.text), (got[doc.id].title, doc.title)):
            size = len(stored.encode("utf-8"))
            assert full.startswith(stored) and size <= 65535
            assert size == len(full.encode("utf-8")) or len((full[:len(stored) + 1]).encode("utf-8")) > 65535
    assert got["ok"] == normal
    # the stored hash is the full document's: re-indexing the same long document is skipped
    assert store.content_hashes(["mb", "ascii"]) == {"mb": long_multibyte.content_hash, "ascii": long_ascii.content_hash}

    with pytest.raises(StoreInputError, match="id"):
        store.upsert([Document("i" * 70_000, "t")], unit_vectors(1, 4, 0))
    with pytest.raises(StoreInputError, match="metadata"):
        store.upsert([Document("big-meta", "t", metadata={"k": "v" * 70_000})], unit_vectors(1, 4, 0))
    assert store.count() == 3


def test_requests_are_batched_by_bytes(make_store):
    store = make_store()
    store.initialize(4, MODEL)
    docs = [Document(f"big{i}", f"{i}:" + "z" * 60_000) for i in range(300)]  # ~18 MB: more than one request
    store.upsert(docs, unit_vectors(300, 4, 5))
    store.commit()
    assert store.count() == 300
    assert store.get(["big0", "big150", "big299"]) == [docs[0], docs[150], docs[299]]


def test_readonly_and_missing(make_store):
    store, docs, vecs = filled(make_store, n=20)
    reader = make_store(store.collection, readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        reader.upsert(docs[:1], vecs[:1])
    with pytest.raises(StoreError, match="read-only"):
        reader.delete(["d1"])
    assert reader.search(vecs[:1], 1)[0][0].document == docs[0]
    with pytest.raises(StoreError, match="no (index|collection)"):
        make_store("never_built", readonly=True)


def test_empty_index_and_bad_arguments(make_store):
    store = make_store()
    with pytest.raises(StoreError, match="empty"):
        store.search(unit_vectors(1, 8, 0), 1)
    store.initialize(8, MODEL)
    assert store.search(unit_vectors(2, 8, 0), 5) == [[], []]
    for k in (0, 16385):
        with pytest.raises(StoreInputError, match="k must be"):
            store.search(unit_vectors(1, 8, 0), k)
    with pytest.raises(StoreInputError):
        store.search(unit_vectors(1, 7, 0), 1)
    with pytest.raises(StoreInputError, match="collection"):
        make_store("bad-name!")
    with pytest.raises(StoreInputError, match="index_type"):
        make_store(index_type="NOT_AN_INDEX")


def test_open_store_dispatches_with_options(lite_db):
    name = f"t_{uuid.uuid4().hex[:12]}"
    with open_store(lite_db, collection=name, index_type="hnsw") as store:
        assert isinstance(store, MilvusStore) and store.index_config.index_type == "HNSW"
        store.initialize(4, MODEL)
    with open_store(str(lite_db), store="milvus", readonly=True, collection=name) as store:
        assert store.manifest.index_type == "HNSW"
        assert json.loads(json.dumps(store.manifest.model)) == MODEL


@pytest.mark.skipif(not SERVER_URI, reason="set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
def test_server_database_option():
    from pymilvus import MilvusClient

    db, name = f"e5rag_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:12]}"
    with pytest.raises(StoreError, match=f"no database '{db}'"):
        MilvusStore(SERVER_URI, db_name=db, readonly=True)
    with MilvusStore(SERVER_URI, db_name=db, collection=name) as store:  # a writer creates the database
        store.initialize(4, MODEL)
        store.upsert(make_docs(2), unit_vectors(2, 4, 0))
        store.commit()
    with MilvusStore(SERVER_URI, db_name=db, collection=name, readonly=True) as store:
        assert store.count() == 2 and store.manifest.model == MODEL
    with pytest.raises(StoreError, match=f"no collection '{name}' in {SERVER_URI}"):
        MilvusStore(SERVER_URI, collection=name, readonly=True)  # the default database does not have it
    client = MilvusClient(SERVER_URI, db_name=db)
    client.drop_collection(name)
    client.drop_database(db)
    client.close()
