"""Run accounting: counters while running, and the frozen summary printed at the end."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class RunStats:
    """Mutable counters of one run (this process only; earlier runs' rows count in ``resumed``)."""

    kept: int = 0
    duplicates: int = 0
    surplus: int = 0
    dropped: Counter = field(default_factory=Counter)
    requests: int = 0
    brainstorm_requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add_usage(self, prompt_tokens: int, completion_tokens: int, retries: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.retries += retries


@dataclass(frozen=True)
class SynthSummary:
    """The outcome of ``synthesize``. ``total`` rows are in the file; ``complete`` when it reached
    the requested number; ``requests == kept + duplicates + sum(dropped) + surplus``, where ``surplus``
    replies arrived after it was reached and were not used.
    ``cost_usd`` is None unless a price was given (per 1M tokens); ``interrupted`` names the signal
    that stopped the run early (rerunning the same command resumes it)."""

    out: str
    requested: int
    total: int
    resumed: int
    kept: int
    duplicates: int
    surplus: int
    dropped: dict[str, int]
    brainstorm_dropped: dict[str, int]
    requests: int
    brainstorm_requests: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    cost_usd: float | None
    task_pool_sizes: dict[str, int]
    interrupted: str | None = None

    @property
    def complete(self) -> bool:
        return self.total >= self.requested

    def to_dict(self) -> dict:
        return dict(asdict(self), complete=self.complete)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def format_text(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        lines = [
            f"synth: {self.total}/{self.requested} examples in {self.out} "
            f"({self.kept} new, {self.resumed} from an earlier run)",
            f"  dropped: {sum(self.dropped.values())} ({drops}); duplicates removed: {self.duplicates}",
            f"  requests: {self.requests} examples + {self.brainstorm_requests} brainstorm; "
            f"retries: {self.retries}; unused replies after the target: {self.surplus}",
            *([f"  brainstorm failures: {self.brainstorm_dropped}"] if self.brainstorm_dropped else []),
            f"  tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion; "
            f"wall time {self.wall_s:.1f} s",
        ]
        if self.task_pool_sizes:
            lines.append("  task pools: " + ", ".join(f"{k} {v}" for k, v in self.task_pool_sizes.items()))
        if self.cost_usd is not None:
            lines.append(f"  cost: ${self.cost_usd:.4f}")
        if self.interrupted:
            lines.append(f"  stopped by {self.interrupted}: rerun the same command to resume")
        return "\n".join(lines)


def cost_usd(prompt_tokens: int, completion_tokens: int, price_prompt: float | None,
             price_completion: float | None) -> float | None:
    """Dollars for the tokens at per-1M-token prices; None when no price was given."""
    if price_prompt is None and price_completion is None:
        return None
    return (prompt_tokens * (price_prompt or 0.0) + completion_tokens * (price_completion or 0.0)) / 1e6
