"""Evaluation output: a readable table, a JSON document (with date and machine), a bar chart."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import RunResult
from .metrics import metric_names


def environment() -> dict[str, Any]:
    """When and where the numbers were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def prompt_label(result: RunResult) -> str:
    if result.retrieval == "bm25":
        return "bare query"
    if result.instruction:
        return "instruction"
    return "none" if result.fingerprint.get("pooling") == "sentence-transformers" else "no instruction"


def _docs_cell(r: RunResult) -> str:
    return {"encoded": f"{r.doc_seconds:.1f}s", "resumed": f"resumed {r.doc_seconds:.1f}s", "cache": f"cached ({r.doc_seconds:.2f}s)",
            "reused": "reused"}[r.doc_source]


def format_table(results: Sequence[RunResult]) -> str:
    """A fixed-width table, metrics x100 (as BEIR/MTEB papers print them)."""
    if not results:
        return "(no results)"
    names = metric_names(results[0].k)
    header = ["dataset", "model", "query prompt", *names, "queries", "docs", "doc encode", "query encode"]
    rows = [[r.dataset, r.model, prompt_label(r), *(f"{100 * r.metrics[m]:.2f}" for m in names),
             str(r.n_queries), str(r.n_documents), _docs_cell(r), f"{r.query_seconds:.1f}s"] for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = set(range(3, len(header)))

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def report_dict(results: Sequence[RunResult], command: str | None = None) -> dict[str, Any]:
    """JSON-ready: environment, the command line, and one entry per result (metrics as fractions)."""
    return {"environment": environment(), "command": command, "results": [r.to_dict() for r in results]}


def save_plot(results: Sequence[RunResult], path: str | Path, metric: str = "ndcg@10") -> Path:
    """Grouped bars: one group per dataset, one bar per (model, query prompt). Written with Agg."""
    from .._optional import require

    matplotlib = require("matplotlib", "eval", "--plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in results))
    series = list(dict.fromkeys(f"{r.model} ({prompt_label(r)})" for r in results))
    value = {(r.dataset, f"{r.model} ({prompt_label(r)})"): 100 * r.metrics[metric] for r in results}
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(datasets) * max(1, len(series)) ** 0.5 + 2), 4))
    for j, name in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(datasets))]
        ys = [value.get((d, name), 0.0) for d in datasets]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel(f"{metric} (x100)")
    ax.set_title(f"{metric} on BEIR ({results[0].split if results else ''} split)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
