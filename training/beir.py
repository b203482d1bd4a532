"""BEIR folders as training data: reading is ``retriever.evaluation.beir`` (one loader for the
project); this adds the task of a folder and the relevant documents of each query."""

from __future__ import annotations

from pathlib import Path

from e5rag.retriever.errors import InputError
from e5rag.retriever.evaluation.beir import BeirDataset, load_beir
from e5rag.retriever.tasks import get_task, resolve_task

__all__ = ["BeirDataset", "beir_task", "is_beir_dir", "load_beir", "positives"]


def is_beir_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def positives(dataset: BeirDataset) -> dict[str, tuple[str, ...]]:
    """query id -> ids of its relevant documents (score > 0), in qrels order; queries with none left out."""
    out = {}
    for qid, judged in dataset.qrels.items():
        rel = tuple(d for d, score in judged.items() if score > 0)
        if rel and qid in dataset.queries:
            out[qid] = rel
    return out


def beir_task(directory: str | Path, task: str | None) -> str:
    """The task definition for a BEIR folder: the given name/sentence, else the task named like the folder."""
    if task is not None:
        return resolve_task(task)
    found = get_task(Path(directory).resolve().name)
    if found is None:
        raise InputError(f"no registered task is named like the folder {Path(directory).name!r}: give the "
                         "task (a registered name or a sentence) with --task, or as data: [{path: ..., task: ...}]")
    return found.definition
