"""FAISS store: results against numpy brute force, upsert/delete/reopen, crash safety, locking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from e5rag.indexers import Document, StoreError, StoreInputError, UnsupportedFilterError, open_store

DIM = 16


def unit(rng, n, dim=DIM):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def docs_for(n, prefix="d"):
    return [Document(f"{prefix}{i}", f"text {i}", f"title {i}", {"group": i % 3, "lang": "en" if i % 2 else "de"})
            for i in range(n)]


def brute_force(q, vecs, ids, k):
    scores = q @ vecs.T
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(ids[i], float(row[i])) for i in order])
    return out


def assert_same_results(hits, expected):
    """Tie-aware: scores match rank by rank; ids match wherever the score is not tied."""
    for got, want in zip(hits, expected, strict=True):
        assert len(got) == len(want)
        np.testing.assert_allclose([h.score for h in got], [s for _, s in want], atol=1e-5)
        for h, (wid, ws) in zip(got, want, strict=True):
            if sum(abs(s - ws) < 1e-6 for _, s in want) == 1:
                assert h.document.id == wid


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32,Flat", "IVF4,Flat"])
def test_search_equals_numpy_brute_force(tmp_path, index_type):
    rng = np.random.default_rng(0)
    vecs, queries = unit(rng, 300), unit(rng, 7)
    docs = docs_for(300)
    store = open_store(tmp_path / "idx", index_type=index_type)
    store.initialize(DIM, {"base": "test"})
    store.upsert(docs, vecs)
    store.commit()
    ids = [d.id for d in docs]
    if index_type.startswith("IVF"):
        store.set_search_params(nprobe=4)  # all lists: exact
    if index_type.startswith("HNSW"):
        store.set_search_params(efSearch=300)
    hits = store.search(queries, k=10)
    assert_same_results(hits, brute_force(queries, vecs, ids, 10))
    assert [h.rank for h in hits[0]] == list(range(1, 11))
    store.close()


def test_upsert_delete_get_count_and_reopen(tmp_path):
    rng = np.random.default_rng(1)
    vecs = unit(rng, 20)
    path = tmp_path / "idx"
    with open_store(path) as store:
        store.initialize(DIM, {"base": "m"})
        store.upsert(docs_for(20), vecs)
        store.commit()
        new_vec = unit(rng, 1)
        store.upsert([Document("d3", "replaced", "", {"v": 2})], new_vec)
        assert store.delete(["d5", "d6", "missing"]) == 2
        store.commit()
    with open_store(path, readonly=True) as store:
        assert store.count() == 18
        d3, d5 = store.get(["d3", "d5"])
        assert d3.text == "replaced" and d3.metadata == {"v": 2} and d5 is None
        top = store.search(new_vec, k=1)[0][0]
        assert top.document.id == "d3" and top.score == pytest.approx(1.0, abs=1e-5)
        assert store.manifest.model == {"base": "m"} and store.manifest.count == 18
        ids = {h.document.id for h in store.search(vecs, k=20)[0]}
        assert "d5" not in ids and "d6" not in ids and len(ids) == 18


def test_hnsw_delete_rebuilds_without_removed(tmp_path):
    rng = np.random.default_rng(2)
    vecs = unit(rng, 40)
    with open_store(tmp_path / "h", index_type="HNSW16") as store:
        store.initialize(DIM, {"base": "m"})
        store.upsert(docs_for(40), vecs)
        store.commit()
        store.delete(["d0"])
        store.upsert([Document("d1", "new")], vecs[:1])
        store.commit()
        hits = store.search(vecs[:1], k=40)[0]
        assert "d0" not in [h.document.id for h in hits]
        assert hits[0].document.id == "d1" and store.count() == 39


def test_filters_equal_numpy_on_subset(tmp_path):
    rng = np.random.default_rng(3)
    vecs, q = unit(rng, 60), unit(rng, 2)
    docs = docs_for(60)
    with open_store(tmp_path / "f") as store:
        store.initialize(DIM, {"base": "m"})
        store.upsert(docs, vecs)
        store.commit()
        keep = [i for i, d in enumerate(docs) if d.metadata["group"] == 1 and d.metadata["lang"] == "en"]
        hits = store.search(q, k=5, filter='metadata["group"] == 1 and metadata["lang"] == "en"')
        assert_same_results(hits, brute_force(q, vecs[keep], [docs[i].id for i in keep], 5))
        keep_in = [i for i, d in enumerate(docs) if d.metadata["group"] in (0, 2)]
        hits = store.search(q, k=5, filter='metadata["group"] in [0, 2]')
        assert_same_results(hits, brute_force(q, vecs[keep_in], [docs[i].id for i in keep_in], 5))
        assert store.search(q, k=5, filter='metadata["group"] == "1"') == [[], []]  # a string is not a number
        with pytest.raises(UnsupportedFilterError, match="function call"):
            store.search(q, k=5, filter='len(metadata) >= 2')


def test_wrong_dimension_and_bad_input(tmp_path):
    with open_store(tmp_path / "x") as store:
        store.initialize(DIM, {"base": "m"})
        with pytest.raises(StoreInputError, match="dimension 8 but this index holds dimension 16"):
            store.upsert(docs_for(2), np.ones((2, 8), np.float32))
        with pytest.raises(StoreInputError, match="appears twice"):
            store.upsert([Document("a", "x"), Document("a", "y")], np.ones((2, DIM), np.float32))
        with pytest.raises(StoreInputError, match="NaN"):
            store.upsert(docs_for(1), np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(StoreError, match="no index at"):
        open_store(tmp_path / "missing", readonly=True)
    with open_store(tmp_path / "flat") as store:
        store.initialize(DIM, {})
        with pytest.raises(StoreInputError, match="no search parameter 'nprobe'"):
            store.set_search_params(nprobe=4)
    with pytest.raises(StoreInputError, match="cannot build index type"):
        open_store(tmp_path / "bad", index_type="NotAnIndex").initialize(DIM, {})


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "locked"
    with open_store(path) as store:
        store.initialize(DIM, {"base": "m"})
        with pytest.raises(StoreError, match="in use by another writing process"):
            open_store(path)
        open_store(path.parent / "other").close()


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from e5rag.indexers import Document, open_store
    path, phase = sys.argv[1], sys.argv[2]
    store = open_store(path)
    if store.manifest is None:
        store.initialize(16, {"base": "m"})
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 16)).astype(np.float32)
    if phase == "first":
        store.upsert([Document(f"a{i}", "first") for i in range(50)], v)
        store.commit()
        print("committed", flush=True)
    else:
        store.upsert([Document(f"a{i}", "second") for i in range(50)], v)
        store.delete(["a0"])
        print("dirty", flush=True)
        import time; time.sleep(60)  # killed here, before commit
""")


def test_killed_writer_leaves_previous_index_intact(tmp_path):
    path = str(tmp_path / "crash")
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", _WRITER, path, "first"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, path, "second"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "dirty"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open_store(path, readonly=True) as store:
        assert store.count() == 50
        assert {d.text for d in store.get([f"a{i}" for i in range(50)])} == {"first"}
    with open_store(path) as store:  # a later writer cleans the dead one's work folder and can write
        store.upsert([Document("b", "after")], np.ones((1, 16), np.float32))
        store.commit()
        assert store.count() == 51
    # the later writer appended to the live generation: one segment with its one vector, nothing of the dead one's
    assert sorted(p for p in os.listdir(path) if not p.startswith(".lock")) == ["CURRENT", "e5rag-index.json", "gen-000001"]
    assert sorted(os.listdir(Path(path) / "gen-000001")) == ["docs.sqlite", "index.faiss", "manifest.json",
                                                               "seg-000001.npz"]


_LOOPER = textwrap.dedent("""
    import sys, numpy as np
    from e5rag.indexers import Document, open_store
    store = open_store(sys.argv[1])
    if store.manifest is None:
        store.initialize(64, {"base": "m"})
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2000, 64)).astype(np.float32)
    print("ready", flush=True)
    for round_ in range(1000):  # every commit rewrites all 2000 documents with one round number
        store.upsert([Document(f"a{i}", f"round {round_}") for i in range(2000)], v)
        store.commit()
""")


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.9])
def test_kill_during_commits_never_leaves_a_half_written_index(tmp_path, delay):
    path = str(tmp_path / "loop")
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", _LOOPER, path], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        store = open_store(path, readonly=True)
    except StoreError as exc:  # killed before the very first commit: nothing was ever published
        assert "no index" in str(exc)
        return
    with store:
        docs = store.get([f"a{i}" for i in range(2000)])
        assert store.count() == 2000 and all(d is not None for d in docs)
        assert len({d.text for d in docs}) == 1  # one whole round, never a mix
        assert len(store.search(np.ones((1, 64), np.float32), k=5)[0]) == 5


def test_an_ivf_index_with_too_few_vectors_says_so_in_faiss_words(tmp_path):
    rng = np.random.default_rng(4)
    with open_store(tmp_path / "ivf", index_type="IVF16,Flat") as store:
        store.initialize(DIM, {"base": "m"})
        store.upsert(docs_for(4), unit(rng, 4))
        with pytest.raises(StoreInputError, match=r"could not be trained on 4 vectors") as caught:
            store.commit()
    message = str(caught.value)
    assert "Number of training points (4) should be at least as large as number of clusters (16)" in message
    assert "Error in" not in message and "faiss::" not in message
    assert not (tmp_path / "ivf" / "CURRENT").exists()  # nothing was published
