"""The FAISS store's linear-cost commits (issue 17): a commit appends a segment inside the live
generation, segments merge by level, compaction rewrites the base; every state equals a numpy model
of the live documents, bytes per commit do not grow with the store, kills leave the last commit."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from e5rag.cli import main as cli_main
from e5rag.indexers import Document, open_store
from e5rag.indexers.segments import COMPACT_SHARE, FANOUT, Layout, compaction_due, merge_run

DIM = 16


def unit(rng, n, dim=DIM):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def wchar() -> int:
    """Bytes this process has handed to write()/pwrite() so far (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def listing(path: Path) -> tuple[list[str], list[tuple[str, int, int]]]:
    """(segment files on disk, (file, rows, level) the live database lists), read without e5rag."""
    gen = path / (path / "CURRENT").read_text().strip()
    conn = sqlite3.connect(gen / "docs.sqlite")
    try:
        listed = conn.execute("SELECT file, rows, level FROM segments ORDER BY seq").fetchall()
    finally:
        conn.close()
    return sorted(p.name for p in gen.glob("seg-*.npz")), listed


# ------------------------------------------------------------------------------------- the rules
def test_compaction_is_due_past_the_share_of_the_base():
    assert not compaction_due(Layout(base_rows=1000, segment_rows=0, segments=0, dead=0))
    assert not compaction_due(Layout(1000, int(COMPACT_SHARE * 1000) - 10, 3, 10))
    assert compaction_due(Layout(1000, int(COMPACT_SHARE * 1000), 3, 1))
    assert compaction_due(Layout(0, 1, 1, 0))  # anything appended to an empty base


def test_merge_run_merges_fanout_segments_of_one_level_at_the_tail():
    assert merge_run([0] * (FANOUT - 1)) == 0
    assert merge_run([0] * FANOUT) == FANOUT
    assert merge_run([1] * FANOUT + [0] * (FANOUT - 1)) == 0
    assert merge_run([2, 1, 1] + [0] * FANOUT) == FANOUT
    assert merge_run([2] + [1] * FANOUT) == FANOUT


# ------------------------------------------------------------------------------- bytes per commit
def _bytes_per_commit(path: Path, base: int, commits: int, batch: int) -> tuple[float, int]:
    """Mean bytes written by ``commits`` commits of ``batch`` new documents on a store of ``base`` documents,
    and the size of the store's base index file."""
    rng = np.random.default_rng(base)
    text = "a passage of a few words about something " * 4
    with open_store(path) as store:
        store.initialize(64, {"base": "m"})
        for start in range(0, base, 2000):  # built in commits of 2,000, compacting as it grows
            n = min(2000, base - start)
            store.upsert([Document(f"b{start + i}", f"{text}{start + i}") for i in range(n)], unit(rng, n, 64))
            store.commit()
        store.compact(force=True)
        gen = path / (path / "CURRENT").read_text().strip()
        base_size = (gen / "index.faiss").stat().st_size
        written = []
        for c in range(commits):
            docs = [Document(f"n{c}-{i}", f"{text}{c} {i}") for i in range(batch)]
            store.upsert(docs, unit(rng, batch, 64))
            before = wchar()
            store.commit()
            written.append(wchar() - before)
        assert (path / "CURRENT").read_text().strip() == gen.name  # every commit appended, none compacted
        return float(np.mean(written)), base_size


def test_bytes_written_per_commit_do_not_grow_with_the_store(tmp_path):
    # 4 commits of 50 stay under the compaction share of both bases, so each commit is an append
    small, small_base = _bytes_per_commit(tmp_path / "1k", 1_000, 4, 50)
    large, large_base = _bytes_per_commit(tmp_path / "10k", 10_000, 4, 50)
    assert large_base > 9 * small_base  # the stores really differ tenfold
    # a generation per commit (the previous design) wrote at least the base file every time
    assert large < large_base / 10
    assert large < 1.5 * small, (small, large)
    vectors = 50 * 64 * 4
    assert large < 20 * vectors  # the segment, its rows in SQLite (text, BM25) and the WAL's syncs


# -------------------------------------------------------------------- every state equals numpy
@pytest.mark.parametrize(("index_type", "exact"), [("Flat", {}), ("HNSW16", {"ef": 600}), ("IVF4,Flat", {"nprobe": 4})])
def test_random_writes_through_appends_merges_and_compactions_equal_numpy(tmp_path, index_type, exact):
    rng = np.random.default_rng(7)
    path = tmp_path / "idx"
    model: dict[str, tuple[str, np.ndarray]] = {}  # id -> (text, vector): what the index must hold
    seen_levels, seen_generations, seen_dead = set(), set(), 0
    with open_store(path, index_type=index_type) as store:
        store.initialize(DIM, {"base": "m"})
        vecs = unit(rng, 400)
        store.upsert([Document(f"d{i}", f"first {i}") for i in range(400)], vecs)
        model.update((f"d{i}", (f"first {i}", vecs[i])) for i in range(400))
        store.commit()
        for step in range(40):
            n = int(rng.integers(1, 12))
            ids = [f"d{int(i)}" for i in rng.choice(500, size=n, replace=False)]  # new ids and replaced ones
            vecs = unit(rng, n)
            store.upsert([Document(i, f"step {step} {i}") for i in ids], vecs)
            model.update((i, (f"step {step} {i}", v)) for i, v in zip(ids, vecs, strict=True))
            if step % 3 == 0:
                gone = [i for i in rng.choice(sorted(model), size=3, replace=False)]
                assert store.delete(gone + ["never-there"]) == 3
                for i in gone:
                    del model[i]
            store.commit()
            _, listed = listing(path)
            seen_levels |= {level for _, _, level in listed}
            seen_generations.add((path / "CURRENT").read_text())
            seen_dead = max(seen_dead, store._layout.dead)
    # the run went through all three mechanisms
    assert max(seen_levels) >= 1 and len(seen_generations) >= 2 and seen_dead > 0
    on_disk, listed = listing(path)
    assert on_disk == sorted(f for f, _, _ in listed)  # merged files are gone, nothing unlisted is left
    ids = sorted(model)
    want = np.stack([model[i][1] for i in ids])
    queries = unit(rng, 5)
    with open_store(path, readonly=True) as store:
        assert store.count() == len(model) and sorted(store.ids()) == ids
        assert [d.text for d in store.get(ids)] == [model[i][0] for i in ids]
        got = store.get_vectors(ids)
        np.testing.assert_array_equal(np.stack([got[i] for i in ids]), want)
        scores = queries @ want.T
        for q, hits in enumerate(store.search(queries, k=10, **exact)):
            expected = [ids[j] for j in np.argsort(-scores[q], kind="stable")[:10]]
            assert [h.document.id for h in hits] == expected
            np.testing.assert_allclose([h.score for h in hits], np.sort(scores[q])[::-1][:10], rtol=1e-5, atol=1e-6)


def test_segment_files_stay_logarithmic_in_the_commits(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "idx"
    with open_store(path) as store:
        store.initialize(DIM, {"base": "m"})
        store.upsert([Document(f"b{i}", "base") for i in range(4000)], unit(rng, 4000))
        store.commit()
        for c in range(64):  # 64 commits of 10: 640 appended vectors, under the compaction share of 4,000
            store.upsert([Document(f"n{c}-{i}", "new") for i in range(10)], unit(rng, 10))
            store.commit()
    on_disk, listed = listing(path)
    # 64 = FANOUT**3 appends merge into one level-3 segment; every level-0 file was merged away
    assert [(rows, level) for _, rows, level in listed] == [(640, 3)]
    assert on_disk == [listed[0][0]]
    with open_store(path, readonly=True) as store:
        assert store.count() == 4640


def test_compact_command_rewrites_the_base_and_drops_dead_vectors(tmp_path, capsys):
    rng = np.random.default_rng(5)
    path = tmp_path / "idx"
    with open_store(path, index_type="HNSW16") as store:
        store.initialize(DIM, {"base": "m"})
        vecs = unit(rng, 100)
        store.upsert([Document(f"d{i}", "x") for i in range(100)], vecs)
        store.commit()
        store.upsert([Document("d1", "y")], unit(rng, 1))
        store.delete(["d2"])
        store.commit()
        assert len(store._masked) == 2 and store._layout.dead == 2  # HNSW cannot remove: masked at search
    assert cli_main(["info", "--index", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["storage"] == {"base_vectors": 100, "segments": 1,
                                                              "appended_vectors": 1, "dead_vectors": 2}
    assert cli_main(["info", "--index", str(path)]) == 0
    assert re.search(r"^storage +100 vectors in the base, 1 appended in 1 segment\(s\), 2 replaced or deleted "
                     r"\(dropped at the next compaction\)$", capsys.readouterr().out, re.M)
    gen = (path / "CURRENT").read_text().strip()
    assert cli_main(["compact", "--index", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["segments"], report["dead"], report["vectors"]) == (1, 2, 99)
    assert (path / "CURRENT").read_text().strip() != gen and listing(path) == ([], [])
    assert cli_main(["info", "--index", str(path)]) == 0
    assert re.search(r"^storage +99 vectors in the base$", capsys.readouterr().out, re.M)
    with open_store(path, readonly=True) as store:
        assert store.count() == 99 and store._index.ntotal == 99 and not store._masked
        hits = store.search(vecs[2:3], k=3)[0]
        assert "d2" not in [h.document.id for h in hits]
    assert cli_main(["compact", "--index", str(tmp_path / "none")]) == 2
    assert "no index at" in capsys.readouterr().err and not (tmp_path / "none").exists()


# ------------------------------------------------------------------------ the older one-file layout
def _legacy_index(path: Path, vecs: np.ndarray) -> None:
    """An index as e5rag wrote it before segments (one generation per commit), made with sqlite3 and faiss."""
    import faiss

    gen = path / "gen-000001"
    gen.mkdir(parents=True)
    index = faiss.IndexIDMap2(faiss.index_factory(DIM, "Flat", faiss.METRIC_INNER_PRODUCT))
    index.add_with_ids(vecs, np.arange(1, len(vecs) + 1, dtype=np.int64))
    faiss.write_index(index, str(gen / "index.faiss"))
    conn = sqlite3.connect(gen / "docs.sqlite")
    conn.execute("CREATE TABLE docs (iid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
                 "title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', "
                 "hash TEXT NOT NULL)")
    conn.executemany("INSERT INTO docs (iid, id, text, hash) VALUES (?, ?, ?, ?)",
                     [(i + 1, f"d{i}", f"old {i}", "h") for i in range(len(vecs))])
    conn.commit()
    conn.close()
    (gen / "manifest.json").write_text(json.dumps({"format_version": 1, "store": "faiss", "dim": DIM, "metric": "ip",
                                                   "index_type": "Flat", "count": len(vecs), "model": {"base": "m"}}))
    (path / "CURRENT").write_text("gen-000001")


def test_an_index_of_the_older_layout_is_read_and_migrated_by_its_first_write(tmp_path):
    rng = np.random.default_rng(9)
    path = tmp_path / "old"
    vecs = unit(rng, 30)
    _legacy_index(path, vecs)
    with open_store(path, readonly=True) as store:
        assert store.count() == 30 and store._layout is None
        assert store.search(vecs[3:4], k=1)[0][0].document.id == "d3"
    with open_store(path) as store:
        store.upsert([Document("d0", "new 0")], vecs[5:6])
        store.commit()
    assert (path / "CURRENT").read_text().strip() == "gen-000002"
    with open_store(path, readonly=True) as store:
        assert store._layout == Layout(30, 0, 0, 0)
        got = store.get_vectors(["d0", "d7"])
        np.testing.assert_array_equal(got["d0"], vecs[5])
        np.testing.assert_array_equal(got["d7"], vecs[7])
        assert store.get(["d0", "d7"])[0].text == "new 0" and store.keyword_search(["old 7"], k=1)[0]


# ------------------------------------------------------------------------------------ real kills
_APPENDER = textwrap.dedent("""
    import sys, numpy as np
    from e5rag.indexers import Document, open_store
    store = open_store(sys.argv[1])
    print("ready", flush=True)
    for round_ in range(int(sys.argv[2])):  # each commit rewrites d0..d29: text and vector name the round
        vecs = np.zeros((30, 16), np.float32)
        vecs[:, 0], vecs[:, 1] = round_ + 1, np.arange(30)
        store.upsert([Document(f"d{i}", f"round {round_}") for i in range(30)], vecs)
        store.commit()
""")


def _check_consistent(path: Path, total: int) -> int:
    with open_store(path, readonly=True) as store:
        assert store.count() == total
        texts = {d.text for d in store.get([f"d{i}" for i in range(30)])}
        assert len(texts) == 1, texts  # one committed round, never a mix
        (text,) = texts
        n = int(text.split()[1]) if text.startswith("round ") else -1
        if n >= 0:
            vecs = store.get_vectors([f"d{i}" for i in range(30)])
            assert all(vecs[f"d{i}"][:2].tolist() == [n + 1, i] for i in range(30))
        return n


@pytest.mark.parametrize("delay", [0.5, 1.3, 2.1])
def test_sigkill_during_appending_commits_leaves_the_last_commit(tmp_path, delay):
    path = tmp_path / "idx"
    rng = np.random.default_rng(0)
    with open_store(path) as store:
        store.initialize(16, {"base": "m"})
        store.upsert([Document(f"d{i}", "start") for i in range(3000)], rng.normal(size=(3000, 16)).astype(np.float32))
        store.commit()
    proc = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), "100000"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _check_consistent(path, 3000) >= -1
    # the next writer cleans what the dead one left and goes on from the last commit
    subprocess.run([sys.executable, "-c", _APPENDER, str(path), "1"], check=True, capture_output=True)
    assert _check_consistent(path, 3000) == 0
    on_disk, listed = listing(path)
    assert on_disk == sorted(f for f, _, _ in listed)
