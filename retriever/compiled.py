"""An inference-only compiled forward for CPU throughput: ``torch.compile`` (inductor) with weight
freezing and dynamic shapes, falling back to eager if compilation fails.

On CPU, most of a small decoder's time outside the matmuls goes to element-wise work (RMSNorm,
rotary, SiLU, residual adds) that inductor fuses, and freezing lets oneDNN pre-pack the weights.
The first call compiles (a minute or more), so it pays off on large corpora (``e5rag index
--compile``). It wraps any forward over a model: the model itself or a function of it such as
``eos_forward.eos_hidden``. Frozen weights are constants of the compiled graph: this path never runs with
gradients enabled (training uses the eager model), and it keeps a second, packed copy of the weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


class CompiledForward:
    """``forward(*args, **kwargs)`` through a compiled graph when gradients are off; eager otherwise
    or after a compile failure (logged once, never fatal). ``model`` is the module whose weights
    the graph freezes (``forward`` itself when it is the model)."""

    def __init__(self, forward: Callable, model: torch.nn.Module | None = None) -> None:
        self.forward = forward
        self.model = forward if model is None else model
        self.failed = False
        self._compiled = torch.compile(forward, dynamic=True, options={"freezing": True})

    def __call__(self, *args, **kwargs):
        if self.failed or torch.is_grad_enabled():
            return self.forward(*args, **kwargs)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as exc:  # inductor needs a C++ compiler on CPU; anything else is its bug, not the input's
            self.failed = True
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            log.warning("torch.compile failed (%s: %s); encoding continues without it",
                        type(exc).__name__, " | ".join(lines[:3])[:300])
            return self.forward(*args, **kwargs)
