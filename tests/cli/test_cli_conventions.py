"""What a newcomer expects of the command line: help on every argument, --version, -v after the
command, delete naming the ids it did not find, an aligned results table."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version

import pytest

from e5rag.cli import build_parser, main

LONG_IDS = ["a-very-long-document-identifier-0001", "short", "mid-length-id-042"]
TEXTS = ["Coffee intake and the risk of type 2 diabetes.", "The Louvre is a museum in Paris.",
         "Salt intake and blood pressure in adults."]


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_argument_of_every_command_has_help():
    missing = [f"{name} {a.option_strings[0] if a.option_strings else a.metavar or a.dest}"
               for name, p in _commands().items() for a in p._actions
               if not a.help and not isinstance(a, argparse._HelpAction)]
    assert missing == []


def test_max_length_help_names_the_recorded_default():
    helps = {a.dest: a.help for a in _commands()["search"]._actions}
    assert "recorded in the index" in helps["max_length"]


def test_version_and_verbose_after_the_command():
    r = subprocess.run([sys.executable, "-m", "e5rag", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"e5rag {version('e5rag')}"
    parser = build_parser()
    assert parser.parse_args(["tasks", "-v"]).verbose is True
    assert parser.parse_args(["-v", "tasks"]).verbose is True  # a -v before the command is kept
    assert parser.parse_args(["tasks"]).verbose is False
    args = parser.parse_args(["search", "--index", "x", "--verbose", "q"])
    assert args.verbose is True and args.queries == ["q"]


@pytest.fixture
def long_id_index(mistral_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(LONG_IDS, TEXTS, strict=True)))
    index = tmp_path / "idx"
    assert main(["index", str(corpus), "--index", str(index), "--model", str(mistral_dir), "--max-length", "32"]) == 0
    return index


def test_table_stays_aligned_with_long_ids_and_delete_names_missing_ids(long_id_index, capsys):
    capsys.readouterr()
    assert main(["search", "--index", str(long_id_index), "-k", "3", "coffee and diabetes"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("    ")]
    assert len(rows) == 3
    width = max(len(i) for i in LONG_IDS)
    start = len("  " + "  1" + "  " + " 0.1234" + "  ")  # rank and score columns
    text_of = dict(zip(LONG_IDS, TEXTS, strict=True))
    for row in rows:
        doc_id = row[start:start + width].rstrip()
        assert doc_id in text_of, row
        assert row[start + width] == " " and row[start + width + 1:] == text_of[doc_id], row

    assert main(["delete", "--index", str(long_id_index), "short", "nope", "gone-too"]) == 1
    err = capsys.readouterr().err
    assert "deleted 1 of 3 ids; 2 documents left" in err
    assert "2 id(s) not in the index: nope, gone-too" in err
    assert main(["delete", "--index", str(long_id_index), "mid-length-id-042"]) == 0
    assert "not in the index" not in capsys.readouterr().err
