"""BEIR folders: reading one split, and every broken folder as one clear InputError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e5rag.retriever.errors import InputError
from e5rag.retriever.evaluation.beir import load_beir

CORPUS = {
    "d1": ("Photosynthesis", "Plants convert light energy into chemical energy."),
    "d2": ("", "Vaccines train the immune system to recognise a pathogen."),
    "d3": ("Paris", "Paris is the capital and most populous city of France."),
    "d4": ("", "The stock market fell sharply after the interest rate decision."),
    "q2": ("", "How do I reset my password? Open settings and choose security."),  # same id as a query
    "d6": ("RAG", "Retrieval augmented generation grounds answers in documents."),
}
QUERIES = {"q1": "how do plants make energy", "q2": "How do I reset my password?", "q3": "capital of France",
           "q9": "a train-split query"}
QRELS = {"test": [("q1", "d1", 1), ("q2", "d6", 1), ("q3", "d3", 2), ("q3", "d4", 0)], "train": [("q9", "d2", 1)]}


def write_beir(root: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> Path:
    """A small BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv with a header line."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                                               for i, (t, x) in corpus.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": q}) + "\n" for i, q in queries.items()))
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows))
    return root


def test_reads_one_split_with_only_its_judged_queries(tmp_path):
    ds = load_beir(write_beir(tmp_path / "scifact"), "test")
    assert ds.name == "scifact"
    assert ds.doc_ids == list(CORPUS)
    assert ds.corpus[0].title == "Photosynthesis" and ds.corpus[0].text == CORPUS["d1"][1]
    assert ds.queries == {q: QUERIES[q] for q in ("q1", "q2", "q3")}
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d6": 1}, "q3": {"d3": 2, "d4": 0}}
    assert set(load_beir(tmp_path / "scifact", "train").queries) == {"q9"}


def test_missing_split_names_the_splits_that_exist(tmp_path):
    root = write_beir(tmp_path / "ds")
    with pytest.raises(InputError, match=r"split 'dev'.*qrels/dev.tsv is missing.*splits present: test, train"):
        load_beir(root, "dev")


def test_missing_qrels_folder(tmp_path):
    root = write_beir(tmp_path / "ds", qrels={})
    (root / "qrels").rmdir()
    with pytest.raises(InputError, match="no qrels/\\*.tsv at all"):
        load_beir(root)


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_missing_corpus_or_queries(tmp_path, name):
    root = write_beir(tmp_path / "ds")
    (root / name).unlink()
    with pytest.raises(InputError, match=f"not a BEIR dataset folder: .* {name} is missing"):
        load_beir(root)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no such dataset folder"):
        load_beir(tmp_path / "nope")


def test_qrels_ids_absent_from_the_corpus_or_queries(tmp_path):
    root = write_beir(tmp_path / "a", qrels={"test": [("q1", "d1", 1), ("q1", "gone", 1), ("q3", "lost", 1)]})
    with pytest.raises(InputError, match=r"test.tsv: 2 corpus ids are absent from corpus.jsonl: 'gone', 'lost'"):
        load_beir(root)
    root = write_beir(tmp_path / "b", qrels={"test": [("q1", "d1", 1), ("q404", "d1", 1)]})
    with pytest.raises(InputError, match=r"1 query ids are absent from queries.jsonl: 'q404'"):
        load_beir(root)


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_malformed_jsonl_line_names_file_and_line(tmp_path, name):
    root = write_beir(tmp_path / "ds")
    lines = (root / name).read_text().splitlines()
    lines.insert(2, '{"_id": "broken", "text": ')
    (root / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{name} line 3: not valid JSON"):
        load_beir(root)


def test_malformed_qrels_rows(tmp_path):
    root = write_beir(tmp_path / "ds")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1 d3 1\n")
    with pytest.raises(InputError, match=r"test.tsv line 3: expected 3 tab-separated columns"):
        load_beir(root)
    (root / "qrels" / "test.tsv").write_text("q1\td1\tyes\n")
    with pytest.raises(InputError, match=r"test.tsv line 1: the score 'yes' is not a number"):
        load_beir(root)


def test_duplicate_query_ids_are_refused(tmp_path):
    root = write_beir(tmp_path / "ds")
    with open(root / "queries.jsonl", "a") as fh:
        fh.write(json.dumps({"_id": "q1", "text": "again"}) + "\n")
    with pytest.raises(InputError, match=r"queries.jsonl line 5: query id 'q1' appears twice"):
        load_beir(root)
