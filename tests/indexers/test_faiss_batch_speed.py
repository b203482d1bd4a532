"""A batch of queries on a FAISS Flat store goes through FAISS's BLAS kernel (one matrix product),
not one dot product at a time: faiss 1.15's default BLAS threshold of 128,000 queries made a batch
~7x slower than numpy's ``q @ D.T``. The speed itself is measured in ``benchmarks/search.py``; this
checks the setting that decides the path, and that the BLAS path is still exact search."""

from __future__ import annotations

import numpy as np

from e5rag.indexers import Document, open_store
from e5rag.indexers.faiss_store import BLAS_THRESHOLD


def test_flat_batch_search_takes_the_blas_path_and_stays_exact(tmp_path):
    import faiss

    faiss.cvar.distance_compute_blas_threshold = 128_000  # faiss 1.15's own default
    rng = np.random.default_rng(0)
    n, dim = 3_000, 64
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[:100] + 0.1 * rng.standard_normal((100, dim), dtype=np.float32)
    with open_store(tmp_path / "idx") as store:
        store.initialize(dim, {"base": "test"})
        store.upsert([Document(f"d{i}", "t") for i in range(n)], vecs)
        store.commit()
        hits = store.search(queries, 10)
    assert faiss.cvar.distance_compute_blas_threshold == BLAS_THRESHOLD <= 20 < len(queries)
    exact = -np.sort(-(queries @ vecs.T), axis=1)[:, :10]
    np.testing.assert_allclose([[h.score for h in row] for row in hits], exact, atol=1e-5)
    assert [row[0].document.id for row in hits] == [f"d{i}" for i in range(100)]
