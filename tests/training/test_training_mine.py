"""Hard-negative mining against a numpy brute-force ranking, with and without an e5rag index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e5rag.retriever.errors import InputError
from e5rag.retriever.instructions import format_document
from e5rag.retriever.tasks import get_task
from e5rag.training.mine import MineConfig, mine_hard_negatives, parse_window


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _brute_force(encoder, beir_dir):
    corpus = [json.loads(line) for line in (beir_dir / "corpus.jsonl").read_text().splitlines()]
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (beir_dir / "queries.jsonl").read_text().splitlines()}
    d = encoder.encode_document([c["text"] for c in corpus], [c["title"] for c in corpus])
    task = get_task("scifact").definition
    ranking = {}
    for qid, text in queries.items():
        scores = d @ encoder.encode_query([text], task=task)[0]
        ranking[qid] = [corpus[i]["_id"] for i in np.argsort(-scores, kind="stable")]
    return {c["_id"]: c for c in corpus}, queries, ranking


def test_mined_rows_follow_the_window_and_skip_positives(tiny_encoder, mistral_dir, beir_dir, tmp_path):
    from e5rag.cli import main

    out = tmp_path / "mined.jsonl"
    assert main(["mine", str(beir_dir), "--output", str(out), "--model", str(mistral_dir), "--max-length", "64",
                 "--window", "1-12", "--num-negatives", "0"]) == 0
    corpus, queries, ranking = _brute_force(tiny_encoder, beir_dir)
    positives = {"q0": ["d0", "d1"], **{f"q{i}": [f"d{3 * i}"] for i in range(1, 6)}}  # q1-d2 is judged 0
    rows = _read(out)
    assert sorted((r["query_id"], r["positive_id"]) for r in rows) == sorted((q, p) for q, ps in positives.items() for p in ps)
    for r in rows:
        expected = [d for d in ranking[r["query_id"]][:12] if d not in positives[r["query_id"]]]
        assert r["negative_ids"] == expected
        assert r["negatives"] == [format_document(corpus[d]["text"], corpus[d]["title"]) for d in expected]
        assert r["negative"] == r["negatives"][0]
        assert r["query"] == queries[r["query_id"]] and r["task"] == get_task("scifact").definition
        pos = corpus[r["positive_id"]]
        assert r["positive"] == format_document(pos["text"], pos["title"])


def test_mining_an_index_and_sampling(tiny_encoder, mistral_dir, beir_dir, tmp_path):
    from e5rag.indexers import open_store
    from e5rag.retriever.search import SearchIndex
    from e5rag.retriever.sources import read_documents

    index = tmp_path / "index"
    with SearchIndex(tiny_encoder, open_store(index), writing=True, model_source=str(mistral_dir)) as built:
        built.add(read_documents([str(beir_dir / "corpus.jsonl")]))
    exact = mine_hard_negatives(MineConfig(str(beir_dir), str(tmp_path / "a.jsonl"), model=str(mistral_dir),
                                           max_length=64, window=(3, 10), num_negatives=0))
    indexed = mine_hard_negatives(MineConfig(str(beir_dir), str(tmp_path / "b.jsonl"), index=str(index),
                                             window=(3, 10), num_negatives=0))
    assert (exact.rows, exact.queries) == (indexed.rows, indexed.queries) == (7, 6)
    a, b = _read(exact.out), _read(indexed.out)
    assert [r["negative_ids"] for r in a] == [r["negative_ids"] for r in b]
    sampled = _read(mine_hard_negatives(MineConfig(str(beir_dir), str(tmp_path / "c.jsonl"), index=str(index),
                                                   window=(3, 10), num_negatives=3)).out)
    for full, few in zip(b, sampled, strict=True):
        assert len(few["negative_ids"]) == 3
        kept = [d for d in full["negative_ids"] if d in few["negative_ids"]]
        assert kept == few["negative_ids"]  # a subset, still in rank order


def test_mined_rows_are_training_data(beir_dir, tmp_path, mistral_dir):
    from e5rag.training.data import read_pairs

    out = mine_hard_negatives(MineConfig(str(beir_dir), str(tmp_path / "m.jsonl"), model=str(mistral_dir),
                                         max_length=64, window=(2, 6), num_negatives=2)).out
    examples = read_pairs(out)
    assert len(examples) == 7 and all(len(e.negatives) == 2 for e in examples)


@pytest.mark.parametrize("window", ["30", "0-5", "9-3", "a-b"])
def test_bad_window(window):
    with pytest.raises(InputError, match="window"):
        parse_window(window)
