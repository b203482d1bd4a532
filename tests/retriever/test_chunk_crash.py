"""A writer SIGKILLed halfway through a document's chunks: the rerun leaves exactly the right chunk
set (no orphan, no old chunk, no half-chunked document), on FAISS and on Milvus Lite."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tiny_models import CORPUS

from e5rag.indexers import Document, open_store
from e5rag.retriever.search import SearchIndex

# The writer indexes DOCS_FILE one document per commit; on the KILL_AT-th write it upserts only the
# first half of the document's chunks (Milvus: flushed, the worst case), says so and waits to be killed.
WRITER = textwrap.dedent("""
    import json, sys, time
    from e5rag.indexers import Document, open_store
    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.search import SearchIndex

    location, model, docs_file, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    docs = [Document(**d) for d in json.loads(open(docs_file).read())]
    store = open_store(location)
    real_upsert, calls = store.upsert, []

    def upsert(parts, vectors):
        calls.append(len(parts))
        if len(calls) < kill_at:
            return real_upsert(parts, vectors)
        half = len(parts) // 2
        real_upsert(parts[:half], vectors[:half])
        if store.kind == "milvus":
            store.commit()
        print("HALF " + json.dumps([p.id for p in parts[:half]]), flush=True)
        time.sleep(300)

    store.upsert = upsert
    index = SearchIndex(Encoder.from_pretrained(model, max_length=64), store, writing=True)
    index.add(docs, commit_every=1)
    print("FINISHED", flush=True)
""")


def long_text(seed: int, paragraphs: int) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(rng.choice(CORPUS[:8]) for _ in range(rng.randint(1, 3))) for _ in range(paragraphs))


V1 = [Document("A", long_text(1, 14), "A"), Document("B", long_text(2, 8), "B"), Document("C", "Short C.")]
V2 = [Document("A", long_text(3, 5), "A"), Document("B", long_text(4, 16), "B"),
      Document("C", long_text(5, 8), "C"), Document("D", long_text(6, 8), "D")]
V3 = [Document("A", long_text(7, 3), "A"), Document("B", long_text(8, 6), "B"),
      Document("C", "Short again.", "C"), Document("D", long_text(9, 12), "D")]


def all_stored(store) -> dict[str, Document]:
    n = store.count()
    hits = store.search(np.ones((1, store.manifest.dim), dtype=np.float32), n)[0] if n else []
    return {h.document.id: h.document for h in hits}


@pytest.mark.parametrize(("kind", "kill_at", "rerun"), [
    ("faiss", 2, V2),  # killed while growing B; the rerun finishes the same version
    pytest.param("milvus", 2, V2, marks=pytest.mark.milvus),
    pytest.param("milvus", 3, V3, marks=pytest.mark.milvus),  # killed while chunking C; the rerun has new texts
])
def test_kill_mid_document_then_rerun_gives_exact_chunks(tiny_encoder, mistral_dir, tmp_path, kind, kill_at, rerun):
    if kind == "milvus":
        pytest.importorskip("milvus_lite")
    location = tmp_path / ("i.db" if kind == "milvus" else "i")
    with SearchIndex(tiny_encoder, open_store(location), writing=True) as index:
        index.add(V1)
    docs_file = tmp_path / "v2.json"
    docs_file.write_text(json.dumps([d.__dict__ for d in V2]))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(location), str(mistral_dir), str(docs_file),
                              str(kill_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("HALF"), line + child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    half = json.loads(line[len("HALF "):])
    with SearchIndex(tiny_encoder, open_store(location), writing=True) as index:
        before = all_stored(index.store)
        done = {p.id: p for d in V2[:kill_at - 1] for p in index.split(d)}  # committed before the kill
        assert {i: before[i] for i in done} == done
        if kind == "faiss":  # nothing of the uncommitted document is visible: the last generation
            old = {p.id: p for d in V1 if d.id not in {x.id for x in V2[:kill_at - 1]} for p in index.split(d)}
            assert before == {**done, **old}
        else:  # Milvus has no transaction: half the document's new chunks were written
            new = {p.id: p for p in index.split(V2[kill_at - 1])}
            assert half and all(before.get(i) == new[i] for i in half) and len(half) < len(new)
        index.add(rerun)
        stored = all_stored(index.store)
        want = {p.id: p for d in rerun for p in index.split(d)}
        assert stored == want  # ids, texts, titles and metadata: exactly the new chunk set
        assert all(index.get(d.id) == d for d in rerun)
