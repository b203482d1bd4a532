"""AdamW with linear warm-up then linear decay to zero (the E5-Mistral schedule)."""

from __future__ import annotations

import torch


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """LR multiplier of 0-based ``step``: (s+1)/(w+1) while warming up, then linear down to 1/(T-w)
    at the last step (never 0 within the run, so no step is wasted)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def warmup_steps_for(total: int, warmup_steps: int | None) -> int:
    """``warmup_steps``, or 10% of the run when it is None."""
    return int(total * 0.1) if warmup_steps is None else min(int(warmup_steps), total)


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float,
                   warmup: int, total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``params`` and its ``LambdaLR`` schedule."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_warmup_decay(s, warmup, total))
    return optimizer, scheduler
