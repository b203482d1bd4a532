"""LangChain hybrid search: E5Retriever(search_type="hybrid") and E5VectorStore.as_retriever(search_type="hybrid")
return what SearchIndex.search(hybrid=...) returns on the same index."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_support import DOCS, TASK_A, build_index  # noqa: E402

from e5rag.retriever.errors import InputError  # noqa: E402
from e5rag.retriever.fusion import HybridConfig  # noqa: E402
from e5rag.retriever.langchain import E5Embeddings, E5Retriever, E5VectorStore  # noqa: E402
from e5rag.retriever.search import SearchIndex  # noqa: E402
from e5rag.retriever.tasks import resolve_task  # noqa: E402

QUERY = "plants light energy"


def ids(docs):
    return [d.id for d in docs]


def test_e5retriever_hybrid_equals_search_index(tiny_encoder, tmp_path):
    index = build_index(tmp_path / "idx", tiny_encoder)
    try:
        for config in (HybridConfig("rrf"), HybridConfig("weighted", alpha=0.3)):
            want = index.search([QUERY], task=resolve_task(TASK_A), k=3, hybrid=config)[0]
            retriever = E5Retriever(index=index, k=3, task=TASK_A, search_type="hybrid", fusion=config.fusion,
                                    alpha=config.alpha)
            got = retriever.invoke(QUERY)
            assert ids(got) == [h.document.id for h in want]
            assert [d.metadata["score"] for d in got] == pytest.approx([h.score for h in want])
        dense = E5Retriever(index=index, k=3, task=TASK_A).invoke(QUERY)
        assert ids(dense) == [h.document.id for h in index.search([QUERY], task=resolve_task(TASK_A), k=3)[0]]
        with pytest.raises(InputError, match="fused scores"):
            E5Retriever(index=index, search_type="hybrid", score_threshold=0.5).invoke(QUERY)
        with pytest.raises(ValueError, match="alpha must be between"):
            E5Retriever(index=index, search_type="hybrid", alpha=3.0)
    finally:
        index.close()


async def test_vectorstore_as_retriever_hybrid(tiny_encoder, tmp_path):
    vs = E5VectorStore.from_texts([d["text"] for d in DOCS], E5Embeddings(tiny_encoder),
                                  metadatas=[{"title": d["title"], "lang": d["lang"]} for d in DOCS],
                                  ids=[d["id"] for d in DOCS])
    try:
        index = SearchIndex(tiny_encoder, vs.store)
        config = HybridConfig("weighted", alpha=0.7)
        want = [h.document.id for h in index.search([QUERY], task=resolve_task(TASK_A), k=4, hybrid=config)[0]]
        retriever = vs.as_retriever(search_type="hybrid",
                                    search_kwargs={"k": 4, "task": TASK_A, "fusion": "weighted", "alpha": 0.7})
        assert ids(retriever.invoke(QUERY)) == want
        assert ids(await retriever.ainvoke(QUERY)) == want
        default = [h.document.id for h in index.search([QUERY], task=resolve_task(TASK_A), k=4, hybrid=True)[0]]
        assert ids(vs.hybrid_search(QUERY, k=4, task=TASK_A)) == default
        french = vs.hybrid_search(QUERY, k=9, task=TASK_A, filter={"lang": "fr"})
        assert french and {d.metadata["lang"] for d in french} == {"fr"}
        assert ids(vs.as_retriever(search_kwargs={"k": 2}).invoke(QUERY)) == ids(vs.similarity_search(QUERY, k=2))
        with pytest.raises(ValueError, match="not allowed"):
            vs.as_retriever(search_type="keyword")
    finally:
        vs.close()
