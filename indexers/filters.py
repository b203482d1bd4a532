"""A small, Milvus-compatible subset of boolean filter expressions, parsed for stores that
cannot pass them to a server (FAISS).

Supported: ``metadata["key"] == VALUE``, ``metadata["key"] in [V1, V2]``, ``id == "x"``,
``title == "x"``, joined by ``and`` / ``&&``. VALUE is a JSON literal (string, number, true, false).
Anything else is refused with ``UnsupportedFilterError``, never silently ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .base import UnsupportedFilterError

_FIELD = r'(?:metadata\s*\[\s*(?P<key>"[^"]+"|\'[^\']+\')\s*\]|(?P<col>id|title))'
_CLAUSE = re.compile(rf"^\s*{_FIELD}\s*(?P<op>==|in)\s*(?P<value>.+?)\s*$", re.DOTALL)
_SPLIT = re.compile(r"\s+(?:and|AND)\s+|\s*&&\s*")


@dataclass(frozen=True)
class Condition:
    """``field`` is ("metadata", key) or ("column", name); ``values`` are the accepted values."""

    field: tuple[str, str]
    values: tuple[Any, ...]


def parse_filter(expr: str) -> list[Condition]:
    """Parse an expression into conditions that must all hold."""
    if not expr or not expr.strip():
        raise UnsupportedFilterError("the filter is empty")
    conditions = []
    for part in _SPLIT.split(expr.strip()):
        m = _CLAUSE.match(part)
        if not m or "(" in part.replace('["', "").replace("']", ""):
            raise UnsupportedFilterError(
                f"cannot evaluate filter clause {part.strip()!r} on this store: it supports "
                'metadata["key"] == VALUE, metadata["key"] in [..], id == "..", title == "..", joined by "and" '
                "(use a Milvus index for full boolean expressions)")
        try:
            value = json.loads(m.group("value").replace("'", '"') if m.group("value").startswith("'") else m.group("value"))
        except json.JSONDecodeError:
            raise UnsupportedFilterError(f"filter value {m.group('value')!r} is not a JSON literal "
                                         '(quote strings: metadata["lang"] == "en")') from None
        if m.group("op") == "in":
            if not isinstance(value, list) or not value:
                raise UnsupportedFilterError(f"'in' needs a non-empty list, got {m.group('value')!r}")
            values = tuple(value)
        else:
            values = (value,)
        if any(isinstance(v, (list, dict)) or v is None for v in values):
            raise UnsupportedFilterError(f"filter values must be strings, numbers or booleans: {part.strip()!r}")
        field = ("metadata", m.group("key")[1:-1]) if m.group("key") else ("column", m.group("col"))
        conditions.append(Condition(field, values))
    return conditions


def json_type(value: Any) -> tuple[str, ...]:
    """SQLite ``json_type`` names that match a Python literal (numbers match integer or real)."""
    if isinstance(value, bool):
        return ("true",) if value else ("false",)
    if isinstance(value, (int, float)):
        return ("integer", "real")
    return ("text",)
