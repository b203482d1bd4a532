"""Search speed and recall: Milvus Lite, FAISS Flat, FAISS HNSW and numpy on the same vectors, from one run.

    .venv/bin/python benchmarks/search.py                                   # a few minutes on 2 cores
    .venv/bin/python benchmarks/search.py --n 100000 --dims 576 4096 --queries 1000

Documents and queries are random L2-normalised float32 vectors (576 = SmolLM2-135M's width,
4096 = Mistral-7B's), so exact neighbours have no ties. Stores are measured through the e5rag
``Store`` interface (what ``e5rag search`` gets: hits come back with their documents); numpy is
the exact reference (``q @ D.T`` then a partial sort, vectors only) and the ground truth for
recall@k. Throughput: all queries in batches of ``--batch``; latency: one query per call, over
the first ``--latency-queries`` queries. Isotropic random vectors are the hard case for graph
indexes (every point is nearly equidistant), so HNSW recall here is a floor: raise ``--ef-search``
to trade speed for recall. Add ``milvus:HNSW`` (or any Lite index type) to ``--stores`` to compare
Milvus Lite's own HNSW; its build time includes the index build Lite does at load.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from e5rag.indexers import Document, Store, open_store


@dataclass(frozen=True)
class Result:
    dim: int
    name: str
    build_s: float
    qps: float
    p50_ms: float
    p99_ms: float
    recall: float


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 20_000) -> np.ndarray:
    """(n, dim) float32 rows, L2-normalised (made in chunks to bound the float64-free peak memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        v = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        out[s:s + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def numpy_topk(q: np.ndarray, d: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k row indices by inner product. q: (m, dim), d: (n, dim) -> (m, k)"""
    scores = q @ d.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: list[list[int]], exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(f) & set(e.tolist())) / k for f, e in zip(found, exact, strict=True)]))


def measure(search: Callable[[np.ndarray], list[list[int]]], queries: np.ndarray, batch: int,
            latency_queries: int) -> tuple[float, float, float, list[list[int]]]:
    """(queries/s over batched calls, p50 ms, p99 ms of single-query calls, ids found)."""
    search(queries[:1])  # warm-up
    found: list[list[int]] = []
    start = time.perf_counter()
    for s in range(0, len(queries), batch):
        found += search(queries[s:s + batch])
    qps = len(queries) / (time.perf_counter() - start)
    lat = []
    for q in queries[:latency_queries]:
        t = time.perf_counter()
        search(q[None])
        lat.append((time.perf_counter() - t) * 1000)
    return qps, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), found


def build_store(location: Path, vectors: np.ndarray, **options) -> tuple[Store, float]:
    """A store holding ``vectors`` as documents d0..dN, and the seconds it took (through commit)."""
    start = time.perf_counter()
    store = open_store(location, **options)
    store.initialize(vectors.shape[1], {"base": "benchmark"})
    step = 20_000
    for s in range(0, len(vectors), step):
        chunk = vectors[s:s + step]
        store.upsert([Document(f"d{i}", f"document {i}") for i in range(s, s + len(chunk))], chunk)
        store.commit()
    return store, time.perf_counter() - start


def store_search(store: Store, k: int) -> Callable[[np.ndarray], list[list[int]]]:
    return lambda q: [[int(h.document.id[1:]) for h in row] for row in store.search(q, k)]


def run_dim(dim: int, args: argparse.Namespace, workdir: Path) -> list[Result]:
    docs, queries = unit_vectors(args.n, dim, args.seed), unit_vectors(args.queries, dim, args.seed + 1)
    exact = np.concatenate([numpy_topk(queries[s:s + 256], docs, args.k) for s in range(0, len(queries), 256)])
    results = []

    def record(name: str, build_s: float, search) -> None:
        qps, p50, p99, found = measure(search, queries, args.batch, args.latency_queries)
        results.append(Result(dim, name, build_s, qps, p50, p99, recall_at_k(found, exact)))
        print(f"  done: {name} (dim {dim})", flush=True)

    if "numpy" in args.stores:
        record("numpy exact", 0.0, lambda q: numpy_topk(q, docs, args.k).tolist())
    for spec in args.stores:
        if spec == "numpy":
            continue
        kind, _, index_type = spec.partition(":")
        location = workdir / f"{kind}-{index_type}-{dim}" if kind == "faiss" else workdir / f"lite-{index_type}-{dim}.db"
        if kind == "faiss":
            store, build_s = build_store(location, docs, store="faiss", index_type=index_type)
            if "HNSW" in index_type:
                store.set_search_params(efSearch=args.ef_search)
            name = f"faiss {index_type}" + (f" ef={args.ef_search}" if "HNSW" in index_type else "")
        else:
            params = {"ef": args.ef_search} if index_type.upper() in ("HNSW", "AUTOINDEX") else {}
            store, build_s = build_store(location, docs, index_type=index_type, search_params=params)
            if index_type.upper() != "FLAT":  # Lite builds indexes in the background: time the wait too
                start = time.perf_counter()
                store.close()
                store = open_store(location, readonly=True, search_params=params)
                build_s += time.perf_counter() - start
            name = f"milvus-lite {index_type}" + (f" ef={args.ef_search}" if params else "")
        try:
            record(name, build_s, store_search(store, args.k))
        finally:
            store.close()
            shutil.rmtree(location, ignore_errors=True)
    return results


def machine() -> str:
    model = ""
    if Path("/proc/cpuinfo").exists():
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f" load average {os.getloadavg()[0]:.1f} (shared machine)" if hasattr(os, "getloadavg") else ""
    return f"{cores} CPU cores ({model or platform.processor()}), {platform.system()} {platform.machine()},{load}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"numpy {np.__version__}"]
    for pkg in ("faiss-cpu", "pymilvus", "milvus-lite"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="documents (default 20000)")
    p.add_argument("--dims", type=int, nargs="+", default=[576], help="vector dimensions (default 576)")
    p.add_argument("--queries", type=int, default=200, help="queries (default 200)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=100, help="queries per call when measuring throughput")
    p.add_argument("--latency-queries", type=int, default=50, help="single-query calls timed for p50/p99")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth (FAISS and Milvus)")
    p.add_argument("--stores", nargs="+", default=["numpy", "faiss:Flat", "faiss:HNSW32", "milvus:FLAT"],
                   help="numpy, faiss:FACTORY, milvus:INDEX_TYPE (e.g. milvus:HNSW)")
    p.add_argument("--workdir", type=Path, default=None, help="where the indexes are built (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 1 <= args.k <= args.n or args.queries < 1 or args.latency_queries < 1:
        p.error("need 1 <= k <= n, queries >= 1 and latency-queries >= 1")
    args.latency_queries = min(args.latency_queries, args.queries)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = [r for dim in args.dims for r in run_dim(dim, args, Path(tmp))]
    print(f"\ne5rag search benchmark, {datetime.now():%Y-%m-%d %H:%M}, {machine()}")
    print(f"n={args.n} documents, {args.queries} queries, k={args.k}, throughput batch={args.batch}, "
          f"latency over {args.latency_queries} single-query calls; {versions()}")
    print(f"{'dim':>5} {'store':<28} {'build s':>8} {'queries/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'recall@' + str(args.k):>9}")
    for r in results:
        print(f"{r.dim:>5} {r.name:<28} {r.build_s:>8.1f} {r.qps:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{r.recall:>9.3f}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
