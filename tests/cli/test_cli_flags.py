"""One spelling per CLI option across commands: ``--output`` for what a command writes, and
``--progress/--no-progress`` pairs (argparse.BooleanOptionalAction) for progress bars."""

from __future__ import annotations

import argparse

from e5rag.cli import build_parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_one_spelling_for_output_and_progress():
    commands = subcommands()
    assert {"index", "search", "eval", "synth", "train", "mine", "merge"} <= set(commands)
    writers = set()
    for name, parser in commands.items():
        flags = {s: a for a in parser._actions for s in a.option_strings}
        assert "--out" not in flags, f"e5rag {name} spells --out: use --output"
        if "--output" in flags:
            writers.add(name)
        for flag, action in flags.items():
            if "progress" in flag:
                assert isinstance(action, argparse.BooleanOptionalAction), f"e5rag {name} {flag}"
                assert {"--progress", "--no-progress"} <= set(action.option_strings), f"e5rag {name} {flag}"
    assert {"eval", "synth", "train", "mine", "merge"} <= writers


def test_synth_progress_flags_parse_both_ways():
    synth = subcommands()["synth"]
    base = ["--num-examples", "1", "--output", "x.jsonl"]
    assert synth.parse_args(base).progress is True
    assert synth.parse_args([*base, "--no-progress"]).progress is False
    assert synth.parse_args([*base, "--progress"]).out.name == "x.jsonl"
