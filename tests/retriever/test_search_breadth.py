"""--nprobe / --ef reach the store from `e5rag search`, `SearchIndex.search` and LangChain
(`E5Retriever` fields and call options, `E5VectorStore` search_kwargs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from e5rag.cli import main
from e5rag.retriever.search import SearchIndex
from e5rag.retriever.sources import read_documents

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "corpus.jsonl"
QUERIES = ["how do plants make energy", "history of rome", "machine learning", "ocean tides", "coffee"]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, mistral_dir):
    """The example corpus in an IVF4 index and in an exact Flat one, built by the CLI."""
    root = tmp_path_factory.mktemp("breadth")
    for name, index_type in (("ivf", "IVF4,Flat"), ("flat", "Flat")):
        assert main(["index", str(CORPUS), "--index", str(root / name), "--index-type", index_type,
                     "--model", str(mistral_dir), "--max-length", "64", "--no-chunk"]) == 0
    return root, len(read_documents([str(CORPUS)]))


def cli_hits(capsys, index, k, *flags) -> list[list[tuple[str, float]]]:
    capsys.readouterr()
    assert main(["search", *QUERIES, "--index", str(index), "-k", str(k), "--json", *flags]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [[(h["id"], h["score"]) for h in r["results"]] for r in rows]


def same_ranking(got, want) -> None:
    """Same documents, same scores rank by rank (the tiny random model scores many near-ties)."""
    for g, w in zip(got, want, strict=True):
        assert {i for i, _ in g} == {i for i, _ in w}
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], atol=1e-5)


def test_cli_nprobe_reaches_the_ivf_index(indexes, capsys):
    root, n = indexes
    exact = cli_hits(capsys, root / "flat", n)
    same_ranking(cli_hits(capsys, root / "ivf", n, "--nprobe", "4"), exact)  # every list scanned: exact search
    one_list = cli_hits(capsys, root / "ivf", n, "--nprobe", "1")
    assert all(len(hits) < n for hits in one_list)  # one list of four holds only part of the corpus
    for hits, full in zip(one_list, exact, strict=True):
        assert {i for i, _ in hits} <= {i for i, _ in full}

    assert main(["search", "x", "--index", str(root / "ivf"), "--ef", "32"]) == 2
    err = capsys.readouterr().err
    assert err.count("e5rag: error: ") == 1 and "has no search parameter 'ef'" in err.strip().splitlines()[-1]
    assert main(["search", "x", "--index", str(root / "flat"), "--nprobe", "0"]) == 2
    assert "nprobe must be a positive integer" in capsys.readouterr().err


def test_search_index_and_langchain_pass_nprobe(indexes, mistral_dir):
    pytest.importorskip("langchain_core")
    from e5rag.retriever.encoder import Encoder
    from e5rag.retriever.langchain import E5Embeddings, E5Retriever, E5VectorStore

    root, n = indexes
    encoder = Encoder.from_pretrained(mistral_dir, max_length=64)
    with SearchIndex.open(root / "ivf", encoder) as ivf, SearchIndex.open(root / "flat", encoder) as flat:
        exact = [{h.document.id for h in row} for row in flat.search(QUERIES, k=n)]
        assert [{h.document.id for h in row} for row in ivf.search(QUERIES, k=n, nprobe=4)] == exact
        narrow = ivf.search(QUERIES, k=n, nprobe=1)
        assert all(len(row) < n for row in narrow)

        retriever = E5Retriever(index=ivf, k=n, nprobe=1)
        assert len(retriever.invoke(QUERIES[0])) == len(narrow[0])
        assert {d.id for d in retriever.invoke(QUERIES[0], nprobe=4)} == exact[0]

    vs = E5VectorStore.open(root / "ivf", E5Embeddings(encoder), readonly=True)
    try:
        wide = vs.as_retriever(search_kwargs={"k": n, "nprobe": 4}).invoke(QUERIES[0])
        assert {d.id for d in wide} == exact[0]
        assert len(vs.similarity_search(QUERIES[0], k=n, nprobe=1)) == len(narrow[0])
    finally:
        vs.close()
