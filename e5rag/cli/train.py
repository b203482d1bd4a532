"""``e5rag train`` (LoRA contrastive fine-tuning), ``e5rag mine`` (hard negatives for a BEIR
dataset or a training-pairs file) and ``e5rag merge`` (fold an adapter into the base weights).

Every training option is a flag built from ``training.config.TrainConfig``; ``--config FILE.yaml``
sets any of them and flags override the file. Several processes: ``torchrun --nproc_per_node N -m
e5rag train ...`` or ``deepspeed --num_gpus N --module e5rag train --deepspeed zero3 ...``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

_HELP = {
    "data": "training source: synthetic JSONL (task/query/positive/negative rows, e.g. from `e5rag synth` or "
            "`e5rag mine`) or a BEIR folder; repeat to mix; PATH:WEIGHT sets its sampling weight (default 1)",
    "output": "run folder: adapter/, checkpoints/, metrics.jsonl (default runs/e5rag-lora)",
    "model": "base model directory, .gguf or cached hub id (default: the embedded SmolLM2-135M-Instruct)",
    "max_length": "tokens per text, EOS included (default 512)",
    "batch_size": "global batch: queries per optimizer step over all processes (default 32)",
    "hard_negatives": "hard negatives per query, sampled from the row's negatives (default 1)",
    "gradcache_chunk_size": "embed the batch in chunks of this many texts with GradCache (same gradients, "
                            "memory of one chunk; default: no GradCache)",
    "gradient_checkpointing": "recompute activations in backward to save memory",
    "temperature": "InfoNCE temperature (default 0.02)",
    "lr": "peak learning rate of AdamW (default 1e-4)",
    "weight_decay": "AdamW weight decay (default 0)",
    "warmup_steps": "linear warm-up steps (default: 10%% of the run)",
    "max_grad_norm": "clip the gradient norm to this ('none': no clipping; default 1.0)",
    "epochs": "epochs over the (weighted) data when --max-steps is not given (default 1)",
    "max_steps": "optimizer steps (default: --epochs worth)",
    "lora_r": "LoRA rank (default 16)",
    "lora_alpha": "LoRA alpha (default 32)",
    "lora_dropout": "LoRA dropout (default 0.1)",
    "lora_targets": "module names that get LoRA (default: q/k/v/o and gate/up/down projections)",
    "lora_layers": "put LoRA on the top N layers only: backward stops there (fast CPU training)",
    "init_adapter": "start from this PEFT adapter's LoRA weights (same layers, rank and targets), e.g. "
                    "retriever/default_model to refresh the default; the optimizer starts fresh",
    "seed": "seed of the LoRA init, data order and negatives (default 42)",
    "save_every": "checkpoint every N steps (default 500; Ctrl-C or SIGTERM also checkpoints, after the step)",
    "keep_checkpoints": "checkpoints kept (default 2)",
    "log_every": "write a metrics line every N steps (default 1)",
    "resume": "continue the run in --output from its latest checkpoint (or from the checkpoint folder given)",
    "deepspeed": "DeepSpeed config file, or 'zero3' for the built-in ZeRO-3 preset",
    "device": "cpu or cuda (default: cuda when available)",
    "progress": "show a progress bar (default on)",
}


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from e5rag.training.config import TrainConfig

    g = p.add_argument_group("training options (also settable in --config)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _HELP.get(f.name)}
        kind = str(f.type)
        if f.name == "data":
            kw.update(action="append", metavar="PATH[:WEIGHT]")
        elif f.name == "resume":
            kw.update(nargs="?", const="latest", metavar="CHECKPOINT")
        elif kind == "bool":
            kw.update(action=argparse.BooleanOptionalAction)
        elif kind.startswith("tuple[str"):
            kw.update(nargs="+", metavar="NAME")
        else:
            base = {"int": int, "float": float}.get(kind.split(" | ")[0], str)
            kw.update(type=_none_or(base) if "None" in kind else base)
        g.add_argument(flag, **kw)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the embedder with LoRA (InfoNCE, GradCache, DeepSpeed)",
                       description="LoRA contrastive fine-tuning of the encoder that `e5rag index/search` serve. "
                                   "The adapter lands in OUTPUT/adapter (PEFT format): use it with --adapter.")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of training options (flags override it)")
    # The `deepspeed` launcher appends --local_rank=N; the rank is read from the environment instead.
    p.add_argument("--local_rank", "--local-rank", dest="launcher_local_rank", type=int, help=argparse.SUPPRESS)
    _add_config_flags(p)
    p.set_defaults(func=run_train)

    m = sub.add_parser("mine", help="mine hard negatives for a BEIR dataset or a training-pairs file into training JSONL",
                       description="Search each query with its task and keep documents ranked inside --window "
                                   "(the query's positives excluded) as hard negatives. A BEIR folder: its corpus "
                                   "and the --split queries; one row per (query, relevant document). A training-pairs "
                                   "JSONL file (the rows `e5rag train --data` reads): the corpus is the file's "
                                   "distinct positives, each distinct (task, query) is searched with its row's task, "
                                   "and every positive it appears with (or a whitespace variant of one) is never its "
                                   "negative; one row per input row, its fields kept, with `negatives` = its "
                                   "labelled negative (if any) first, then the mined ones.")
    m.add_argument("dataset", metavar="BEIR_DIR|PAIRS.jsonl",
                   help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or a training-pairs JSONL file "
                        "({task, query, positive, negative} per line)")
    m.add_argument("--output", dest="out", required=True, metavar="FILE.jsonl", help="where to write the training rows")
    m.add_argument("--split", default=None,
                   help="qrels split whose queries are mined (BEIR folders only; default train)")
    m.add_argument("--index", default=None, metavar="PATH",
                   help="search this e5rag index of the BEIR corpus (default or 'none': embed the corpus now; "
                        "not for a pairs file)")
    m.add_argument("--window", default="30-100", help="ranks to take negatives from, both included (default 30-100)")
    m.add_argument("--num-negatives", type=int, default=8, help="negatives kept per query (0: all; default 8)")
    m.add_argument("--max-queries", type=int, default=None, metavar="N",
                   help="mine only N distinct queries drawn with --seed (the corpus stays whole; for big files on "
                        "a slow CPU); rows of the other queries are not written (default: every query)")
    m.add_argument("--task", default=None,
                   help="task name or sentence of a BEIR folder (default: the task named like the folder); "
                        "pairs rows carry their own")
    m.add_argument("--model", default=None,
                   help="retriever to mine with when there is no --index: an E5 model (default: the embedded "
                        "SmolLM2), all-MiniLM-L6-v2, a sentence-transformers folder, or bm25 (SQLite FTS5 BM25 of "
                        "the bare query: no model, seconds for a whole corpus)")
    m.add_argument("--adapter", default=None, help="LoRA adapter for --model")
    m.add_argument("--max-length", type=int, default=None, help="tokens per text (default: the model's own, 512)")
    m.add_argument("--batch-size", type=int, default=16, help="texts per forward pass (default 16)")
    m.add_argument("--seed", type=int, default=0,
                   help="seed of the negatives kept from the window and of the --max-queries sample (default 0)")
    m.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    m.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the corpus embedding cache shared with `e5rag eval`")
    m.set_defaults(func=run_mine)

    g = sub.add_parser("merge", help="fold a LoRA adapter into the base weights and save a model folder",
                       description="Merge in fp32, save model + tokenizer, and check that merged and unmerged "
                                   "embeddings agree (fails above --tolerance).")
    g.add_argument("--model", default=None, help="base model (default: the embedded SmolLM2-135M-Instruct)")
    g.add_argument("--adapter", required=True, metavar="DIR", help="PEFT adapter folder, or a `train --output` folder")
    g.add_argument("--output", dest="out", required=True, metavar="OUTDIR", help="new model folder to write")
    g.add_argument("--tolerance", type=float, default=1e-4, help="max abs embedding difference allowed (1e-4)")
    g.add_argument("--max-length", type=int, default=512,
                   help="tokens per text of the merged-vs-unmerged check (default 512)")
    g.set_defaults(func=run_merge)


def train_config_from_args(args: argparse.Namespace):
    """Defaults < --config file < flags."""
    import dataclasses

    from e5rag.training.config import TrainConfig, load_config_file

    values = load_config_file(args.config) if args.config else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values)


def run_train(args: argparse.Namespace) -> int:
    from e5rag.training.trainer import train

    result = train(train_config_from_args(args))
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        last = "n/a" if result.last_loss is None else f"{result.last_loss:.4f}"
        print(f"trained {result.steps} steps (last loss {last}); adapter: {result.adapter}; "
              f"metrics: {result.metrics}", file=sys.stderr)
        print(result.adapter)
    return 0


def run_mine(args: argparse.Namespace) -> int:
    from e5rag.training.mine import MineConfig, mine_hard_negatives

    index = None if args.index in (None, "none", "None") else args.index
    report = mine_hard_negatives(MineConfig(
        dataset=args.dataset, out=args.out, split=args.split, index=index, window=args.window,
        num_negatives=args.num_negatives, task=args.task, model=args.model, adapter=args.adapter,
        max_length=args.max_length, batch_size=args.batch_size, seed=args.seed, device=args.device,
        use_cache=not args.no_cache, max_queries=args.max_queries))
    sampled = (f" (a --max-queries sample of {report.queries_in_input})"
               if report.queries < report.queries_in_input else "")
    empty = (f" ({report.rows_without_negatives} rows written with only their labelled negative, if any)"
             if report.without_negatives else "")
    print(f"mined {report.rows} rows for {report.queries} queries{sampled} into {report.out}: "
          f"{report.queries - report.without_negatives} queries got negatives, {report.without_negatives} got none "
          f"in the window{empty}", file=sys.stderr)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from e5rag.training.merge import merge_adapter

    report = merge_adapter(args.model, args.adapter, args.out, tolerance=args.tolerance, max_length=args.max_length)
    print(f"merged into {report.out}; max abs embedding difference {report.max_abs_diff:.3g} over "
          f"{report.texts} probe texts (tolerance {report.tolerance:g})", file=sys.stderr)
    return 0
