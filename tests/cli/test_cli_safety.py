"""Damaged or odd input through the CLI: one line naming the file (and line) and what to do, exit 2,
nothing written; a user's folder is never written into or cleaned; an index-type error comes first."""

from __future__ import annotations

import io
import json
import sys

import pytest

from e5rag.cli import main

CORPUS = [{"_id": f"d{i}", "title": f"t{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(6)]


def _error(capsys, argv, *expected):
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    full = capsys.readouterr().err
    # one error line, the last (stdin is streamed, so its errors come after the "loading model" lines)
    err = full.strip().splitlines()[-1] + "\n"
    assert err.startswith("e5rag: error: ") and full.count("e5rag: error: ") == 1 and "Traceback" not in full, full
    for part in expected:
        assert part in err, err
    return err


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in CORPUS), encoding="utf-8")
    return path


@pytest.fixture
def built(corpus_file, mistral_dir, tmp_path):
    index = tmp_path / "idx"
    assert main(["index", str(corpus_file), "--index", str(index), "--model", str(mistral_dir), "--max-length",
                 "32"]) == 0
    return index


def test_non_utf8_jsonl_txt_and_folders_name_the_file_and_line(tmp_path, mistral_dir, capsys):
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"_id": "a", "text": "fine"}\n{"_id": "b", "text": "also fine"}\n'
                      b'{"_id": "c", "text": "caf\xe9"}\n')
    txt = tmp_path / "notes.txt"
    txt.write_bytes(b"first line\nsecond \xff line\n")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("all good", encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"line one\nline two\nna\xefve\n")
    index = tmp_path / "never"
    for source, where in [(jsonl, f"{jsonl} line 3"), (txt, f"{txt} line 2"), (folder, f"{folder / 'bad.txt'} line 3")]:
        _error(capsys, ["index", source, "--index", index, "--model", mistral_dir],
               f"{where}: not valid UTF-8", "save the file as UTF-8")
    assert not index.exists()


def test_non_utf8_stdin_names_the_line(tmp_path, mistral_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"good line\nbad \xe9 line\n"), encoding="utf-8"))
    _error(capsys, ["index", "-", "--index", tmp_path / "never", "--model", mistral_dir], "<stdin> line 2: not valid UTF-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"text": "ok"}\n\xff\xfe\n'), encoding="utf-8"))
    _error(capsys, ["search", "--index", tmp_path / "never"], "<stdin> line 2: not valid UTF-8")
    assert not (tmp_path / "never").exists()


def test_a_utf8_bom_is_not_part_of_the_first_line(tmp_path, mistral_dir):
    from e5rag.retriever.sources import read_documents

    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"_id": "x", "text": "caf\u00e9"}).encode() + b"\n")
    assert [(d.id, d.text) for d in read_documents([str(path)])] == [("x", "caf\u00e9")]


@pytest.mark.parametrize("value", [None, True, [1], {"a": 1}])
def test_an_id_that_is_not_a_string_or_number_is_refused(tmp_path, mistral_dir, capsys, value):
    path = tmp_path / "ids.jsonl"
    path.write_text(json.dumps({"_id": "ok", "text": "a"}) + "\n" + json.dumps({"_id": value, "text": "b"}) + "\n")
    _error(capsys, ["index", path, "--index", tmp_path / "never", "--model", mistral_dir],
           f"{path} line 2: the id field '_id' is", "give every item a string or number id")
    assert not (tmp_path / "never").exists()


def test_a_non_index_folder_is_refused_before_anything_is_written(corpus_file, mistral_dir, tmp_path, capsys):
    user = tmp_path / "photos"
    (user / "gen-2024-photos").mkdir(parents=True)
    (user / "gen-notes.txt").write_text("notes")
    (user / ".tmp-draft.md").write_text("draft")
    before = _tree(user)
    _error(capsys, ["index", corpus_file, "--index", user, "--model", mistral_dir],
           f"{user} is a non-empty folder that is not an e5rag FAISS index", "choose another --index")
    assert _tree(user) == before


def test_a_bad_index_type_comes_before_the_model_and_leaves_nothing(corpus_file, tmp_path, capsys):
    index = tmp_path / "new" / "idx"
    # A model path that does not exist: the index type must be refused before the model is looked at.
    _error(capsys, ["index", corpus_file, "--index", index, "--index-type", "NotAnIndex", "--model",
                    tmp_path / "no-such-model"], "cannot build index type 'NotAnIndex'")
    assert not (tmp_path / "new").exists()
    # A model that cannot be loaded: the new index's folder is not created either (no empty folder + .lock).
    capsys.readouterr()
    assert main(["index", str(corpus_file), "--index", str(index), "--model", str(tmp_path / "no-such-model")]) == 2
    assert not (tmp_path / "new").exists()


def test_a_damaged_index_is_one_line_for_every_command_and_is_not_written(built, corpus_file, capsys):
    gen = built / "gen-000001"
    raw = (gen / "index.faiss").read_bytes()
    (gen / "index.faiss").write_bytes(raw[: len(raw) // 3])
    before = {k: v for k, v in _tree(built).items() if k != ".lock"}
    expected = (f"index {built} is damaged: gen-000001/index.faiss cannot be read by FAISS", "rebuild")
    _error(capsys, ["info", "--index", built], *expected)
    _error(capsys, ["search", "--index", built, "anything"], *expected)
    _error(capsys, ["delete", "--index", built, "d1"], *expected)
    _error(capsys, ["index", corpus_file, "--index", built], *expected)
    assert {k: v for k, v in _tree(built).items() if k != ".lock"} == before


def test_current_pointing_outside_is_never_followed_by_delete(built, tmp_path, capsys):
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "notes.txt").write_text("precious")
    (built / "CURRENT").write_text("../outside/x")
    _error(capsys, ["delete", "--index", built, "d1"], "is damaged: CURRENT holds '../outside/x'")
    assert (outside / "x" / "notes.txt").read_text() == "precious"


def test_every_jsonl_reader_names_a_non_utf8_line(tmp_path):
    from e5rag.retriever.errors import InputError
    from e5rag.retriever.jsonl import iter_json_objects

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"query": "a"}\n{"query": "\xe9t\xe9"}\n')
    with pytest.raises(InputError, match=f"{path} line 2: not valid UTF-8"):
        list(iter_json_objects(path))
