"""Hard-negative mining over a training-pairs JSONL file, checked against an independent numpy ranking
built from ``Encoder.encode_query`` / ``encode_document`` vectors."""

from __future__ import annotations

import json
import random
from collections import defaultdict

import numpy as np
import pytest

from e5rag.retriever.errors import InputError
from e5rag.training.mine import MineConfig, mine_hard_negatives

WORDS = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud "
         "forest bridge candle mirror rocket garden").split()
T1, T2 = "Find the phrase", "Match the words"
WINDOW = (3, 20)


def _rows() -> list[dict]:
    """~30 distinct positives with every duplicate the miner must respect."""
    rng = random.Random(7)
    rows = []
    for i in range(18):
        a, b, c = rng.sample(WORDS, 3)
        rows.append({"task": T1 if i % 3 else T2, "query": f"{a} {b} {i}", "positive": f"{a} {b} {c} {i}",
                     "negative": f"not {c} {i}" if i % 4 == 0 else None, "source": "test", "row": i})
    rows += [
        # one query, two positives (e.g. a question with two answer passages)
        {"task": T1, "query": "alpha beta", "positive": "alpha beta one", "negative": None, "source": "dup"},
        {"task": T1, "query": "alpha beta", "positive": "alpha beta two", "negative": "gamma delta", "source": "dup"},
        # one positive, two queries (SciTLDR: several TLDRs of one abstract)
        {"task": T1, "query": "river stone", "positive": "river stone cloud shared", "negative": None, "source": "dup"},
        {"task": T1, "query": "stone river", "positive": "river stone cloud shared", "negative": None, "source": "dup"},
        # a whitespace variant of a positive, as the positive of another query
        {"task": T1, "query": "forest bridge", "positive": "forest bridge candle", "negative": None, "source": "ws"},
        {"task": T1, "query": "bridge forest", "positive": " forest  bridge\tcandle ", "negative": None, "source": "ws"},
        # the same query text under two tasks: two queries, each searched with its own task
        {"task": T1, "query": "mirror rocket", "positive": "mirror rocket garden", "negative": None, "source": "task"},
        {"task": T2, "query": "mirror rocket", "positive": "rocket garden mirror", "negative": None, "source": "task"},
    ]
    # a labelled negative that is also a corpus text: it must not appear twice in `negatives`
    rows.append({"task": T2, "query": "omega sigma", "positive": "omega sigma kappa",
                 "negative": rows[0]["positive"], "source": "labelled"})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _norm(text):
    return " ".join(text.split())


def _expected_windows(encoder, rows, window=WINDOW):
    """(task, query) -> the corpus texts ranked inside the window, the query's positives (and their
    whitespace variants) left out, computed from scratch with numpy."""
    corpus = list(dict.fromkeys(r["positive"] for r in rows))
    d = encoder.encode_document(corpus)  # (n, dim)
    positives = defaultdict(set)
    for r in rows:
        positives[(r["task"], r["query"])].add(_norm(r["positive"]))
    lo, hi = window
    out = {}
    for (task, query), pos in positives.items():
        scores = d @ encoder.encode_query([query], task=task)[0]
        ranked = [corpus[i] for i in np.argsort(-scores, kind="stable")][lo - 1:hi]
        out[(task, query)] = [t for t in ranked if _norm(t) not in pos]
    return out, positives


@pytest.fixture
def pairs(tmp_path):
    rows = _rows()
    return _write(tmp_path / "pairs.jsonl", rows), rows


def _mine(path, out, mistral_dir, **kw):
    kw.setdefault("window", WINDOW)
    return mine_hard_negatives(MineConfig(str(path), str(out), model=str(mistral_dir), max_length=64, **kw))


@pytest.mark.parametrize("window", [WINDOW, (1, 40)])  # (1, 40): the whole corpus, every duplicate in reach
def test_pairs_negatives_are_the_window_of_an_independent_ranking(tiny_encoder, mistral_dir, pairs, tmp_path, window):
    path, rows = pairs
    report = _mine(path, tmp_path / "out.jsonl", mistral_dir, num_negatives=0, window=window)
    expected, positives = _expected_windows(tiny_encoder, rows, window)
    out = _read(report.out)
    assert (report.rows, report.queries, report.queries_in_input) == (len(rows), len(expected), len(expected))
    assert len(out) == len(rows)
    for src, got in zip(rows, out, strict=True):
        for key, value in src.items():  # the input's fields are kept, except the negative that mining fills
            if key != "negative":
                assert got[key] == value
        key = (src["task"], src["query"])
        labelled = [src["negative"]] if src["negative"] else []
        mined = got["negatives"][len(labelled):]
        assert got["negatives"][:len(labelled)] == labelled  # the labelled negative first
        assert mined == [t for t in expected[key] if t not in labelled]  # exactly the window, in rank order
        assert got["negative"] == (got["negatives"][0] if got["negatives"] else None)
        assert not {_norm(t) for t in mined} & positives[key]  # never a positive of the same query
        assert len(got["negative_ids"]) == len(got["negatives"]) == len(set(got["negatives"]))
    assert sum(bool(expected[k]) for k in expected) == report.queries - report.without_negatives
    by_query = {(r["task"], r["query"]): r for r in out}
    # the duplicates: none of them shows up as its own query's negative
    assert not {"alpha beta one", "alpha beta two"} & set(by_query[(T1, "alpha beta")]["negatives"])
    for q in ("river stone", "stone river"):
        assert "river stone cloud shared" not in by_query[(T1, q)]["negatives"]
    for q in ("forest bridge", "bridge forest"):
        assert not {"forest bridge candle", " forest  bridge\tcandle "} & set(by_query[(T1, q)]["negatives"])
    # the two tasks of "mirror rocket" are two searches (rankings differ with the task)
    assert expected[(T1, "mirror rocket")] != expected[(T2, "mirror rocket")]
    assert by_query[(T2, "omega sigma")]["negatives"].count(rows[0]["positive"]) == 1


def test_pairs_sampling_is_a_seeded_subset_of_the_window(mistral_dir, pairs, tmp_path):
    path, rows = pairs
    full = _read(_mine(path, tmp_path / "full.jsonl", mistral_dir, num_negatives=0).out)
    few = _read(_mine(path, tmp_path / "few.jsonl", mistral_dir, num_negatives=3).out)
    again = _read(_mine(path, tmp_path / "again.jsonl", mistral_dir, num_negatives=3).out)
    other = _read(_mine(path, tmp_path / "other.jsonl", mistral_dir, num_negatives=3, seed=5).out)
    assert few == again and few != other
    per_query = {}
    for src, a, b in zip(rows, full, few, strict=True):
        n = 1 if src["negative"] else 0
        window, kept = a["negatives"][n:], b["negatives"][n:]
        assert b["negatives"][:n] == a["negatives"][:n]
        assert kept == [t for t in window if t in kept]  # a subset, still in rank order
        if n:
            assert len(kept) <= 3
        else:
            assert len(kept) == min(3, len(window))
            # every row of one query gets the same mined negatives
            assert per_query.setdefault((src["task"], src["query"]), kept) == kept


def test_max_queries_is_a_seeded_sample_and_the_corpus_stays_whole(mistral_dir, pairs, tmp_path):
    path, rows = pairs
    full = _read(_mine(path, tmp_path / "full.jsonl", mistral_dir, num_negatives=3).out)

    def sample(seed, name):
        report = _mine(path, tmp_path / name, mistral_dir, num_negatives=3, max_queries=5, seed=seed)
        assert (report.queries, report.queries_in_input) == (5, len({(r["task"], r["query"]) for r in rows}))
        return report, _read(report.out)

    r0, a = sample(0, "a.jsonl")
    _, b = sample(0, "b.jsonl")
    _, c = sample(1, "c.jsonl")
    assert a == b  # deterministic for a seed
    chosen = {(r["task"], r["query"]) for r in a}
    assert len(chosen) == 5 and chosen != {(r["task"], r["query"]) for r in c}
    # every input row of a chosen query is written, in file order; the others are not
    assert [r["row"] if "row" in r else r["positive"] for r in a] == \
           [r["row"] if "row" in r else r["positive"] for r in rows if (r["task"], r["query"]) in chosen]
    assert r0.rows == len(a)
    # a sampled query gets the negatives it gets without --max-queries (same seed)
    reference = {(r["task"], r["query"], r["positive"]): r["negatives"] for r in full}
    assert all(r["negatives"] == reference[(r["task"], r["query"], r["positive"])] for r in a)
    # the corpus stays whole: negatives come from positives of queries that were not sampled
    others = {r["positive"] for r in rows if (r["task"], r["query"]) not in chosen}
    assert any(set(r["negatives"]) & others for r in a)


def test_a_window_past_the_corpus_keeps_only_labelled_negatives(mistral_dir, pairs, tmp_path):
    path, rows = pairs
    report = _mine(path, tmp_path / "out.jsonl", mistral_dir, window=(200, 300))
    assert (report.rows, report.without_negatives, report.rows_without_negatives) == \
           (len(rows), report.queries, len(rows))
    for src, got in zip(rows, _read(report.out), strict=True):
        assert got["negative"] == src["negative"]
        assert got["negatives"] == ([src["negative"]] if src["negative"] else [])


def test_the_corpus_cache_follows_the_file_content(mistral_dir, pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("E5RAG_CACHE", str(tmp_path / "cache"))
    path, rows = pairs

    def entries():
        root = tmp_path / "cache" / "embeddings"
        return sorted(p.name for p in root.iterdir() if "partial" not in p.name) if root.is_dir() else []

    first = _read(_mine(path, tmp_path / "1.jsonl", mistral_dir, num_negatives=0).out)
    assert len(entries()) == 1
    assert _read(_mine(path, tmp_path / "2.jsonl", mistral_dir, num_negatives=0).out) == first
    assert len(entries()) == 1  # the same corpus: read from the cache
    rows[3] = {**rows[3], "positive": rows[3]["positive"] + " edited"}
    _write(path, rows)
    _mine(path, tmp_path / "3.jsonl", mistral_dir, num_negatives=0)
    assert len(entries()) == 2  # a changed positive is another corpus


def test_cli_end_to_end_output_is_training_data(mistral_dir, pairs, tmp_path, capsys):
    from e5rag.cli import main
    from e5rag.training.config import DataSpec
    from e5rag.training.data import load_source, read_pairs

    path, rows = pairs
    out = tmp_path / "sub" / "mined.jsonl"
    assert main(["mine", str(path), "--output", str(out), "--model", str(mistral_dir), "--max-length", "64",
                 "--window", "3-20", "--num-negatives", "2", "--max-queries", "8", "--seed", "3", "--no-cache"]) == 0
    err = capsys.readouterr().err
    written = _read(out)
    assert f"mined {len(written)} rows for 8 queries (a --max-queries sample of" in err
    assert [p.name for p in out.parent.iterdir()] == ["mined.jsonl"]  # written atomically: no temp file left
    examples = read_pairs(out)
    assert len(examples) == len(written) and load_source(DataSpec(str(out))).examples == tuple(examples)
    source = {(r["task"], r["query"], r["positive"]): r for r in rows}
    for row, ex in zip(written, examples, strict=True):
        assert ex.query == row["query"] and ex.positive == row["positive"]
        assert list(ex.negatives) == row["negatives"] and 1 <= len(ex.negatives) <= 3
        labelled = source[(row["task"], row["query"], row["positive"])]["negative"]
        if labelled is not None:
            assert ex.negatives[0] == row["negative"] == labelled


BAD_LINES = [
    ("[1, 2]", "line 2: expected a JSON object"),
    ('{"task": "t t", "positive": "p"}', "line 2: 'query' must be a non-empty string"),
    ('{"task": "t t", "query": "q"}', "line 2: 'positive' must be a non-empty string"),
    ('{"query": "q", "positive": "p"}', "line 2: 'task' must be a non-empty string"),
    ('{"task": "t t", "query": "q", "positive": "p", "negative": 3}', "line 2: 'negative'"),
    ('{"task": "t t", "query": "q"', "line 2: not valid JSON"),
    ('{"task": "nosuchtask", "query": "q", "positive": "p"}', "line 2: unknown task name 'nosuchtask'"),
    ('{"_id": "d1", "title": "", "text": "a document"}', "line 2: this looks like a BEIR corpus"),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_bad_lines_exit_2_naming_file_line_and_problem(tmp_path, capsys, line, message):
    from e5rag.cli import main

    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"task": "t t", "query": "q", "positive": "p"}) + "\n" + line + "\n")
    assert main(["mine", str(path), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("e5rag: error: ")
    assert f"{path} {message}" in err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("content, args, message", [
    (None, [], "no such file or folder; give a BEIR folder"),
    ("", [], "holds no training rows"),
    ("\n  \n", [], "holds no training rows"),
    ("ROW", ["--split", "train"], "--split picks the qrels of a BEIR folder; leave it out"),
    ("ROW", ["--task", "scifact"], "--task is for BEIR folders"),
    ("ROW", ["--index", "some/index"], "--index searches a BEIR corpus"),
    ("ROW", ["--max-queries", "0"], "max_queries must be >= 1"),
])
def test_bad_inputs_exit_2(tmp_path, capsys, content, args, message):
    from e5rag.cli import main

    path = tmp_path / "pairs.jsonl"
    if content is not None:
        path.write_text(content.replace("ROW", json.dumps({"task": "t t", "query": "q", "positive": "p"})))
    assert main(["mine", str(path), "--output", str(tmp_path / "o.jsonl"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    if "max_queries" not in message:
        assert str(path) in err


def test_read_errors_are_input_errors(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"task": "t t", "query": "q", "positive": " "}])
    with pytest.raises(InputError, match=r"p\.jsonl line 1: 'positive'.*e5rag train --data"):
        mine_hard_negatives(MineConfig(str(path), str(tmp_path / "o.jsonl")))


def test_beir_max_queries_samples_the_split(mistral_dir, beir_dir, tmp_path):
    kw = dict(model=str(mistral_dir), max_length=64, window=(2, 12), num_negatives=3)
    full = _read(mine_hard_negatives(MineConfig(str(beir_dir), str(tmp_path / "f.jsonl"), **kw)).out)
    report = mine_hard_negatives(MineConfig(str(beir_dir), str(tmp_path / "s.jsonl"), max_queries=3, **kw))
    some = _read(report.out)
    assert (report.queries, report.queries_in_input) == (3, 6) and len({r["query_id"] for r in some}) == 3
    reference = {(r["query_id"], r["positive_id"]): r for r in full}
    assert all(reference[(r["query_id"], r["positive_id"])] == r for r in some)
