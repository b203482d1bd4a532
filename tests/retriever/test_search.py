"""SearchIndex: one document index, many tasks; model mismatch refused; re-index skips unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from e5rag.indexers import Document, open_store
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
