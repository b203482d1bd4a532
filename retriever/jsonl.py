"""Reading JSON Lines with errors that name the file and line (every reader in e5rag uses this)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import InputError
from .textio import decoded_lines


def parse_json_object(line: str, where: str) -> dict[str, Any]:
    """One JSON object from one line; ``where`` ("file line N") prefixes any error."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def numbered_lines(handle: TextIO) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for each non-blank line."""
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield number, line.rstrip("\n")


def iter_json_objects(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for each non-blank line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, "rb") as fh:  # decoded line by line: a bad byte is reported with its line
        for number, line in decoded_lines(fh, str(path)):
            where = f"{path} line {number}"
            yield where, parse_json_object(line, where)
