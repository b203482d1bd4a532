"""Where a training step's time goes: cProfile of short LoRA runs on a random model of a real shape.

Prints each run's per-step times (the first step includes warm-up) and the functions with the most
time of their own. Used on the H200 (see benchmarks/README.md, GPU section):

    python benchmarks/profile_train.py --tokenizer DIR --device cuda --steps 8 --runs 32:0 128:32

``--tokenizer``: a folder with tokenizer files and a config.json (the shape to build);
``--runs``: BATCH:CHUNK pairs, CHUNK 0 for a plain step, else the GradCache chunk size.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import synthetic_pairs  # noqa: E402  (the training benchmark's generated rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, type=Path)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=160)
    ap.add_argument("--runs", nargs="+", default=["32:0", "128:32"], metavar="BATCH:CHUNK")
    ap.add_argument("--top", type=int, default=22)
    args = ap.parse_args()

    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from e5rag.training.config import TrainConfig
    from e5rag.training.trainer import train

    work = Path(tempfile.mkdtemp())
    AutoModel.from_config(AutoConfig.from_pretrained(args.tokenizer)).save_pretrained(work / "model")
    AutoTokenizer.from_pretrained(args.tokenizer).save_pretrained(work / "model")
    for run in args.runs:
        batch, chunk = (int(x) for x in run.split(":"))
        data = synthetic_pairs(work / f"pairs{batch}.jsonl", batch * (args.steps + 1), 12, 90)
        out = work / f"run-{batch}-{chunk}"
        config = TrainConfig.from_dict({
            "data": [str(data)], "output": str(out), "model": str(work / "model"), "max_length": args.max_length,
            "batch_size": batch, "max_steps": args.steps, "gradcache_chunk_size": chunk or None,
            "save_every": 10**9, "progress": False, "device": args.device, "log_every": 1})
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        train(config)
        profiler.disable()
        rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
        print(f"== batch {batch} chunk {chunk}: total {time.perf_counter() - start:.1f} s; step_time_s "
              f"{[round(r['step_time_s'], 3) for r in rows]}; tokens/s {[round(r['tokens_per_s']) for r in rows]}")
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.top)
        print(text.getvalue(), flush=True)


if __name__ == "__main__":
    main()
