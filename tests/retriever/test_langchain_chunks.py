"""LangChain over a chunked index: ``k`` counts documents, the best chunk is the page_content with
``parent_id``/``chunk``/``start``/``end`` in metadata; deleting a document deletes its chunks."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("langchain_core")

from tiny_models import CORPUS  # noqa: E402

from e5rag.indexers import Document, open_store  # noqa: E402
from e5rag.retriever.langchain import E5Embeddings, E5Retriever, E5VectorStore  # noqa: E402
from e5rag.retriever.search import SearchIndex  # noqa: E402


def long_text(seed: int, paragraphs: int = 8) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(rng.choice(CORPUS[:8]) for _ in range(rng.randint(1, 3))) for _ in range(paragraphs))


@pytest.fixture
def chunked_index(tiny_encoder, tmp_path):
    docs = {f"p{i}": Document(f"p{i}", long_text(i), f"Part {i}", {"lang": "en"}) for i in range(4)}
    docs["s"] = Document("s", "Coffee lowers the risk of diabetes.")
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add(list(docs.values()))
        assert index.store.count() > 12
    return tmp_path / "i", docs


def check(results, docs, k):
    parents = [d.metadata.get("parent_id", d.id) for d in results]
    assert len(results) == k and len(set(parents)) == k
    for d, parent in zip(results, parents, strict=True):
        if parent != d.id:  # a chunk: its text is its span of the parent
            m = d.metadata
            assert d.id == f"{parent}#{m['chunk']}" and docs[parent].text[m["start"]:m["end"]] == d.page_content
            assert m["title"] == docs[parent].title and m["lang"] == "en"


def test_retriever_k_counts_documents(tiny_encoder, chunked_index):
    path, docs = chunked_index
    index = SearchIndex.open(path, tiny_encoder)
    try:
        retriever = E5Retriever(index=index, k=4, task="scifact")
        check(retriever.invoke("plants and light energy"), docs, 4)
        check(retriever.invoke("plants and light energy", k=5), docs, 5)
    finally:
        index.close()


def test_vectorstore_k_counts_documents_and_delete_takes_every_chunk(tiny_encoder, chunked_index):
    path, docs = chunked_index
    with E5VectorStore.open(path, E5Embeddings(tiny_encoder)) as vs:
        check(vs.similarity_search("plants and light energy", k=3, task="scifact"), docs, 3)
        scored = vs.similarity_search_with_score("plants and light energy", k=5)
        check([d for d, _ in scored], docs, 5)
        assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
        before = vs.store.count()
        vs.delete(["p0"])
        n0 = sum(1 for n in range(100) if vs.store.get([f"p0#{n}"])[0] is not None)
        assert n0 == 0 and vs.store.count() < before
        assert {d.metadata.get("parent_id", d.id) for d in vs.similarity_search("energy", k=10)} == {
            "p1", "p2", "p3", "s"}
