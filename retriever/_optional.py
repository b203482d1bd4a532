"""Lazy optional imports behind extras: one helper, one message format."""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from types import ModuleType

from .errors import MissingExtraError


@cache
def is_available(module: str) -> bool:
    """True when ``module`` can be imported (checked once, without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise an error naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        feature = what or module
        raise MissingExtraError(
            f"{feature} needs the '{module}' package, which is not installed: "
            f"pip install 'e5rag[{extra}]'"
        ) from exc
