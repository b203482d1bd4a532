"""Milvus Lite file handling: one process at a time, surviving a killed writer, refused files and types."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from e5rag.indexers import Document, StoreError, StoreInputError, open_store  # noqa: E402
from e5rag.indexers.milvus_store import MilvusStore  # noqa: E402

pytestmark = pytest.mark.milvus

# The writer commits 200 documents, says so, writes 50 more without committing and waits to be killed.
WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from e5rag.indexers import Document
    from e5rag.indexers.milvus_store import MilvusStore

    def unit(n, seed):
        v = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    store = MilvusStore(sys.argv[1], collection="docs")
    store.initialize(16, {"base": "writer"})
    store.upsert([Document(f"c{i}", f"committed {i}", metadata={"i": i}) for i in range(200)], unit(200, 0))
    store.commit()
    print("COMMITTED", flush=True)
    store.upsert([Document(f"u{i}", "uncommitted") for i in range(50)], unit(50, 1))
    print("WROTE_MORE", flush=True)
    time.sleep(120)
""")


def committed_vectors() -> np.ndarray:
    v = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_killed_writer_keeps_committed_rows_and_blocks_other_processes(tmp_path, capfd):
    path = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert lines == ["COMMITTED", "WROTE_MORE"], lines
        capfd.readouterr()
        for readonly in (False, True):  # Milvus Lite locks readers out too
            with pytest.raises(StoreError, match="in use by another process"):
                MilvusStore(path, collection="docs", readonly=readonly)
        assert "Traceback" not in capfd.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with MilvusStore(path, collection="docs", readonly=True) as store:
        assert store.manifest.model == {"base": "writer"} and store.manifest.dim == 16
        expected = [Document(f"c{i}", f"committed {i}", metadata={"i": i}) for i in range(200)]
        assert store.get([d.id for d in expected]) == expected
        assert 200 <= store.count() <= 250  # uncommitted rows may or may not have survived
        hits = store.search(committed_vectors(), 1)
        assert [row[0].document.id for row in hits] == [d.id for d in expected]


def test_same_process_shares_the_file_and_releases_it(tmp_path):
    path = tmp_path / "shared.db"
    first = MilvusStore(path, collection="a")
    second = MilvusStore(path, collection="b")  # same process: one server, no "in use" error
    first.close()
    second.initialize(4, {})
    second.close()
    # the last close stopped the server and released the lock: another process can open the index
    code = "import sys; from e5rag.indexers.milvus_store import MilvusStore; " \
           "print(MilvusStore(sys.argv[1], collection='b', readonly=True).manifest.dim)"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "4", out.stderr


def test_milvus_lite_2_files_and_foreign_directories_are_refused(tmp_path):
    old = tmp_path / "old.db"
    sqlite3.connect(old).execute("CREATE TABLE collection_meta (x)").connection.close()  # a 2.x file is SQLite
    for readonly in (False, True):
        with pytest.raises(StoreError, match="Milvus Lite 2.x"):
            MilvusStore(old, readonly=readonly)
    faiss_dir = tmp_path / "faiss.db"
    faiss_dir.mkdir()
    (faiss_dir / "CURRENT").write_text("gen-000001")
    with pytest.raises(StoreError, match="not a Milvus Lite index.*--store faiss"):
        open_store(faiss_dir)
    assert sorted(p.name for p in faiss_dir.iterdir()) == ["CURRENT"]


def test_readonly_open_of_a_missing_index_creates_nothing(tmp_path):
    path = tmp_path / "sub" / "missing.db"
    with pytest.raises(StoreError, match=r"no index at .*missing\.db: build one with `e5rag index"):
        open_store(path, readonly=True)
    assert not path.parent.exists()


@pytest.mark.parametrize("index_type", ["IVF_PQ", "DISKANN", "GPU_CAGRA", "SCANN", "ivf_pq"])
def test_index_types_lite_never_builds_are_refused(tmp_path, index_type):
    path = tmp_path / "refused.db"
    with pytest.raises(StoreInputError, match="not built by Milvus Lite.*FLAT"):
        MilvusStore(path, index_type=index_type)
    assert not path.exists()  # refused before anything was created


def test_unknown_index_type_lists_the_choices(tmp_path):
    with pytest.raises(StoreInputError, match="unknown Milvus index_type 'Flat,IVF'.*HNSW"):
        MilvusStore(tmp_path / "x.db", index_type="Flat,IVF")


def test_parent_directories_are_created_for_a_new_index(tmp_path):
    path = tmp_path / "a" / "b" / "new.db"
    with MilvusStore(path) as store:
        store.initialize(4, {"base": "m"})
        store.upsert([Document("x", "y")], np.eye(1, 4, dtype=np.float32))
        store.commit()
    with MilvusStore(path, readonly=True) as store:
        assert store.get(["x"]) == [Document("x", "y")]


@pytest.mark.parametrize(("index_type", "alias"), [("FLAT", False), ("HNSW", False), ("FLAT", True)])
def test_a_truncated_segment_index_file_is_rebuilt_and_no_row_is_lost(tmp_path, index_type, alias, caplog):
    """Lite writes a segment's index file in place, in a background thread after each flush: a process
    killed during that write leaves it truncated, and Lite alone then fails every load of the index.
    The store rebuilds the index files from the committed segments instead (``milvus_local``)."""
    from e5rag.indexers import milvus_local

    path, vectors = tmp_path / "cut.db", committed_vectors()
    docs = [Document(f"c{i}", f"committed {i}", metadata={"i": i}) for i in range(200)]
    real = "docs__g1" if alias else "docs"  # after a reindex, the name is an alias of a generation
    with MilvusStore(path, collection=real, index_type=index_type) as store:
        store.initialize(16, {"base": "cut"})
        for lo, hi in ((0, 120), (120, 200)):  # two flushes: two segments, one index file each
            store.upsert(docs[lo:hi], vectors[lo:hi])
            store.commit()
        expected = store.search(vectors[:8], k=5)
        if alias:
            store._client.create_alias(real, "docs")
    files = milvus_local.index_files(path, real)
    assert len(files) == 2
    whole = files[1].read_bytes()
    files[1].write_bytes(whole[: len(whole) // 3])  # what a SIGKILL in the middle of the write leaves

    for readonly in (False, True):  # a reader repairs too: tests/retriever/test_reindex.py (index-save)
        caplog.clear()
        with MilvusStore(path, collection="docs", readonly=readonly) as store:
            assert store.count() == 200
            got = store.search(vectors[:8], k=5)
            assert [[h.document.id for h in row] for row in got] == [[h.document.id for h in row] for row in expected]
            assert np.allclose([[h.score for h in row] for row in got], [[h.score for h in row] for row in expected],
                               atol=1e-5)
            assert store.get(["c150"])[0].text == "committed 150"
        repaired = [r.getMessage() for r in caplog.records if "rebuilding its" in r.getMessage()]
        assert len(repaired) == (0 if readonly else 1), repaired  # the first open rebuilt them for good
    assert files[1].stat().st_size >= len(whole) * 0.9


def test_a_load_failure_with_no_index_file_to_rebuild_stays_an_error(tmp_path):
    """Only the derived index files are ever removed: damage to the committed rows themselves is reported."""
    path = tmp_path / "bad.db"
    with MilvusStore(path, collection="docs") as store:
        store.initialize(16, {"base": "bad"})
        store.upsert([Document("a", "a")], committed_vectors()[:1])
        store.commit()
    segments = [p for p in (path / "collections" / "docs").rglob("*") if p.is_file() and p.suffix == ".parquet"]
    assert segments, sorted(p.name for p in (path / "collections" / "docs").rglob("*"))
    for p in segments:
        p.write_bytes(b"")
    with pytest.raises(StoreError, match="could not"):
        with MilvusStore(path, collection="docs", readonly=True) as store:
            store.search(committed_vectors()[:1], k=1)
