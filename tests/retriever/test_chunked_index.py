"""Long documents in an index: stored as chunks ``{id}#{n}`` with their position, short ones exactly
as before, the parent recoverable, search grouped by parent, updates and deletes exact (FAISS and
Milvus Lite)."""

from __future__ import annotations

import os
import random
import uuid

import numpy as np
import pytest
from tiny_models import CORPUS

from e5rag.indexers import Document, open_store
from e5rag.retriever.chunking import ChunkConfig, chunk_spans
from e5rag.retriever.instructions import format_query
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.tasks import resolve_task

SHORT = [Document("a", "Coffee lowers the risk of type 2 diabetes.", "Coffee", {"year": 2020}),
         Document("b", "Is it bad to drink coffee every day?"),
         Document("t", "", "A document that is only a title")]


def long_text(seed: int, paragraphs: int = 10) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(rng.choice(CORPUS[:8]) for _ in range(rng.randint(1, 3))) for _ in range(paragraphs))


def milvus_available() -> bool:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


SERVER_URI = os.environ.get("E5RAG_MILVUS_URI")
_MILVUS = [pytest.mark.milvus, pytest.mark.skipif(not milvus_available(), reason="no Milvus Lite")]
STORES = ["faiss", pytest.param("milvus", marks=_MILVUS),
          pytest.param("server", marks=[*_MILVUS, pytest.mark.skipif(
              not SERVER_URI, reason="set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")])]


@pytest.fixture
def store_at(tmp_path, request):
    """Factory: opens the test's store (FAISS directory, Milvus Lite file, or a fresh collection on
    the Milvus server, dropped afterwards)."""
    kind = request.node.callspec.params["kind"]
    collection = f"chunks_{uuid.uuid4().hex[:12]}"

    def open_it():
        if kind == "server":
            return open_store(SERVER_URI, collection=collection)
        return open_store(tmp_path / ("i.db" if kind == "milvus" else "i"))

    yield open_it
    if kind == "server":
        from pymilvus import MilvusClient

        client = MilvusClient(SERVER_URI)
        if client.has_collection(collection):
            client.drop_collection(collection)
        client.close()


def stored_ids(store) -> set[str]:
    """Every id in the store, found by an exhaustive search (independent of the chunk probing)."""
    n = store.count()
    if n == 0:
        return set()
    hits = store.search(np.ones((1, store.manifest.dim), dtype=np.float32), n)[0]
    return {h.document.id for h in hits}


@pytest.fixture
def long_doc():
    return Document("L", long_text(0), "Manual", {"lang": "en", "start": "reserved key"})


@pytest.mark.parametrize("kind", STORES)
def test_long_document_becomes_chunks_with_positions_and_comes_back_whole(tiny_encoder, store_at, kind, long_doc):
    with SearchIndex(tiny_encoder, store_at(), writing=True) as index:
        report = index.add([*SHORT, long_doc])
        spans = chunk_spans(long_doc.text, tiny_encoder.tokenizer, 64, 6, long_doc.title)
        assert len(spans) > 3
        want = {d.id for d in SHORT} | {f"L#{n}" for n in range(len(spans))}
        assert stored_ids(index.store) == want
        assert (report.added, report.total) == (4, len(want))
        chunks = index.store.get([f"L#{n}" for n in range(len(spans))])
        for n, (c, s) in enumerate(zip(chunks, spans, strict=True)):
            assert c.text == long_doc.text[s.start:s.end] and c.title == "Manual"
            assert {k: c.metadata[k] for k in ("parent_id", "chunk", "start", "end", "chunks")} == {
                "parent_id": "L", "chunk": n, "start": s.start, "end": s.end, "chunks": len(spans)}
            assert c.metadata["lang"] == "en"
        assert index.get("L") == long_doc  # text, title and metadata (even a colliding key) recovered
        assert index.get("a") == SHORT[0] and index.get("missing") is None


def test_short_documents_are_stored_exactly_as_without_chunking(tiny_encoder, tmp_path):
    with SearchIndex(tiny_encoder, open_store(tmp_path / "c"), writing=True) as chunked, \
            SearchIndex(tiny_encoder, open_store(tmp_path / "n"), writing=True) as whole:
        chunked.add(SHORT)
        whole.add(SHORT, chunking=None)
        assert stored_ids(chunked.store) == stored_ids(whole.store) == {"a", "b", "t"}
        assert chunked.store.get(["a", "b", "t"]) == whole.store.get(["a", "b", "t"]) == SHORT
        vectors = tiny_encoder.encode_document([d.text for d in SHORT], [d.title for d in SHORT])
        for index in (chunked, whole):  # each stored vector is the document's own: self-score 1
            hits = index.store.search(vectors, 3)
            assert [h[0].document.id for h in hits] == ["a", "b", "t"]
            np.testing.assert_allclose([h[0].score for h in hits], 1.0, atol=1e-5)


def test_no_chunk_keeps_truncation(tiny_encoder, tmp_path, long_doc):
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add([long_doc], chunking=None)
        assert stored_ids(index.store) == {"L"}


def test_search_is_per_document_best_chunk_wins(tiny_encoder, tmp_path):
    docs = [Document(f"d{i}", long_text(i, 6), f"Doc {i}") for i in range(4)] + SHORT[:2]
    query = "photosynthesis in plants"
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add(docs)
        n = index.store.count()
        assert n > 10
        everything = index.store.get(sorted(stored_ids(index.store)))
        vecs = tiny_encoder.encode_document([d.text for d in everything], [d.title for d in everything])
        qv = tiny_encoder.encode([format_query(resolve_task("scifact"), query)])[0]
        best: dict[str, float] = {}
        for d, s in zip(everything, vecs @ qv, strict=True):  # independent grouping
            parent = d.metadata.get("parent_id", d.id)
            best[parent] = max(best.get(parent, -2.0), float(s))
        want = sorted(best, key=lambda p: -best[p])
        hits = index.search([query], task="scifact", k=5)[0]
        assert [h.document.metadata.get("parent_id", h.document.id) for h in hits] == want[:5]
        np.testing.assert_allclose([h.score for h in hits], [best[p] for p in want[:5]], atol=1e-5)
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        raw = index.search([query], task="scifact", k=n, per_chunk=True)[0]
        assert len(raw) == n and len(index.search([query], task="scifact", k=n)[0]) == len(docs)


@pytest.mark.parametrize("kind", STORES)
def test_updates_replace_every_chunk_and_deletes_remove_them(tiny_encoder, store_at, kind):
    versions = [long_text(1, 12), long_text(2, 5), "Now a short document.", long_text(3, 8)]
    for i, text in enumerate(versions):
        doc = Document("X", text, "T")
        with SearchIndex(tiny_encoder, store_at(), writing=True) as index:
            report = index.add([doc, SHORT[1]])
            assert (report.added, report.updated, report.skipped) == ((2, 0, 0) if i == 0 else (0, 1, 1))
            n = len(index.split(doc))
            want = {"X"} if n == 1 else {f"X#{j}" for j in range(n)}
            assert stored_ids(index.store) == want | {"b"}  # a shrink leaves no orphan
            assert index.get("X") == doc
            again = index.add([doc, SHORT[1]])
            assert (again.added, again.updated, again.skipped) == (0, 0, 2)
    with SearchIndex(tiny_encoder, store_at(), writing=True) as index:
        assert index.delete(["X", "nothing"]) == 1
        assert stored_ids(index.store) == {"b"} and index.get("X") is None


def test_unchanged_long_document_is_not_embedded_again(tiny_encoder, tmp_path, long_doc):
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add([long_doc])
        calls = []
        original = tiny_encoder.encode
        tiny_encoder.encode = lambda texts, **kw: calls.append(list(texts)) or original(texts, **kw)
        assert index.add([long_doc]).skipped == 1
        assert calls == []
        report = index.add([long_doc], chunking=ChunkConfig(48, 4))  # other chunk sizes: chunked again
        assert report.updated == 1 and calls
        assert stored_ids(index.store) == {p.id for p in index.split(long_doc, ChunkConfig(48, 4))}


def test_a_chunk_alone_cannot_be_deleted_and_ids_cannot_clash(tiny_encoder, tmp_path, long_doc):
    from e5rag.retriever.errors import InputError

    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add([long_doc, Document("plain#1", "A document whose own id ends in #1.")])
        with pytest.raises(InputError, match="'L#2' is chunk 2 of document 'L': delete the document"):
            index.delete(["L#2"])
        assert index.delete(["plain#1"]) == 1  # not a chunk: deleted like any document
        with pytest.raises(InputError, match="id 'L#0' is both chunk 0 of document 'L' and document 'L#0'"):
            index.add([long_doc, Document("L#0", "clash")])
        assert index.get("L") == long_doc


def test_grouped_search_asks_for_more_when_one_document_fills_the_list(tmp_path):
    from e5rag.retriever.chunking import Span
    from e5rag.retriever.parents import search_documents, split_document

    big = split_document(Document("A", "x" * 300), [Span(i * 10, i * 10 + 10) for i in range(30)])
    docs = [*big, Document("B", "b"), Document("C", "c")]
    rng = np.random.default_rng(0)
    q = np.array([1.0, 0, 0, 0], dtype=np.float32)
    vecs = np.array([[1.0, *(rng.random(3) * 0.1)] for _ in big] + [[0.5, 1, 0, 0], [0.2, 0, 1, 0]], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with open_store(tmp_path / "i") as store:
        store.initialize(4, {})
        store.upsert(docs, vecs)
        store.commit()
        for k, want in [(1, ["A"]), (2, ["A", "B"]), (3, ["A", "B", "C"]), (5, ["A", "B", "C"])]:
            hits = search_documents(store, q[None], k)[0]  # the first ask (4k chunks) holds only A's
            assert [h.document.metadata.get("parent_id", h.document.id) for h in hits] == want
            assert hits[0].score == pytest.approx(float((vecs[:30] @ q).max()), abs=1e-6)
