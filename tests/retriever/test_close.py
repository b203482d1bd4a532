"""SearchIndex, E5Retriever and E5VectorStore close their store, also as context managers, so a
Milvus Lite file is free for another process at once (not only when this process exits)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("langchain_core")

from e5rag.indexers import Document  # noqa: E402
from e5rag.retriever.langchain import E5Embeddings, E5Retriever, E5VectorStore  # noqa: E402
from e5rag.retriever.search import SearchIndex  # noqa: E402

pytestmark = pytest.mark.milvus
OTHER_PROCESS = ("import sys; from e5rag.indexers.milvus_store import MilvusStore\n"
                 "with MilvusStore(sys.argv[1], collection='docs', readonly=True) as s: print(s.count())")


def count_from_another_process(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path)], capture_output=True, text=True,
                          timeout=120)


def test_each_facade_releases_the_milvus_lite_lock(tiny_encoder, tmp_path):
    path = tmp_path / "locked.db"
    with SearchIndex.open(path, tiny_encoder, readonly=False, collection="docs") as index:
        index.add([Document("a", "apples are red"), Document("b", "the sky is blue")])
        busy = count_from_another_process(path)
        assert busy.returncode != 0 and "in use by another process" in busy.stderr
    assert count_from_another_process(path).stdout.strip() == "2"

    retriever = E5Retriever.from_index(path, encoder=tiny_encoder, store_options={"collection": "docs"}, k=1)
    with retriever:
        assert [d.id for d in retriever.invoke("what colour is the sky?")] in (["a"], ["b"])
    assert count_from_another_process(path).stdout.strip() == "2"

    store = E5VectorStore.open(path, E5Embeddings(tiny_encoder), collection="docs")
    store.add_texts(["grass is green"], ids=["c"])
    store.close()
    assert count_from_another_process(path).stdout.strip() == "3"
