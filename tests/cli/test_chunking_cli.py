"""Chunking through the CLI: `index --chunk-tokens/--chunk-overlap/--no-chunk`, grouped `search`
(and `--per-chunk`), `get` putting a document back together, `delete` removing every chunk."""

from __future__ import annotations

import json
import random

import pytest
from tiny_models import CORPUS

from e5rag.cli import main
from e5rag.indexers import open_store


def long_text(seed: int, paragraphs: int = 10) -> str:
    rng = random.Random(seed)
    return "\n\n".join(" ".join(rng.choice(CORPUS[:8]) for _ in range(rng.randint(1, 3))) for _ in range(paragraphs))


@pytest.fixture
def corpus(tmp_path):
    rows = [{"_id": "long1", "title": "Manual", "text": long_text(1), "lang": "en"},
            {"_id": "long2", "text": long_text(2)},
            {"_id": "short", "text": "Coffee lowers the risk of diabetes."},
            {"_id": "titled", "title": "Only a title", "text": ""}]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, {r["_id"]: r for r in rows}


def index_ids(index) -> set[str]:
    with open_store(index, readonly=True) as store:
        import numpy as np

        hits = store.search(np.ones((1, store.manifest.dim), dtype=np.float32), store.count())[0]
    return {h.document.id for h in hits}


def test_index_search_get_delete_with_chunks(mistral_dir, corpus, tmp_path, capsys):
    path, rows = corpus
    index = tmp_path / "i"
    assert main(["index", str(path), "--index", str(index), "--model", str(mistral_dir), "--max-length", "64",
                 "--chunk-overlap", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ids = index_ids(index)
    assert report["added"] == 4 and report["total"] == len(ids)
    assert {"short", "titled"} <= ids and "long1" not in ids and {"long1#0", "long1#1", "long2#0"} <= ids

    assert main(["search", "--index", str(index), "-k", "4", "--json", "coffee in plants"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["parent_id"] for r in results) == sorted(rows)  # each document once
    for r in results:
        assert rows[r["parent_id"]]["text"][r["start"]:r["end"]] == r["text"]
        assert r["id"] == (r["parent_id"] if r["parent_id"] in ("short", "titled") else f"{r['parent_id']}#{r['chunk']}")
    assert main(["search", "--index", str(index), "-k", "8", "--per-chunk", "--json", "coffee in plants"]) == 0
    raw = json.loads(capsys.readouterr().out)["results"]
    assert len(raw) == 8 and len({r["parent_id"] for r in raw}) < 8

    assert main(["get", "--index", str(index), "long1", "short"]) == 0
    assert capsys.readouterr().out == rows["long1"]["text"] + "\n" + rows["short"]["text"] + "\n"
    assert main(["get", "--index", str(index), "--json", "long1"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["_id"], got["title"], got["text"], got["metadata"]) == ("long1", "Manual", rows["long1"]["text"],
                                                                        {"lang": "en"})
    assert main(["get", "--index", str(index), "nope"]) == 2
    assert "no document 'nope'" in capsys.readouterr().err

    assert main(["delete", "--index", str(index), "long1"]) == 0
    assert "deleted 1 of 1 ids" in capsys.readouterr().err
    assert not any(i.startswith("long1") for i in index_ids(index))


def test_chunk_flags(mistral_dir, corpus, tmp_path, capsys):
    path, _ = corpus
    small, whole = tmp_path / "small", tmp_path / "whole"
    assert main(["index", str(path), "--index", str(small), "--model", str(mistral_dir), "--max-length", "64",
                 "--chunk-tokens", "32", "--chunk-overlap", "0"]) == 0
    assert main(["index", str(path), "--index", str(whole), "--model", str(mistral_dir), "--max-length", "64",
                 "--no-chunk"]) == 0
    from transformers import AutoTokenizer

    from e5rag.retriever.chunking import token_count

    tok = AutoTokenizer.from_pretrained(mistral_dir)
    with open_store(small, readonly=True) as store:
        stored = store.get(sorted(index_ids(small)))
    assert len(stored) > 10 and all(token_count(tok, d.text, d.title) <= 32 for d in stored)
    assert index_ids(whole) == {"long1", "long2", "short", "titled"}
    capsys.readouterr()
    for argv, match in [(["--chunk-tokens", "128"], "more than the encoder's max length 64"),
                        (["--no-chunk", "--chunk-tokens", "32"], "cannot be combined"),
                        (["--chunk-overlap", "40"], "less than half")]:
        assert main(["index", str(path), "--index", str(tmp_path / "x"), "--model", str(mistral_dir),
                     "--max-length", "64", *argv]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the "loading model" lines
        assert last.startswith("e5rag: error: ") and match in last
