"""File formats: Markdown structure as paragraphs, HTML visible text, PDF pages (pypdf, the `pdf`
extra), folders recursed, unknown and binary files skipped with one warning line each."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from e5rag.cli import main
from e5rag.retriever.errors import InputError, MissingExtraError
from e5rag.retriever.extract import extract_file, html_text, markdown_text
from e5rag.retriever.sources import read_documents

HTML = """<!doctype html><html><head><title>Coffee &amp; tea</title>
<style>body { color: red }</style><script>var hidden = "never indexed";</script></head>
<body><nav>Home</nav><h1>Coffee</h1><p>Coffee is   brewed
from <b>roasted</b> beans.</p><div>Tea&nbsp;is different.<br>It uses leaves.</div>
<script type="text/javascript">alert("no")</script><ul><li>one</li><li>two</li></ul></body></html>"""


def write_pdf(path, pages: list[list[str]]) -> None:
    """A real PDF, one text line per string, written with pypdf (Helvetica, no external fonts)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = PdfWriter()
    font = w._add_object(DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                                           NameObject("/Subtype"): NameObject("/Type1"),
                                           NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for lines in pages:
        page = w.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): font})})
        body = " 0 -14 Td ".join(f"({line}) Tj" for line in lines)
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td {body} ET".encode())
        page[NameObject("/Contents")] = w._add_object(stream)
    with open(path, "wb") as fh:
        w.write(fh)


def test_html_gives_visible_text_as_paragraphs():
    title, text = html_text(HTML)
    assert title == "Coffee & tea"
    assert text == ("Home\n\nCoffee\n\nCoffee is brewed from roasted beans.\n\nTea is different.\n"
                    "It uses leaves.\n\none\n\ntwo")


def test_markdown_headings_fences_and_rules_are_paragraphs():
    raw = "# Title\nIntro line.\n## Part\ntext\n```\ncode\n```\n***\nend"
    assert markdown_text(raw) == "# Title\n\nIntro line.\n\n## Part\n\ntext\n\n```\n\ncode\n\n```\n\n***\n\nend"


def test_pdf_pages_and_page_of_each_chunk(tiny_encoder, tmp_path):
    pytest.importorskip("pypdf")
    from e5rag.indexers import open_store
    from e5rag.retriever.chunking import ChunkConfig
    from e5rag.retriever.search import SearchIndex

    pages = [[f"Page {p} line {i} about coffee and tea." for i in range(6)] for p in range(1, 4)]
    write_pdf(tmp_path / "doc.pdf", pages)
    found = extract_file(tmp_path / "doc.pdf")
    assert found.text == "\n\n".join("\n".join(lines) for lines in pages)
    assert found.metadata == {"pages": 3, "page_starts": [found.text.index(f"Page {p} line 0") for p in (1, 2, 3)]}
    [doc] = read_documents([str(tmp_path / "doc.pdf")])
    assert doc.id == "doc.pdf" and doc.text == found.text
    with SearchIndex(tiny_encoder, open_store(tmp_path / "i"), writing=True) as index:
        chunks = index.split(doc, ChunkConfig(32, 0))
        assert len(chunks) > 3
        for c in chunks:  # the page a chunk starts on: pages are the text's only blank lines
            assert c.metadata["page"] == doc.text[:c.metadata["start"]].count("\n\n") + 1
        assert [c.metadata["page"] for c in chunks] == sorted(c.metadata["page"] for c in chunks)
        assert {c.metadata["page"] for c in chunks} == {1, 2, 3}
        index.add([doc], chunking=ChunkConfig(32, 0))
        assert index.get("doc.pdf") == doc


def test_pdf_without_pypdf_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4\n")
    monkeypatch.setitem(sys.modules, "pypdf", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'e5rag\[pdf\]'"):
        extract_file(tmp_path / "x.pdf")


def test_broken_pdf_is_one_clear_error(tmp_path):
    pytest.importorskip("pypdf")
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    with pytest.raises(InputError, match="x.pdf: not a readable PDF"):
        extract_file(tmp_path / "x.pdf")


def test_folder_recurses_and_skips_other_files_with_one_warning_each(tmp_path, caplog):
    pytest.importorskip("pypdf")
    root = tmp_path / "docs"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a" / "page.html").write_text(HTML)
    (root / "a" / "b" / "notes.md").write_text("# Notes\nSome notes.")
    (root / "plain.txt").write_text("Plain text.\nSecond line of the same document.\n")
    write_pdf(root / "a" / "b" / "paper.pdf", [["A PDF page."]])
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "script.py").write_text("print('hi')\n")
    (root / ".git" / "config").write_text("[core]\n")
    (root / "empty.md").write_text("  \n")
    with caplog.at_level(logging.WARNING, logger="e5rag.retriever.sources"):
        docs = {d.id: d for d in read_documents([str(root)])}
    assert sorted(docs) == ["a/b/notes.md", "a/b/paper.pdf", "a/page.html", "plain.txt"]
    assert docs["a/page.html"].title == "Coffee & tea" and "never indexed" not in docs["a/page.html"].text
    assert docs["a/b/notes.md"].text == "# Notes\n\nSome notes."
    assert docs["a/b/paper.pdf"].text == "A PDF page." and docs["a/b/paper.pdf"].metadata["pages"] == 1
    assert docs["plain.txt"].text == "Plain text.\nSecond line of the same document."
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert any("image.png: a binary file" in w for w in warnings)
    assert any("data.bin: a binary file" in w for w in warnings)
    assert any("script.py: not a known document type" in w for w in warnings)
    with pytest.raises(InputError, match="holds no document files"):
        read_documents([str(root / ".git")])
    with pytest.raises(InputError, match="data.bin: a binary file of no known document type"):
        read_documents([str(root / "data.bin")])  # given by name: refused, not indexed as garbage
    [script] = read_documents([str(root / "script.py")])  # given by name, text: one document
    assert (script.id, script.text) == ("script.py", "print('hi')")


def test_formats_through_the_cli(mistral_dir, tmp_path, capsys):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(HTML)
    (root / "blob.dat").write_bytes(b"\0\1\2" * 100)
    index = tmp_path / "i"
    r = subprocess.run([sys.executable, "-m", "e5rag", "index", str(root), "--index", str(index), "--model",
                        str(mistral_dir), "--max-length", "64", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 1
    assert [line for line in r.stderr.splitlines() if "skipping" in line] == [
        f"e5rag: skipping {root / 'blob.dat'}: a binary file (indexed: .txt .text .rst .md .markdown .html .htm .pdf)"]
    assert main(["get", "--index", str(index), "--json", "index.html"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["title"], got["text"]) == html_text(HTML)
