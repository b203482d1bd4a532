"""The text of the files users index: plain text, Markdown, HTML and PDF (the ``e5rag[pdf]`` extra).

Structure becomes paragraph breaks (blank lines), which the chunker prefers as cut points:
Markdown headings, fences and rules stand alone; HTML block elements end a paragraph. HTML gives
its visible text only (no script, style or head) through the standard library's ``html.parser``;
PDF gives the text of each page (``pypdf``), pages separated by a blank line and their start
offsets kept in metadata (``page_starts``) so each chunk can name its page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .errors import InputError
from .textio import decode_text

TEXT_SUFFIXES = (".txt", ".text", ".rst")
MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
KNOWN_SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES


@dataclass(frozen=True)
class Extracted:
    """A file's text, title (HTML ``<title>``) and extra metadata (PDF ``pages``, ``page_starts``)."""

    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def is_known(path: Path) -> bool:
    return path.suffix.lower() in KNOWN_SUFFIXES


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or not UTF-8, in the first 8 KiB (a cut multi-byte character at the end is fine)."""
    head = data[:8192]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 3
    return False


def extract_file(path: Path) -> Extracted:
    """The text of one file: a known type (see ``KNOWN_SUFFIXES``), else plain text; InputError for
    a binary file or one that cannot be read."""
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        return pdf_text(path)
    data = path.read_bytes()
    if suffix in KNOWN_SUFFIXES and b"\0" in data[:8192]:
        raise InputError(f"{path}: a binary file, not {suffix} text")
    if suffix not in KNOWN_SUFFIXES and looks_binary(data):
        raise InputError(f"{path}: a binary file of no known document type (indexed: {' '.join(KNOWN_SUFFIXES)})")
    raw = decode_text(data, path)
    if suffix in MARKDOWN_SUFFIXES:
        return Extracted(markdown_text(raw))
    if suffix in HTML_SUFFIXES:
        title, text = html_text(raw)
        return Extracted(text, title)
    return Extracted(raw.strip())


# ---------------------------------------------------------------------- Markdown
_BLOCK_LINE = re.compile(r"^ {0,3}(#{1,6}(\s|$)|```|~~~|([-*_] *){3,}$)")


def markdown_text(raw: str) -> str:
    """Markdown as is, with a blank line around every heading, code fence and rule, so the
    document's structure gives the chunker its paragraph boundaries."""
    out: list[str] = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        if _BLOCK_LINE.match(line):
            out += ["", line.rstrip(), ""]
        else:
            out.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


# ---------------------------------------------------------------------- HTML
_HIDDEN = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
_BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "h1", "h2", "h3", "h4",
           "h5", "h6", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "pre", "blockquote", "figure",
           "figcaption", "hr", "form", "fieldset", "address", "details", "summary", "body"}
_BREAK, _LINE = "\x00", "\x01"  # a paragraph break and a <br> while collecting


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self.hidden = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append(_BREAK)
        elif tag == "br":
            self.parts.append(_LINE)

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag == "br":
            self.parts.append(_LINE)
        elif tag in _BLOCKS:
            self.parts.append(_BREAK)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append(_BREAK)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.hidden:
            self.parts.append(data)


def html_text(raw: str) -> tuple[str, str]:
    """(title, visible text) of an HTML page: block elements become paragraphs, ``<br>`` a line
    break, other whitespace one space; script, style and the head are left out."""
    parser = _VisibleText()
    parser.feed(raw)
    parser.close()
    paragraphs = []
    for block in "".join(parser.parts).split(_BREAK):
        lines = [" ".join(line.split()) for line in block.split(_LINE)]
        text = "\n".join(line for line in lines if line)
        if text:
            paragraphs.append(text)
    return " ".join("".join(parser.title).split()), "\n\n".join(paragraphs)


# ---------------------------------------------------------------------- PDF
def pdf_text(path: Path) -> Extracted:
    """The text of every page, pages separated by a blank line. metadata: ``pages`` (count) and
    ``page_starts`` (offset of each page's text; empty pages start where the next one does)."""
    from ._optional import require

    pypdf = require("pypdf", "pdf", "reading PDF files")
    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            raise InputError(f"{path}: the PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except pypdf.errors.PdfReadError as exc:
        raise InputError(f"{path}: not a readable PDF ({exc})") from None
    text, starts = "", []
    for page in pages:
        if page and text:
            text += "\n\n"
        starts.append(len(text))
        text += page
    return Extracted(text, "", {"pages": len(pages), "page_starts": starts})
