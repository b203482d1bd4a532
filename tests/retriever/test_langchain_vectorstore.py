"""E5VectorStore: the standard LangChain vector-store suite on FAISS and Milvus Lite (an empty store
per test), each with langchain-tests' fake embeddings and with the real E5 embeddings (tiny encoder),
plus the per-call task and equivalence with e5rag's own index."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_support import (  # noqa: E402
    DOCS,
    QUERY,
    TASK_A,
    TASK_B,
    assert_ranking_matches,
    expected_scores,
    fresh_collection,
    lc_encoder,  # noqa: F401
    requires_milvus,
)
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from e5rag.retriever.errors import InputError  # noqa: E402
from e5rag.retriever.langchain import E5Embeddings, E5Retriever, E5VectorStore  # noqa: E402
from e5rag.retriever.search import SearchIndex  # noqa: E402
from e5rag.retriever.tasks import resolve_task  # noqa: E402

N = len(DOCS)


class TestE5VectorStoreFaiss(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        with E5VectorStore.open(tmp_path / "index", self.get_embeddings()) as store:
            yield store


class TestE5VectorStoreMilvus(VectorStoreIntegrationTests):
    pytestmark = requires_milvus

    @pytest.fixture(scope="class")
    def milvus_db(self, tmp_path_factory):
        """One Milvus Lite database for the class, its server kept up by a store held open
        (closing a db's last store stops its server; restarting it per test costs ~1 s)."""
        from e5rag.indexers import open_store

        db = tmp_path_factory.mktemp("lc-vs-milvus") / "store.db"
        with open_store(db, collection="keep_server_up"):
            yield db

    @pytest.fixture
    def vectorstore(self, milvus_db):
        with E5VectorStore.open(milvus_db, self.get_embeddings(), collection=fresh_collection()) as store:
            yield store


class _OnE5Encoder:
    """The same standard suite with the real E5 embeddings (the tiny random encoder: documents without
    instruction, queries with the task's), not only langchain-tests' deterministic fake embeddings."""

    encoder = None

    @pytest.fixture(autouse=True, scope="class")
    def _put_encoder_on_class(self, request, lc_encoder):  # noqa: F811
        request.cls.encoder = lc_encoder

    def get_embeddings(self) -> E5Embeddings:
        return E5Embeddings(self.encoder, task="nq")

    def test_suite_runs_on_the_e5_encoder(self, vectorstore):
        assert isinstance(vectorstore.embeddings, E5Embeddings) and vectorstore.embeddings.encoder is self.encoder


class TestE5VectorStoreFaissE5(_OnE5Encoder, TestE5VectorStoreFaiss):
    pass


class TestE5VectorStoreMilvusE5(_OnE5Encoder, TestE5VectorStoreMilvus):
    pass


def _lc_docs() -> list[Document]:
    return [Document(id=d["id"], page_content=d["text"], metadata={"title": d["title"], "lang": d["lang"]})
            for d in DOCS]


@pytest.fixture(scope="module", params=["faiss", pytest.param("milvus", marks=requires_milvus)])
def e5_store(request, lc_encoder, tmp_path_factory):  # noqa: F811
    """The DOCS added through LangChain with E5 embeddings, on each store."""
    folder = tmp_path_factory.mktemp(f"lc-vs-e5-{request.param}")
    location = folder / ("index.db" if request.param == "milvus" else "index")
    store = E5VectorStore.from_documents(_lc_docs(), E5Embeddings(lc_encoder, task=TASK_A), location=location)
    yield store
    store.close()


async def test_task_per_call_changes_exactly_the_instruction(e5_store, lc_encoder):  # noqa: F811
    seen = {}
    for task in (TASK_A, TASK_B):
        expected = expected_scores(lc_encoder, resolve_task(task), QUERY)
        got = [(d.id, s) for d, s in e5_store.similarity_search_with_score(QUERY, k=N, task=task)]
        assert_ranking_matches(got, expected, N)
        via_async = await e5_store.asimilarity_search(QUERY, k=N, task=task)
        via_retriever = e5_store.as_retriever(search_kwargs={"k": N, "task": task}).invoke(QUERY)
        assert [d.id for d in via_async] == [d.id for d in via_retriever] == [i for i, _ in got]
        seen[task] = dict(got)
    assert any(abs(seen[TASK_A][i] - seen[TASK_B][i]) > 1e-4 for i in seen[TASK_A])
    # No task: the embeddings' own (TASK_A); an invoke kwarg overrides search_kwargs.
    assert dict((d.id, s) for d, s in e5_store.similarity_search_with_score(QUERY, k=N)) == pytest.approx(
        seen[TASK_A], abs=1e-5)
    retriever = e5_store.as_retriever(search_kwargs={"k": 2, "task": TASK_A})
    assert [d.id for d in retriever.invoke(QUERY, task=TASK_B)] == [i for i, _ in sorted(
        seen[TASK_B].items(), key=lambda kv: -kv[1])][:2]


def test_same_vectors_as_an_e5rag_index(e5_store, lc_encoder):  # noqa: F811
    """What the vector store wrote is an ordinary e5rag index: E5Retriever reads it, same scores."""
    index = SearchIndex(lc_encoder, e5_store.store)
    docs = E5Retriever(index=index, k=N, task=TASK_B).invoke(QUERY)
    assert_ranking_matches([(d.id, d.metadata["score"]) for d in docs],
                           expected_scores(lc_encoder, resolve_task(TASK_B), QUERY), N)
    assert {d.id: d.metadata["title"] for d in docs} == {d["id"]: d["title"] for d in DOCS}
    got = e5_store.get_by_ids(["d1", "missing", "d1"])
    assert got == [Document(id="d1", page_content=DOCS[1]["text"],
                            metadata={"title": DOCS[1]["title"], "lang": DOCS[1]["lang"]})]


def test_relevance_scores_filters_and_mmr(tmp_path):
    texts = ["apple pie", "banana bread", "cherry tart", "apple crumble", "date loaf"]
    metas = [{"fruit": t.split()[0], "n": i} for i, t in enumerate(texts)]
    store = E5VectorStore.from_texts(texts, DeterministicFakeEmbedding(size=8), metas, location=tmp_path / "i")
    emb = np.array(store.embeddings.embed_documents(texts))
    q = np.array(store.embeddings.embed_query("apple pie"))
    cos = emb @ q / np.linalg.norm(emb, axis=1) / np.linalg.norm(q)  # brute force, unnormalised input
    got = store.similarity_search_with_relevance_scores("apple pie", k=5)
    relevance = np.clip(cos, 0.0, 1.0)  # the cosine itself, negatives clipped
    assert [(d.page_content, s) for d, s in got] == [(texts[i], pytest.approx(relevance[i], abs=1e-5))
                                                     for i in np.argsort(-cos)]
    for threshold in (0.1, 0.5, 0.9):  # a threshold keeps exactly the documents at or above that cosine
        kept = store.similarity_search_with_relevance_scores("apple pie", k=5, score_threshold=threshold)
        assert [d.page_content for d, _ in kept] == [texts[i] for i in np.argsort(-cos) if cos[i] >= threshold]
    assert 0 < len(store.similarity_search_with_relevance_scores("apple pie", k=5, score_threshold=0.6)) < 5
    assert [d.page_content for d in store.similarity_search("apple pie", k=5, filter={"fruit": ["cherry", "date"]})] \
        == [texts[i] for i in np.argsort(-cos) if texts[i].split()[0] in ("cherry", "date")]
    assert [d.page_content for d in store.similarity_search("x", k=5, filter='metadata["n"] == 3')] == ["apple crumble"]
    # lambda_mult=1 is pure relevance: MMR must then agree with plain similarity search.
    assert [d.id for d in store.max_marginal_relevance_search("apple pie", k=3, fetch_k=5, lambda_mult=1.0)] == \
        [d.id for d in store.similarity_search("apple pie", k=3)]
    with pytest.raises(InputError, match="needs E5Embeddings"):
        store.similarity_search("apple", task=TASK_A)
    with pytest.raises(InputError, match="needs the ids"):
        store.delete()
    with pytest.raises(InputError, match="not JSON-serialisable"):
        store.add_texts(["x"], [{"when": object()}])
    store.close()


def test_from_texts_without_location_is_temporary():
    store = E5VectorStore.from_texts(["alpha", "beta"], DeterministicFakeEmbedding(size=4), ids=["a", "b"])
    root = store.store.root
    assert [d.id for d in store.similarity_search("beta", k=1)] == ["b"] and root.exists()
    store.close()
    assert not root.exists()


def test_an_index_made_through_langchain_records_its_model(mistral_dir, lc_encoder, tmp_path):  # noqa: F811
    """E5Embeddings.from_pretrained records where the model came from, so the index opens without one."""
    embeddings = E5Embeddings.from_pretrained(mistral_dir, task=TASK_B, max_length=256)
    location = tmp_path / "index"
    E5VectorStore.from_documents(_lc_docs(), embeddings, location=location).close()
    retriever = E5Retriever.from_index(location, k=N, task=TASK_B)  # loads the model from the manifest
    try:
        assert retriever.index.encoder is not lc_encoder
        assert retriever.index.encoder.fingerprint.same_model(lc_encoder.fingerprint)
        assert_ranking_matches([(d.id, d.metadata["score"]) for d in retriever.invoke(QUERY)],
                               expected_scores(lc_encoder, resolve_task(TASK_B), QUERY), N)
    finally:
        retriever.index.close()


class _CountingE5(E5Embeddings):
    """Records which texts reach the model (a subclass, so the store under test runs unchanged)."""

    def document_vectors(self, texts):
        self.seen = [*getattr(self, "seen", []), *texts]
        return super().document_vectors(texts)


def test_unchanged_documents_are_not_embedded_again(lc_encoder, tmp_path):  # noqa: F811
    embeddings = _CountingE5(lc_encoder, task=TASK_A)
    store = E5VectorStore.from_documents(_lc_docs(), embeddings, location=tmp_path / "index")
    assert len(embeddings.seen) == N
    embeddings.seen = []
    changed = [*_lc_docs()[:-1], Document(id=DOCS[-1]["id"], page_content="A brand new text.")]
    assert store.add_documents(changed) == [d["id"] for d in DOCS]
    assert embeddings.seen == ["A brand new text."]
    assert store.get_by_ids([DOCS[-1]["id"]])[0].page_content == "A brand new text."
    expected = expected_scores(lc_encoder, resolve_task(TASK_A), QUERY)
    got = dict((d.id, s) for d, s in store.similarity_search_with_score(QUERY, k=N))
    assert {i: got[i] for i in expected if i != DOCS[-1]["id"]} == pytest.approx(
        {i: s for i, s in expected.items() if i != DOCS[-1]["id"]}, abs=1e-5)
    store.close()


def _direct_mmr(query: np.ndarray, vectors: np.ndarray, k: int, lambda_mult: float) -> list[int]:
    """Greedy MMR (Carbonell & Goldstein 1998) on unit vectors, written out: each step takes the
    candidate maximising lambda * cos(query, d) - (1 - lambda) * max cos(d, already chosen); the
    first is the most relevant (LangChain's convention, whatever lambda)."""
    relevance = vectors @ query
    chosen = [int(np.argmax(relevance))]
    while len(chosen) < min(k, len(vectors)):
        redundancy = (vectors @ vectors[chosen].T).max(axis=1)
        score = lambda_mult * relevance - (1 - lambda_mult) * redundancy
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen


def test_mmr_uses_the_stored_vectors(e5_store, lc_encoder):  # noqa: F811
    """MMR equals a direct MMR over the documents' vectors (computed here without the store), and
    embeds no document: only the query reaches the model."""
    vectors = lc_encoder.encode_document([d["text"] for d in DOCS], titles=[d["title"] for d in DOCS])
    query = lc_encoder.encode_query(QUERY, task=TASK_A)
    counting, original = _CountingE5(lc_encoder, task=TASK_A), e5_store.embedding
    e5_store.embedding = counting
    try:
        for lambda_mult in (0.0, 0.3, 0.7):
            got = e5_store.max_marginal_relevance_search(QUERY, k=3, fetch_k=N, lambda_mult=lambda_mult)
            assert [d.id for d in got] == [DOCS[i]["id"] for i in _direct_mmr(query, vectors, 3, lambda_mult)]
    finally:
        e5_store.embedding = original
    assert getattr(counting, "seen", []) == []
    stored = e5_store.store.get_vectors(["d0", "missing", "d2"])
    assert sorted(stored) == ["d0", "d2"]
    np.testing.assert_allclose(stored["d2"], vectors[2], atol=1e-5)
