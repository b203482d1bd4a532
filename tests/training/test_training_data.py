"""Reading training sources and the deterministic batch plan."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from e5rag.retriever.errors import InputError
from e5rag.retriever.instructions import format_document
from e5rag.retriever.tasks import get_task
from e5rag.training.config import DataSpec
from e5rag.training.data import Example, beir_examples, load_source, read_pairs
from e5rag.training.sampler import BatchPlan, choose_negatives, make_batch


def test_read_pairs_keeps_the_four_fields(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"task": "Retrieve semantically similar text", "query": "q1", "positive": "p1", "negative": None, "x": 1},
            {"task": "scifact", "query": "q2", "positive": "p2", "negative": "n2", "negatives": ["n2", "n3"]},
            {"task": "Given a claim, rank", "query": "q3", "positive": "p3", "negative": "n4", "negatives": ["n5"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = read_pairs(path)
    assert got[0] == Example("Retrieve semantically similar text", "q1", "p1", ())
    assert got[1] == Example(get_task("scifact").definition, "q2", "p2", ("n2", "n3"))  # a name is expanded
    assert got[2].negatives == ("n4", "n5")


@pytest.mark.parametrize("row, message", [
    ({"query": "q", "positive": "p", "negative": None}, "'task'"),
    ({"task": "t", "query": " ", "positive": "p"}, "'query'"),
    ({"task": "t", "query": "q", "positive": "p", "negative": 3}, "'negative'"),
    ({"task": "t", "query": "q", "positive": "p", "negatives": "n"}, "'negatives'"),
])
def test_read_pairs_errors_name_line_and_field(tmp_path, row, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"task": "t", "query": "q", "positive": "p"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=rf"line 2.*{message}"):
        read_pairs(path)


def test_beir_source_uses_the_folder_task_and_relevant_pairs(beir_dir):
    examples = beir_examples(beir_dir, "train")
    corpus = {json.loads(line)["_id"]: json.loads(line) for line in (beir_dir / "corpus.jsonl").read_text().splitlines()}
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (beir_dir / "queries.jsonl").read_text().splitlines()}
    expected = [(q, d) for q, d in [(f"q{i}", f"d{3 * i}") for i in range(6)] + [("q0", "d1")]]  # q1-d2 has score 0
    assert len(examples) == len(expected)
    got = {(e.query, e.positive) for e in examples}
    assert got == {(queries[q], format_document(corpus[d]["text"], corpus[d]["title"])) for q, d in expected}
    assert {e.task for e in examples} == {get_task("scifact").definition}
    assert load_source(DataSpec(str(beir_dir), task="nq")).examples[0].task == get_task("nq").definition


def test_beir_folder_without_a_known_task(tmp_path, beir_dir):
    import shutil

    other = tmp_path / "mydata"
    shutil.copytree(beir_dir, other)
    with pytest.raises(InputError, match="task"):
        load_source(DataSpec(str(other)))
    with pytest.raises(InputError, match="no such file"):
        load_source(DataSpec(str(tmp_path / "nope.jsonl")))


def test_plan_draws_each_batch_from_one_source_with_weighted_counts():
    sizes, weights, batch = [40, 16, 24], [1.0, 2.0, 0.5], 8
    plan = BatchPlan(sizes, weights, batch, seed=3)
    assert plan.per_epoch == (5, 4, 1)
    epoch = [plan.rows(t) for t in range(plan.steps_per_epoch)]
    assert Counter(s for s, _ in epoch) == {0: 5, 1: 4, 2: 1}
    for source, rows in epoch:
        assert rows.shape == (batch,) and rows.min() >= 0 and rows.max() < sizes[source]
    # weight 1 and n divisible by the batch: an epoch shows every row of source 0 exactly once
    seen = np.concatenate([rows for s, rows in epoch if s == 0])
    assert sorted(seen.tolist()) == list(range(40))
    # weight 2: source 1's 16 rows appear twice per epoch, each batch without repeats
    assert Counter(np.concatenate([r for s, r in epoch if s == 1]).tolist()) == dict.fromkeys(range(16), 2)


def test_plan_is_a_pure_function_of_seed_and_step():
    a = BatchPlan([30, 50], [1.0, 1.0], 4, seed=7)
    b = BatchPlan([30, 50], [1.0, 1.0], 4, seed=7)
    later = [b.rows(t) for t in (25, 3, 40)]  # visited out of order, across the epoch boundary
    for t, (source, rows) in zip((25, 3, 40), later, strict=True):
        s, r = a.rows(t)
        assert s == source and np.array_equal(r, rows)
    assert not all(np.array_equal(a.rows(t)[1], BatchPlan([30, 50], [1.0, 1.0], 4, seed=8).rows(t)[1]) for t in range(5))


def test_plan_refuses_a_source_smaller_than_the_batch():
    with pytest.raises(InputError, match="batch_size"):
        BatchPlan([3], [1.0], 4, seed=0)


def test_negatives_are_sampled_per_step_and_shards_are_contiguous():
    rng = np.random.default_rng(0)
    ex = Example("t", "q", "p", ("a", "b", "c", "d"))
    picked = choose_negatives(ex, 2, rng)
    assert len(picked.negatives) == 2 and set(picked.negatives) <= set(ex.negatives)
    assert choose_negatives(ex, 9, rng) == ex
    examples = tuple(Example("t", f"q{i}", f"p{i}", tuple(f"n{i}{j}" for j in range(3))) for i in range(8))
    from e5rag.training.data import Source

    sources = [Source(DataSpec("x"), examples)]
    plan = BatchPlan([8], [1.0], 8, seed=0)
    batch = make_batch(sources, plan, 5, hard_negatives=1)
    assert batch == make_batch(sources, plan, 5, hard_negatives=1)
    assert all(len(e.negatives) == 1 and e.negatives[0][:2] == "n" + e.query[1:] for e in batch.examples)
    assert batch.shard(0, 2) + batch.shard(1, 2) == batch.examples
