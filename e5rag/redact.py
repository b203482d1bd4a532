"""Removing secrets from text that is about to be shown: error messages, server bodies, URLs.

``redact(text, secrets)`` replaces with ``***``: the ``user:password@`` part of any URL, the values
of credential headers and parameters (``Authorization: Bearer ...``, ``api_key=...``, ``"token": "..."``),
bearer tokens and ``sk-...`` style keys anywhere, and every string in ``secrets`` (the actual key
in use, wherever a server echoes it). Every error path that can carry a URL, a header or a server's
reply goes through it (synth's HTTP backend, the Milvus store). Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@")
_NAMES = (r"authorization|proxy-authorization|x-api-key|api[-_]?key|apikey|access[-_]?token|refresh[-_]?token"
          r"|auth[-_]?token|token|password|passwd|secret|client[-_]?secret")
# name, separator (": ", "=", '": "'), optional scheme word, then the value up to a delimiter.
_FIELD = re.compile(rf"(?i)((?:{_NAMES})[\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?[^\s\"',;&}}\]]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with credentials replaced by ``***`` (see the module docstring)."""
    text = str(text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _FIELD.sub(lambda m: m.group(1) + (m.group(2) or "") + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + " " + MASK, text)
    return _KEY_LIKE.sub(MASK, text)


def redact_url(url: str) -> str:
    """A URL safe to print: the ``user:password@`` part dropped, credential query parameters masked."""
    return redact(_USERINFO.sub(lambda m: m.group(1), str(url)))
