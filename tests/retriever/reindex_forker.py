"""A fork server for the reindex kill tests: imports e5rag, torch and the stores once, then for each
request (a JSON line on stdin) forks a fresh child that runs ``e5rag ARGV`` and, at the requested
point, SIGKILLs itself: after the n-th commit of the staged index, just before the switch, or just
after it, or (Milvus Lite) halfway through writing a segment's index file. Replies with one JSON line:
{"code": exit code} or {"signal": number}.

Run as ``python reindex_forker.py MODEL_DIR``: the server loads that (tiny) model once, so that
transformers' lazy imports are done before the forks (they take seconds; the load computes nothing).
Used by tests/retriever/test_reindex.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from e5rag.cli import main  # imported once here, before any fork
from e5rag.indexers import staging
from e5rag.indexers.faiss_store import FaissStore
from e5rag.indexers.milvus_store import MilvusStore
from e5rag.retriever import encoder  # noqa: F401


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, n: int) -> None:
    """Patch the child's commit and switch so that it kills itself at ``point``."""
    count = [0]

    def counting(original, is_staging):
        def commit(self):
            original(self)
            if is_staging(self):
                count[0] += 1
                if point == "commit" and count[0] == n:
                    _die()
        return commit

    FaissStore.commit = counting(FaissStore.commit, lambda s: s.root.name == staging.FAISS_STAGING_DIR)
    MilvusStore.commit = counting(MilvusStore.commit, lambda s: staging.GENERATION_SUFFIX in s.collection)
    if point == "index-save":  # Milvus Lite writing a segment's index file after a flush (a background thread)
        from milvus_lite.index.brute_force import BruteForceIndex

        def save(self, path, _original=BruteForceIndex.save):
            _original(self, path)
            with open(path, "r+b") as f:  # the file as a kill in the middle of the write leaves it
                f.truncate(f.seek(0, os.SEEK_END) // 2)
            _die()
        BruteForceIndex.save = save
    if point == "mid-switch":  # Milvus' first switch: after the rename, before the alias exists
        import pymilvus

        pymilvus.MilvusClient.create_alias = lambda *a, **k: _die()
    for cls in (staging.FaissStaging, staging.MilvusStaging):
        def switch(self, _original=cls.switch):
            if point == "before-switch":
                _die()
            _original(self)
            if point == "after-switch":
                _die()
        cls.switch = switch


def _child(request: dict) -> None:
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    if request.get("point"):
        _arm(request["point"], int(request.get("n", 0)))

    code = main(request["argv"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        reply = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"code": os.WEXITSTATUS(status)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    encoder.Encoder.from_pretrained(sys.argv[1], max_length=8)
    serve()
