"""``Store.get_vectors``: the stored vector of each id that exists, before and after commit, for
FAISS index types that keep exact vectors, and for Milvus Lite."""

from __future__ import annotations

import numpy as np
import pytest

from e5rag.indexers import Document, open_store


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("index_type", ["Flat", "HNSW16", "IVF2,Flat"])
def test_faiss_get_vectors_returns_what_was_stored(tmp_path, index_type):
    vecs = _unit(40, 8, seed=1)
    docs = [Document(f"d{i}", f"text {i}") for i in range(40)]
    with open_store(tmp_path / "i", index_type=index_type) as store:
        store.initialize(8, {"base": "test"})
        store.upsert(docs, vecs)
        before = store.get_vectors(["d3", "nope", "d39"])  # IVF: still waiting for training
        assert sorted(before) == ["d3", "d39"]
        np.testing.assert_allclose(before["d3"], vecs[3], atol=1e-6)
        store.commit()
        store.upsert([Document("d3", "changed")], vecs[:1])  # replaced: the new vector is returned
        store.delete(["d39"])
        after = store.get_vectors(["d3", "d39", "d7"])
    assert sorted(after) == ["d3", "d7"]
    np.testing.assert_allclose(after["d3"], vecs[0], atol=1e-6)
    np.testing.assert_allclose(after["d7"], vecs[7], atol=1e-6)
    with open_store(tmp_path / "i", readonly=True) as store:
        np.testing.assert_allclose(store.get_vectors(["d7"])["d7"], vecs[7], atol=1e-6)


def test_milvus_lite_get_vectors(tmp_path):
    pytest.importorskip("milvus_lite")
    vecs = _unit(5, 8, seed=2)
    with open_store(tmp_path / "m.db", collection="vectors_test") as store:
        store.initialize(8, {"base": "test"})
        store.upsert([Document(f"d{i}", f"text {i}") for i in range(5)], vecs)
        store.commit()
        got = store.get_vectors(["d4", "missing", "d0"])
    assert sorted(got) == ["d0", "d4"]
    np.testing.assert_allclose(got["d4"], vecs[4], atol=1e-6)
    np.testing.assert_allclose(got["d0"], vecs[0], atol=1e-6)
