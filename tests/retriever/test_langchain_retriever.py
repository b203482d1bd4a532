"""E5Retriever: the standard LangChain retriever suite on FAISS and Milvus Lite, plus the per-call task."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_support import (  # noqa: E402
    DOCS,
    QUERY,
    TASK_A,
    TASK_B,
    assert_ranking_matches,
    build_index,
    expected_scores,
    fresh_collection,
    lc_encoder,  # noqa: F401
    requires_milvus,
)
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402

from e5rag.retriever.errors import InputError  # noqa: E402
from e5rag.retriever.langchain import E5Retriever  # noqa: E402
from e5rag.retriever.tasks import resolve_task  # noqa: E402

N = len(DOCS)


@pytest.fixture(scope="module")
def faiss_index(lc_encoder, tmp_path_factory):  # noqa: F811
    index = build_index(tmp_path_factory.mktemp("lc-retriever") / "index", lc_encoder)
    yield index
    index.close()


@pytest.fixture(scope="module")
def milvus_index(lc_encoder, tmp_path_factory):  # noqa: F811
    db = tmp_path_factory.mktemp("lc-retriever-milvus") / "index.db"
    index = build_index(db, lc_encoder, collection=fresh_collection())
    yield index
    index.close()


@pytest.fixture(params=["faiss", pytest.param("milvus", marks=requires_milvus)])
def any_index(request):
    """The same documents indexed in each store."""
    return request.getfixturevalue(f"{request.param}_index")


class _Standard(RetrieversIntegrationTests):
    index = None

    @property
    def retriever_constructor(self) -> type[E5Retriever]:
        return E5Retriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": self.index, "task": "nq"}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


class TestE5RetrieverFaiss(_Standard):
    @pytest.fixture(autouse=True, scope="class")
    def _put_index_on_class(self, request, faiss_index):
        request.cls.index = faiss_index


class TestE5RetrieverMilvus(_Standard):
    pytestmark = requires_milvus

    @pytest.fixture(autouse=True, scope="class")
    def _put_index_on_class(self, request, milvus_index):
        request.cls.index = milvus_index


def _ranked(docs) -> list[tuple[str, float]]:
    return [(d.id, d.metadata["score"]) for d in docs]


def _same(a, b) -> bool:
    """Same documents in the same order with the same scores (to float noise)."""
    return [d.id for d in a] == [d.id for d in b] and [d.metadata["score"] for d in a] == pytest.approx(
        [d.metadata["score"] for d in b], abs=1e-5)


async def test_task_per_call_changes_exactly_the_instruction(any_index, lc_encoder):  # noqa: F811
    retriever = E5Retriever(index=any_index, k=N, task=TASK_A)
    by_task = {}
    for task in (TASK_A, TASK_B):
        expected = expected_scores(lc_encoder, resolve_task(task), QUERY)
        got = retriever.invoke(QUERY, task=task)
        assert_ranking_matches(_ranked(got), expected, N)
        assert _same(await retriever.ainvoke(QUERY, task=task), got)
        by_task[task] = dict(_ranked(got))
    # Same index, two tasks: the scores differ, so the query vector did change.
    assert any(abs(by_task[TASK_A][i] - by_task[TASK_B][i]) > 1e-4 for i in by_task[TASK_A])
    # No task given: the retriever's own.
    assert dict(_ranked(retriever.invoke(QUERY))) == pytest.approx(by_task[TASK_A], abs=1e-5)


async def test_batch_takes_one_task_per_input(faiss_index):
    retriever = E5Retriever(index=faiss_index, k=3)
    singles = [retriever.invoke(QUERY, task=TASK_A), retriever.invoke("Paris", task=TASK_B, k=2)]
    batched = retriever.batch([QUERY, "Paris"], task=[TASK_A, TASK_B], k=[3, 2])
    abatched = await retriever.abatch([QUERY, "Paris"], task=[TASK_A, TASK_B], k=[3, 2])
    for got in (batched, abatched):
        assert len(got) == 2 and all(_same(g, s) for g, s in zip(got, singles, strict=True))
    errors = retriever.batch([QUERY, QUERY], task=[TASK_A, "scifcat"], return_exceptions=True)
    assert isinstance(errors[1], InputError) and len(errors[0]) == 3
    with pytest.raises(InputError, match="one per input"):
        retriever.batch([QUERY, QUERY], task=[TASK_A])


def test_documents_carry_id_title_score_and_metadata(faiss_index):
    docs = E5Retriever(index=faiss_index, k=N).invoke(QUERY)
    source = {d["id"]: d for d in DOCS}
    assert sorted(d.id for d in docs) == sorted(source)
    for d in docs:
        assert d.page_content == source[d.id]["text"]
        assert d.metadata["title"] == source[d.id]["title"] and d.metadata["lang"] == source[d.id]["lang"]
        assert isinstance(d.metadata["score"], float)


def test_filter_and_score_threshold(any_index):
    retriever = E5Retriever(index=any_index, k=N, filter={"lang": ["fr"]})
    all_docs = E5Retriever(index=any_index, k=N).invoke(QUERY)
    french = [d for d in all_docs if d.metadata["lang"] == "fr"]
    assert french and _same(retriever.invoke(QUERY), french)
    assert _same(retriever.invoke(QUERY, filter='metadata["lang"] == "en"'),
                 [d for d in all_docs if d.metadata["lang"] == "en"])
    assert [d.id for d in retriever.invoke(QUERY, filter={"title": DOCS[1]["title"]})] == [DOCS[1]["id"]]
    cut = all_docs[2].metadata["score"]
    kept = E5Retriever(index=any_index, k=N, score_threshold=cut).invoke(QUERY)
    assert len(kept) == 3 and _same(kept, all_docs[:3])


def test_bad_options_fail_loudly(faiss_index):
    with pytest.raises(ValueError, match="unknown task name"):
        E5Retriever(index=faiss_index, task="scifcat")
    with pytest.raises(ValueError, match="k must be at least 1"):
        E5Retriever(index=faiss_index, k=0)
    retriever = E5Retriever(index=faiss_index)
    with pytest.raises(InputError, match="unknown retriever option"):
        retriever.invoke(QUERY, top_k=3)
    with pytest.raises(InputError, match="batch"):
        retriever.invoke(QUERY, task=[TASK_A, TASK_B])


def test_from_index_opens_an_index_location(faiss_index, lc_encoder):  # noqa: F811
    location = faiss_index.store.root
    retriever = E5Retriever.from_index(location, encoder=lc_encoder, k=2, task=TASK_B)
    try:
        assert _same(retriever.invoke(QUERY), E5Retriever(index=faiss_index, k=2, task=TASK_B).invoke(QUERY))
    finally:
        retriever.index.close()


def test_task_as_a_configurable_field_of_a_chain(faiss_index):
    """LCEL's per-call settings reach the retriever: config={"configurable": {"task": ...}}."""
    from langchain_core.runnables import ConfigurableField

    base = E5Retriever(index=faiss_index, k=3, task=TASK_A)
    configurable = base.configurable_fields(task=ConfigurableField(id="task"))
    got = configurable.invoke(QUERY, config={"configurable": {"task": TASK_B}})
    assert _same(got, base.invoke(QUERY, task=TASK_B))
    assert _same(configurable.invoke(QUERY), base.invoke(QUERY))
