"""What `index` and `search` settle before the model loads (issue 23, "the first hour"):

* a re-index where every document is unchanged reports the usual summary without loading the model,
  and loads it as before as soon as anything needs writing (text, metadata, chunking, --sync);
* a FAISS IVF index that cannot be trained, a bad --filter, an --ef/--nprobe the index does not have,
  and a bogus --index-type fail in one line before any model load, leaving no index folder behind.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import CORPUS

from e5rag.cli import main
from e5rag.indexers import open_store

LOADING = "e5rag: loading model"


def write_corpus(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def docs(n=6, long=2):
    """n documents; the first ``long`` are long enough to be chunked at --max-length 64."""
    out = [{"_id": f"d{i}", "title": f"T{i}", "text": CORPUS[i % len(CORPUS)]} for i in range(n)]
    for d in out[:long]:
        d["text"] = " ".join(CORPUS[j % len(CORPUS)] for j in range(12))
    return out


def index_cmd(source, index, model, *extra):
    return ["index", str(source), "--index", str(index), "--model", str(model), "--max-length", "64", *extra]


def stored(index) -> dict[str, tuple[str, dict]]:
    """id -> (text, metadata) of everything in the index, by an exhaustive search."""
    with open_store(index, readonly=True) as store:
        n = store.count()
        hits = store.search(np.ones((1, store.manifest.dim), dtype=np.float32), n)[0]
    return {h.document.id: (h.document.text, h.document.metadata) for h in hits}


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---------------------------------------------------------------------- unchanged re-index
def test_unchanged_reindex_does_not_load_the_model(mistral_dir, tmp_path, capsys):
    src = write_corpus(tmp_path / "c.jsonl", docs())
    index = tmp_path / "i"
    rc, _, err = run(index_cmd(src, index, mistral_dir), capsys)
    assert rc == 0 and LOADING in err and "6 added" in err
    before = stored(index)
    assert "d0#1" in before and "d2" in before  # the long ones are chunked, the others whole

    rc, _, err = run(index_cmd(src, index, mistral_dir), capsys)
    assert rc == 0
    assert LOADING not in err
    assert f"indexed {index}: 0 added, 0 updated, 6 unchanged (skipped); {len(before)} documents in the index" in err
    assert stored(index) == before

    rc, out, err = run(index_cmd(src, index, mistral_dir, "--sync", "--json"), capsys)  # nothing stored beyond them
    assert rc == 0 and LOADING not in err
    assert json.loads(out) == {"index": str(index), "added": 0, "updated": 0, "skipped": 6, "total": len(before),
                               "metadata_updated": 0, "deleted": 0}


@pytest.mark.parametrize("change", ["text", "metadata", "chunking", "sync", "max_length"])
def test_anything_to_write_loads_the_model_as_before(mistral_dir, tmp_path, capsys, change):
    src = write_corpus(tmp_path / "c.jsonl", docs())
    index = tmp_path / "i"
    assert main(index_cmd(src, index, mistral_dir)) == 0
    capsys.readouterr()
    extra: list[str] = []
    changed = docs()
    if change == "text":
        changed[3]["text"] = "A new text for the fourth document."
    elif change == "metadata":
        changed[4]["year"] = 2024
    elif change == "chunking":
        extra = ["--chunk-tokens", "40"]
    elif change == "sync":
        changed = changed[:-1]
        extra = ["--sync"]
    argv = index_cmd(write_corpus(src, changed), index, mistral_dir, *extra, "--json")
    if change == "max_length":  # the index's model at another length: refused by the model check, as before
        argv[argv.index("64")] = "96"
        rc, _, err = run(argv, capsys)
        assert rc == 2 and LOADING in err and "max_length 64" in err and "max_length 96" in err
        return
    rc, out, err = run(argv, capsys)
    assert rc == 0 and LOADING in err
    report = json.loads(out)
    if change == "text":
        assert (report["updated"], report["skipped"]) == (1, 5)
        assert stored(index)["d3"][0] == "A new text for the fourth document."
    elif change == "metadata":
        assert (report["metadata_updated"], report["skipped"]) == (1, 5)
        assert stored(index)["d4"][1] == {"year": 2024}
    elif change == "chunking":
        assert report["updated"] >= 2 and report["updated"] + report["skipped"] == 6
        fresh = tmp_path / "fresh"  # what a new index with that chunking holds
        assert main(index_cmd(src, fresh, mistral_dir, *extra)) == 0
        assert {i: t for i, (t, _) in stored(index).items()} == {i: t for i, (t, _) in stored(fresh).items()}
    else:
        assert (report["deleted"], report["skipped"]) == (1, 5) and "d5" not in stored(index)


def test_stdin_still_loads_the_model(mistral_dir, tmp_path, capsys, monkeypatch):
    """Standard input can be read once: it is streamed into the index with the model loaded, as before."""
    import io

    src = write_corpus(tmp_path / "c.jsonl", docs())
    index = tmp_path / "i"
    assert main(index_cmd(src, index, mistral_dir)) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(src.read_text()))
    rc, _, err = run(index_cmd("-", index, mistral_dir), capsys)
    assert rc == 0 and LOADING in err and "0 added, 0 updated, 6 unchanged (skipped)" in err


# ---------------------------------------------------------------------- IVF trainability
def test_ivf_with_too_few_documents_fails_first_and_leaves_nothing(mistral_dir, tmp_path, capsys):
    src = write_corpus(tmp_path / "c.jsonl", docs(n=30, long=0))
    index = tmp_path / "ivf"
    rc, _, err = run(index_cmd(src, index, mistral_dir, "--index-type", "IVF64,Flat"), capsys)
    assert rc == 2
    assert LOADING not in err
    lines = [line for line in err.splitlines() if line.startswith("e5rag: error:")]
    assert len(lines) == 1
    assert "needs at least 64 vectors" in lines[0] and "makes 30 (30 documents in 30 passages)" in lines[0]
    assert not index.exists()


def test_ivf_counts_passages_when_documents_are_too_few(mistral_dir, tmp_path, capsys):
    """4 long documents make more passages than 4: the rule counts the passages (with the model's
    tokenizer) and refuses only when even they are fewer than nlist. The count in the message equals
    the passages a Flat index of the same input stores."""
    src = write_corpus(tmp_path / "c.jsonl", docs(n=4, long=4))
    flat = tmp_path / "flat"
    assert main(index_cmd(src, flat, mistral_dir)) == 0
    capsys.readouterr()
    passages = len(stored(flat))
    assert passages > 4

    too_many = passages + 1
    rc, _, err = run(index_cmd(src, tmp_path / "a", mistral_dir, "--index-type", f"IVF{too_many},Flat"), capsys)
    assert rc == 2 and LOADING not in err and not (tmp_path / "a").exists()
    assert f"needs at least {too_many} vectors" in err and f"makes {passages} (4 documents in {passages} passages)" in err

    rc, _, err = run(index_cmd(src, tmp_path / "b", mistral_dir, "--index-type", f"IVF{passages},Flat"), capsys)
    assert rc == 0 and LOADING in err  # exactly nlist passages train
    with open_store(tmp_path / "b", readonly=True) as store:
        assert store.count() == passages and store.manifest.index_type == f"IVF{passages},Flat"


def test_ivf_commit_every_below_nlist_is_refused_first(mistral_dir, tmp_path, capsys):
    src = write_corpus(tmp_path / "c.jsonl", docs(n=30, long=0))
    rc, _, err = run(index_cmd(src, tmp_path / "i", mistral_dir, "--index-type", "IVF16,Flat",
                               "--commit-every", "8"), capsys)
    assert rc == 2 and LOADING not in err and "--commit-every 16 or more" in err
    assert not (tmp_path / "i").exists()


def test_bogus_index_type_fails_first_and_leaves_nothing(mistral_dir, tmp_path, capsys):
    src = write_corpus(tmp_path / "c.jsonl", docs())
    rc, _, err = run(index_cmd(src, tmp_path / "i", mistral_dir, "--index-type", "Bogus,Thing"), capsys)
    assert rc == 2 and LOADING not in err and "FAISS cannot build index type 'Bogus,Thing'" in err
    assert not (tmp_path / "i").exists()


# ---------------------------------------------------------------------- search flags
@pytest.fixture
def flat_index(mistral_dir, tmp_path, capsys):
    index = tmp_path / "i"
    assert main(index_cmd(write_corpus(tmp_path / "c.jsonl", docs(long=0)), index, mistral_dir)) == 0
    capsys.readouterr()
    return index


@pytest.mark.parametrize("flags, message", [
    (["--filter", "len(title) > 3"], "cannot use filter 'len(title) > 3'"),
    (["--filter", 'metadata["year"] ~ 3'], "cannot parse filter"),
    (["--ef", "8"], "index type 'Flat' has no search parameter 'ef'"),
    (["--nprobe", "4"], "index type 'Flat' has no search parameter 'nprobe'"),
])
def test_search_flags_fail_before_the_model_loads(flat_index, capsys, flags, message):
    rc, out, err = run(["search", "--index", str(flat_index), *flags, "a query"], capsys)
    assert rc == 2 and out == ""
    assert LOADING not in err
    assert err.startswith("e5rag: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_good_filter_still_searches(flat_index, capsys):
    rc, out, err = run(["search", "--index", str(flat_index), "--json", "--filter", 'title == "T2"', "a query"], capsys)
    assert rc == 0 and LOADING in err
    assert [r["id"] for r in json.loads(out)["results"]] == ["d2"]


@pytest.mark.milvus
def test_milvus_filter_is_judged_before_the_model_loads(mistral_dir, tmp_path, capsys):
    pytest.importorskip("milvus_lite")
    index = tmp_path / "i.db"
    assert main(index_cmd(write_corpus(tmp_path / "c.jsonl", docs(long=0)), index, mistral_dir)) == 0
    capsys.readouterr()
    rc, _, err = run(["search", "--index", str(index), "--filter", "no_such_field >> 3", "a query"], capsys)
    assert rc == 2 and LOADING not in err and "filter" in err
    rc, out, err = run(["search", "--index", str(index), "--json", "--filter", 'id in ["d1", "d2"]', "q"], capsys)
    assert rc == 0 and sorted(r["id"] for r in json.loads(out)["results"]) == ["d1", "d2"]
