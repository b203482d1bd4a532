"""The README says what the code does: the FAISS layout it draws is what is on disk, and its
offline ``synth`` command is the one examples/synth_sample.md ran."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _layout_entries() -> list[tuple[int, str]]:
    """(depth, name) of each line of the README's FAISS directory drawing."""
    block = README.split("A FAISS index is a directory of crash-safe generations:", 1)[1]
    block = block.split("```", 2)[1]
    entries = []
    for line in block.splitlines():
        if line.strip():
            entries.append(((len(line) - len(line.lstrip())) // 2, line.split()[0]))
    return entries[1:]  # the first is the folder itself


def test_faiss_layout_in_the_readme_is_what_is_on_disk(tmp_path):
    from e5rag.indexers import Document, open_store

    root = tmp_path / "my-index"
    with open_store(root) as store:
        store.initialize(4, {"base": "test"})
        store.upsert([Document(f"d{i}", f"text {i}") for i in range(8)], np.eye(8, 4, dtype=np.float32))
        store.commit()
        store.upsert([Document("a", "alpha")], np.eye(4, dtype=np.float32)[:1])  # appended as a segment
        store.commit()
        entries = _layout_entries()
        generation = None
        for depth, name in entries:
            if depth == 1 and re.fullmatch(r"gen-\d{6}/", name):
                generation = next(p for p in root.iterdir() if re.fullmatch(r"gen-\d{6}", p.name))
                assert generation.is_dir() and (root / "CURRENT").read_text().strip() == generation.name
            elif depth == 1:
                assert (root / name).exists(), name
            else:
                assert generation is not None and (generation / name).is_file(), name
    assert {n for _, n in entries} >= {"CURRENT", ".lock", "index.faiss", "docs.sqlite", "manifest.json",
                                       "seg-000001.npz"}


def _synth_flags(text: str) -> dict[str, str]:
    """Flags of the first ``e5rag synth --backend local`` command in ``text`` (``--output`` left out)."""
    start = text.index("e5rag synth --backend local")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line.split("  #")[0].rstrip().rstrip("\\"))
        if not line.rstrip().endswith("\\"):
            break
    words = shlex.split(" ".join(lines))[2:]
    flags = dict(zip(words[::2], words[1::2], strict=True))
    assert flags.pop("--output", flags.pop("--out", None)) is not None
    return flags


def test_the_readme_offline_synth_command_is_the_one_that_was_run():
    sample = (REPO / "examples" / "synth_sample.md").read_text()
    ran = _synth_flags(sample)
    ran.pop("--seed", None)  # 0, the default
    assert _synth_flags(README) == ran
