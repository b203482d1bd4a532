"""A parsed filter (``indexers.filters``) as an SQLite WHERE clause over the FAISS store's docs table.

Metadata values are read with ``json_extract`` and compared only with literals of the same JSON
type (``json_type``), so ``metadata["n"] == "1"`` does not match the number 1. Every atom is
``COALESCE(..., 0)``: a missing key is false, never SQL NULL, so ``NOT`` is a plain negation.
"""

from __future__ import annotations

import json
from typing import Any

from .filters import And, Compare, Filter, In, Not, Or, Scalar

_SQL_OP = {"==": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _json_types(value: Scalar) -> tuple[str, ...]:
    """SQLite ``json_type`` names a literal may be compared with (booleans are ordered false < true)."""
    if isinstance(value, bool):
        return ("true", "false")
    if isinstance(value, (int, float)):
        return ("integer", "real")
    return ("text",)


def _atom(node: Compare) -> tuple[str, list[Any]]:
    kind, name = node.field
    value = int(node.value) if isinstance(node.value, bool) else node.value
    if kind == "column":
        return f"({name} {_SQL_OP[node.op]} ?)", [value]
    path = "$." + json.dumps(name)
    types = _json_types(node.value)
    sql = (f"COALESCE(json_type(metadata, ?) IN ({','.join('?' * len(types))}) "
           f"AND json_extract(metadata, ?) {_SQL_OP[node.op]} ?, 0)")
    return sql, [path, *types, path, value]


def to_sql(node: Filter) -> tuple[str, list[Any]]:
    """(WHERE clause, parameters) selecting the rows the filter accepts; columns id, title, metadata."""
    if isinstance(node, Compare):
        return _atom(node)
    if isinstance(node, In):
        if node.field[0] == "column":
            return f"({node.field[1]} IN ({','.join('?' * len(node.values))}))", list(node.values)
        return to_sql(Or(tuple(Compare(node.field, "==", v) for v in node.values)))
    if isinstance(node, Not):
        sql, params = to_sql(node.item)
        return f"(NOT {sql})", params
    parts = [to_sql(item) for item in node.items]
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
