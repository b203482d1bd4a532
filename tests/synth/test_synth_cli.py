"""``e5rag synth`` argument handling: parse -> config -> run, exit codes, JSON summary."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from e5rag.cli import synth as cli
from e5rag.retriever.errors import InputError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="e5rag")
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["synth", *argv])


def test_flags_become_a_frozen_config(tmp_path):
    args = parse("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--num-examples", "5",
                 "--output", str(tmp_path / "d.jsonl"), "--kinds", "STS,bitext", "short_long",
                 "--languages", "en,German", "--concurrency", "3", "--seed", "11",
                 "--price-prompt", "0.5", "--api-key-env", "MY_KEY")
    config = cli.build_config(args)
    assert config.kinds == ("sts", "bitext", "short-long")
    assert config.languages == ("en", "German") and config.seed == 11 and config.concurrency == 3
    assert config.backend.kind == "http" and config.backend.api_key_env == "MY_KEY"
    assert config.price_prompt == 0.5 and config.price_completion is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # frozen
    local = cli.build_config(parse("--backend", "local", "--num-examples", "2", "--output", "x.jsonl"))
    assert local.backend.kind == "local" and local.backend.model is None and local.languages == "weighted"


@pytest.mark.parametrize("argv, message", [
    (("--num-examples", "2", "--output", "x.jsonl"), "needs --base-url and --model"),
    (("--base-url", "http://h/v1", "--model", "m", "--num-examples", "2", "--output", "x", "--kinds", "qa"),
     "unknown task kind 'qa'"),
    (("--base-url", "http://h/v1", "--model", "m", "--num-examples", "-1", "--output", "x"), "num_examples"),
    (("--base-url", "http://h/v1", "--model", "m", "--num-examples", "2", "--output", "x", "--languages",
      "elvish"), "unknown language"),
])
def test_bad_input_is_an_input_error(argv, message):
    with pytest.raises(InputError, match=message):
        cli.run(parse(*argv))


def test_run_writes_data_and_json_summary(tmp_path, fake_openai, capsys):
    fake, url = fake_openai
    fake.script.extend(["malformed"] * 2)
    summary_path = tmp_path / "summary.json"
    base = ("--base-url", url, "--model", "fake", "--output", str(tmp_path / "d.jsonl"), "--kinds", "sts",
            "--summary-json", str(summary_path), "--concurrency", "1", "--no-progress")
    assert cli.run(parse(*base, "--num-examples", "2", "--max-requests", "3")) == 1  # capped short
    assert "stopped at the request cap" in capsys.readouterr().err
    assert cli.run(parse(*base, "--num-examples", "2")) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["total"] == 2 and summary["resumed"] == 1 and summary["complete"]
    err = capsys.readouterr().err
    assert "synth: 2/2 examples" in err and "dropped" in err
