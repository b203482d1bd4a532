"""Source files as documents: a .txt/.md file is one document named by its path (chunked when
long), and `e5rag index --sync` deletes what the sources no longer hold, on FAISS and Milvus Lite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import CORPUS

from e5rag.cli import main
from e5rag.indexers import open_store

STORES = ["faiss", pytest.param("milvus", marks=pytest.mark.milvus)]


def stored(index) -> dict[str, str]:
    """id -> text of everything in the index, by an exhaustive search."""
    with open_store(index, readonly=True) as store:
        n = store.count()
        hits = store.search(np.ones((1, store.manifest.dim), dtype=np.float32), n)[0] if n else []
    return {h.document.id: h.document.text for h in hits}


def index_cmd(source, index, mistral_dir, *extra):
    return ["index", str(source), "--index", str(index), "--model", str(mistral_dir), "--max-length", "64", *extra]


@pytest.mark.parametrize("kind", STORES)
def test_sync_deletes_documents_whose_file_is_gone(mistral_dir, tmp_path, capsys, kind):
    if kind == "milvus":
        pytest.importorskip("milvus_lite")
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "plums.txt").write_text("line one about apples\nline two about pears\nline three about plums\n")
    (root / "sub" / "long.md").write_text("# Long\n\n" + "\n\n".join(CORPUS[i % 8] for i in range(30)))
    (root / "gone.md").write_text("This file will be removed.")
    index = tmp_path / ("i.db" if kind == "milvus" else "i")
    assert main(index_cmd(root, index, mistral_dir, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 3
    first = stored(index)
    assert "plums.txt" in first and "gone.md" in first and "sub/long.md#1" in first and "sub/long.md" not in first

    (root / "gone.md").unlink()  # the case: delete the first line of a file, re-index
    (root / "plums.txt").write_text("line two about pears\nline three about plums\n")
    (root / "sub" / "long.md").write_text("# Long\n\nNow short.")
    assert main(index_cmd(root, index, mistral_dir, "--json")) == 0  # without --sync nothing is removed
    assert "gone.md" in stored(index)
    capsys.readouterr()
    assert main(index_cmd(root, index, mistral_dir, "--sync", "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["deleted"], report["skipped"]) == (1, 2)
    assert stored(index) == {"plums.txt": "line two about pears\nline three about plums",
                             "sub/long.md": "# Long\n\nNow short."}
    assert main(index_cmd(root, index, mistral_dir, "--sync")) == 0
    assert "0 added, 0 updated, 2 unchanged (skipped), 0 deleted (source gone); 2 documents" in capsys.readouterr().err


def test_sync_in_one_commit_with_new_documents(tiny_encoder, tmp_path):
    from e5rag.indexers import Document
    from e5rag.retriever.search import SearchIndex

    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        index.add([Document("a", "first"), Document("b", "second"), Document("c", "third")])
        report = index.add([Document("b", "second"), Document("d", "fourth")], sync=True)
        assert (report.added, report.skipped, report.deleted, report.total) == (1, 1, 2, 2)
        assert sorted(index.store.ids()) == ["b", "d"]
