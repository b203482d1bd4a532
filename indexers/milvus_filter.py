"""Milvus boolean expressions are passed to Milvus as they are, with one rewrite for Milvus Lite.

Milvus Lite 3.x refuses ``in`` on a JSON path (``metadata["lang"] in ["en", "fr"]``: "left side of
'in' must be a field reference"), which a Milvus server and the FAISS store's filter subset
(``indexers.filters``) both accept. ``expand_json_in`` rewrites each such clause into the equivalent
``(metadata["lang"] == "en" or metadata["lang"] == "fr")`` (``not in`` into ``not (...)``), leaving
string literals and every other part of the expression untouched.
"""

from __future__ import annotations

import re

# A field with at least one subscript: metadata["a"], metadata['a'][0] ... then `in [` or `not in [`.
_JSON_IN = re.compile(
    r"""(?P<field>[A-Za-z_]\w*(?:\s*\[\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\d+)\s*\])+)"""
    r"""\s+(?P<neg>(?:not|NOT)\s+)?(?:in|IN)\s*\[""")


def _skip_string(expr: str, i: int) -> int:
    """Index just past the string literal that starts at ``expr[i]`` (a quote)."""
    quote, i = expr[i], i + 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" else 1
    return i + 1


def _list_items(expr: str, start: int) -> tuple[list[str], int] | None:
    """Split the list whose ``[`` is at ``start`` into raw item texts; returns (items, index after ``]``)."""
    items, depth, i, begin = [], 0, start + 1, start + 1
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'":
            i = _skip_string(expr, i)
            continue
        if ch in "[(":
            depth += 1
        elif ch in "])" and depth:
            depth -= 1
        elif ch == "]":
            items.append(expr[begin:i].strip())
            return (items, i + 1) if all(items) else None  # `[]` or `[a,]`: leave it to Milvus
        elif ch == "," and not depth:
            items.append(expr[begin:i].strip())
            begin = i + 1
        i += 1
    return None


def expand_json_in(expr: str) -> str:
    """Rewrite ``json_path in [a, b]`` as ``(json_path == a or json_path == b)`` outside string literals."""
    out, i = [], 0
    while i < len(expr):
        ch = expr[i]
        if ch in "\"'":
            j = _skip_string(expr, i)
            out.append(expr[i:j])
            i = j
            continue
        m = _JSON_IN.match(expr, i) if (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] == "_")) else None
        parsed = _list_items(expr, m.end() - 1) if m else None
        if m is None or parsed is None:
            out.append(ch)
            i += 1
            continue
        items, end = parsed
        field = m.group("field")
        ors = "(" + " or ".join(f"{field} == {item}" for item in items) + ")"
        out.append(f"not {ors}" if m.group("neg") else ors)
        i = end
    return "".join(out)
