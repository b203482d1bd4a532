"""Metadata filter expressions, parsed (never evaluated) into a small tree both stores translate.

The grammar is a Milvus-compatible subset, read with Python's ``ast`` on a whitelist, so a filter
can never run code::

    metadata["lang"] == "en" and (metadata["year"] >= 2020 or not id in ["d1", "d2"])
    2010 <= metadata["year"] < 2015          title != "draft"        metadata["t"] == "salt and pepper"

Fields: ``metadata["key"]`` (a key of the JSON metadata), ``id`` and ``title`` (strings).
Operators: ``== != < <= > >=`` (chains allowed), ``in`` / ``not in`` a list of literals,
``and`` / ``or`` / ``not`` (also ``&&``, ``||``, ``AND``, ``OR``, ``NOT``) and parentheses.
Literals: strings, numbers, ``true`` / ``false``. Anything else (calls, attributes, other names,
arithmetic, ``None``) is refused with ``UnsupportedFilterError``.

Semantics (the same on every store): a comparison with a missing key, a JSON null or a value of
another type is false; ``!=``, ``not in`` and ``not`` are plain negations (so true there). Milvus
Lite is the one exception: ``not`` over an ordering (``<``...) with a value of another type stays false.
FAISS evaluates the tree in SQLite (``indexers.filter_sql``); Milvus gets it rewritten in its own
expression language (``indexers.milvus_filter``).
"""

from __future__ import annotations

import ast
import io
import json
import math
import tokenize
from dataclasses import dataclass
from typing import Literal

from .base import UnsupportedFilterError

COLUMNS = ("id", "title")  # stored string fields a filter may name besides metadata["key"]
Scalar = str | int | float | bool
Field = tuple[Literal["metadata", "column"], str]
Op = Literal["==", "<", "<=", ">", ">="]

_GRAMMAR = ('use metadata["key"], id or title compared (== != < <= > >=, in [..], not in [..]) with string, '
            "number or true/false literals, joined by and / or / not and parentheses")


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``!=`` is parsed as ``Not(Compare("=="))``."""

    field: Field
    op: Op
    value: Scalar


@dataclass(frozen=True)
class In:
    """``field in [values]`` (non-empty); ``not in`` is parsed as ``Not(In)``."""

    field: Field
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    item: Filter


Filter = Compare | In | And | Or | Not

_OPS: dict[type, str] = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
                         ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_WORDS = {"AND": "and", "OR": "or", "NOT": "not", "IN": "in", "true": "True", "false": "False",
          "TRUE": "True", "FALSE": "False"}
_PAIRS = {"&": "and", "|": "or"}


class ForeignFilterError(UnsupportedFilterError):
    """An expression outside e5rag's grammar (a call, arithmetic, ``like``...): Milvus may know it."""


class _Refused(Exception):
    """Internal: why a node is refused; ``foreign`` when it is outside the grammar, not just wrong."""

    def __init__(self, why: str, foreign: bool = True) -> None:
        super().__init__(why)
        self.foreign = foreign


def _normalise(expr: str) -> str:
    """Milvus spellings (``&&``, ``||``, ``AND``, ``true``) as Python tokens; strings untouched."""
    tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok.type == tokenize.OP and tok.string in _PAIRS and nxt is not None and nxt.string == tok.string:
            out.append((tokenize.NAME, _PAIRS[tok.string]))
            i += 2
            continue
        if tok.type == tokenize.NAME and tok.string in _WORDS:
            out.append((tokenize.NAME, _WORDS[tok.string]))
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            out.append((tok.type, tok.string))
        i += 1
    return tokenize.untokenize(out)


def parse_filter(expr: str) -> Filter:
    """Parse a filter expression into a tree (see the module docstring for the grammar)."""
    if not isinstance(expr, str) or not expr.strip():
        raise UnsupportedFilterError("the filter is empty: pass an expression such as metadata[\"lang\"] == \"en\"")
    try:
        tree = ast.parse(_normalise(expr.strip()), mode="eval")
        return _node(tree.body)
    except (SyntaxError, tokenize.TokenError):
        raise ForeignFilterError(f"cannot parse filter {expr!r}: {_GRAMMAR}") from None
    except (RecursionError, MemoryError):
        raise UnsupportedFilterError(f"filter {expr[:80]!r}... is nested too deeply") from None
    except _Refused as why:
        error = ForeignFilterError if why.foreign else UnsupportedFilterError
        raise error(f"cannot use filter {expr!r}: {why}; {_GRAMMAR}") from None


def _node(node: ast.expr) -> Filter:
    if isinstance(node, ast.BoolOp):
        items = tuple(_node(v) for v in node.values)
        return And(items) if isinstance(node.op, ast.And) else Or(items)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_node(node.operand))
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        parts = [_compare(operands[i], _OPS.get(type(op), ""), operands[i + 1]) for i, op in enumerate(node.ops)]
        return parts[0] if len(parts) == 1 else And(tuple(parts))
    raise _Refused(f"{_describe(node)} is not a condition")


def _compare(left: ast.expr, op: str, right: ast.expr) -> Filter:
    if op in ("in", "not in"):
        if not isinstance(right, (ast.List, ast.Tuple)):
            raise _Refused(f"'{op}' needs a list of literals on its right, got {_describe(right)}")
        field = _field(left)
        values = tuple(_literal(v, field) for v in right.elts)
        if not values:
            raise _Refused(f"'{op}' needs a non-empty list", foreign=False)
        return In(field, values) if op == "in" else Not(In(field, values))
    if op not in _FLIP:
        raise _Refused(f"operator {op!r} is not supported")
    if _is_field(right) and not _is_field(left):  # 2010 <= metadata["year"]  ->  metadata["year"] >= 2010
        left, op, right = right, _FLIP[op], left
    field = _field(left)
    value = _literal(right, field)
    return Not(Compare(field, "==", value)) if op == "!=" else Compare(field, op, value)  # type: ignore[arg-type]


def _is_field(node: ast.expr) -> bool:
    return isinstance(node, ast.Subscript) or (isinstance(node, ast.Name) and node.id in (*COLUMNS, "metadata"))


def _field(node: ast.expr) -> Field:
    if isinstance(node, ast.Name) and node.id in COLUMNS:
        return ("column", node.id)
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "metadata"
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
        return ("metadata", node.slice.value)
    if isinstance(node, ast.Subscript):
        raise _Refused(f'{_describe(node)} is not a field: write metadata["key"] with one string key')
    raise _Refused(f"{_describe(node)} is not a field")


def _literal(node: ast.expr, field: Field) -> Scalar:
    value: object = None
    if isinstance(node, ast.Constant):
        value = node.value
    elif (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
          and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        value = -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if not isinstance(value, (str, int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        # None, inf: wrong in any store's language; a list or an expression: maybe Milvus' own
        raise _Refused(f"{_describe(node)} is not a string, number or true/false literal",
                       foreign=not isinstance(node, ast.Constant))
    if field[0] == "column" and not isinstance(value, str):
        raise _Refused(f"{field[1]} is a string: compare it with a quoted string, not {value!r}", foreign=False)
    return value


def _describe(node: ast.expr) -> str:
    """A short name for a refused node: 'a function call', 'the name x', ..."""
    if isinstance(node, ast.Call):
        return "a function call (calls are never run)"
    if isinstance(node, ast.Attribute):
        return f"the attribute .{node.attr}"
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}" + (" (only id, title and metadata[...] are known)" if node.id != "metadata" else "")
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    return f"{ast.unparse(node)!r}" if len(ast.unparse(node)) <= 40 else f"an expression of type {type(node).__name__}"


def format_filter(node: Filter) -> str:
    """The canonical text of a tree, which ``parse_filter`` reads back to the same tree."""
    if isinstance(node, Compare):
        return f"{_format_field(node.field)} {node.op} {format_literal(node.value)}"
    if isinstance(node, In):
        return f"{_format_field(node.field)} in [{', '.join(format_literal(v) for v in node.values)}]"
    if isinstance(node, Not):
        return f"not ({format_filter(node.item)})"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(format_filter(i) for i in node.items) + ")"


def _format_field(field: Field) -> str:
    return field[1] if field[0] == "column" else f"metadata[{format_literal(field[1])}]"


def format_literal(value: Scalar) -> str:
    """A literal as JSON text (double-quoted strings, true/false), which Milvus reads too."""
    return json.dumps(value, ensure_ascii=False)
