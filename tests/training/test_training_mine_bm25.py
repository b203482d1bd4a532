"""`e5rag mine --model bm25`: negatives from a BM25 ranking, checked against Okapi BM25 written out here
(k1 1.2, b 0.75, idf ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6, the query's distinct words OR-ed).

The words are consonant strings, which the Porter stemmer leaves alone, so whitespace splitting here
sees exactly the tokens SQLite FTS5 indexes."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from e5rag.retriever.errors import InputError
from e5rag.training.mine import MineConfig, mine_hard_negatives

VOCAB = ["".join(t) for t in itertools.product("bcdfg", "hjklm", "npqrt")][:100]  # stemmer-proof words


def _okapi(docs: dict[str, str], query: str) -> list[tuple[str, float]]:
    """(doc id, score) best first, documents sharing no word with the query left out."""
    toks = {i: t.split() for i, t in docs.items()}
    n_docs = len(docs)
    avgdl = sum(len(t) for t in toks.values()) / n_docs
    scores: dict[str, float] = {}
    for term in dict.fromkeys(query.split()):
        df = sum(term in t for t in toks.values())
        if not df:
            continue
        idf = max(math.log((n_docs - df + 0.5) / (df + 0.5)), 1e-6)
        for i, t in toks.items():
            f = t.count(term)
            if f:
                scores[i] = scores.get(i, 0.0) + idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * len(t) / avgdl))
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _text(rng: random.Random, length: int | None = None) -> str:
    words = rng.choices(VOCAB, k=length or rng.randint(4, 14))
    return " ".join(words)


@pytest.fixture
def beir(tmp_path):
    root = tmp_path / "scifact"  # named so its task resolves
    (root / "qrels").mkdir(parents=True)
    rng = random.Random(3)
    lengths = rng.sample(range(4, 64), 60)  # every length once: two documents rarely tie in BM25
    docs = {f"d{i}": _text(rng, lengths[i]) for i in range(60)}
    queries = {f"q{i}": " ".join(rng.sample(VOCAB, 3)) for i in range(12)}
    qrels = {f"q{i}": [f"d{(5 * i) % 60}"] + ([f"d{i + 1}"] if i % 4 == 0 else []) for i in range(12)}
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                               for k, v in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, ds in qrels.items() for d in ds))
    return root, docs, queries, qrels


def test_beir_negatives_are_the_window_of_okapi_bm25(beir, tmp_path):
    root, docs, queries, qrels = beir
    lo, hi = 3, 25
    report = mine_hard_negatives(MineConfig(str(root), str(tmp_path / "out.jsonl"), model="bm25",
                                            window=(lo, hi), num_negatives=0))
    rows = [json.loads(line) for line in report.out.read_text().splitlines()]
    assert report.rows == len(rows) == sum(len(v) for v in qrels.values())
    checked = 0
    for row in rows:
        ranking = _okapi(docs, queries[row["query_id"]])
        scores = [s for _, s in ranking[:hi + 1]]
        if any(abs(a - b) < 1e-9 for a, b in zip(scores, scores[1:], strict=False)):
            continue  # a tie: FTS5 and this sort may order it either way
        assert len(ranking) > hi  # the window is inside the ranking
        expected = [d for d, _ in ranking[lo - 1:hi] if d not in qrels[row["query_id"]]]
        assert row["negative_ids"] == expected
        assert row["negatives"] == [docs[d] for d in expected]
        assert row["negative"] == (docs[expected[0]] if expected else None)
        checked += 1
    assert checked >= len(rows) - 2  # ties (skipped) are rare
    assert "ranks 3-25" in rows[0]["source"]


def test_pairs_file_bm25_keeps_labelled_negative_first_and_never_a_positive(tmp_path):
    rng = random.Random(5)
    rows = [{"task": "Find it", "query": " ".join(rng.sample(VOCAB, 3)), "positive": _text(rng) + f" {i}",
             "negative": (_text(rng) + " neg") if i % 3 == 0 else None} for i in range(30)]
    rows.append({"task": "Find it", "query": rows[0]["query"], "positive": rows[1]["positive"], "negative": None})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = mine_hard_negatives(MineConfig(str(path), str(tmp_path / "out.jsonl"), model="BM25",
                                            window=(1, 40), num_negatives=0))
    out = [json.loads(line) for line in report.out.read_text().splitlines()]
    assert len(out) == len(rows) and report.queries == 30
    positives: dict[str, set[str]] = {}
    for r in rows:
        positives.setdefault(r["query"], set()).add(r["positive"])
    corpus = {r["positive"] for r in rows}
    for src, got in zip(rows, out, strict=True):
        labelled = [src["negative"]] if src["negative"] else []
        assert got["negatives"][:len(labelled)] == labelled
        mined = got["negatives"][len(labelled):]
        assert set(mined) <= corpus and not set(mined) & positives[src["query"]]
        # window 1-40 covers the whole corpus: every other positive sharing a word with the query
        words = set(src["query"].split())
        assert set(mined) == {p for p in corpus - positives[src["query"]] if words & set(p.split())}


def test_bm25_with_an_adapter_is_refused(tmp_path):
    with pytest.raises(InputError, match="--model bm25 ranks by BM25.*leave out --adapter"):
        MineConfig("x.jsonl", str(tmp_path / "o.jsonl"), model="bm25", adapter="some/adapter")


def test_options_of_neural_models_are_named_as_ignored_with_bm25(beir, tmp_path, caplog):
    root, *_ = beir
    quiet = MineConfig(str(root), str(tmp_path / "a.jsonl"), model="bm25", window=(2, 20))
    loud = MineConfig(str(root), str(tmp_path / "b.jsonl"), model="bm25", window=(2, 20), max_length=64,
                      batch_size=4, use_cache=False)
    assert quiet.ignored_options() == []
    assert loud.ignored_options() == ["max_length (--max-length)", "batch_size (--batch-size)", "use_cache (--no-cache)"]
    assert MineConfig(str(root), "c.jsonl", max_length=64, batch_size=4).ignored_options() == []  # a neural model
    mine_hard_negatives(loud)
    assert "max_length (--max-length), batch_size (--batch-size), use_cache (--no-cache) ignored" in caplog.text
    assert (tmp_path / "b.jsonl").read_text()  # mined all the same


def test_cli_mines_with_bm25(beir, tmp_path, capsys):
    from e5rag.cli import main

    root, *_ = beir
    out = tmp_path / "cli.jsonl"
    assert main(["mine", str(root), "--model", "bm25", "--window", "2-20", "--output", str(out)]) == 0
    assert "queries got negatives" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(len(r["negatives"]) <= 8 for r in rows) and any(r["negatives"] for r in rows)
