"""The harness's BM25 and hybrid rows equal what a FAISS index answers through SearchIndex (same BM25,
same fusion), scored by the same trec_eval; and the ``e5rag eval --bm25/--hybrid`` flags."""

from __future__ import annotations

import pytest
from test_evaluation_beir import CORPUS, QUERIES, write_beir

from e5rag.cli import main
from e5rag.indexers import open_store
from e5rag.retriever.evaluation import EvalConfig, evaluate_run, load_beir, run_evaluation
from e5rag.retriever.evaluation.report import format_table
from e5rag.retriever.fusion import HybridConfig
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.tasks import resolve_task

FUSIONS = (HybridConfig("rrf"), HybridConfig("weighted", alpha=0.3))


@pytest.fixture
def folder(tmp_path):
    # no document shares a query's id, so the harness drops nothing that SearchIndex would return
    corpus = {i: v for i, v in CORPUS.items() if i not in QUERIES}
    return write_beir(tmp_path / "scifact", corpus=corpus)


def _run(hits_per_query, qids):
    return {q: {h.document.id: h.score for h in hits} for q, hits in zip(qids, hits_per_query, strict=True)}


def test_bm25_and_hybrid_rows_equal_search_index_on_faiss(tiny_encoder, mistral_dir, folder, tmp_path):
    config = EvalConfig(datasets=(str(folder),), models=(str(mistral_dir),), max_length=64, k=10,
                        retrieval=("bm25", "dense", "hybrid"), fusions=FUSIONS, use_cache=False)
    rows = run_evaluation(config)
    assert [r.retrieval for r in rows] == ["bm25", "dense", "hybrid rrf k=60", "hybrid weighted alpha=0.3"]
    assert rows[0].model == "BM25 (SQLite FTS5)" and not rows[0].instruction
    assert rows[2].model.endswith("+ BM25 (rrf k=60)") and rows[2].instruction and rows[2].doc_source == "reused"

    dataset = load_beir(folder, "test")
    qids = list(dataset.queries)
    texts = [dataset.queries[q] for q in qids]
    task = resolve_task("scifact")
    with SearchIndex(tiny_encoder, open_store(tmp_path / "idx"), writing=True) as index:
        index.add(list(dataset.corpus))
        want = [_run(index.keyword_search(texts, k=10), qids), _run(index.search(texts, task=task, k=10), qids)]
        want += [_run(index.search(texts, task=task, k=10, hybrid=c), qids) for c in FUSIONS]
    for row, run in zip(rows, want, strict=True):
        assert row.metrics == pytest.approx(evaluate_run(dataset.qrels, run, 10), abs=1e-6), row.retrieval
    assert rows[1].metrics != rows[0].metrics
    table = format_table(rows)
    assert "bare query" in table and "+ BM25 (weighted alpha=0.3)" in table


def test_bm25_alone_loads_no_model_and_flags_are_checked(folder, tmp_path, capsys):
    missing = tmp_path / "no-such-model"  # loading it would fail: BM25 alone must not try
    assert main(["eval", str(folder), "--bm25", "--k", "10", "--no-cache", "--model", str(missing)]) == 0
    out = capsys.readouterr().out
    assert "BM25 (SQLite FTS5)" in out and "bare query" in out
    for argv, message in [(["--fusion", "weighted"], "add --hybrid"), (["--hybrid", "--fusion", "rrf", "--alpha", "0.2"], "RRF has no weights"),
                          (["--hybrid", "--fusion", "weighted", "--alpha", "-1"], "alpha must be between")]:
        assert main(["eval", str(folder), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("e5rag: error: ") and message in err
