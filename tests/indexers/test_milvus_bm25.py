"""BM25 in Milvus Lite (its BM25 function over the text field): hits kept in step with the vectors under
upsert/delete and after a killed writer; a collection without the BM25 field gets a clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from e5rag.indexers import Document, StoreError  # noqa: E402
from e5rag.indexers.milvus_schema import supports_bm25  # noqa: E402
from e5rag.indexers.milvus_store import MilvusStore  # noqa: E402

pytestmark = pytest.mark.milvus
DIM = 8


def unit(n, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def all_ids(store) -> set[str]:
    return {h.document.id for h in store.search(unit(1, 9), k=16384)[0]}


def bm25_ids(store, query, **kw) -> list[str]:
    return [h.document.id for h in store.keyword_search([query], k=16384, **kw)[0]]


def test_bm25_follows_upsert_and_delete(tmp_path):
    with MilvusStore(tmp_path / "m.db", collection="bm") as store:
        store.initialize(DIM, {"base": "test"})
        docs = [Document(f"d{i}", f"common word{i} " + "cat " * (i % 3), metadata={"g": i % 2}) for i in range(12)]
        store.upsert(docs, unit(12))
        store.commit()
        assert set(bm25_ids(store, "common")) == all_ids(store) == {d.id for d in docs}
        assert all(bm25_ids(store, f"word{i}") == [f"d{i}"] for i in range(12))
        cats = store.keyword_search(["cat"], k=16384)[0]
        assert {h.document.id for h in cats} == {d.id for d in docs if "cat" in d.text}
        assert all(h.score > 0 for h in cats) and [h.rank for h in cats] == list(range(1, len(cats) + 1))
        # same length class, more occurrences first: every "cat cat" document outranks every single "cat"
        twice = [h.document.id for h in cats if h.document.text.count("cat ") == 2]
        assert {h.document.id for h in cats[:len(twice)]} == set(twice)
        assert set(bm25_ids(store, "cat", filter='metadata["g"] == 1')) == {
            d.id for d in docs if "cat" in d.text and d.metadata["g"] == 1}
        store.upsert([Document("d1", "common replaced"), Document("new", "common fresh word1")], unit(2, 1))
        store.delete(["d2", "d3", "missing"])
        store.commit()
        live = {d.id for d in docs} - {"d2", "d3"} | {"new"}
        assert set(bm25_ids(store, "common")) == all_ids(store) == live
        assert bm25_ids(store, "word1") == ["new"] and bm25_ids(store, "word2") == [] and bm25_ids(store, "?!") == []


def test_collection_without_bm25_field_names_the_alternative(tmp_path, monkeypatch):
    assert supports_bm25("v2.5.4") and supports_bm25("2.6.0") and not supports_bm25("2.3.5")
    assert not supports_bm25("")
    # a collection made the way a Milvus 2.3 server gets it (or before hybrid search): no BM25 field
    monkeypatch.setattr(MilvusStore, "_server_has_bm25", lambda self: False)
    with MilvusStore(tmp_path / "m.db", collection="old") as store:
        store.initialize(DIM, {"base": "test"})
        store.upsert([Document("a", "text")], unit(1))
        store.commit()
    monkeypatch.undo()
    with MilvusStore(tmp_path / "m.db", collection="old", readonly=True) as store:
        assert store.search(unit(1), k=1)[0][0].document.id == "a"
        with pytest.raises(StoreError, match="re-index into a new collection .* FAISS index directory"):
            store.keyword_search(["text"], k=3)


_LOOPER = textwrap.dedent("""
    import sys, numpy as np
    from e5rag.indexers import Document
    from e5rag.indexers.milvus_store import MilvusStore
    store = MilvusStore(sys.argv[1], collection="loop")
    store.initialize(8, {"base": "m"})
    rng = np.random.default_rng(0)
    print("ready", flush=True)
    for r in range(100000):
        store.upsert([Document(f"r{r}-{i}", f"common word{i} round{r}") for i in range(50)],
                     rng.normal(size=(50, 8)).astype(np.float32))
        store.delete([f"r{r - 1}-{i}" for i in range(0, 50, 2)])
        store.commit()
        if r == 2:
            print("committed", flush=True)
""")


def test_killed_writer_leaves_bm25_and_vectors_in_step(tmp_path):
    path = tmp_path / "loop.db"
    proc = subprocess.Popen([sys.executable, "-c", _LOOPER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip() == "committed"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with MilvusStore(path, collection="loop", readonly=True) as store:
        live = all_ids(store)
        assert len(live) >= 100 and set(bm25_ids(store, "common")) == live
        for i in (0, 1, 49):
            assert set(bm25_ids(store, f"word{i}")) == {d for d in live if d.endswith(f"-{i}")}


SERVER_URI = os.environ.get("E5RAG_MILVUS_URI")


@pytest.mark.skipif(not SERVER_URI, reason="set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
def test_server_bm25_or_a_clear_error():
    """A server 2.5+ keeps BM25 in step like Lite; an older one (scripts/milvus_server.sh: 2.3.5) says what to do."""
    from pymilvus import MilvusClient

    name = f"t_bm25_{uuid.uuid4().hex[:12]}"
    client = MilvusClient(SERVER_URI)
    try:
        with MilvusStore(SERVER_URI, collection=name) as store:
            store.initialize(DIM, {"base": "test"})
            store.upsert([Document(f"d{i}", f"common word{i}") for i in range(5)], unit(5))
            store.commit()
            if supports_bm25(client.get_server_version()):
                assert set(bm25_ids(store, "common")) == all_ids(store) == {f"d{i}" for i in range(5)}
                store.delete(["d0"])
                assert bm25_ids(store, "word0") == [] and bm25_ids(store, "word1") == ["d1"]
            else:
                with pytest.raises(StoreError, match="older than 2.5"):
                    store.keyword_search(["common"], k=3)
    finally:
        if client.has_collection(name):
            client.drop_collection(name)
        client.close()


def test_rebuild_bm25_on_milvus_explains_that_milvus_keeps_its_own(tmp_path, capsys):
    from e5rag.cli import main

    db = tmp_path / "m.db"
    with MilvusStore(db) as store:
        store.initialize(DIM, {"base": "test"})
        store.upsert([Document("a", "text")], unit(1))
        store.commit()
    capsys.readouterr()
    assert main(["index", "--rebuild-bm25", "--index", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("e5rag: error: ") and "Milvus computes BM25 itself" in err


def test_local_rrf_equals_milvus_rrf_ranker(tmp_path):
    """The fusion e5rag applies on every store is the RRF Milvus' own hybrid_search computes (tie-aware)."""
    from pymilvus import AnnSearchRequest, RRFRanker

    from e5rag.indexers.milvus_schema import SPARSE, VECTOR
    from e5rag.retriever.fusion import rrf

    with MilvusStore(tmp_path / "m.db", collection="rrf") as store:
        store.initialize(DIM, {"base": "test"})
        words = ["alpha", "beta", "gamma", "delta"]
        docs = [Document(f"d{i}", " ".join(words[j] for j in range(4) if (i >> j) & 1 or j == i % 4)) for i in range(16)]
        store.upsert(docs, unit(16, 3))
        store.commit()
        q = unit(1, 4)
        dense = [(h.document.id, h.score) for h in store.search(q, k=16)[0]]
        sparse = [(h.document.id, h.score) for h in store.keyword_search(["alpha gamma"], k=16)[0]]
        ours = dict(rrf([dense, sparse], 60))
        found = store._client.hybrid_search(
            "rrf", [AnnSearchRequest(q.tolist(), VECTOR, {"metric_type": "IP"}, 16),
                    AnnSearchRequest(["alpha gamma"], SPARSE, {"metric_type": "BM25"}, 16)],
            RRFRanker(60), limit=16)[0]
        theirs = {hit["id"]: float(hit["distance"]) for hit in found}
        assert set(theirs) == set(ours)
        assert all(abs(theirs[i] - ours[i]) < 1e-6 for i in ours)
