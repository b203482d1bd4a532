"""``e5rag info``: the model record in words (base, adapter, dtype, max length, dim, when built) and --json."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from e5rag.cli import main
from e5rag.indexers import open_store

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus.jsonl"


def _lines(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        label, _, value = line.partition("  ")
        rows[label.strip()] = value.strip()
    return rows


def test_info_in_words_and_as_json(mistral_dir, tmp_path, capsys):
    index = tmp_path / "idx"
    started = datetime.now(timezone.utc).replace(microsecond=0)
    assert main(["index", str(CORPUS), "--index", str(index), "--model", str(mistral_dir), "--max-length", "64", "--no-chunk"]) == 0
    capsys.readouterr()
    assert main(["info", "--index", str(index), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert main(["info", "--index", str(index)]) == 0
    rows = _lines(capsys.readouterr().out)
    model = record["model"]
    assert rows["index"] == f"{index} (faiss, Flat, ip)"
    assert rows["documents"] == str(record["count"]) == "30"
    assert rows["base model"] == f"{model['base']} (from {mistral_dir.resolve()})"
    assert model["base"].startswith(f"hf:{mistral_dir.name}:sha256=")
    assert rows["adapter"] == "none"
    assert rows["dtype"] == "float32" == model["dtype"]
    assert rows["max length"] == "64 tokens" and rows["dim"] == "32" and rows["pooling"] == "last-token+eos"
    built = datetime.fromisoformat(rows["built"])
    assert started <= built <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_records_from_before_dtype_and_build_time_say_unknown(tmp_path, capsys):
    import numpy as np

    from e5rag.indexers import Document

    index = tmp_path / "old"
    with open_store(index) as store:
        store.initialize(4, {"base": "hf:m:0cb3f76a0ba0683b", "adapter": "lora:sha256=ab", "dim": 4,
                             "max_length": 512, "source": "/models/m", "adapter_path": "/adapters/a"})
        store.upsert([Document("a", "x")], np.eye(4, dtype=np.float32)[:1])
        store.commit()
    assert main(["info", "--index", str(index)]) == 0
    rows = _lines(capsys.readouterr().out)
    assert rows["base model"] == "hf:m:0cb3f76a0ba0683b (from /models/m)"
    assert rows["adapter"] == "lora:sha256=ab (from /adapters/a)"
    assert rows["dtype"].startswith("unknown") and rows["built"].startswith("unknown")
    assert rows["documents"] == "1" and rows["dim"] == "4"
