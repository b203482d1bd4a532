"""Encode throughput: e5rag vs sentence-transformers on the same model and texts, from one run,
next to the machine's measured fp32 matmul GFLOP/s and the ceiling it implies.

    .venv/bin/python benchmarks/encode.py --data beir/scifact/corpus.jsonl --n 512
    .venv/bin/python benchmarks/encode.py                  # synthetic texts, the embedded default

Ceiling: tokens/s <= GFLOP/s / FLOPs-per-token, where FLOPs-per-token = 2 x (non-embedding
parameters) + 4 x layers x hidden x (mean sequence length) (the QK^T and AV products). Both
encoders see the same texts in the same order, same batch size, fp32, same threads. The "full
forward + mask" row is e5rag with left padding, which runs the model's own forward instead of the
EOS-only one (``retriever/eos_forward.py``): the difference between the two rows is that path's gain.
``--compile`` adds e5rag with ``Encoder.compile()`` (torch.compile, frozen weights); its one-time
compile is printed separately and is not in its tokens/s. ``--int8`` adds e5rag with
``quantize="int8"`` (``retriever/quantize.py``; compiled too with ``--compile``) and the min and mean
cosine of its vectors to e5rag fp32's over all the texts. The ceiling is fp32's; int8 rows may pass it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

WORDS = ("retrieval embedding model query document passage vector index search language train data "
         "science claim evidence protein cell energy market price river city history music").split()


def load_texts(path: str | None, n: int, seed: int = 0) -> list[str]:
    if path:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        texts = [f"{r.get('title', '')} {r['text']}".strip() for r in rows]
        random.Random(seed).shuffle(texts)
        return texts[:n]
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 300))) for _ in range(n)]


def matmul_gflops(seconds: float = 3.0) -> float:
    """Best fp32 GFLOP/s of square and transformer-shaped matmuls on this machine."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (2048, 576, 1536), (4096, 576, 576)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def non_embedding_params(model: torch.nn.Module) -> int:
    emb = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n)
    return sum(p.numel() for p in model.parameters()) - emb


def flops_per_token(model: torch.nn.Module, mean_len: float) -> float:
    cfg = model.config
    return 2 * non_embedding_params(model) + 4 * cfg.num_hidden_layers * cfg.hidden_size * mean_len


def op_breakdown(fn) -> dict[str, float]:
    """Seconds of self CPU time in one call of ``fn``, by kind: matmul, attention, other (element-wise,
    copies, norms; everything that is not a GEMM)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    kinds = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        name = event.key
        kind = ("matmul" if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
                else "attention" if "attention" in name else "other")
        kinds[kind] += event.self_cpu_time_total / 1e6
    return kinds


def timed(fn, repeats: int) -> float:
    return timed_with_result(fn, repeats)[0]


def timed_with_result(fn, repeats: int):
    """(best seconds of ``repeats`` calls after a warm-up, the last call's result)"""
    fn()  # warm-up (and, for a compiled encoder, the compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) arrays of L2-normalised vectors. -> (n,)"""
    return np.sum(a * b, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir / .gguf (default: the embedded default)")
    ap.add_argument("--data", default=None, help="a corpus.jsonl to take texts from (default: synthetic)")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time e5rag with Encoder.compile()")
    ap.add_argument("--int8", action="store_true",
                    help="also time e5rag with quantize='int8' (and int8 compiled with --compile), with the cosine "
                         "of its vectors to fp32's")
    ap.add_argument("--profile", action="store_true",
                    help="also split e5rag's eager time into matmul / attention / other (torch.profiler)")
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer, models

    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.loading import resolve_source, weights_dir

    texts = load_texts(args.data, args.n)
    enc = Encoder.from_pretrained(args.model, max_length=args.max_length, device="cpu", dtype="float32")
    directory = str(weights_dir(resolve_source(args.model)))
    tr = models.Transformer(directory, max_seq_length=args.max_length, model_kwargs={"dtype": torch.float32})
    st = SentenceTransformer(modules=[tr, models.Pooling(enc.dim, pooling_mode="lasttoken")], device="cpu")

    seqs, _ = enc.tokenize(texts)
    tokens = sum(len(s) for s in seqs)
    mean_len = tokens / len(seqs)
    t_e5, fp32_vectors = timed_with_result(
        lambda: enc.encode(texts, batch_size=args.batch_size, show_progress_bar=False), args.repeats)
    t_st = timed(lambda: st.encode(texts, batch_size=args.batch_size, show_progress_bar=False,
                                   convert_to_numpy=True, normalize_embeddings=True), args.repeats)
    enc.padding_side = "left"  # the model's own forward with a padding mask (what s-t runs), then pooling
    t_full = timed(lambda: enc.encode(texts, batch_size=args.batch_size, show_progress_bar=False), args.repeats)
    enc.padding_side = "right"
    rows = [("e5rag Encoder.encode", tokens / t_e5, t_e5), ("e5rag, full forward + mask", tokens / t_full, t_full)]
    if args.compile:
        compiled = Encoder.from_pretrained(args.model, max_length=args.max_length, device="cpu", dtype="float32",
                                           compile=True)
        start = time.perf_counter()
        compiled.encode(texts[:args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
        compile_s = time.perf_counter() - start
        t_c = timed(lambda: compiled.encode(texts, batch_size=args.batch_size, show_progress_bar=False), args.repeats)
        diff = float(np.abs(compiled.encode(texts[:8]) - enc.encode(texts[:8])).max())
        rows.append(("e5rag Encoder.compile()", tokens / t_c, t_c))
    if args.int8:
        int8_rows, int8_notes = int8_benchmark(args, texts, tokens, fp32_vectors)
        rows += int8_rows
    rows.append(("sentence-transformers (lasttoken)", tokens / t_st, t_st))
    gflops = matmul_gflops()
    ceiling = gflops * 1e9 / flops_per_token(enc.model, mean_len)
    st_tps = tokens / t_st
    agree = float(np.mean(np.sum(enc.encode(texts[:8]) * st.encode(texts[:8], normalize_embeddings=True), axis=1)))

    print(f"# encode benchmark {date.today()} | {platform.processor() or platform.machine()} | "
          f"{torch.get_num_threads()} threads | torch {torch.__version__}")
    print(f"model {enc.fingerprint.base} | {len(texts)} texts | {tokens} tokens (mean {mean_len:.0f}) | "
          f"batch {args.batch_size} | fp32")
    print(f"{'encoder':<34}{'tokens/s':>10}{'texts/s':>10}{'vs s-t':>9}{'of ceiling':>12}")
    for name, tps, secs in rows:
        print(f"{name:<34}{tps:>10.0f}{len(texts) / secs:>10.1f}{tps / st_tps:>8.2f}x{tps / ceiling:>11.0%}")
    print(f"fp32 matmul {gflops:.0f} GFLOP/s -> ceiling {ceiling:.0f} tokens/s "
          f"({flops_per_token(enc.model, mean_len) / 1e6:.0f} MFLOP/token)")
    print(f"mean cosine(e5rag, s-t) on 8 texts: {agree:.4f} (s-t appends no EOS, so not 1.0)")
    if args.profile:
        kinds = op_breakdown(lambda: enc.encode(texts, batch_size=args.batch_size, show_progress_bar=False))
        total = sum(kinds.values())
        mm_flops = 2 * non_embedding_params(enc.model) * tokens
        print("eager time by kind (torch.profiler, self CPU): " +
              ", ".join(f"{k} {v / total:.0%}" for k, v in kinds.items()) +
              f"; matmuls at {mm_flops / kinds['matmul'] / 1e9:.0f} GFLOP/s "
              f"({mm_flops / kinds['matmul'] / 1e9 / gflops:.0%} of the measured peak)")
    if args.compile:
        print(f"compile: first batch {compile_s:.0f} s (one-time); max |compiled - eager| on 8 texts {diff:.1e}")
    if args.int8:
        for note in int8_notes:
            print(note)


def int8_benchmark(args, texts: list[str], tokens: int, fp32_vectors: np.ndarray):
    """Rows (name, tokens/s, seconds) for int8 eager (and compiled) and notes on their cosine to fp32."""
    from e5rag.retriever.encoder import Encoder

    rows, notes = [], []
    variants = [("e5rag int8", False)] + ([("e5rag int8 compile()", True)] if args.compile else [])
    for name, compile in variants:
        enc = Encoder.from_pretrained(args.model, max_length=args.max_length, device="cpu", quantize="int8",
                                      compile=compile)
        start = time.perf_counter()
        enc.encode(texts[:args.batch_size], batch_size=args.batch_size, show_progress_bar=False)
        first_s = time.perf_counter() - start
        secs, vectors = timed_with_result(
            lambda enc=enc: enc.encode(texts, batch_size=args.batch_size, show_progress_bar=False), args.repeats)
        rows.append((name, tokens / secs, secs))
        cos = cosines(vectors, fp32_vectors)
        failed = " (compile FAILED: eager int8 ran)" if compile and enc._compiled.failed else ""
        notes.append(f"{name}: cosine to e5rag fp32 over {len(texts)} texts min {cos.min():.4f} mean {cos.mean():.4f}; "
                     f"first batch {first_s:.0f} s{failed}")
    return rows, notes


if __name__ == "__main__":
    main()
