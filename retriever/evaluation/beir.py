"""BEIR-format datasets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Everything is read and cross-checked before any model is loaded, so a typo in a qrels file
fails in a second with its file and line number (format: https://github.com/beir-cellar/beir).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e5rag.indexers import Document

from ..errors import InputError
from ..jsonl import iter_json_objects
from ..sources import read_documents

Qrels = dict[str, dict[str, int]]  # query id -> {document id: graded relevance}


@dataclass(frozen=True)
class BeirDataset:
    """One split of a BEIR dataset; ``queries`` holds only the split's judged queries."""

    name: str
    path: Path
    split: str
    corpus: tuple[Document, ...]
    queries: dict[str, str]
    qrels: Qrels

    @property
    def doc_ids(self) -> list[str]:
        return [d.id for d in self.corpus]


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path.parent} is not a BEIR dataset folder: {what} {path.name} is missing")
    return path


def read_beir_queries(path: Path) -> dict[str, str]:
    """``{"_id", "text"}`` per line -> {id: text}; ids must be unique."""
    out: dict[str, str] = {}
    for where, row in iter_json_objects(path):
        if "_id" not in row:
            raise InputError(f"{where}: expected a JSON object with an \"_id\" field")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: query {row['_id']!r} has no text")
        qid = str(row["_id"])
        if qid in out:
            raise InputError(f"{where}: query id {qid!r} appears twice; ids must be unique")
        out[qid] = text
    return out


def read_qrels(path: Path) -> Qrels:
    """``query-id<TAB>corpus-id<TAB>score`` rows (a header line is optional) -> Qrels."""
    qrels: Qrels = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\r\n").split("\t")
            where = f"{path} line {number}"
            if len(cols) != 3:
                raise InputError(f"{where}: expected 3 tab-separated columns "
                                 f"(query-id, corpus-id, score), got {len(cols)}")
            if number == 1 and cols[2].strip().lower() == "score":
                continue
            try:
                score = int(float(cols[2]))
            except ValueError:
                raise InputError(f"{where}: the score {cols[2]!r} is not a number") from None
            qrels.setdefault(cols[0].strip(), {})[cols[1].strip()] = score
    if not qrels:
        raise InputError(f"{path} holds no relevance judgments")
    return qrels


def _check_ids(missing: list[str], what: str, where: Path, target: str) -> None:
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(f"{where}: {len(missing)} {what} are absent from {target}: {shown}")


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Read and validate one split; the dataset's name is its folder name (e.g. ``scifact``)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder (expected corpus.jsonl, queries.jsonl, qrels/)")
    corpus_file = _require(root / "corpus.jsonl", "the corpus")
    queries_file = _require(root / "queries.jsonl", "the queries file")
    qrels_file = root / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        hint = f"splits present: {', '.join(have)}" if have else "the folder has no qrels/*.tsv at all"
        raise InputError(f"{root}: no judgments for split {split!r} (qrels/{split}.tsv is missing; {hint})")
    qrels = read_qrels(qrels_file)
    all_queries = read_beir_queries(queries_file)
    corpus = read_documents([str(corpus_file)])
    doc_ids = {d.id for d in corpus}
    _check_ids(sorted(q for q in qrels if q not in all_queries), "query ids", qrels_file, "queries.jsonl")
    _check_ids(sorted({d for rel in qrels.values() for d in rel if d not in doc_ids}), "corpus ids", qrels_file, "corpus.jsonl")
    queries = {q: all_queries[q] for q in all_queries if q in qrels}
    return BeirDataset(name=root.resolve().name, path=root, split=split, corpus=tuple(corpus),
                       queries=queries, qrels=qrels)
