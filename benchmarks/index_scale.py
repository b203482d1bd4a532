"""Store cost at scale: time and bytes per commit as the index grows, peak RSS; recall@10 and queries/s
of Flat, HNSW32 and IVF at e5rag's default nprobe/ef on clustered vectors.

    .venv/bin/python benchmarks/index_scale.py                       # 100k documents, dim 576 (minutes)
    .venv/bin/python benchmarks/index_scale.py --n 1000000 --dims 576 4096 --search-n 1000000

Part 1 (writes): random unit vectors go through the ``Store`` API (``upsert`` + ``commit`` every
``--commit`` documents, 4,096 like ``SearchIndex.add``), so only the store is timed, never a model.
Vectors are made one commit at a time, so the benchmark itself holds none of them. Per commit it
records seconds and bytes handed to ``write``/``sendfile`` (``wchar`` of ``/proc/self/io``: what
the store writes, whatever the file system caches), and whether it compacted (wrote a whole new
generation: FAISS ``CURRENT`` moved). The per-size rows are medians over the 9 commits up to that size
(a commit that compacts costs the whole index once in a while: the amortised figure is the total
written divided by the documents). Part 2 (search): a Gaussian mixture (unit
centres, noise of norm ~``--spread``), queries from the same mixture, exact top-10 by numpy; each
index is searched through the store at its recorded defaults, FAISS ones also raw (``index.search``
on the same FAISS object) to show e5rag's overhead.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from search import machine, numpy_topk, recall_at_k, versions  # noqa: E402  (benchmarks/search.py)

from e5rag.indexers import Document, open_store  # noqa: E402


def wchar() -> int:
    """Bytes this process has passed to write-like system calls so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass(frozen=True)
class Commit:
    total: int  # documents in the index after this commit
    seconds: float
    bytes_written: int
    compacted: bool  # wrote a whole new generation (FAISS)


def current(location: Path) -> str | None:
    marker = location / "CURRENT"
    return marker.read_text() if marker.is_file() else None


def write_run(location: Path, n: int, dim: int, commit: int, seed: int, **store_options) -> list[Commit]:
    """Index ``n`` random documents in commits of ``commit``; one record per commit."""
    rng = np.random.default_rng(seed)
    out: list[Commit] = []
    store = open_store(location, **store_options)
    try:
        store.initialize(dim, {"base": "benchmark"})
        for start in range(0, n, commit):
            m = min(commit, n - start)
            vecs = unit_rows(rng, m, dim)
            docs = [Document(f"d{i}", f"document {i} " + "lorem ipsum " * 20, f"title {i}", {"n": i})
                    for i in range(start, start + m)]
            gen, before, t0 = current(location), wchar(), time.perf_counter()
            store.upsert(docs, vecs)
            store.commit()
            out.append(Commit(start + m, time.perf_counter() - t0, wchar() - before, current(location) != gen))
    finally:
        store.close()
    return out


def around(commits: list[Commit], total: int, width: int = 9) -> list[Commit]:
    """The ``width`` commits ending at the first one reaching ``total`` documents."""
    end = next(i for i, c in enumerate(commits) if c.total >= total)
    return commits[max(0, end - width + 1):end + 1]


def mixture(rng: np.random.Generator, n: int, centers: np.ndarray, spread: float) -> np.ndarray:
    labels = rng.integers(0, len(centers), n)
    v = centers[labels] + spread * rng.standard_normal((n, centers.shape[1]), dtype=np.float32) / np.sqrt(
        centers.shape[1])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def timed_search(search, queries: np.ndarray, batch: int) -> tuple[float, list[list[int]]]:
    search(queries[:batch])  # warm-up
    found: list[list[int]] = []
    start = time.perf_counter()
    for s in range(0, len(queries), batch):
        found += search(queries[s:s + batch])
    return len(queries) / (time.perf_counter() - start), found


def _raw_params(params: dict):
    import faiss

    if "nprobe" in params:
        return faiss.SearchParametersIVF(nprobe=params["nprobe"])
    if "ef" in params:
        return faiss.SearchParametersHNSW(efSearch=params["ef"])
    return None


def search_run(workdir: Path, args: argparse.Namespace, dim: int) -> list[dict]:
    rng = np.random.default_rng(args.seed + 7)
    centers = rng.standard_normal((args.clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    docs, queries = mixture(rng, args.search_n, centers, args.spread), mixture(rng, args.queries, centers, args.spread)
    exact = np.concatenate([numpy_topk(queries[s:s + 256], docs, 10) for s in range(0, len(queries), 256)])
    rows = []
    for spec in args.index_types:
        location = workdir / f"search-{spec.replace(',', '_')}-{dim}"
        t0 = time.perf_counter()
        store = open_store(location, index_type=spec)
        store.initialize(dim, {"base": "benchmark"})
        step = 20_000
        for s in range(0, len(docs), step):
            store.upsert([Document(f"d{i}", "t") for i in range(s, min(s + step, len(docs)))], docs[s:s + step])
        store.commit()
        build_s = time.perf_counter() - t0
        params = store.manifest.search_params
        raw = store._index  # the FAISS object the store searches, called the way a FAISS user would
        raw_params = _raw_params(params)
        qps = raw_qps = 0.0
        for _ in range(args.rounds):  # interleaved, best of each: a shared machine's load shifts between runs
            q1, found = timed_search(lambda q, store=store: [[int(h.document.id[1:]) for h in row]
                                                             for row in store.search(q, 10)], queries, args.batch)
            q2, _ = timed_search(lambda q, raw=raw, rp=raw_params: raw.search(q, 10, params=rp)[1].tolist(),
                                 queries, args.batch)
            qps, raw_qps = max(qps, q1), max(raw_qps, q2)
        rows.append({"dim": dim, "index": spec, "params": params, "build_s": build_s,
                     "recall": recall_at_k(found, exact), "qps": qps, "raw_qps": raw_qps})
        store.close()
        shutil.rmtree(location, ignore_errors=True)
        print(f"  search done: {spec} dim {dim}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="documents written (default 100000; the issue's 1000000 "
                                                           "needs ~16 GB of RAM at dim 4096 for FAISS Flat)")
    p.add_argument("--dims", type=int, nargs="+", default=[576])
    p.add_argument("--commit", type=int, default=4096, help="documents per commit (default 4096)")
    p.add_argument("--store", default="faiss", help="faiss, or milvus for Milvus Lite (default faiss)")
    p.add_argument("--search-n", type=int, default=50_000, help="documents in the search part (default 50000)")
    p.add_argument("--search-dims", type=int, nargs="+", default=[576])
    p.add_argument("--index-types", nargs="+", default=["Flat", "HNSW32", "IVF256,Flat"])
    p.add_argument("--clusters", type=int, default=500)
    p.add_argument("--spread", type=float, default=1.5)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="search passes per index, interleaved with raw FAISS")
    p.add_argument("--skip-writes", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    started = time.perf_counter()
    report: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                    "versions": versions(), "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        if not args.skip_writes:
            report["writes"] = []
            for dim in args.dims:
                location = tmp / (f"w{dim}.db" if args.store == "milvus" else f"w{dim}")
                commits = write_run(location, args.n, dim, args.commit, args.seed,
                                    **({"store": "milvus"} if args.store == "milvus" else {}))
                marks = sorted({m for m in (10_000, 100_000, 1_000_000, args.n) if m <= args.n})
                report["writes"].append({
                    "dim": dim, "commits": len(commits), "seconds": sum(c.seconds for c in commits),
                    "bytes_written": sum(c.bytes_written for c in commits), "peak_rss_mib": peak_rss_mib(),
                    "compactions": sum(c.compacted for c in commits[1:]),
                    "max_seconds_per_commit": max(c.seconds for c in commits),
                    "at": {m: {"seconds_per_commit": float(np.median([c.seconds for c in around(commits, m)])),
                               "bytes_per_commit": float(np.median([c.bytes_written for c in around(commits, m)]))}
                           for m in marks}})
                shutil.rmtree(location, ignore_errors=True)
                print(f"  writes done: dim {dim}", flush=True)
        if not args.skip_search:
            report["search"] = [r for dim in args.search_dims for r in search_run(tmp, args, dim)]
    report["total_s"] = time.perf_counter() - started

    print(f"\ne5rag index scale benchmark, {report['date']}, {report['machine']}; {report['versions']}")
    for w in report.get("writes", []):
        print(f"\nwrites: {args.store}, dim {w['dim']}, {args.n} documents in {w['commits']} commits of {args.commit}: "
              f"{w['seconds']:.0f} s, {w['bytes_written'] / 2**30:.2f} GiB written "
              f"({w['bytes_written'] / args.n / 1024:.1f} KiB per document, amortised), {w['compactions']} compactions "
              f"(slowest commit {w['max_seconds_per_commit']:.1f} s), peak RSS {w['peak_rss_mib']:.0f} MiB")
        print("| documents in the index | s per commit (median of 9) | MiB written per commit (median of 9) |\n"
              "|---:|---:|---:|")
        for m, a in w["at"].items():
            print(f"| {m:,} | {a['seconds_per_commit']:.2f} | {a['bytes_per_commit'] / 2**20:.1f} |")
    if report.get("search"):
        print(f"\nsearch: {args.search_n} documents, Gaussian mixture of {args.clusters} clusters (spread {args.spread}), "
              f"{args.queries} queries in batches of {args.batch}, k=10")
        print("| dim | index | default params | build s | recall@10 | e5rag queries/s | raw FAISS queries/s |")
        print("|---:|---|---|---:|---:|---:|---:|")
        for r in report["search"]:
            print(f"| {r['dim']} | {r['index']} | {json.dumps(r['params']) if r['params'] else '-'} | {r['build_s']:.1f} "
                  f"| {r['recall']:.3f} | {r['qps']:.0f} | {r['raw_qps']:.0f} |")
    print(f"total {report['total_s']:.0f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
