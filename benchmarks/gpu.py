"""GPU checks and encode throughput on CUDA, from one run: bf16 against fp32 vectors, the EOS-only
forward against the model's own, e5rag against sentence-transformers, and a short bf16 training run.

Weights are random (the shapes of the embedded default and of E5-Mistral-7B, built on the GPU from
their configs), so the numbers are about speed and numerics, not retrieval quality. Needs only
torch, transformers, peft and sentence-transformers (no FAISS, Milvus or GGUF).

    python benchmarks/gpu.py --tokenizer DIR --out results.json      # DIR: config.json + tokenizer files
    python benchmarks/gpu.py --tokenizer DIR --device cpu --quick     # the same code paths, tiny, on CPU

``--tokenizer`` is a folder with a tokenizer and a Llama-style config.json (e.g. the embedded
default's converted folder under ``$E5RAG_CACHE/gguf/``); the 7B shape reuses that tokenizer.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode import flops_per_token, load_texts, timed  # noqa: E402  (the CPU benchmark's helpers)

# intfloat/e5-mistral-7b-instruct's config.json (vocabulary: the tokenizer's, see the docstring)
MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, max_position_embeddings=32768, rope_theta=10000.0, sliding_window=4096,
                  rms_norm_eps=1e-5)


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Measured dense matmul rate in the serving dtype (bf16 on CUDA, fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_backbone(shape: str, tokenizer_dir: Path, device: torch.device, dtype: torch.dtype, quick: bool):
    from transformers import AutoConfig, AutoModel, MistralConfig

    base = AutoConfig.from_pretrained(tokenizer_dir)
    if shape == "7b":
        config = MistralConfig(vocab_size=base.vocab_size, bos_token_id=base.bos_token_id,
                               eos_token_id=base.eos_token_id, **MISTRAL_7B)
    else:
        config = base
    if quick:  # the same architecture, a few narrow layers
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 96
        config.num_attention_heads, config.num_key_value_heads = 4, 2
        config.head_dim = 16
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()


def make_encoder(model, tokenizer, name: str, max_length: int):
    from e5rag.retriever.encoder import Encoder

    return Encoder(model, tokenizer, base_identity=f"random:{name}", max_length=max_length)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def numerics(model32, tokenizer, texts, max_length: int, batch_size: int) -> dict:
    """fp32 vs bf16 vectors of the same weights; EOS-only vs full forward in each dtype."""
    out = {}
    for name, model in (("fp32", model32), ("bf16", copy.deepcopy(model32).to(torch.bfloat16))):
        enc = make_encoder(model, tokenizer, "numerics", max_length)
        right = enc.encode(texts, batch_size=batch_size, show_progress_bar=False)  # EOS-only forward
        enc.padding_side = "left"  # the model's own forward with a padding mask, then pooling
        left = enc.encode(texts, batch_size=batch_size, show_progress_bar=False)
        out[name] = {"vectors": right, "eos_vs_full_min_cos": min_cosine(right, left),
                     "eos_vs_full_max_abs": float(np.abs(right - left).max())}
    return {"bf16_vs_fp32_min_cos": min_cosine(out["bf16"]["vectors"], out["fp32"]["vectors"]),
            **{f"{k}_{name}": v for name in ("fp32", "bf16") for k, v in out[name].items() if k != "vectors"}}


def rate(fn, tokens: int, device: torch.device, repeats: int) -> dict:
    """Best-of-``repeats`` tokens/s of ``fn`` (synchronised on CUDA) and its peak GPU memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    secs = timed(lambda: (fn(), sync(device)), repeats)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"tokens_per_s": tokens / secs, "seconds": secs, "peak_gib": peak}


def throughput(enc, texts, batch_size: int, repeats: int, st=None) -> dict:
    """e5rag's EOS-only forward (right padding), its full forward (left padding), optionally s-t."""
    tokens = sum(len(s) for s in enc.tokenize(texts)[0])
    encode = lambda: enc.encode(texts, batch_size=batch_size, show_progress_bar=False)  # noqa: E731
    rows = {}
    for side, name in (("right", "e5rag (EOS-only forward)"), ("left", "e5rag (full forward + mask)")):
        enc.padding_side = side
        rows[name] = rate(encode, tokens, enc.device, repeats)
    enc.padding_side = "right"
    if st is not None:
        rows["sentence-transformers (lasttoken)"] = rate(lambda: st.encode(
            texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True),
            tokens, enc.device, repeats)
    return {"tokens": tokens, "mean_len": tokens / len(texts), "rows": rows}


def compiled_check(enc, texts, batch_size: int, repeats: int) -> dict:
    """``Encoder.compile()`` on this device: one-time compile, then its speed and its distance from eager."""
    enc.padding_side = "right"
    eager = enc.encode(texts[:64], batch_size=16, show_progress_bar=False)
    enc.compile()
    start = time.perf_counter()
    got = enc.encode(texts[:64], batch_size=16, show_progress_bar=False)
    first = time.perf_counter() - start
    tokens = sum(len(s) for s in enc.tokenize(texts)[0])
    row = rate(lambda: enc.encode(texts, batch_size=batch_size, show_progress_bar=False), tokens, enc.device, repeats)
    failed = enc._compiled_eos.failed
    enc._compiled = enc._compiled_eos = None  # back to eager for whatever runs next
    return {"first_call_s": first, "min_cos_vs_eager": min_cosine(got, eager), "failed": failed, **row}


def sentence_transformer(model, tokenizer, directory: Path, max_length: int, device, dtype):
    from sentence_transformers import SentenceTransformer, models

    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    tr = models.Transformer(str(directory), max_seq_length=max_length, model_kwargs={"dtype": dtype})
    return SentenceTransformer(modules=[tr, models.Pooling(model.config.hidden_size, pooling_mode="lasttoken")],
                               device=str(device))


def training_check(model_dir: Path, device: torch.device, quick: bool) -> dict:
    """``benchmarks/train.py`` on the saved random model: real bf16 LoRA steps on this device."""
    out = Path(tempfile.mkdtemp()) / "train.json"
    cmd = [sys.executable, str(Path(__file__).parent / "train.py"), "--model", str(model_dir), "--device",
           str(device), "--batch-sizes", *(["4"] if quick else ["32", "128"]), "--chunk-size",
           "4" if quick else "32", "--steps", "2" if quick else "5", "--warmup", "1" if quick else "3",
           "--max-length", "160", "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = {"command": " ".join(cmd[1:]), "rc": proc.returncode, "seconds": time.perf_counter() - start,
              "stdout_tail": proc.stdout[-3000:], "stderr_tail": proc.stderr[-3000:]}
    if out.exists():
        result["points"] = json.loads(out.read_text())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, type=Path, help="folder with tokenizer files and config.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny shapes and few texts (to check the script)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["7b", "train"])
    ap.add_argument("--compile", action="store_true", help="also time Encoder.compile() at the small shape")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    device = torch.device(args.device)
    serve = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    n = 32 if args.quick else 1024
    texts = load_texts(None, n)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "max_length": args.max_length, "texts": n}
    import transformers

    report["transformers"] = transformers.__version__
    report["peak_tflops"] = matmul_tflops(device, n=1024 if args.quick else 8192)
    print(json.dumps({k: report[k] for k in ("date", "torch", "transformers", "device", "peak_tflops")}), flush=True)

    small32 = build_backbone("small", args.tokenizer, device, torch.float32, args.quick)
    report["numerics_small"] = numerics(small32, tokenizer, texts[:64], args.max_length, batch_size=16)
    print("numerics", json.dumps(report["numerics_small"]), flush=True)

    small = copy.deepcopy(small32).to(serve)
    del small32
    work = Path(tempfile.mkdtemp())
    st = sentence_transformer(small, tokenizer, work / "small", args.max_length, device, serve)
    enc = make_encoder(small, tokenizer, "small", args.max_length)
    report["throughput_small"] = throughput(enc, texts, batch_size=64, repeats=args.repeats, st=st)
    report["throughput_small"]["flops_per_token"] = flops_per_token(small, report["throughput_small"]["mean_len"])
    print("small", json.dumps(report["throughput_small"]), flush=True)
    if args.compile:
        report["compiled_small"] = compiled_check(enc, texts, batch_size=64, repeats=args.repeats)
        print("compiled", json.dumps(report["compiled_small"]), flush=True)
    del st, enc, small
    if device.type == "cuda":
        torch.cuda.empty_cache()

    if "7b" not in args.skip:
        big = build_backbone("7b", args.tokenizer, device, serve, args.quick)
        enc = make_encoder(big, tokenizer, "mistral-7b-shape", args.max_length)
        report["throughput_7b"] = throughput(enc, texts[: n // 2], batch_size=32, repeats=args.repeats)
        report["throughput_7b"]["flops_per_token"] = flops_per_token(big, report["throughput_7b"]["mean_len"])
        print("7b", json.dumps(report["throughput_7b"]), flush=True)
        del big, enc
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if "train" not in args.skip:
        report["training"] = training_check(work / "small", device, args.quick)
        print("training rc", report["training"]["rc"], report["training"].get("points"), flush=True)
        if report["training"]["rc"]:
            print(report["training"]["stderr_tail"], flush=True)

    for key in ("throughput_small", "throughput_7b"):
        if key in report:
            t = report[key]
            for name, row in t["rows"].items():
                mfu = row["tokens_per_s"] * t["flops_per_token"] / (report["peak_tflops"] * 1e12)
                row["of_peak"] = mfu
                print(f"{key:<17}{name:<36}{row['tokens_per_s']:>12.0f} tok/s {mfu:>6.1%} of peak "
                      f"{row['peak_gib'] or 0:>6.1f} GiB", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
