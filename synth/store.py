"""Append-only JSONL files that survive being killed: the examples and the brainstormed task pools.

Every row is written with one ``write`` and flushed, so a kill leaves at most one torn last line;
``repair_tail`` cuts it off before a run appends again. Row ids are ``"{seed}-{request index}"``,
which tells a resumed run where its deterministic request plan left off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from e5rag.retriever.errors import InputError

ROW_KEYS = ("id", "kind", "language", "task", "query", "positive", "negative", "model", "prompt_hash")


def example_key(query: str, positive: str, negative: str) -> str:
    """Identity of an example for exact-duplicate removal (its three texts, nothing else)."""
    blob = json.dumps([query, positive, negative], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def row_id(seed: int, index: int) -> str:
    return f"{seed}-{index}"


def repair_tail(path: Path) -> int:
    """Cut an unterminated last line (left by a kill mid-write); returns the bytes removed."""
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        pos = size
        while pos > 0:  # scan back in blocks for the last newline
            step = min(65536, pos)
            fh.seek(pos - step)
            block = fh.read(step)
            nl = block.rfind(b"\n")
            if nl != -1:
                keep = pos - step + nl + 1
                break
            pos -= step
        else:
            keep = 0
        fh.truncate(keep)
    return size - keep


def _read_rows(path: Path):
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno} is not valid JSON ({exc.msg}); this file was not "
                                 f"written by `e5rag synth` or was edited: fix or move it") from None


@dataclass
class ExistingOutput:
    """What an earlier run left: how many rows, their example keys, and the next request index."""

    count: int = 0
    seen: set[str] = field(default_factory=set)
    next_index: int = 0
    torn_bytes: int = 0


def load_existing(path: Path, seed: int) -> ExistingOutput:
    """Repair and read an output file; ``next_index`` follows the highest index used with ``seed``."""
    if path.is_dir():
        raise InputError(f"--output {path} is a directory; give a .jsonl file path")
    state = ExistingOutput(torn_bytes=repair_tail(path))
    if not path.is_file():
        return state
    for row in _read_rows(path):
        if not isinstance(row, dict) or any(k not in row for k in ("query", "positive", "negative")):
            raise InputError(f"{path} holds a row without query/positive/negative: not an e5rag synth file")
        state.count += 1
        state.seen.add(example_key(row["query"], row["positive"], row["negative"]))
        row_seed, _, index = str(row.get("id", "")).rpartition("-")
        if row_seed == str(seed) and index.isdigit():
            state.next_index = max(state.next_index, int(index) + 1)
    return state


class JsonlAppender:
    """Opens ``path`` for appending; ``write`` puts one row on one line and flushes it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_task_rounds(path: Path) -> dict[str, dict[int, list[str]]]:
    """kind -> round -> task definitions, from a tasks file (repaired first; missing file = empty)."""
    repair_tail(path)
    rounds: dict[str, dict[int, list[str]]] = defaultdict(dict)
    if not path.is_file():
        return rounds
    for row in _read_rows(path):
        try:
            rounds[row["kind"]][int(row["round"])] = [str(t) for t in row["tasks"]]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path} has a row without kind/round/tasks: not an e5rag tasks file") from None
    return rounds


def task_pool(rounds: dict[int, list[str]]) -> list[str]:
    """The rounds' tasks in round order with duplicates removed (a fixed order for a fixed file)."""
    return list(dict.fromkeys(t for r in sorted(rounds) for t in rounds[r]))
