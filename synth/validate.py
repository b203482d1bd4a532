"""Robust JSON extraction from model replies and the per-kind schema checks.

Replies often wrap the JSON in code fences or prose, or trail off after it; ``extract_json``
finds the first JSON value of the wanted type anywhere in the text. Checks return a drop reason
(a short string, counted in the run summary) instead of raising.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .kinds import KIND_SPECS

# Drop reasons (the keys of the summary's "dropped" counts).
NO_JSON = "no_json"
MISSING_KEY = "missing_key"
NOT_STRING = "not_string"
EMPTY_FIELD = "empty_field"
TOO_LONG = "too_long"
SAME_POS_NEG = "positive_equals_negative"
SAME_QUERY_POS = "query_equals_positive"
ECHOED_KEY = "echoed_key_name"

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()
_MAX_STARTS = 64  # starting positions tried per text; replies with more braces are garbage anyway


def _first_value(text: str, want: type) -> Any | None:
    opener = "{" if want is dict else "["
    start, tries = text.find(opener), 0
    while start != -1 and tries < _MAX_STARTS:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, want):
            return value
        start, tries = text.find(opener, start + 1), tries + 1
    return None


def extract_json(text: str, want: type = dict) -> Any | None:
    """The first JSON object (``want=dict``) or array (``want=list``) in ``text``, or None.

    Fenced blocks are tried first, then the whole text, so prose around the JSON is ignored.
    """
    if not text:
        return None
    for block in _FENCE.findall(text):
        value = _first_value(block, want)
        if value is not None:
            return value
    return _first_value(text, want)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def check_example(kind: str, obj: Any, max_chars: int = 8000) -> tuple[dict[str, str] | None, str | None]:
    """(cleaned example, None) when ``obj`` fits ``kind``'s schema, else (None, drop reason).

    Required keys present, values non-empty strings no longer than ``max_chars``, none of them just a
    key name (small models echo "S1"), positive differs from negative and from the query (whitespace
    and case ignored). Extra keys are ignored.
    """
    if not isinstance(obj, dict):
        return None, NO_JSON
    keys = KIND_SPECS[kind].keys
    if any(k not in obj for k in keys):
        return None, MISSING_KEY
    if any(not isinstance(obj[k], str) for k in keys):
        return None, NOT_STRING
    clean = {k: obj[k].strip() for k in keys}
    if any(not v for v in clean.values()):
        return None, EMPTY_FIELD
    if any(len(v) > max_chars for v in clean.values()):
        return None, TOO_LONG
    query, pos, neg = (_norm(clean[k]) for k in keys)
    names = {k.casefold() for k in keys}
    if any(v.strip(" .:\"'") in names for v in (query, pos, neg)):
        return None, ECHOED_KEY
    if pos == neg:
        return None, SAME_POS_NEG
    if query == pos:
        return None, SAME_QUERY_POS
    return clean, None


def parse_example(kind: str, text: str, max_chars: int = 8000) -> tuple[dict[str, str] | None, str | None]:
    """``check_example`` on the first JSON object found in a model reply."""
    return check_example(kind, extract_json(text, dict), max_chars)


_JSON_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"\s*(?:,|\]|$)')


def _salvage_strings(text: str) -> list[str]:
    """The complete string items of a JSON array cut off by the token limit."""
    start = text.find("[")
    if start == -1:
        return []
    items = []
    for match in _JSON_STRING.finditer(text, start):
        try:
            items.append(json.loads(f'"{match.group(1)}"'))
        except json.JSONDecodeError:
            continue
    return items


def parse_task_list(text: str, max_chars: int = 400) -> list[str]:
    """Task definitions from a brainstorm reply: a JSON array of strings, or an object holding one,
    or the complete items of an array that was cut off (long lists often hit the token limit).

    Non-strings, empty and over-long entries are skipped; duplicates removed, order kept.
    """
    value = extract_json(text, list)
    if value is None:
        obj = extract_json(text, dict)
        lists = [v for v in obj.values() if isinstance(v, list)] if obj else []
        value = lists[0] if len(lists) == 1 else _salvage_strings(text)
    tasks = [" ".join(v.split()) for v in value if isinstance(v, str)]
    return list(dict.fromkeys(t for t in tasks if 0 < len(t) <= max_chars))
