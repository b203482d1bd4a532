"""Read documents and queries from the formats users have: BEIR ``corpus.jsonl``, any JSONL, a
text, Markdown, HTML or PDF file (one document, its id the file name), a folder of such files
(recursively, ids the paths inside it; see ``extract``), or ``-`` for stdin (JSONL, or one
document a line).

``read_documents`` returns a list; ``stream_documents`` yields the same documents one at a time
(bounded memory whatever the file size). ``e5rag index`` validates files in a first streamed pass
before the model loads, so a bad line 90,000 fails in seconds with its file and line number, never
after an hour of encoding, and then streams them again into the index (stdin is read once).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from e5rag.indexers import Document

from .errors import InputError
from .extract import KNOWN_SUFFIXES, extract_file, is_known, looks_binary
from .jsonl import parse_json_object as _parse_json_line
from .textio import decoded_lines

ID_FIELDS = ("_id", "id", "doc_id", "docid")
JSONL_SUFFIXES = (".jsonl", ".json")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldNames:
    """Which JSON fields hold the id, text and title (None: try the usual names for ids)."""

    id: str | None = None
    text: str = "text"
    title: str = "title"


@dataclass(frozen=True)
class Query:
    """One query; ``task`` overrides the command's task when the input gives one."""

    id: str
    text: str
    task: str | None = None


def document_from_row(row: dict[str, Any], fields: FieldNames, where: str) -> Document:
    """Map one JSON object to a Document; fields other than id/text/title become metadata."""
    id_field = fields.id or next((f for f in ID_FIELDS if f in row), None)
    if id_field is None or id_field not in row:
        wanted = fields.id or " or ".join(ID_FIELDS)
        raise InputError(f"{where}: no id field ({wanted}); name it with --id-field")
    if fields.text not in row:
        raise InputError(f"{where}: no text field {fields.text!r}; name it with --text-field")
    text, title = row[fields.text], row.get(fields.title) or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise InputError(f"{where}: text and title must be strings")
    doc_id = _id_text(row[id_field], id_field, where)
    if not doc_id:
        raise InputError(f"{where}: the id is empty")
    if not (title + text).strip():
        raise InputError(f"{where}: document {doc_id!r} has empty text")
    meta = {k: v for k, v in row.items() if k not in (id_field, fields.text, fields.title, "metadata")}
    if isinstance(row.get("metadata"), dict):
        meta.update(row["metadata"])
    return Document(doc_id, text, title, meta)


def _id_text(value: Any, field: str, where: str) -> str:
    """An id as text: strings and numbers only (``null`` would otherwise become the id "None")."""
    if value is None or isinstance(value, (bool, list, dict)):
        shown = "null" if value is None else type(value).__name__
        raise InputError(f"{where}: the id field {field!r} is {shown}; give every item a string or number id")
    return str(value)


def _read_handle(handle: IO, name: str, stem: str, fields: FieldNames) -> Iterator[Document]:
    lines = decoded_lines(handle, name)
    first = next(lines, None)
    if first is None:
        return
    as_json = name.endswith((".jsonl", ".json")) or first[1].lstrip().startswith("{")
    for number, line in _chain(first, lines):
        where = f"{name} line {number}"
        if as_json:
            yield document_from_row(_parse_json_line(line, where), fields, where)
        else:
            yield Document(f"{stem}:{number}", line.strip())


def _chain(first, rest):
    yield first
    yield from rest


def iter_documents(sources: Iterable[str], fields: FieldNames = FieldNames(), stdin: TextIO | None = None) -> Iterator[Document]:
    """Documents from each source in turn (see the module docstring for the formats)."""
    for source in sources:
        if source == "-":
            yield from _read_handle(stdin or sys.stdin, "<stdin>", "stdin", fields)
            continue
        path = Path(source)
        if path.is_dir():
            yield from _read_folder(path)
            continue
        if not path.is_file():
            raise InputError(f"{source}: no such file or directory")
        if not _is_jsonl(path):  # one document per file, its id the file name
            doc = _file_document(path, path.name)
            if doc is not None:
                yield doc
            continue
        with open(path, "rb") as fh:
            yield from _read_handle(fh, str(path), path.stem, fields)


def _is_jsonl(path: Path) -> bool:
    """A ``.jsonl``/``.json`` file, or a file of no known document type whose first line is a JSON object."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        return True
    if is_known(path):
        return False
    with open(path, "rb") as fh:
        return fh.readline(4096).lstrip().startswith(b"{")


def _file_document(path: Path, doc_id: str) -> Document | None:
    """One file as one document (None when it holds no text)."""
    found = extract_file(path)
    if not (found.title + found.text).strip():
        return None
    return Document(doc_id, found.text, found.title, {"path": str(path), **found.metadata})


def _read_folder(folder: Path) -> Iterator[Document]:
    """Every document file under ``folder`` (recursively, hidden paths left out); any other file is
    skipped with one warning line."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    known = [f for f in files if is_known(f)]
    for f in files:
        if not is_known(f):
            with open(f, "rb") as fh:
                what = "a binary file" if looks_binary(fh.read(8192)) else "not a known document type"
            log.warning("skipping %s: %s (indexed: %s)", f, what, " ".join(KNOWN_SUFFIXES))
    if not known:
        raise InputError(f"{folder} holds no document files ({' '.join(KNOWN_SUFFIXES)})")
    for f in known:
        doc = _file_document(f, str(f.relative_to(folder)))
        if doc is not None:
            yield doc


def read_documents(sources: Iterable[str], fields: FieldNames = FieldNames(), stdin: TextIO | None = None) -> list[Document]:
    """All documents, validated: ids unique across every source, none empty."""
    return list(stream_documents(sources, fields, stdin))


def stream_documents(sources: Iterable[str], fields: FieldNames = FieldNames(),
                     stdin: TextIO | None = None) -> Iterator[Document]:
    """``read_documents`` one document at a time: memory holds the ids seen (for the duplicate check),
    never the texts. A duplicate id or an empty input raises when reached."""
    seen: dict[str, int] = {}
    for number, doc in enumerate(iter_documents(sources, fields, stdin)):
        first = seen.setdefault(doc.id, number)
        if first != number:
            raise InputError(f"document id {doc.id!r} appears twice in the input (documents {first + 1} "
                             f"and {number + 1}); ids must be unique")
        yield doc
    if not seen:
        raise InputError("the input holds no documents")


def read_queries(handle: TextIO, name: str = "<stdin>") -> list[Query]:
    """Queries as plain lines, or JSONL ``{"id", "text", "task"}`` (``task`` optional)."""
    out: list[Query] = []
    for number, line in decoded_lines(handle, name):
        where = f"{name} line {number}"
        if line.lstrip().startswith("{"):
            row = _parse_json_line(line, where)
            text = row.get("text", row.get("query"))
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{where}: the query has no text (a \"text\" field)")
            task = row.get("task")
            if task is not None and (not isinstance(task, str) or not task.strip()):
                raise InputError(f"{where}: \"task\" must be a non-empty string")
            id_field = "id" if "id" in row else "_id"
            out.append(Query(_id_text(row.get(id_field, number), id_field, where), text, task))
        else:
            out.append(Query(str(number), line.strip()))
    return out
