from __future__ import annotations

import pytest

from e5rag.retriever import InputError, format_document, format_query, list_tasks, resolve_task


def test_query_format_is_exact():
    assert format_query("Given a claim, find X", "q?") == "Instruct: Given a claim, find X\nQuery: q?"
    assert format_query(None, "q?") == "q?"
    assert format_document("text", "Title") == "Title text"
    assert format_document("text", "") == "text"


def test_registry_names_aliases_and_free_text():
    names = {t.name for t in list_tasks()}
    assert {"scifact", "arguana", "nfcorpus", "fiqa2018", "msmarco", "nq", "hotpotqa", "trec-covid", "quora",
            "sts", "bitext", "web-search"} <= names
    assert resolve_task("SciFact") == resolve_task("scifact")
    assert resolve_task("TREC_COVID") == resolve_task("trec-covid")
    assert resolve_task(None) == resolve_task("web-search")
    assert resolve_task("Given a recipe name, retrieve its ingredients") == "Given a recipe name, retrieve its ingredients"
    with pytest.raises(InputError, match="unknown task name"):
        resolve_task("scifcat")
    with pytest.raises(InputError, match="empty"):
        resolve_task("  ")
