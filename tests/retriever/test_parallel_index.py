"""`torchrun --nproc_per_node 2 -m e5rag index` (gloo) builds the index one process builds: same ids,
FAISS row ids and commits, vectors within float tolerance; a killed rank fails the job, the last commit
stays searchable and the same command resumes. Also `--shard I/N` and its refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from e5rag.indexers import open_store
from e5rag.retriever.parallel_index import Shard, shard_of, slice_bounds

REPO = Path(__file__).resolve().parents[2]
SERVER_URI = os.environ.get("E5RAG_MILVUS_URI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def write_corpus(path: Path, n: int, start: int = 0) -> Path:
    rng = np.random.default_rng(start)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
    with open(path, "w") as fh:
        for i in range(start, start + n):
            text = " ".join(rng.choice(words, size=int(rng.integers(3, 40))))
            fh.write(json.dumps({"_id": f"doc{i}", "title": f"t{i % 5}", "text": text, "n": i}) + "\n")
    return path


def index_args(corpus, index, model, *extra, chunk: bool = False) -> list[str]:
    """The CLI's index command; whole documents (--no-chunk) unless ``chunk``, so vectors can be
    checked against a direct encode of each document."""
    return ["index", str(corpus), "--index", str(index), "--model", str(model), "--max-length", "64",
            "--batch-size", "4", "--json", *([] if chunk else ["--no-chunk"]), *map(str, extra)]


def torchrun(args: list[str], nproc: int = 2, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(_free_port()), "-m", "e5rag", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def one_process(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "e5rag", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300)


def faiss_contents(path: Path) -> dict[str, tuple[int, np.ndarray, str]]:
    """id -> (FAISS row id, stored vector, text), read through the store and its FAISS index."""
    with open_store(path, readonly=True) as store:
        rows = store._docs.conn.execute("SELECT id, iid, text FROM docs").fetchall()
        return {i: (iid, store._index.reconstruct(int(iid)), text) for i, iid, text in rows}


def milvus_contents(path: Path, collection: str | None = None) -> dict[str, tuple[np.ndarray, str]]:
    with open_store(str(path), store="milvus", readonly=True, **({"collection": collection} if collection else {})) as store:
        rows = store._client.query(store.collection, filter='id != ""', output_fields=["id", "vector", "text"])
        return {r["id"]: (np.asarray(r["vector"], np.float32), r["text"]) for r in rows}


def report_of(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, stdout  # only rank 0 reports
    return json.loads(lines[0])


def test_shards_are_disjoint_stable_and_cover_everything():
    ids = [f"doc{i}" for i in range(1000)]
    shards = [Shard(i, 3) for i in range(3)]
    owned = [{i for i in ids if shard_of(i, 3) == s.index} for s in shards]
    assert set().union(*owned) == set(ids) and sum(map(len, owned)) == len(ids)
    assert all(250 < len(o) < 420 for o in owned)  # balanced by the hash
    assert shard_of("doc7", 3) == int.from_bytes(__import__("hashlib").sha256(b"doc7").digest()[:8], "big") % 3
    assert Shard.parse("2/3") == Shard(2, 3)
    assert slice_bounds(10, 3) == [0, 3, 6, 10] and slice_bounds(1, 2) == [0, 0, 1]


@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_two_ranks_build_the_one_process_chunked_index(mistral_dir, tmp_path):
    """Long documents are chunked the same way under torchrun: the same passages (ids, texts,
    offsets, FAISS row ids) and vectors as one process; a document's passages share one commit."""
    corpus = write_corpus(tmp_path / "corpus.jsonl", 9)
    lines = corpus.read_text().splitlines()
    for i in (2, 5):  # two long documents, several passages each at 32 tokens
        row = json.loads(lines[i])
        row["text"] = " ".join([row["text"]] * 6)
        lines[i] = json.dumps(row)
    corpus.write_text("\n".join(lines) + "\n")
    args = ("--commit-every", 4, "--chunk-tokens", 32, "--chunk-overlap", 4)
    one = one_process(index_args(corpus, tmp_path / "one", mistral_dir, *args, chunk=True))
    assert one.returncode == 0, one.stderr
    proc = torchrun(index_args(corpus, tmp_path / "two", mistral_dir, *args, chunk=True))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert report_of(out) == report_of(one.stdout) | {"index": str(tmp_path / "two")}
    a, b = faiss_contents(tmp_path / "one"), faiss_contents(tmp_path / "two")
    assert sorted(a) == sorted(b) and any("#" in i for i in a) and len(a) > 9
    assert {i: (v[0], v[2]) for i, v in a.items()} == {i: (v[0], v[2]) for i, v in b.items()}
    for i in a:
        np.testing.assert_allclose(a[i][1], b[i][1], atol=2e-5)


@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_two_ranks_build_the_one_process_faiss_index(mistral_dir, tmp_path):
    from e5rag.retriever.encoder import Encoder

    corpus = write_corpus(tmp_path / "corpus.jsonl", 37)  # 37: commits of 8 end with an odd one
    one = one_process(index_args(corpus, tmp_path / "one", mistral_dir, "--commit-every", 8))
    assert one.returncode == 0, one.stderr
    proc = torchrun(index_args(corpus, tmp_path / "two", mistral_dir, "--commit-every", 8))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert report_of(out) == {"index": str(tmp_path / "two"), "added": 37, "updated": 0, "skipped": 0, "total": 37,
                               "metadata_updated": 0}

    a, b = faiss_contents(tmp_path / "one"), faiss_contents(tmp_path / "two")
    assert sorted(a) == sorted(b) and len(a) == 37
    assert {i: v[0] for i, v in a.items()} == {i: v[0] for i, v in b.items()}  # same FAISS row ids
    assert {i: v[2] for i, v in a.items()} == {i: v[2] for i, v in b.items()}
    # Vectors: both equal an independent encode of each document on its own (batch of one, no padding).
    encoder = Encoder.from_pretrained(mistral_dir, max_length=64)
    docs = [json.loads(ln) for ln in corpus.read_text().splitlines()]
    want = encoder.encode_document([d["text"] for d in docs], [d["title"] for d in docs], batch_size=1)
    for d, w in zip(docs, want, strict=True):
        np.testing.assert_allclose(b[d["_id"]][1], w, atol=2e-5)
        np.testing.assert_allclose(a[d["_id"]][1], w, atol=2e-5)

    # Rerun on 2 ranks with 3 changed and 5 new documents: only those are embedded.
    lines = corpus.read_text().splitlines()
    for i in (0, 10, 20):
        row = json.loads(lines[i])
        row["text"] += " changed"
        lines[i] = json.dumps(row)
    corpus.write_text("\n".join(lines) + "\n" + write_corpus(tmp_path / "new.jsonl", 5, start=37).read_text())
    proc = torchrun(index_args(corpus, tmp_path / "two", mistral_dir, "--commit-every", 8))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert report_of(out) == {
        "index": str(tmp_path / "two"), "added": 5, "updated": 3, "skipped": 34, "total": 42, "metadata_updated": 0}
    assert faiss_contents(tmp_path / "two")["doc10"][2].endswith(" changed")


@pytest.mark.multiprocess
@pytest.mark.milvus
@pytest.mark.timeout(600)
def test_two_ranks_build_the_one_process_milvus_lite_index(mistral_dir, tmp_path):
    pytest.importorskip("milvus_lite")
    corpus = write_corpus(tmp_path / "corpus.jsonl", 21)
    one = one_process(index_args(corpus, tmp_path / "one.db", mistral_dir, "--commit-every", 8))
    assert one.returncode == 0, one.stderr
    proc = torchrun(index_args(corpus, tmp_path / "two.db", mistral_dir, "--commit-every", 8))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert report_of(out)["total"] == 21
    a, b = milvus_contents(tmp_path / "one.db"), milvus_contents(tmp_path / "two.db")
    assert sorted(a) == sorted(b) == sorted(f"doc{i}" for i in range(21))
    for i in a:
        assert a[i][1] == b[i][1]
        np.testing.assert_allclose(a[i][0], b[i][0], atol=2e-5)


def _rank_pid(launcher: int, rank: int, timeout: float = 120) -> int:
    """The pid of torchrun's worker with RANK=rank (read from /proc)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for task in Path(f"/proc/{launcher}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"RANK={rank}".encode() in env:
                    return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} under {launcher}")


@pytest.mark.multiprocess
@pytest.mark.timeout(600)
def test_a_killed_rank_fails_the_job_keeps_the_last_commit_and_a_rerun_resumes(mistral_dir, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 400)
    index = tmp_path / "idx"
    proc = torchrun(index_args(corpus, index, mistral_dir, "--commit-every", 16))
    rank1 = _rank_pid(proc.pid, 1)
    deadline = time.time() + 240
    while not (index / "CURRENT").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(rank1, signal.SIGSTOP)  # freeze it at once, so the kill lands mid-job whatever the load
    time.sleep(0.5)
    os.kill(rank1, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, "the job must fail when a rank dies"
    # One line from rank 0 (stopped by torchrun, or told by gloo that its peer is gone), besides
    # torchrun's own report naming rank 1 as the root cause.
    ours = [ln for ln in err.splitlines() if ln.startswith("e5rag: error: ")]
    assert ours and ("stopped by the launcher" in ours[0] or "another process" in ours[0]), err[-3000:]
    assert "resume" in ours[0] and "parallel_index.py" not in err, err[-3000:]  # no traceback of ours

    # The last commit is intact and searchable: whole commits of 16, fewer than all 400.
    with open_store(index, readonly=True) as store:
        kept = store.count()
        assert 16 <= kept < 400 and kept % 16 == 0
        vec = store._index.reconstruct(int(store._docs.iids(["doc0"])["doc0"]))
        assert store.search(vec[None], 1)[0][0].document.id == "doc0"

    # The same command resumes: the committed documents are skipped, the rest embedded.
    proc = torchrun(index_args(corpus, index, mistral_dir, "--commit-every", 16))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert report_of(out) == {"index": str(index), "added": 400 - kept, "updated": 0, "skipped": kept, "total": 400,
                              "metadata_updated": 0}


def test_shard_is_refused_for_faiss_and_lite_and_parsed_strictly(mistral_dir, tmp_path, capsys):
    from e5rag.cli import main

    corpus = write_corpus(tmp_path / "c.jsonl", 3)
    for index, name in ((tmp_path / "f", "FAISS"), (tmp_path / "m.db", "Milvus Lite")):
        assert main(index_args(corpus, index, mistral_dir, "--shard", "0/2")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "only a Milvus server" in err and name in err
    for bad in ("2/2", "x", "1/0", "-1/3"):
        assert main(index_args(corpus, tmp_path / "f", mistral_dir, f"--shard={bad}")) == 2
        assert "--shard" in capsys.readouterr().err
    assert not (tmp_path / "f" / "CURRENT").exists()


@pytest.mark.multiprocess
@pytest.mark.skipif(not SERVER_URI, reason="set E5RAG_MILVUS_URI=http://host:19530 to run against a Milvus server")
@pytest.mark.timeout(600)
def test_milvus_server_two_ranks_and_shards_equal_one_process(mistral_dir, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 30)
    names = {k: f"t_par_{k}_{uuid.uuid4().hex[:8]}" for k in ("one", "ranks", "shards")}
    try:
        one = one_process([*index_args(corpus, SERVER_URI, mistral_dir), "--collection", names["one"]])
        assert one.returncode == 0, one.stderr
        proc = torchrun([*index_args(corpus, SERVER_URI, mistral_dir, "--commit-every", 4),
                         "--collection", names["ranks"]])
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert report_of(out)["total"] == 30
        # --shard I/N: three processes started at once, in no order, as a scheduler would.
        shards = [subprocess.Popen([sys.executable, "-m", "e5rag", *index_args(corpus, SERVER_URI, mistral_dir),
                                    "--collection", names["shards"], "--shard", f"{i}/3"], cwd=REPO, env=_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (2, 0, 1)]
        results = [p.communicate(timeout=300) for p in shards]
        assert all(p.returncode == 0 for p in shards), [r[1][-2000:] for r in results]
        a = milvus_contents(SERVER_URI, names["one"])
        for name in (names["ranks"], names["shards"]):
            b = milvus_contents(SERVER_URI, name)
            assert sorted(a) == sorted(b) and len(a) == 30
            for i in a:
                assert a[i][1] == b[i][1]
                np.testing.assert_allclose(a[i][0], b[i][0], atol=2e-5)
    finally:
        from pymilvus import MilvusClient

        client = MilvusClient(SERVER_URI)
        for name in names.values():
            if client.has_collection(name):
                client.drop_collection(name)
