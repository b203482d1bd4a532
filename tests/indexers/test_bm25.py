"""BM25 in the FAISS store (SQLite FTS5): scores against a hand-written Okapi BM25, kept in step with the
vectors under upsert/delete, old indexes rebuilt from their texts, and a killed writer never splits them."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter

import numpy as np
import pytest

from e5rag.indexers import Document, StoreError, atomic, open_store
from e5rag.indexers.bm25 import match_expression, query_tokens

DIM = 8
# Words the Porter stemmer leaves as they are, so the hand-written tokenizer below (lower-case, split
# on non-letters) is FTS5's "porter unicode61" on this corpus. "the" is in 5 of 6 documents: its
# idf is negative and FTS5 floors it at 1e-6.
CORPUS = [
    ("d0", "Cat", "the cat sat on the mat with the cat"),
    ("d1", "", "the dog and the cat"),
    ("d2", "Fish", "the red fish in the sea"),
    ("d3", "", "a bird on a tree by the sea sea sea"),
    ("d4", "Sun", "the sun and the moon"),
    ("d5", "", "RED moon, red sun: a red sky"),
]


def okapi(corpus, query, k1=1.2, b=0.75):
    """Okapi BM25 as SQLite FTS5 defines it: title and text one field, idf = ln((N-n+.5)/(n+.5)) floored
    at 1e-6, summed over the query's distinct terms. -> {doc id: score} for documents with a term"""
    toks = {i: [w.lower() for w in (title + " " + text).replace(",", " ").replace(":", " ").split()]
            for i, title, text in corpus}
    n_docs = len(toks)
    avgdl = sum(len(t) for t in toks.values()) / n_docs
    scores: dict[str, float] = {}
    for term in dict.fromkeys(query.lower().split()):
        df = sum(term in t for t in toks.values())
        if df == 0:
            continue
        idf = max(math.log((n_docs - df + 0.5) / (df + 0.5)), 1e-6)
        for i, t in toks.items():
            tf = Counter(t)[term]
            if tf:
                scores[i] = scores.get(i, 0.0) + idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(t) / avgdl))
    return scores


def build(path, corpus=CORPUS):
    store = open_store(path)
    store.initialize(DIM, {"base": "test"})
    rng = np.random.default_rng(0)
    store.upsert([Document(i, text, title) for i, title, text in corpus], rng.normal(size=(len(corpus), DIM)))
    store.commit()
    return store


def as_scores(hits):
    return {h.document.id: h.score for h in hits}


def assert_matches_okapi(store, corpus, queries):
    for q in queries:
        want = okapi(corpus, q)
        hits = store.keyword_search([q], k=len(corpus))[0]
        got = as_scores(hits)
        assert set(got) == set(want), q
        for i in want:
            assert got[i] == pytest.approx(want[i], rel=1e-9), (q, i)
        assert [h.score for h in hits] == sorted(got.values(), reverse=True)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


QUERIES = ["cat", "red sea", "the moon", "sea sea bird", "Red RED sky", "cat dog fish bird sun"]


def test_scores_equal_hand_written_okapi(tmp_path):
    with build(tmp_path / "idx") as store:
        assert_matches_okapi(store, CORPUS, QUERIES)
        assert store.keyword_search(["unknownword", "?!"], k=3) == [[], []]
        want = okapi(CORPUS, "red")
        top = store.keyword_search(["red"], k=1)[0]
        assert [h.document.id for h in top] == [max(want, key=want.get)]


def test_query_text_is_never_fts5_syntax(tmp_path):
    assert match_expression('cat OR "dog" NEAR(x) title:fish -sun*') == \
        '"cat" OR "or" OR "dog" OR "near" OR "x" OR "title" OR "fish" OR "sun"'
    assert query_tokens("Ünïcode_snake 42") == ["ünïcode", "snake", "42"]
    with build(tmp_path / "idx") as store:
        assert as_scores(store.keyword_search(['cat AND (dog'], k=6)[0]) == pytest.approx(okapi(CORPUS, "cat and dog"))
        # Porter stemming on both sides: "cats" finds the documents that say "cat"
        assert set(as_scores(store.keyword_search(["cats"], k=6)[0])) == set(okapi(CORPUS, "cat")) and "d0" in as_scores(store.keyword_search(["cats"], k=6)[0])


def test_upsert_and_delete_keep_bm25_and_vectors_in_step(tmp_path):
    store = build(tmp_path / "idx")
    corpus = dict((i, (i, t, x)) for i, t, x in CORPUS)
    changed = [("d1", "", "a fish and a bird"), ("d6", "Tree", "tree tree red")]
    store.upsert([Document(i, x, t) for i, t, x in changed], np.ones((2, DIM), np.float32))
    store.delete(["d4", "missing"])
    corpus.update((i, (i, t, x)) for i, t, x in changed)
    del corpus["d4"]
    live = list(corpus.values())
    assert_matches_okapi(store, live, QUERIES + ["tree", "dog"])  # uncommitted writes are searchable too
    store.commit()
    store.close()
    with open_store(tmp_path / "idx", readonly=True) as ro:
        assert_matches_okapi(ro, live, QUERIES + ["tree", "dog"])
        ids = {d for d, _, _ in live}
        assert ro.count() == len(ids) == ro._index.ntotal
        every = {h.document.id for h in ro.keyword_search(["the a red sea tree fish cat moon sky"], k=50)[0]}
        assert every <= ids and {h.document.id for h in ro.search(np.ones((1, DIM), np.float32), k=50)[0]} == ids


def test_keyword_search_filter(tmp_path):
    store = open_store(tmp_path / "idx")
    store.initialize(DIM, {"base": "test"})
    docs = [Document(f"x{i}", f"red {'red ' * i}apple", metadata={"g": i % 2}) for i in range(6)]
    store.upsert(docs, np.ones((6, DIM), np.float32))
    store.commit()
    hits = store.keyword_search(["red"], k=2, filter='metadata["g"] == 1')[0]
    everything = store.keyword_search(["red"], k=6)[0]
    assert [h.document.id for h in hits] == [h.document.id for h in everything if h.document.metadata["g"] == 1][:2]
    store.close()


def _drop_fts(path):
    """Make an index look like one built before BM25 existed: no FTS table, no triggers."""
    gen = atomic.current_generation(path)
    conn = sqlite3.connect(gen / "docs.sqlite")
    for name in ("docs_fts_insert", "docs_fts_delete", "docs_fts_update"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE docs_fts")
    conn.commit()
    conn.close()


def test_old_index_gets_bm25_rebuilt_from_stored_texts(tmp_path):
    build(tmp_path / "old").close()
    _drop_fts(tmp_path / "old")
    with open_store(tmp_path / "old", readonly=True) as ro:
        with pytest.raises(StoreError, match="rebuild-bm25"):
            ro.keyword_search(["cat"], k=3)
        vectors_before = ro._index.index.reconstruct_n(0, ro._index.ntotal)
    with open_store(tmp_path / "old") as store:
        store.rebuild_keyword_index()
        store.commit()
    with open_store(tmp_path / "old", readonly=True) as ro:
        assert_matches_okapi(ro, CORPUS, QUERIES)
        np.testing.assert_array_equal(ro._index.index.reconstruct_n(0, ro._index.ntotal), vectors_before)


def _integrity_ok(path) -> None:
    """FTS5's own check that the index equals its content table (needs a writable copy)."""
    gen = atomic.current_generation(path)
    conn = sqlite3.connect(gen / "docs.sqlite")
    try:
        conn.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.rollback()
        conn.close()


_LOOPER = textwrap.dedent("""
    import sys, numpy as np
    from e5rag.indexers import Document, open_store
    store = open_store(sys.argv[1])
    if store.manifest is None:
        store.initialize(8, {"base": "m"})
    rng = np.random.default_rng(0)
    print("ready", flush=True)
    for r in range(100000):  # each commit: 300 documents saying "roundR", the ids of round R-1 deleted
        store.upsert([Document(f"r{r}-{i}", f"word{i} round{r}") for i in range(300)],
                     rng.normal(size=(300, 8)).astype(np.float32))
        store.delete([f"r{r - 1}-{i}" for i in range(300)])
        store.commit()
        if r == 1:
            print("committed", flush=True)
""")


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_killed_commit_leaves_bm25_and_vectors_consistent(tmp_path, delay):
    path = tmp_path / "loop"
    proc = subprocess.Popen([sys.executable, "-c", _LOOPER, str(path)], env=dict(os.environ),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip() == "committed"  # two rounds published; kill during later ones
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _integrity_ok(path)
    with open_store(path, readonly=True) as store:
        docs = [d for row in store.keyword_search(["word7"], k=10) for d in row]
        assert len(docs) == 1  # exactly one round is live
        live_round = docs[0].document.text.split()[1]
        hits = store.keyword_search([live_round], k=1000)[0]
        assert len(hits) == store.count() == store._index.ntotal == 300
        vec_ids = {h.document.id for h in store.search(np.ones((1, 8), np.float32), k=1000)[0]}
        assert vec_ids == {h.document.id for h in hits}
