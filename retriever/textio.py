"""Decoding user text strictly as UTF-8, with errors that name the file and the line.

A file or stream that is not UTF-8 (Latin-1, UTF-16, a binary file passed by mistake) is refused
at the first bad line instead of failing later with a traceback, or being silently altered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import InputError

_BOM = "\ufeff"


def _not_utf8(where: str, raw: bytes, exc: UnicodeDecodeError) -> InputError:
    return InputError(f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8, "
                      "e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`")


def decoded_lines(handle: IO, name: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line break) for each non-blank line of ``handle``.

    Binary handles (and text handles with a ``.buffer``, such as ``sys.stdin``) are decoded here,
    line by line, so a bad byte is reported as ``NAME line N``; a leading BOM is dropped.
    """
    source = getattr(handle, "buffer", handle)
    for number, raw in enumerate(source, start=1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(f"{name} line {number}", raw, exc) from None
            line = line.rstrip("\r\n")
        else:
            line = raw.rstrip("\n")
        if number == 1:
            line = line.removeprefix(_BOM)
        if line.strip():
            yield number, line


def read_text_file(path: Path) -> str:
    """The whole file decoded as UTF-8 (BOM dropped); ``InputError`` naming the file and line if not."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix(_BOM)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _not_utf8(f"{path} line {line}", raw, exc) from None
