"""Start-up time of the everyday CLI loop on the embedded default (issue 23).

Runs ``e5rag`` as a subprocess, as a user does, against a small FAISS index of examples/corpus.jsonl:

* ``search`` cold: an empty ``$E5RAG_CACHE`` (GGUF dequantised, adapter merged, weights cached);
* ``search`` warm: the same again, the weight cache populated (a memory-mapped load), ``--repeat`` times;
* ``search`` with the weight cache off (``E5RAG_WEIGHT_CACHE=0``: the converted GGUF, then PEFT's merge);
* ``search --server``: the queries embedded by a running ``e5rag serve`` (the model stays loaded there;
  the search process imports neither torch nor transformers), ``--repeat`` times;
* ``index`` of the same unchanged corpus (no model load).

    python benchmarks/startup.py [--repeat 3] [--work DIR]

Prints a table of wall times (median of the repeats, and each run). Everything lives in a temporary
folder (the cache too), so the user's cache is neither used nor touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus.jsonl"
E5RAG = [sys.executable, "-m", "e5rag"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(E5RAG + argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"e5rag {' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return wall, done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="warm runs per row (default 3)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the cache and index (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        env = dict(os.environ, E5RAG_CACHE=str(work / "cache"))
        env.pop("E5RAG_WEIGHT_CACHE", None)
        index = str(work / "index")
        search = ["search", "--index", index, "--task", "scifact", "Coffee lowers diabetes risk"]
        rows: list[tuple[str, list[float]]] = []

        # the index is built by the first (cold) command: it converts the GGUF and fills the weight cache
        cold_index, _ = timed(["index", str(CORPUS), "--index", index], env)
        rows.append(("index, cold cache (convert GGUF + merge + cache + embed 30)", [cold_index]))
        # a cold search: the weight cache emptied again, the converted GGUF kept (as after an upgrade)
        for entry in (work / "cache" / "weights").glob("*"):
            shutil.rmtree(entry)
        cold_search, _ = timed(search, env)
        rows.append(("search, weight cache empty (merge + cache)", [cold_search]))
        rows.append(("search, warm (memory-mapped weights)", [timed(search, env)[0] for _ in range(args.repeat)]))
        off = dict(env, E5RAG_WEIGHT_CACHE="0")
        rows.append(("search, weight cache off (from_pretrained + PEFT merge)",
                     [timed(search, off)[0] for _ in range(args.repeat)]))
        server = subprocess.Popen(E5RAG + ["serve", "--index", index, "--port", "0"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            started = time.perf_counter()
            url = json.loads(server.stdout.readline())["url"]
            rows.append(("serve: load the model and listen (once)", [time.perf_counter() - started]))
            # each search runs with the same flags as above, plus the server; its output is checked equal
            local = subprocess.run(E5RAG + search, env=env, capture_output=True, text=True).stdout
            remote = [timed(search + ["--server", url], env) for _ in range(args.repeat)]
            if subprocess.run(E5RAG + search + ["--server", url], env=env, capture_output=True,
                              text=True).stdout != local:
                sys.exit("search --server printed other results than a search that loads the model")
            rows.append(("search --server (a running `e5rag serve`)", [w for w, _ in remote]))
        finally:
            server.terminate()
            server.wait(60)
        unchanged = []
        for _ in range(args.repeat):
            wall, err = timed(["index", str(CORPUS), "--index", index], env)
            if "loading model" in err or "30 unchanged (skipped)" not in err:
                sys.exit(f"the unchanged re-index loaded the model or changed something:\n{err}")
            unchanged.append(wall)
        rows.append(("index, all 30 unchanged (no model load)", unchanged))
        imports = [timed(["--version"], env)[0] for _ in range(args.repeat)]
        rows.append(("e5rag --version (interpreter + CLI import)", imports))

    print(f"{'command':<58} {'median s':>9}  runs")
    for name, walls in rows:
        print(f"{name:<58} {statistics.median(walls):>9.2f}  {' '.join(f'{w:.2f}' for w in walls)}")


if __name__ == "__main__":
    main()
