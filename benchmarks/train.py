"""Training throughput and peak memory against the effective batch size, with and without GradCache.

Each (batch size, GradCache on/off) point is a short real ``training.train`` run in its own
subprocess (so peak memory is that point's alone); the table is printed and written as JSON.
Tokens/s is the median over the measured steps (the first ``--warmup`` steps are dropped: 1 suits
CPU; on a GPU the next steps still run slow, so use 3 there, as ``benchmarks/gpu.py`` does); peak
memory is the CUDA allocator peak, or on CPU the process's peak resident set (weights included).

Examples:
    # tiny random model (seconds; checks the machinery)
    python benchmarks/train.py --model tiny
    # SmolLM2-135M-Instruct (the embedded default) on CPU, LoRA on the top 4 layers, 128-token passages
    python benchmarks/train.py --model smollm2 --batch-sizes 4 8 16 --chunk-size 4 --lora-layers 4 \\
        --passage-words 90 --max-length 160 --steps 3 --out /tmp/bench_train.json
    # with real data instead of generated text
    python benchmarks/train.py --model smollm2 --data /path/to/pairs.jsonl ...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORDS = ("the of model data energy cell protein study result effect patient risk level increase method "
         "analysis gene expression response treatment group rate time high low").split()


def synthetic_pairs(path: Path, rows: int, query_words: int, passage_words: int, seed: int = 0) -> Path:
    """Rows of the training format with generated text of the requested lengths."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            text = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
            fh.write(json.dumps({"task": "Given a scientific claim, retrieve documents that support or refute the claim",
                                 "query": text(query_words), "positive": text(passage_words),
                                 "negative": text(passage_words)}) + "\n")
    return path


def resolve_model(name: str, workdir: Path) -> str | None:
    if name == "smollm2":
        return None  # the embedded default
    if name == "tiny":
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_models import save_tiny_model

        return str(save_tiny_model(workdir / "tiny"))
    return name


def run_point(args: argparse.Namespace, model: str | None, data: Path, batch: int, chunk: int | None,
              workdir: Path) -> dict:
    """One short training run in a subprocess; -> its measurements."""
    out = workdir / f"b{batch}-{'gc' + str(chunk) if chunk else 'plain'}"
    config = {"data": [str(data)], "output": str(out), "model": model, "max_length": args.max_length,
              "batch_size": batch, "max_steps": args.warmup + args.steps, "gradcache_chunk_size": chunk,
              "lora_layers": args.lora_layers, "gradient_checkpointing": args.gradient_checkpointing,
              "save_every": 10**9, "progress": False, "device": args.device}
    code = ("import json, sys; from e5rag.training.config import TrainConfig; from e5rag.training.trainer import train; "
            "train(TrainConfig.from_dict(json.loads(sys.argv[1])))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(config)], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ))
    if proc.returncode != 0:
        return {"batch_size": batch, "gradcache_chunk": chunk, "error": proc.stderr.strip().splitlines()[-1]}
    from e5rag.training.metrics import read_metrics

    rows = read_metrics(out / "metrics.jsonl")[args.warmup:]  # drop the warm-up steps
    return {"batch_size": batch, "gradcache_chunk": chunk,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
            "step_time_s": statistics.median(r["step_time_s"] for r in rows),
            "tokens_per_step": statistics.median(r["tokens"] for r in rows),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny, smollm2 (the embedded default) or a model path")
    p.add_argument("--data", default=None, help="training JSONL (default: generated text)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--chunk-size", type=int, default=4, help="GradCache chunk (texts per forward)")
    p.add_argument("--steps", type=int, default=3, help="measured steps per point (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps first (3 on a GPU)")
    p.add_argument("--max-length", type=int, default=160)
    p.add_argument("--query-words", type=int, default=12)
    p.add_argument("--passage-words", type=int, default=90)
    p.add_argument("--lora-layers", type=int, default=None, help="LoRA on the top N layers only")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="e5rag-bench-train-") as tmp:
        workdir = Path(tmp)
        model = resolve_model(args.model, workdir)
        rows_needed = max(args.batch_sizes) * (args.warmup + args.steps)
        data = Path(args.data) if args.data else synthetic_pairs(workdir / "pairs.jsonl", rows_needed,
                                                                 args.query_words, args.passage_words)
        results = []
        for batch in args.batch_sizes:
            for chunk in (None, args.chunk_size):
                results.append(run_point(args, model, data, batch, chunk, workdir))
                r = results[-1]
                print(f"batch {batch:4d}  {'GradCache/' + str(chunk) if chunk else 'plain':12s}  " + (
                    f"{r['tokens_per_s']:9.0f} tok/s  {r['step_time_s']:7.2f} s/step  {r['peak_memory_mb']:8.0f} MiB peak"
                    if "error" not in r else f"error: {r['error']}"), flush=True)
    report = {"model": args.model, "max_length": args.max_length, "lora_layers": args.lora_layers,
              "gradient_checkpointing": args.gradient_checkpointing, "warmup_steps": args.warmup,
              "measured_steps": args.steps, "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
