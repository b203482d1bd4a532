"""TrainConfig validation names the field; YAML and flags build the same config; flags win."""

from __future__ import annotations

import pytest

from e5rag.retriever.errors import InputError
from e5rag.training.config import DataSpec, TrainConfig, load_config_file

DATA = ("pairs.jsonl",)


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("max_length", 1), ("temperature", 0), ("temperature", float("nan")), ("lr", -1e-4),
    ("lora_r", 2.5), ("lora_dropout", 1.0), ("gradcache_chunk_size", 0), ("max_steps", 0), ("hard_negatives", -1),
    ("max_grad_norm", 0), ("warmup_steps", -1), ("epochs", 0), ("lora_layers", 0), ("save_every", True),
    ("gradient_checkpointing", "yes"), ("lora_targets", ()), ("seed", 1.5),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(InputError, match=field):
        TrainConfig(data=DATA, **{field: value})


def test_data_is_required_and_validated():
    with pytest.raises(InputError, match="data"):
        TrainConfig()
    with pytest.raises(InputError, match="weight"):
        TrainConfig(data=("a.jsonl:-1",))
    with pytest.raises(InputError, match="lora_targets"):
        TrainConfig(data=DATA, lora_targets="q_proj")


def test_data_spec_parsing():
    assert DataSpec.parse("x/pairs.jsonl:2.5") == DataSpec("x/pairs.jsonl", 2.5)
    assert DataSpec.parse("x/pairs.jsonl") == DataSpec("x/pairs.jsonl", 1.0)
    assert DataSpec.parse("C:odd/name") == DataSpec("C:odd/name")  # a colon that is not a weight
    assert DataSpec.parse({"path": "scifact", "task": "scifact", "split": "dev"}) == DataSpec("scifact", 1.0, "scifact", "dev")
    with pytest.raises(InputError, match="unknown key"):
        DataSpec.parse({"path": "x", "wieght": 2})


def test_from_dict_refuses_unknown_keys_and_round_trips():
    with pytest.raises(InputError, match="learning_rate"):
        TrainConfig.from_dict({"data": list(DATA), "learning_rate": 1e-4})
    config = TrainConfig.from_dict({"data": ["a.jsonl:2", {"path": "b", "task": "nq"}], "lora-r": 8,
                                    "lora_targets": ["q_proj", "v_proj"]})
    assert config.lora_r == 8 and config.lora_targets == ("q_proj", "v_proj")
    assert config.data == (DataSpec("a.jsonl", 2.0), DataSpec("b", 1.0, "nq"))
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_paper_defaults():
    config = TrainConfig(data=DATA)
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32.0, 0.1)
    assert (config.temperature, config.lr, config.epochs, config.max_length) == (0.02, 1e-4, 1.0, 512)
    assert config.lora_targets == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_yaml_file_then_flags(tmp_path):
    from e5rag.cli import build_parser
    from e5rag.cli.train import train_config_from_args

    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("data:\n  - a.jsonl:2\n  - {path: scifact, split: train}\nbatch_size: 64\nlr: 2.0e-4\n"
                         "lora_targets: [q_proj, v_proj]\nmax_grad_norm: null\n")
    args = build_parser().parse_args(["train", "--config", str(yaml_file), "--batch-size", "16", "--lora-layers", "4",
                                      "--no-progress", "--resume"])
    config = train_config_from_args(args)
    assert config.batch_size == 16 and config.lr == 2e-4 and config.lora_layers == 4  # flag beats file
    assert config.data == (DataSpec("a.jsonl", 2.0), DataSpec("scifact")) and config.max_grad_norm is None
    assert config.progress is False and config.resume == "latest"
    args = build_parser().parse_args(["train", "--data", "x.jsonl", "--data", "y.jsonl:0.5", "--max-grad-norm", "none"])
    config = train_config_from_args(args)
    assert config.data == (DataSpec("x.jsonl"), DataSpec("y.jsonl", 0.5)) and config.max_grad_norm is None


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match="mapping"):
        load_config_file(bad)
    with pytest.raises(InputError, match="no such file"):
        load_config_file(tmp_path / "missing.yaml")


def test_cli_reports_config_errors_as_one_line(capsys):
    from e5rag.cli import main

    assert main(["train", "--data", "x.jsonl", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("e5rag: error:") and "batch_size" in err and "Traceback" not in err


def test_example_config_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "train.yaml"
    config = TrainConfig.from_dict(load_config_file(example))
    assert config.data[0].path == "mined/scifact.jsonl" and config.gradcache_chunk_size == 8
    assert config.lora_r == 16 and config.temperature == 0.02
