"""SearchIndex: one document index, many tasks; model mismatch refused; re-index skips unchanged."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from e5rag.indexers import Document, StoreInputError, open_store
from e5rag.retriever import IndexMismatchError
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.instructions import format_query
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.tasks import resolve_task

DOCS = [Document("a", "Coffee lowers the risk of type 2 diabetes in a large cohort.", "Coffee"),
        Document("b", "Is it bad to drink coffee every day?"),
        Document("c", "Paris is the capital of France.", "Paris"),
        Document("d", "Reset your password from the security settings page."),
        Document("e", "Interest rates rose and bond prices fell.", "Bonds")]


@pytest.mark.parametrize("store_kind", ["faiss"])
def test_index_once_search_with_two_tasks(tiny_encoder, tmp_path, store_kind):
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i", store=store_kind), writing=True) as index:
        report = index.add(DOCS, batch_size=2)
        assert (report.added, report.updated, report.skipped, report.total) == (5, 0, 0, 5)
        query = "does coffee cause diabetes"
        doc_vecs = tiny_encoder.encode([f"{d.title} {d.text}".strip() for d in DOCS])
        for task in ("scifact", "quora"):
            hits = index.search([query], task=task, k=5)[0]
            qv = tiny_encoder.encode([format_query(resolve_task(task), query)])[0]
            want = np.argsort(-(doc_vecs @ qv), kind="stable")
            assert [h.document.id for h in hits] == [DOCS[i].id for i in want]
            np.testing.assert_allclose([h.score for h in hits], (doc_vecs @ qv)[want], atol=1e-5)
        both = index.search([query, query], task=["scifact", "quora"], k=5)
        assert [h.score for h in both[0]] != [h.score for h in both[1]]


def test_reindex_skips_unchanged_and_updates_changed(tiny_encoder, tmp_path):
    path = tmp_path / "i"
    with SearchIndex(tiny_encoder, open_store(path), writing=True) as index:
        index.add(DOCS)
    changed = [DOCS[0], Document("b", "Coffee every day: good or bad?"), Document("f", "A new document.")]
    calls = []
    original = tiny_encoder.encode
    tiny_encoder.encode = lambda texts, **kw: calls.append(list(texts)) or original(texts, **kw)
    with SearchIndex(tiny_encoder, open_store(path), writing=True) as index:
        report = index.add(changed)
    assert (report.added, report.updated, report.skipped, report.total) == (1, 1, 1, 6)
    assert calls == [["Coffee every day: good or bad?", "A new document."]]


def test_different_model_is_refused_naming_both(tiny_encoder, tmp_path):
    from tiny_models import save_tiny_model

    path = tmp_path / "i"
    with SearchIndex(tiny_encoder, open_store(path), writing=True) as index:
        index.add(DOCS)
    other = Encoder.from_pretrained(save_tiny_model(tmp_path / "other", "mistral", seed=7), max_length=64)
    with pytest.raises(IndexMismatchError) as err:
        SearchIndex(other, open_store(path, readonly=True))
    assert tiny_encoder.fingerprint.base in str(err.value) and other.fingerprint.base in str(err.value)
    tiny_encoder.max_length = 32
    SearchIndex(tiny_encoder, open_store(path, readonly=True)).close()  # searching with another max length is fine
    with pytest.raises(IndexMismatchError, match="max_length 64"):
        SearchIndex(tiny_encoder, open_store(path), writing=True)


def test_open_loads_the_recorded_model(mistral_dir, tmp_path):
    enc = Encoder.from_pretrained(mistral_dir, max_length=48)
    with SearchIndex(enc, open_store(tmp_path / "i"), writing=True, model_source=str(mistral_dir)) as index:
        index.add(DOCS)
    with SearchIndex.open(tmp_path / "i") as index:
        assert index.encoder.fingerprint == enc.fingerprint
        assert index.search(["coffee"], k=2)[0][0].document.id in {d.id for d in DOCS}


def stored_vector(location, kind: str, id_: str, collection: str) -> np.ndarray:
    """The vector a closed store holds for ``id_``, read from its files or server, not through e5rag."""
    if kind == "faiss":
        import sqlite3

        import faiss

        gen = location / (location / "CURRENT").read_text().strip()
        conn = sqlite3.connect(gen / "docs.sqlite")
        (iid,) = conn.execute("SELECT iid FROM docs WHERE id = ?", (id_,)).fetchone()
        conn.close()
        return faiss.read_index(str(gen / "index.faiss")).reconstruct(int(iid))
    from pymilvus import MilvusClient

    client = MilvusClient(str(location))
    try:
        client.load_collection(collection)
        (row,) = client.query(collection, filter=f'id == "{id_}"', output_fields=["vector"],
                              consistency_level="Strong")
    finally:
        client.close()
    return np.asarray(row["vector"], dtype=np.float32)


@pytest.fixture
def reindexed_location(request, tmp_path):
    """(location, store options, kind) of an empty index: FAISS, Milvus Lite, or the server of
    E5RAG_MILVUS_URI (its unique collection dropped afterwards)."""
    kind = request.param
    collection = f"meta_{uuid.uuid4().hex[:12]}"
    if kind == "faiss":
        yield tmp_path / "i", {}, kind, collection
        return
    pytest.importorskip("milvus_lite")
    if kind == "server" and not os.environ.get("E5RAG_MILVUS_URI"):
        pytest.skip("set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
    location = os.environ["E5RAG_MILVUS_URI"] if kind == "server" else tmp_path / "i.db"
    yield location, {"collection": collection}, kind, collection
    if kind == "server":
        from pymilvus import MilvusClient

        client = MilvusClient(location)
        client.drop_collection(collection)
        client.close()


@pytest.mark.parametrize("reindexed_location", ["faiss", pytest.param("lite", marks=pytest.mark.milvus),
                                                pytest.param("server", marks=pytest.mark.milvus)], indirect=True)
def test_metadata_only_edit_keeps_the_vector(tiny_encoder, reindexed_location):
    path, options, kind, collection = reindexed_location
    docs = [Document(d.id, d.text, d.title, {"v": 1}) for d in DOCS]
    with SearchIndex(tiny_encoder, open_store(path, **options), writing=True) as index:
        index.add(docs)
        # A vector the encoder would never make: re-embedding "a" would replace it.
        marker = np.random.default_rng(0).standard_normal((1, tiny_encoder.dim)).astype(np.float32)
        index.store.upsert([docs[0]], marker / np.linalg.norm(marker))
        index.store.commit()
    before = stored_vector(path, kind, "a", collection)

    edited = [Document("a", DOCS[0].text, DOCS[0].title, {"v": 2, "tags": ["x"]}),  # metadata only
              Document("b", "Coffee every day: good or bad?", "", {"v": 1}),       # text changed
              docs[2]]                                                             # unchanged
    with SearchIndex(tiny_encoder, open_store(path, **options), writing=True) as index:
        report = index.add(edited)
        assert (report.added, report.updated, report.metadata_updated, report.skipped, report.total) == (0, 1, 1, 1, 5)
        assert index.store.get(["a"]) == [edited[0]]
        assert [h.document.id for h in index.search(["coffee"], k=5, filter='metadata["v"] == 2')[0]] == ["a"]
        assert index.add(edited).skipped == 3  # the new metadata's hash was stored
        with pytest.raises(StoreInputError, match="not in the index"):
            index.store.update_metadata([Document("zz", "new")])
    after = stored_vector(path, kind, "a", collection)
    assert before.tobytes() == after.tobytes()
    assert not np.allclose(after, tiny_encoder.encode_document([DOCS[0].text], [DOCS[0].title])[0], atol=1e-3)
