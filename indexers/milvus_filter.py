"""Filters for Milvus: e5rag's grammar translated into Milvus' expression language.

``milvus_expression`` parses a filter with ``indexers.filters`` (the grammar the FAISS store
evaluates) and writes it for Milvus so that both Milvus Lite and a server give the FAISS store's
results: every metadata comparison is guarded by ``exists`` (Milvus Lite treats a missing key as
null, which ``not`` would keep null, where a server and FAISS say false, then true), and
``metadata["k"] in [a, b]`` becomes ``== a or == b`` (Lite 3.x refuses ``in`` on a JSON path:
"left side of 'in' must be a field reference").

An expression outside that grammar (``id like "d%"``, ``json_contains(...)``, ``array_length``)
is Milvus' own: it is passed on as written, and Milvus judges it. For Milvus Lite,
``expand_json_in`` still rewrites its JSON-path ``in`` clauses, leaving string literals untouched.
"""

from __future__ import annotations

import re

from .filters import (
    And,
    Compare,
    Filter,
    ForeignFilterError,
    In,
    Not,
    format_filter,
    format_literal,
    parse_filter,
)

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


def to_milvus(node: Filter) -> str:
    """A parsed filter as a Milvus boolean expression with the FAISS store's semantics."""
    if isinstance(node, Compare) and node.field[0] == "metadata":
        path = f"metadata[{format_literal(node.field[1])}]"
        return f"((exists {path}) and {path} {node.op} {format_literal(node.value)})"
    if isinstance(node, In) and node.field[0] == "metadata":
        path = f"metadata[{format_literal(node.field[1])}]"
        return f"((exists {path}) and (" + " or ".join(f"{path} == {format_literal(v)}" for v in node.values) + "))"
    if isinstance(node, (Compare, In)):
        return format_filter(node)  # id, title: plain VARCHAR fields
    if isinstance(node, Not):
        return f"not ({to_milvus(node.item)})"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(to_milvus(i) for i in node.items) + ")"


def milvus_expression(expr: str, lite: bool) -> str:
    """The expression sent to Milvus for a user's filter: translated when it is in e5rag's grammar,
    Milvus' own expression otherwise (JSON-path ``in`` expanded for Lite)."""
    try:
        return to_milvus(parse_filter(expr))
    except ForeignFilterError:  # Milvus' own language; errors in e5rag's grammar are raised as they are
        return expand_json_in(expr) if lite else expr
