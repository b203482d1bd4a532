"""e5rag training: LoRA contrastive fine-tuning of the serving encoder (E5-Mistral, arXiv 2401.00368).

InfoNCE over in-batch and hard negatives (``loss.info_nce``), GradCache (``gradcache``), torchrun or
DeepSpeed ZeRO-3 (``backend``), atomic resumable checkpoints (``checkpoint``), hard-negative mining
(``mine``) and adapter merging (``merge``). Needs the ``train`` extra: ``pip install 'e5rag[train]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import DataSpec, TrainConfig
    from .loss import info_nce
    from .merge import MergeReport, merge_adapter
    from .mine import MineConfig, MineReport, mine_hard_negatives
    from .trainer import TrainResult, train

_EXPORTS = {
    "DataSpec": "config", "TrainConfig": "config", "info_nce": "loss", "MergeReport": "merge",
    "merge_adapter": "merge", "MineConfig": "mine", "MineReport": "mine", "mine_hard_negatives": "mine",
    "TrainResult": "trainer", "train": "trainer",
}

__all__ = ["DataSpec", "MergeReport", "MineConfig", "MineReport", "TrainConfig", "TrainResult", "info_nce",
           "merge_adapter", "mine_hard_negatives", "train"]


def __getattr__(name: str):
    # torch, peft and deepspeed load only when a training function is used.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
