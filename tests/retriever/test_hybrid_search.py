"""SearchIndex hybrid search: the dense side gets the task, the BM25 side the bare query, fused as
``retriever.fusion`` says; the CLI's --hybrid/--fusion/--alpha and ``index --rebuild-bm25``."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from e5rag.cli import main
from e5rag.indexers import Document, atomic, open_store
from e5rag.retriever.errors import InputError
from e5rag.retriever.fusion import HybridConfig, rrf, weighted
from e5rag.retriever.instructions import format_query
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.tasks import resolve_task

DOCS = [Document("a", "Coffee lowers the risk of type 2 diabetes in a large cohort.", "Coffee"),
        Document("b", "Is it bad to drink coffee every day?"),
        Document("c", "Paris is the capital of France.", "Paris"),
        Document("d", "Given a claim, retrieve documents that support or refute the claim."),
        Document("e", "Interest rates rose and bond prices fell.", "Bonds"),
        Document("f", "Diabetes risk and sugar: a scientific claim.", "Sugar")]
QUERY = "coffee and diabetes"


def expected(encoder, index, task, config, k):
    """Independent fusion: numpy dense ranking of the instructed query + the store's BM25 of the bare query."""
    doc_vecs = encoder.encode([f"{d.title} {d.text}".strip() for d in DOCS])
    qv = encoder.encode([format_query(resolve_task(task), QUERY)])[0]
    scores = doc_vecs @ qv
    dense = [(DOCS[i].id, float(scores[i])) for i in np.argsort(-scores, kind="stable")]
    sparse = [(h.document.id, h.score) for h in index.store.keyword_search([QUERY], 100)[0]]
    fused = rrf([dense, sparse], config.rrf_k) if config.fusion == "rrf" else weighted(dense, sparse, config.alpha)
    return fused[:k], sparse


@pytest.mark.parametrize("config", [HybridConfig("rrf"), HybridConfig("weighted", alpha=0.3), HybridConfig()])
def test_hybrid_fuses_instructed_dense_with_bare_bm25(tiny_encoder, tmp_path, config):
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add(DOCS)
        hits = index.search([QUERY], task="scifact", k=4, hybrid=config)[0]
        want, sparse = expected(tiny_encoder, index, "scifact", config, 4)
        assert [h.document.id for h in hits] == [i for i, _ in want]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], rtol=1e-5)
        assert [h.rank for h in hits] == [1, 2, 3, 4]
        # the instruction's words ("claim", "retrieve documents") would reach d: the BM25 side never saw them
        instructed = index.store.keyword_search([format_query(resolve_task("scifact"), QUERY)], 100)[0]
        assert "d" in {h.document.id for h in instructed} and "d" not in {i for i, _ in sparse}
        assert index.search([QUERY], task="scifact", k=4, hybrid=False) == index.search([QUERY], task="scifact", k=4)
        assert [h.document.id for h in index.keyword_search([QUERY], k=2)[0]] == [i for i, _ in sparse[:2]]
        filtered = index.search([QUERY], task="scifact", k=6, hybrid=config, filter='title == "Coffee"')[0]
        assert [h.document.id for h in filtered] == ["a"]
        with pytest.raises(InputError, match="hybrid must be"):
            index.search([QUERY], hybrid="rrf")


def _drop_fts(path):
    conn = sqlite3.connect(atomic.current_generation(path) / "docs.sqlite")
    for name in ("docs_fts_insert", "docs_fts_delete", "docs_fts_update"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE docs_fts")
    conn.commit()
    conn.close()


def _cli_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_hybrid_search_and_rebuild_bm25(tiny_encoder, mistral_dir, tmp_path, capsys):
    path = tmp_path / "idx"
    with SearchIndex(tiny_encoder, open_store(path), writing=True, model_source=str(mistral_dir)) as index:
        index.add(DOCS)
        want_rrf, _ = expected(tiny_encoder, index, "scifact", HybridConfig("rrf"), 3)
        want_w, _ = expected(tiny_encoder, index, "scifact", HybridConfig("weighted", alpha=0.3), 3)
        want_default, _ = expected(tiny_encoder, index, "scifact", HybridConfig(), 3)
    base = ["search", "--index", str(path), "--task", "scifact", "-k", "3", "--json", "--max-length", "64", QUERY]
    row = _cli_json(capsys, [*base, "--hybrid", "--fusion", "rrf"])[0]
    assert row["fusion"] == "rrf k=60" and [r["id"] for r in row["results"]] == [i for i, _ in want_rrf]
    row = _cli_json(capsys, [*base, "--hybrid", "--fusion", "weighted", "--alpha", "0.3"])[0]
    assert [r["id"] for r in row["results"]] == [i for i, _ in want_w]
    row = _cli_json(capsys, [*base, "--hybrid"])[0]  # the default: weighted, alpha 0.4
    assert row["fusion"] == "weighted alpha=0.4" and [r["id"] for r in row["results"]] == [i for i, _ in want_default]
    for argv, message in [([*base, "--alpha", "0.3"], "add --hybrid"),
                          ([*base, "--hybrid", "--fusion", "rrf", "--alpha", "0.3"], "RRF has no weights"),
                          ([*base, "--hybrid", "--fusion", "weighted", "--alpha", "2"], "alpha must be between")]:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("e5rag: error: ") and message in err
    _drop_fts(path)  # an index built before hybrid search
    capsys.readouterr()
    assert main([*base, "--hybrid"]) == 2
    assert "rebuild-bm25" in capsys.readouterr().err
    assert main(["index", "--rebuild-bm25", "--index", str(path)]) == 0
    assert "from 6 stored documents" in capsys.readouterr().err
    row = _cli_json(capsys, [*base, "--hybrid"])[0]
    assert [r["id"] for r in row["results"]] == [i for i, _ in want_default]
    assert main(["index", "--index", str(path)]) == 2
    assert "no SOURCE" in capsys.readouterr().err
