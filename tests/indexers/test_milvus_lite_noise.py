"""Milvus Lite's gRPC "too_many_pings" GOAWAY and pymilvus' mvccTs fallback warnings never reach
the user's stderr (a real Lite server in a subprocess, idle long enough for the GOAWAY)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("milvus_lite")

_SCRIPT = textwrap.dedent("""
    import logging, sys, time
    import numpy as np
    logging.basicConfig(level=logging.WARNING)  # what the e5rag CLI configures
    from e5rag.indexers import Document, open_store
    with open_store(sys.argv[1]) as store:
        store.initialize(8, {"base": "m"})
        store.upsert([Document(f"d{i}", f"text {i}") for i in range(20)], np.eye(20, 8, dtype=np.float32))
        store.commit()
        time.sleep(float(sys.argv[2]))  # idle: pymilvus' keepalive pings would draw a GOAWAY by now
        assert len(store.search(np.ones((1, 8), np.float32), k=3)[0]) == 3
        it = store._client.search_iterator(store.collection, data=[[1.0] * 8], batch_size=5, limit=10,
                                           anns_field="vector")
        assert len(it.next()) == 5
        it.close()
    print("done", flush=True)
""")


@pytest.mark.slow  # 45 s of waiting for the keepalive GOAWAY: `pytest -m slow` runs it
def test_lite_keeps_grpc_and_iterator_noise_off_stderr(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "lite.db"), "45"], capture_output=True,
                       text=True, env=env, timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
    problems = [word for word in ("too_many_pings", "GOAWAY", "mvccTs") if word in r.stderr]
    assert problems == [], r.stderr
