"""Streamed input: `stream_documents` yields what `read_documents` returns, one at a time, and
`SearchIndex.add` reads any iterable a commit at a time, so memory holds about two commits'
documents whatever the corpus size; the CLI still refuses a bad line before the model loads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from e5rag.cli import main
from e5rag.indexers import Document, open_store
from e5rag.retriever.errors import InputError
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.sources import read_documents, stream_documents


def write_jsonl(path, n, dup_at=None):
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"_id": f"d{dup_at if i == n - 1 and dup_at is not None else i}",
                                 "text": f"text number {i} " + "word " * (i % 7), "title": ""}) + "\n")
    return path


def test_stream_documents_yields_read_documents_lazily(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", 50)
    assert list(stream_documents([str(path)])) == read_documents([str(path)])
    stream = stream_documents([str(write_jsonl(tmp_path / "dup.jsonl", 30, dup_at=3))])
    assert [next(stream).id for _ in range(29)][-1] == "d28"  # documents before the duplicate come out
    with pytest.raises(InputError, match=r"'d3' appears twice in the input \(documents 4 and 30\)"):
        next(stream)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="holds no documents"):
        list(stream_documents([str(empty)]))


def test_add_reads_a_commit_at_a_time(tiny_encoder, tmp_path):
    commit_every, n = 8, 60
    store = open_store(tmp_path / "idx")
    index = SearchIndex(tiny_encoder, store, writing=True)
    ahead = []  # documents pulled from the input but not yet in the index, seen at each pull

    def docs():
        for i in range(n):
            ahead.append(i - store.count())
            yield Document(f"d{i}", f"streamed text {i}")

    report = index.add(docs(), commit_every=commit_every, batch_size=4)
    store.close()
    assert (report.added, report.total) == (n, n)
    assert max(ahead) <= 2 * commit_every  # never the whole input
    # Rerun with a generator: unchanged documents skipped, one changed, three new.
    with SearchIndex.open(tmp_path / "idx", tiny_encoder, readonly=False) as again:
        more = (Document(f"d{i}", "changed" if i == 5 else f"streamed text {i}") for i in range(n + 3))
        assert again.add(more, commit_every=commit_every).__dict__ == {
            "added": 3, "updated": 1, "skipped": n - 1, "total": n + 3, "metadata_updated": 0, "deleted": 0}
        want = tiny_encoder.encode_document(["changed"])
        np.testing.assert_allclose(again.store.search(want, 1)[0][0].score, 1.0, atol=1e-5)
    with pytest.raises(InputError, match="no documents to index"):
        SearchIndex(tiny_encoder, open_store(tmp_path / "other"), writing=True).add(iter([]))


def test_cli_refuses_a_bad_line_before_writing_anything(mistral_dir, tmp_path, capsys):
    path = write_jsonl(tmp_path / "c.jsonl", 40)
    with open(path, "a") as fh:
        fh.write("{not json\n")
    assert main(["index", str(path), "--index", str(tmp_path / "idx"), "--model", str(mistral_dir),
                 "--max-length", "64", "--commit-every", "8"]) == 2
    assert "line 41" in capsys.readouterr().err
    assert not (tmp_path / "idx").exists()  # nothing embedded or committed before the bad line was found
