"""``reindex``: an index built with a "base" tiny model is re-embedded with a "new" one (another seed)
from the texts it stores, on real FAISS and Milvus Lite; killed at several points it leaves the old
index as it was and resumes; a reader process never sees an error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_model

from e5rag.indexers import Document, open_store
from e5rag.indexers.staging import FAISS_STAGING_DIR
from e5rag.retriever.encoder import Encoder
from e5rag.retriever.reindex import estimate, reindex
from e5rag.retriever.search import SearchIndex

REPO = Path(__file__).resolve().parents[2]
WORDS = ("vaccine immune cell protein market rate bond city river capital energy plant light claim evidence "
         "study trial dose risk gene").split()
KINDS = ["faiss", pytest.param("milvus", marks=pytest.mark.milvus)]


def make_docs(n: int, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    return [Document(f"doc-{i}", " ".join(rng.choice(WORDS, size=int(rng.integers(4, 14)))),
                     title=f"Title {i}" if i % 3 else "", metadata={"i": i, "even": i % 2 == 0}) for i in range(n)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(base, new): two same-shape tiny models with different weights."""
    root = tmp_path_factory.mktemp("models")
    return save_tiny_model(root / "base", seed=0), save_tiny_model(root / "new", seed=11)


@pytest.fixture(scope="module")
def encoders(models):
    return tuple(Encoder.from_pretrained(m, max_length=32) for m in models)


def location_for(kind: str, tmp_path: Path, name: str = "idx") -> Path:
    if kind == "milvus":
        pytest.importorskip("milvus_lite")
        return tmp_path / f"{name}.db"
    return tmp_path / name


def build(location: Path, encoder: Encoder, docs: list[Document], chunking=None) -> None:
    """An index of ``docs`` stored whole (``chunking=None``: each document one passage), or chunked."""
    with SearchIndex(encoder, open_store(location), writing=True) as index:
        index.add(docs, chunking=chunking)


def assert_index_serves(location: Path, encoder: Encoder, docs: list[Document]) -> None:
    """Count, documents, model record and vectors equal what ``encoder`` makes of ``docs``
    (each document's own vector finds it first with score 1; scores equal numpy's)."""
    expected = encoder.encode_document([d.text for d in docs], [d.title for d in docs])
    with open_store(location, readonly=True) as store:
        assert store.count() == len(docs)
        assert store.get([d.id for d in docs]) == docs
        assert store.manifest.model["base"] == encoder.fingerprint.base
        assert store.manifest.dim == encoder.dim
        hits = store.search(expected, k=3)
    assert [row[0].document.id for row in hits] == [d.id for d in docs]
    np.testing.assert_allclose([row[0].score for row in hits], 1.0, atol=1e-4)
    by_id = {d.id: i for i, d in enumerate(docs)}
    for qi, row in enumerate(hits):
        want = expected[qi] @ expected[[by_id[h.document.id] for h in row]].T
        np.testing.assert_allclose([h.score for h in row], want, atol=1e-4)


def snapshot(location: Path, kind: str, encoder: Encoder, docs: list[Document]):
    """What a reader sees: manifest, documents and top-5 hits of fixed queries (old model)."""
    queries = encoder.encode_query(["immune response to a vaccine", "interest rate of bonds"])
    with open_store(location, readonly=True) as store:
        hits = store.search(queries, k=5)
        return (store.manifest.to_dict(), store.get([d.id for d in docs]),
                [[(h.document.id, round(h.score, 5)) for h in row] for row in hits])


def test_a_chunked_index_reindexes_to_the_fresh_chunked_index(tmp_path, encoders, models):
    """Every stored passage (chunk) is re-embedded from its stored text and title: the result is
    the index the new model builds from the same documents (both models share the tokenizer)."""
    from e5rag.retriever.chunking import ChunkConfig

    base, new = encoders
    docs = make_docs(12, seed=3)
    chunking = ChunkConfig(24, 4)
    location, fresh = tmp_path / "chunked", tmp_path / "fresh-chunked"
    build(location, base, docs, chunking)
    build(fresh, new, docs, chunking)
    with open_store(fresh, readonly=True) as b:
        assert b.count() > len(docs)  # some documents really are chunked
    report = reindex(location, new, model_source=str(models[1]), batch_size=4)
    queries = new.encode_query(["vaccine trial dose", "capital city river"])
    with open_store(location, readonly=True) as a, open_store(fresh, readonly=True) as b:
        assert report.total == a.count() == b.count()
        got, want = a.search(queries, k=8), b.search(queries, k=8)
    assert [[h.document for h in r] for r in got] == [[h.document for h in r] for r in want]
    np.testing.assert_allclose([[h.score for h in r] for r in got], [[h.score for h in r] for r in want], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_reindex_equals_a_fresh_index_with_the_new_model(kind, tmp_path, encoders, models):
    base, new = encoders
    docs = make_docs(40)
    location = location_for(kind, tmp_path)
    build(location, base, docs)
    report = reindex(location, new, model_source=str(models[1]), batch_size=4, commit_every=16)
    assert (report.total, report.embedded, report.resumed, report.removed, report.switched) == (40, 40, 0, 0, True)
    assert_index_serves(location, new, docs)
    fresh = location_for(kind, tmp_path, "fresh")
    build(fresh, new, docs)
    queries = new.encode_query(["vaccine trial dose", "capital city river", "gene study evidence"])
    with open_store(location, readonly=True) as a, open_store(fresh, readonly=True) as b:
        assert a.manifest.model["base"] == b.manifest.model["base"] and a.count() == b.count()
        assert a.manifest.model["source"] == str(models[1].resolve())
        got, want = a.search(queries, k=10), b.search(queries, k=10)
    assert [[h.document for h in r] for r in got] == [[h.document for h in r] for r in want]
    np.testing.assert_allclose([[h.score for h in r] for r in got], [[h.score for h in r] for r in want], atol=1e-5)
    # The rebuilt index loads its new model by itself; running reindex again has nothing to do.
    with SearchIndex.open(location) as index:
        assert index.encoder.fingerprint.same_model(new.fingerprint)
    again = reindex(location, new, model_source=str(models[1]))
    assert (again.embedded, again.switched) == (0, False)
    if kind == "faiss":
        assert not (location / FAISS_STAGING_DIR).exists()
    else:
        with open_store(location) as store:
            names = store._client.list_collections()
        assert names == ["e5rag__g1"], names  # the old generation was dropped after the switch


def test_documents_deleted_or_changed_after_a_kill_are_followed(tmp_path, encoders, models):
    """Resuming compares content hashes: staged copies of deleted documents go, changed ones are redone."""
    base, new = encoders
    docs = make_docs(30)
    location = tmp_path / "idx"
    build(location, base, docs)
    from e5rag.indexers.staging import open_staging
    from e5rag.retriever.search import model_record

    with open_store(location) as source:  # what a run killed after staging 20 documents leaves
        staging = open_staging(source)
        staging.store.initialize(new.dim, model_record(new, str(models[1])))
        staging.store.upsert(docs[:20], new.encode_document([d.text for d in docs[:20]], [d.title for d in docs[:20]]))
        staging.store.commit()
        staging.close()
    changed = Document("doc-3", "a changed text about river energy", "New title", {"i": 3})
    with SearchIndex(base, open_store(location), writing=True) as index:
        index.delete(["doc-0", "doc-1"])
        index.add([changed], chunking=None)
    now = [changed if d.id == "doc-3" else d for d in docs[2:]]
    report = reindex(location, new, model_source=str(models[1]), batch_size=4, commit_every=8)
    assert (report.resumed, report.embedded, report.removed, report.total) == (17, 11, 2, 28)
    assert_index_serves(location, new, sorted(now, key=lambda d: int(d.id.split("-")[1])))


@pytest.fixture(scope="module")
def forker(models):
    """Runs ``e5rag reindex`` in forked child processes (see ``reindex_forker``): one interpreter start
    for every kill point instead of one each."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("reindex_forker.py")), str(models[0])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)


@pytest.fixture
def run_reindex(forker, tmp_path):
    """Run ``e5rag reindex --json`` in a child; ``point``/``n``: where it SIGKILLs itself."""
    runs = iter(range(1000))

    def run(location: Path, model: Path, *extra: str, point: str | None = None, n: int = 0):
        i = next(runs)
        out, err = tmp_path / f"run{i}.out", tmp_path / f"run{i}.err"
        argv = ["reindex", "--index", str(location), "--model", str(model), "--batch-size", "2",
                "--commit-every", "6", "--json", *extra]
        request = {"argv": argv, "point": point, "n": n, "stdout": str(out), "stderr": str(err)}
        forker.stdin.write(json.dumps(request) + "\n")
        forker.stdin.flush()
        reply = json.loads(forker.stdout.readline())
        code = -reply["signal"] if "signal" in reply else reply["code"]
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    return run


def staged_count(location: Path, kind: str) -> int:
    if kind == "faiss":
        staging = location / FAISS_STAGING_DIR
        if not (staging / "CURRENT").is_file():
            return 0
        with open_store(staging, readonly=True) as store:
            return store.count()
    from e5rag.indexers.milvus_store import MilvusStore
    from e5rag.indexers.staging import milvus_live_collection

    with MilvusStore(location) as live:  # a writable open of a missing collection creates nothing
        names = live._client.list_collections()
        serving = milvus_live_collection(live) if live.manifest is not None else None
    staged = [n for n in names if n.startswith("e5rag__g") and n != serving and n != "e5rag__g0"]
    if not staged:
        return 0
    with MilvusStore(location, collection=staged[-1], readonly=True) as store:
        return store.count()


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_several_points_keeps_the_old_index_and_the_rerun_resumes(kind, tmp_path, encoders, models,
                                                                              run_reindex):
    base, new = encoders
    docs = make_docs(36)
    points = [("commit", 1), ("commit", 4), ("before-switch", 0), ("after-switch", 0)]
    for point, n in points + ([("mid-switch", 0), ("index-save", 0)] if kind == "milvus" else []):
        location = location_for(kind, tmp_path, f"idx-{point}-{n}")
        build(location, base, docs)
        before = snapshot(location, kind, base, docs)
        killed = run_reindex(location, models[1], point=point, n=n)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        staged = staged_count(location, kind)
        if point == "after-switch":  # the switch had happened: the index already serves the new model
            assert_index_serves(location, new, docs)
        elif point == "mid-switch":  # the name is gone for a moment; the rerun finishes the switch
            assert staged == len(docs)
        else:
            assert snapshot(location, kind, base, docs) == before  # untouched, and searchable
            least = {"commit": 6 * n, "index-save": 6}.get(point, len(docs))  # index-save: after the 1st flush
            assert staged >= least, (point, staged)
        rerun = run_reindex(location, models[1])
        assert rerun.returncode == 0, rerun.stderr
        report = json.loads(rerun.stdout)
        if point in ("after-switch", "mid-switch"):
            assert (report["embedded"], report["switched"]) == (0, False)
        else:
            assert report["resumed"] == staged and report["embedded"] == len(docs) - staged, (point, report)
            assert report["switched"] and report["total"] == len(docs)
        assert_index_serves(location, new, docs)
        assert staged_count(location, kind) == 0


READER = textwrap.dedent("""
    import sys, time, json
    import numpy as np
    from e5rag.indexers import open_store

    location, stop_file = sys.argv[1], sys.argv[2]
    q = np.eye(32, dtype=np.float32)[:4]
    searches, errors, bases = 0, [], set()
    import os
    while not os.path.exists(stop_file):
        try:
            with open_store(location, readonly=True) as store:
                hits = store.search(q, k=3)
                assert all(len(row) == 3 for row in hits), hits
                bases.add(store.manifest.model["base"])
            searches += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"searches": searches, "errors": errors, "bases": sorted(bases)}))
""")


def test_a_reader_process_searching_during_the_reindex_never_errors(tmp_path, encoders, models, run_reindex):
    base, new = encoders
    docs = make_docs(60)
    location = tmp_path / "idx"
    build(location, base, docs)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(location), str(stop)], stdout=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(1.0)
        result = run_reindex(location, models[1])
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    seen = json.loads(out)
    assert seen["errors"] == [] and seen["searches"] > 10
    assert seen["bases"] == sorted({base.fingerprint.base, new.fingerprint.base})  # it saw the switch
    assert_index_serves(location, new, docs)


@pytest.mark.parametrize("kind", KINDS)
def test_dry_run_counts_and_estimates_without_writing(kind, tmp_path, encoders, models, run_reindex):
    base, new = encoders
    docs = make_docs(50)
    location = location_for(kind, tmp_path)
    build(location, base, docs)
    before = snapshot(location, kind, base, docs)
    est = estimate(location, new, batch_size=4, sample=20)
    assert (est.plan.total, est.plan.staged, est.plan.todo, est.plan.up_to_date) == (50, 0, 50, False)
    assert est.sample == 16 and est.docs_per_s > 0  # the first batch of 4 warms up, the rest is timed
    assert est.eta_s == pytest.approx(50 / est.docs_per_s)
    assert snapshot(location, kind, base, docs) == before
    assert staged_count(location, kind) == 0
    killed = run_reindex(location, models[1], point="commit", n=2)
    assert killed.returncode == -signal.SIGKILL
    staged = staged_count(location, kind)
    r = run_reindex(location, models[1], "--dry-run")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["total"], report["staged"], report["todo"]) == (50, staged, 50 - staged) and staged >= 12
    assert report["docs_per_s"] > 0 and report["eta_s"] == pytest.approx(report["todo"] / report["docs_per_s"],
                                                                          rel=0.05)
    assert staged_count(location, kind) == staged
    assert est.plan.todo and estimate(location, base).plan.up_to_date
    r = run_reindex(location, models[1], "--discard")
    assert r.returncode == 0 and f"removed the staged rebuild of {location} ({staged} documents)" in r.stderr
    assert staged_count(location, kind) == 0 and snapshot(location, kind, base, docs) == before
    r = run_reindex(location, models[1], "--discard")
    assert r.returncode == 0 and "has no staged rebuild" in r.stderr


def test_progress_bar_shows_documents_per_second(tmp_path, encoders, models, capsys):
    base, new = encoders
    location = tmp_path / "idx"
    build(location, base, make_docs(20))
    capsys.readouterr()
    reindex(location, new, batch_size=4, commit_every=8, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "reindex" in err and "20/20" in err and "doc/s" in err


def test_cli_reindex_report_and_bad_input(tmp_path, encoders, models, capsys):
    from e5rag.cli import main

    base, _ = encoders
    location = tmp_path / "idx"
    build(location, base, make_docs(12))
    assert main(["reindex", "--index", str(location), "--model", str(models[1]), "--dry-run"]) == 0
    assert "would re-embed 12 of 12 documents" in capsys.readouterr().err
    assert main(["reindex", "--index", str(location), "--model", str(models[1])]) == 0
    err = capsys.readouterr().err
    assert "reindexed" in err and "12 documents re-embedded" in err and "docs/s" in err
    assert main(["reindex", "--index", str(location), "--model", str(models[1])]) == 0
    assert "nothing to re-embed" in capsys.readouterr().err
    assert main(["reindex", "--index", str(tmp_path / "missing"), "--model", str(models[1])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("e5rag: error: no index at") and not (tmp_path / "missing").exists()


SERVER_URI = os.environ.get("E5RAG_MILVUS_URI")


@pytest.mark.milvus
@pytest.mark.skipif(not SERVER_URI, reason="set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
def test_reindex_on_a_milvus_server_switches_the_alias_twice(encoders, models):
    import uuid

    base, new = encoders
    docs = make_docs(30)
    name = f"e5rag_reindex_{uuid.uuid4().hex[:10]}"
    opts = {"collection": name}
    try:
        with SearchIndex(base, open_store(SERVER_URI, **opts), writing=True) as index:
            index.add(docs, chunking=None)
        first = reindex(SERVER_URI, new, store_options=opts, model_source=str(models[1]), commit_every=8)
        # and back again: the second switch moves the alias from generation 1 to 2
        second = reindex(SERVER_URI, base, store_options=opts, model_source=str(models[0]), commit_every=8)
        assert (first.embedded, first.switched, second.embedded, second.switched) == (30, True, 30, True)
        expected = base.encode_document([d.text for d in docs], [d.title for d in docs])
        with open_store(SERVER_URI, readonly=True, **opts) as store:
            assert store.count() == 30 and store.manifest.model["base"] == base.fingerprint.base
            assert store.get([d.id for d in docs]) == docs
            hits = store.search(expected, k=1)
            names = [n for n in store._client.list_collections() if n.startswith(name)]
        assert [row[0].document.id for row in hits] == [d.id for d in docs]
        assert names == [f"{name}__g2"]
    finally:
        from pymilvus import MilvusClient

        client = MilvusClient(SERVER_URI)
        for alias in client.list_aliases(f"{name}__g2").get("aliases", []) if client.has_collection(f"{name}__g2") else []:
            client.drop_alias(alias)
        for n in client.list_collections():
            if n == name or n.startswith(f"{name}__g"):
                client.drop_collection(n)
        client.close()
