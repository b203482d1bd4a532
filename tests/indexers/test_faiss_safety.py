"""FAISS index folders as an attacker or a careless user meets them: foreign files are never removed,
paths from the folder's own files never leave it, damage is one clear error, readers never see a
torn publish (real subprocesses), new folders honour the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from e5rag.indexers import Document, StoreError, StoreInputError, open_store

DIM = 8


def build(path, n=5, text="t"):
    rng = np.random.default_rng(0)
    with open_store(path, store="faiss") as store:
        if store.manifest is None:
            store.initialize(DIM, {"base": "m"})
        store.upsert([Document(f"d{i}", f"{text} {i}") for i in range(n)], rng.normal(size=(n, DIM)).astype(np.float32))
        store.commit()


def snapshot_tree(root):
    """Every path under root with its bytes (files) or None (folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


# ---------------------------------------------------------------- 1: foreign files are never removed
def test_a_non_index_folder_is_refused_and_left_untouched(tmp_path):
    user = tmp_path / "mine"
    (user / "gen-2024-photos").mkdir(parents=True)
    (user / "gen-2024-photos" / "beach.jpg").write_bytes(b"\xff\xd8 photo")
    (user / "gen-notes.txt").write_text("my notes")
    (user / ".tmp-draft.md").write_text("draft")
    before = snapshot_tree(user)
    with pytest.raises(StoreError, match="not an e5rag FAISS index.*new or empty folder"):
        open_store(user)
    with pytest.raises(StoreError, match="not an e5rag FAISS index"):
        open_store(user, readonly=True)
    assert snapshot_tree(user) == before


def test_only_recorded_entries_are_cleaned_inside_an_index(tmp_path):
    path = tmp_path / "idx"
    build(path)
    # Look-alikes e5rag did not make, put in the index folder by a user: kept through writes and cleanups.
    (path / "gen-999999").mkdir()
    (path / "gen-999999" / "keep.txt").write_text("mine")
    (path / "gen-notes.txt").write_text("mine")
    (path / ".tmp-draft.md").write_text("mine")
    build(path, text="again")
    build(path, text="third")
    assert (path / "gen-999999" / "keep.txt").read_text() == "mine"
    assert (path / "gen-notes.txt").read_text() == "mine" and (path / ".tmp-draft.md").read_text() == "mine"
    with open_store(path, readonly=True) as store:
        assert store.get(["d0"])[0].text == "third 0"


def test_journal_entries_outside_the_pattern_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("precious")
    path = tmp_path / "idx"
    build(path)
    (path / ".e5rag-journal.json").write_text(json.dumps({"created": ["../outside", "../outside/notes.txt",
                                                                       "/etc", "gen-1/../../outside"]}))
    build(path, text="again")
    assert (outside / "notes.txt").read_text() == "precious"


def test_a_killed_writers_recorded_leftovers_are_removed(tmp_path):
    path = tmp_path / "idx"
    build(path)
    # Commits append inside the live generation; a whole new one is written by compaction: die just before
    # it is published (the work folder is complete and recorded, CURRENT still names the old generation).
    script = textwrap.dedent("""
        import os, sys, numpy as np
        from e5rag.indexers import Document, atomic, open_store
        atomic.publish = lambda *args: os._exit(0)  # dies here, without cleanup
        store = open_store(sys.argv[1])
        store.upsert([Document("x", "dirty")], np.ones((1, 8), np.float32))
        store.compact(force=True)
    """)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    assert any(p.name.startswith(".tmp-") for p in path.iterdir())
    build(path, text="after")  # (replacing all five documents of six: a commit that compacts too)
    live = (path / "CURRENT").read_text().strip()
    assert sorted(p.name for p in path.iterdir() if p.name != ".lock") == ["CURRENT", "e5rag-index.json", live]
    with open_store(path, readonly=True) as store:  # the dead writer's committed upsert ("x") survived
        assert store.count() == 6 and store.get(["x"])[0].text == "dirty"


def test_a_segment_written_but_never_committed_is_removed_by_the_next_writer(tmp_path):
    path = tmp_path / "idx"
    build(path)
    script = textwrap.dedent("""
        import os, sys, numpy as np
        from e5rag.indexers import Document, docstore, open_store
        docstore.DocStore.add_segment = lambda *args: os._exit(0)  # dies after the file, before the transaction
        store = open_store(sys.argv[1])
        store.upsert([Document("x", "dirty")], np.ones((1, 8), np.float32))
        store.commit()
    """)
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    assert (path / "gen-000001" / "seg-000001.npz").is_file()
    with open_store(path, readonly=True) as store:  # never listed, so never read
        assert store.count() == 5 and store.get(["x"]) == [None]
    build(path, n=2, text="after")  # the next writer removes it, then writes its own segment 1
    with open_store(path, readonly=True) as store:
        assert store.count() == 5 and store.get(["x"]) == [None] and store.get(["d1"])[0].text == "after 1"
        assert store.get_vectors(["d1"])["d1"].tolist() == \
            np.random.default_rng(0).normal(size=(2, DIM)).astype(np.float32)[1].tolist()


def test_an_index_written_before_the_marker_still_opens_and_gets_one(tmp_path):
    path = tmp_path / "old"
    build(path)
    (path / "e5rag-index.json").unlink()  # what an index written by an earlier e5rag looks like
    with open_store(path, readonly=True) as store:
        assert store.count() == 5
    build(path, text="new")
    assert json.loads((path / "e5rag-index.json").read_text())["format"] == "e5rag-faiss"


# ---------------------------------------------------------------- 2: paths stay inside the folder
@pytest.mark.parametrize("current", ["../outside/x", "../outside", "/tmp", "gen-000001/../../outside", "", "gen-1"])
def test_current_that_is_not_a_generation_name_is_damage_and_never_followed(tmp_path, current):
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "notes.txt").write_text("precious")
    path = tmp_path / "idx"
    build(path)
    build(path, text="again")
    (path / "CURRENT").write_text(current)
    for readonly in (True, False):
        with pytest.raises(StoreError, match="is damaged: CURRENT holds .*not a generation name"):
            open_store(path, readonly=readonly)
    assert (outside / "notes.txt").read_text() == "precious" and (outside / "x").is_dir()


def test_a_generation_that_is_a_symlink_out_of_the_folder_is_refused(tmp_path):
    path = tmp_path / "idx"
    build(path)
    elsewhere = tmp_path / "elsewhere"
    os.rename(path / "gen-000001", elsewhere)
    os.symlink(elsewhere, path / "gen-000001")
    with pytest.raises(StoreError, match="damaged: CURRENT names gen-000001, which is missing or not a folder"):
        open_store(path, readonly=True)
    with pytest.raises(StoreError, match="damaged"):
        open_store(path)
    assert (elsewhere / "docs.sqlite").is_file()


def test_a_file_of_a_generation_that_is_a_symlink_is_refused(tmp_path):
    path = tmp_path / "idx"
    build(path)
    secret = tmp_path / "secret.sqlite"
    os.rename(path / "gen-000001" / "docs.sqlite", secret)
    os.symlink(secret, path / "gen-000001" / "docs.sqlite")
    with pytest.raises(StoreError, match="damaged: gen-000001/docs.sqlite is a symbolic link"):
        open_store(path, readonly=True)


# ---------------------------------------------------------------- 5: no torn reads during publishes
_PUBLISHER = textwrap.dedent("""
    import sys, numpy as np
    from e5rag.indexers import Document, open_store
    changed = int(sys.argv[2])
    store = open_store(sys.argv[1])
    print("ready", flush=True)
    for round_ in range(100000):  # each commit rewrites the first `changed` documents: text and vector say the round
        vecs = np.zeros((changed, 8), np.float32)
        vecs[:, 0], vecs[:, 1] = round_ + 1, np.arange(changed)
        store.upsert([Document(f"d{i}", f"round {round_}") for i in range(changed)], vecs)
        store.commit()
""")

_READER = textwrap.dedent("""
    import sys
    from e5rag.indexers import open_store
    total, changed = int(sys.argv[3]), int(sys.argv[4])
    failures, rounds = [], set()
    for _ in range(int(sys.argv[2])):
        try:
            with open_store(sys.argv[1], readonly=True) as store:
                ids = [f"d{i}" for i in range(changed)]
                texts = {d.text for d in store.get(ids)}
                assert store.count() == total and len(texts) == 1, f"mixed states: {sorted(texts)[:3]}"
                (text,) = texts
                if text.startswith("round "):
                    n = int(text.split()[1])
                    vecs = store.get_vectors(ids)
                    assert all(vecs[f"d{i}"][:2].tolist() == [n + 1, i] for i in range(changed)), "vector of another round"
                    rounds.add(n)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    print(len(failures), len(rounds), flush=True)
    for f in failures[:5]:
        print(f, flush=True)
""")


# (20, 20): every commit replaces the whole index, so each one compacts into a new generation;
# (2000, 10): commits append segments in the live generation, merge them and now and then compact.
@pytest.mark.parametrize(("total", "changed"), [(20, 20), (2000, 10)])
def test_readers_never_see_a_torn_publish(tmp_path, total, changed):
    path = tmp_path / "busy"
    build(path, n=total)
    writer = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(path), str(changed)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        r = subprocess.run([sys.executable, "-c", _READER, str(path), "1200", str(total), str(changed)],
                           capture_output=True, text=True, timeout=300)
    finally:
        writer.kill()
        writer.wait()
    assert r.returncode == 0, r.stderr
    failures, rounds = map(int, r.stdout.split("\n")[0].split())
    assert failures == 0, r.stdout
    # the writer really committed many times while the reader opened (a loaded CI host commits less)
    assert rounds >= 5


# ---------------------------------------------------------------- 6: damaged folders are one clear error
def _damage_manifest_empty(gen):
    (gen / "manifest.json").write_bytes(b"")


def _damage_manifest_truncated(gen):
    raw = (gen / "manifest.json").read_bytes()
    (gen / "manifest.json").write_bytes(raw[:len(raw) // 2])


def _damage_manifest_garbage(gen):
    (gen / "manifest.json").write_bytes(b"\x00\xff garbage")


def _damage_manifest_no_dim(gen):
    m = json.loads((gen / "manifest.json").read_text())
    del m["dim"]
    (gen / "manifest.json").write_text(json.dumps(m))


def _damage_manifest_missing(gen):
    (gen / "manifest.json").unlink()


def _damage_docs_garbage(gen):
    (gen / "docs.sqlite").write_bytes(b"this is not a database" * 100)


def _damage_docs_missing(gen):
    (gen / "docs.sqlite").unlink()


def _damage_index_truncated(gen):
    raw = (gen / "index.faiss").read_bytes()
    (gen / "index.faiss").write_bytes(raw[:len(raw) // 2])


@pytest.mark.parametrize(("damage", "message"), [
    (_damage_manifest_empty, "gen-000001/manifest.json is not valid JSON"),
    (_damage_manifest_truncated, "gen-000001/manifest.json is not valid JSON"),
    (_damage_manifest_garbage, "gen-000001/manifest.json is not valid JSON"),
    (_damage_manifest_no_dim, "gen-000001/manifest.json has no valid dim"),
    (_damage_manifest_missing, "gen-000001/manifest.json is missing"),
    (_damage_docs_garbage, "gen-000001/docs.sqlite is missing or not an e5rag document database"),
    (_damage_docs_missing, "gen-000001/docs.sqlite is missing"),
    (_damage_index_truncated, "gen-000001/index.faiss cannot be read by FAISS"),
])
def test_damaged_files_are_one_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "idx"
    build(path)
    damage(path / "gen-000001")
    before = snapshot_tree(path)
    for readonly in (True, False):
        with pytest.raises(StoreError) as info:
            open_store(path, readonly=readonly)
        text = str(info.value)
        assert message in text and f"index {path} is damaged" in text and "rebuild" in text
        assert "\n" not in text
    assert {k: v for k, v in snapshot_tree(path).items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"}


# ---------------------------------------------------------------- 7: umask, foreign stores, index types
def test_generation_folders_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        build(tmp_path / "idx")
    finally:
        os.umask(old)
    gen = tmp_path / "idx" / "gen-000001"
    assert stat.S_IMODE(gen.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "idx").stat().st_mode) == 0o755


def test_faiss_refuses_a_milvus_lite_folder(tmp_path):
    pytest.importorskip("milvus_lite")
    lite = tmp_path / "lite.db"
    with open_store(lite) as store:
        store.initialize(DIM, {"base": "m"})
        store.upsert([Document("a", "x")], np.ones((1, DIM), np.float32))
        store.commit()
    before = snapshot_tree(lite)
    with pytest.raises(StoreError, match="not an e5rag FAISS index.*Milvus Lite index: pass --store milvus"):
        open_store(lite, store="faiss")
    assert snapshot_tree(lite).keys() == before.keys()


def test_milvus_refuses_a_faiss_folder(tmp_path):
    pytest.importorskip("milvus_lite")
    path = tmp_path / "faiss.db"
    build(path)
    with pytest.raises(StoreError, match="not a Milvus Lite index.*FAISS index: pass --store faiss"):
        open_store(path, store="milvus")


def test_a_bad_index_type_is_refused_at_open_and_leaves_nothing(tmp_path):
    path = tmp_path / "new" / "idx"
    with pytest.raises(StoreInputError, match="cannot build index type 'NotAnIndex'") as caught:
        open_store(path, index_type="NotAnIndex")
    # FAISS's own words, without the C++ signature and source line it prefixes them with
    assert "could not parse index string NotAnIndex" in str(caught.value) and "Error in" not in str(caught.value)
    assert not (tmp_path / "new").exists()
    with open_store(path, index_type="PQ4") as store:  # valid at some dimensions (divisible by 4): accepted
        assert store.manifest is None
    assert not (tmp_path / "new").exists()  # nothing was written, so nothing was created
