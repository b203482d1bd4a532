"""Run by ``torchrun --nproc_per_node 2`` from test_training_multiprocess.py: the same training twice
in one process group, once under DeepSpeed ZeRO-3 with GradCache, once plain (torch, DDP-style).

usage: mp_worker.py OUT_DEEPSPEED OUT_TORCH TRAIN_FLAGS...
"""

from __future__ import annotations

import sys

from e5rag.cli import main

if __name__ == "__main__":
    out_ds, out_torch, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    code = main(["train", *flags, "--output", out_ds, "--deepspeed", "zero3", "--gradcache-chunk-size", "3"])
    code = code or main(["train", *flags, "--output", out_torch])
    sys.exit(code)
