"""Training examples: (task, query, positive, hard negatives) from synthetic JSONL or BEIR folders.

Synthetic rows are what ``e5rag synth`` and ``e5rag mine`` write: ``{"task", "query", "positive",
"negative"}`` with ``negative`` nullable; ``e5rag mine`` adds a ``negatives`` list (several mined
negatives to sample from). Other fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e5rag.retriever.errors import InputError
from e5rag.retriever.instructions import format_document
from e5rag.retriever.jsonl import iter_json_objects
from e5rag.retriever.tasks import get_task

from .beir import beir_task, is_beir_dir, load_beir, positives
from .config import DataSpec


@dataclass(frozen=True)
class Example:
    """One query with its task definition, one positive and zero or more hard negatives."""

    task: str
    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """The examples of one ``DataSpec``."""

    spec: DataSpec
    examples: tuple[Example, ...]

    @property
    def name(self) -> str:
        return self.spec.name


def _text(row: dict, key: str, where: str, nullable: bool = False) -> str | None:
    value = row.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {key!r} must be a non-empty string" + (" or null" if nullable else ""))
    return value


def example_from_row(row: dict, where: str) -> Example:
    """Validate one synthetic row; a registered task name is expanded to its definition."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object")
    task = _text(row, "task", where)
    registered = get_task(task)
    negatives: list[str] = []
    listed = row.get("negatives")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(n, str) and n.strip() for n in listed):
            raise InputError(f"{where}: 'negatives' must be a list of non-empty strings")
        negatives.extend(listed)
    single = _text(row, "negative", where, nullable=True)
    if single is not None and single not in negatives:
        negatives.insert(0, single)
    return Example(registered.definition if registered else task.strip(), _text(row, "query", where),
                   _text(row, "positive", where), tuple(negatives))


def read_pairs(path: str | Path) -> list[Example]:
    """Every row of a synthetic-format JSONL file, validated with file and line numbers."""
    return [example_from_row(row, where) for where, row in iter_json_objects(path)]


def beir_examples(directory: str | Path, split: str = "train", task: str | None = None) -> list[Example]:
    """One example per (query, relevant document) of the split; no hard negatives (mine them with
    ``e5rag mine`` and train on its output for those)."""
    definition = beir_task(directory, task)
    data = load_beir(directory, split)
    corpus = {d.id: d for d in data.corpus}
    out = []
    for qid, dids in positives(data).items():
        for did in dids:
            doc = corpus[did]
            out.append(Example(definition, data.queries[qid], format_document(doc.text, doc.title)))
    return out


def load_source(spec: DataSpec) -> Source:
    """Read one source (JSONL file or BEIR folder)."""
    path = Path(spec.path)
    if is_beir_dir(path):
        examples = beir_examples(path, spec.split, spec.task)
    elif path.is_file():
        if spec.task is not None:
            raise InputError(f"data: {path} is a JSONL file whose rows carry their own task; 'task' is for BEIR folders")
        examples = read_pairs(path)
    elif path.is_dir():
        raise InputError(f"data: {path} is a folder but not a BEIR dataset (corpus.jsonl, queries.jsonl, qrels/)")
    else:
        raise InputError(f"data: {path}: no such file or directory")
    if not examples:
        raise InputError(f"data: {path} holds no examples")
    return Source(spec, tuple(examples))


def load_sources(specs: tuple[DataSpec, ...]) -> list[Source]:
    return [load_source(s) for s in specs]
