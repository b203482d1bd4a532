"""``e5rag synth``: generate E5-style synthetic training data (a thin face over ``synth``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KIND_CHOICES = "short-long, long-short, short-short, long-long, sts, bitext"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate synthetic retrieval training data with an LLM",
        description="Two-step synthetic data (brainstorm tasks, then write examples) as in E5-Mistral. "
                    "Resumable: rerun the same command to finish an interrupted run.")
    p.add_argument("--backend", choices=("http", "local"), default="http",
                   help="http: an OpenAI-compatible endpoint; local: a transformers model on this machine")
    p.add_argument("--base-url", help="API root of the endpoint, e.g. http://localhost:8000/v1 (http backend)")
    p.add_argument("--model", help="model name at the endpoint; for --backend local a model directory or "
                                   ".gguf file (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--num-examples", type=int, required=True, help="valid unique examples wanted in --out")
    p.add_argument("--output", dest="out", type=Path, required=True, help="output JSONL (appended to; task pools go to "
                                                           "OUT.tasks.jsonl)")
    p.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                   help=f"task kinds (space or comma separated): {KIND_CHOICES} (default: all)")
    p.add_argument("--languages", default="weighted",
                   help="weighted (the paper's mix), uniform, en, or a comma list of codes/names")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (local: batch size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never written anywhere)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request")
    p.add_argument("--max-retries", type=int, default=6, help="retries on 429/5xx/timeouts")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=None, help="completion tokens (default 2048 http, 512 local)")
    p.add_argument("--brainstorm-rounds", type=int, default=None, help="brainstorm requests per asymmetric kind")
    p.add_argument("--max-requests", type=int, default=None,
                   help="cap on example requests over all runs (default 4*N+64)")
    p.add_argument("--price-prompt", type=float, default=None, help="USD per 1M prompt tokens")
    p.add_argument("--price-completion", type=float, default=None, help="USD per 1M completion tokens")
    p.add_argument("--device", default=None, help="local backend: cpu or cuda")
    p.add_argument("--dtype", default=None, help="local backend: float32, bfloat16 or float16")
    p.add_argument("--no-prefill", action="store_true",
                   help="local backend: do not start the reply with the JSON opening")
    p.add_argument("--summary-json", default=None, metavar="PATH", help="also write the summary as JSON "
                                                                        "('-' for stdout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (default on)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The ``SynthConfig`` the parsed arguments describe (raises ``InputError`` on bad input)."""
    from e5rag.retriever.errors import InputError
    from e5rag.synth import HttpBackendConfig, LocalBackendConfig, SynthConfig, resolve_kind

    if args.backend == "http":
        if not args.base_url or not args.model:
            raise InputError("--backend http needs --base-url and --model (or use --backend local)")
        backend = HttpBackendConfig(args.base_url, args.model, api_key_env=args.api_key_env or None,
                                    timeout_s=args.timeout, max_retries=args.max_retries)
    else:
        backend = LocalBackendConfig(args.model, device=args.device, dtype=args.dtype,
                                     prefill=not args.no_prefill)
    kinds = None
    if args.kinds:
        kinds = tuple(resolve_kind(k) for item in args.kinds for k in item.split(",") if k.strip())
    languages = args.languages.strip()
    if languages not in ("weighted", "uniform"):
        languages = tuple(s.strip() for s in languages.split(",") if s.strip())
    extra = {"kinds": kinds} if kinds else {}
    return SynthConfig(
        out=args.out, num_examples=args.num_examples, backend=backend, languages=languages,
        seed=args.seed, concurrency=args.concurrency, temperature=args.temperature, top_p=args.top_p,
        max_tokens=args.max_tokens, brainstorm_rounds=args.brainstorm_rounds, max_requests=args.max_requests,
        price_prompt=args.price_prompt, price_completion=args.price_completion,
        progress=args.progress, **extra)


def run(args: argparse.Namespace) -> int:
    """0 when --output holds the requested examples, 1 when the request cap stopped the run short."""
    from e5rag.synth import synthesize

    summary = synthesize(build_config(args))
    print(summary.format_text(), file=sys.stderr)
    if args.summary_json == "-":
        print(summary.to_json())
    elif args.summary_json:
        Path(args.summary_json).write_text(summary.to_json() + "\n", encoding="utf-8")
    if not summary.complete:
        print(f"e5rag: stopped at the request cap with {summary.total} of {summary.requested} examples; "
              f"rerun with a larger --max-requests to continue", file=sys.stderr)
        return 1
    return 0
