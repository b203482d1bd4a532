"""The LangChain plugin is optional: only retriever/langchain/ imports langchain_core, and without it
the import error names the extra to install."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from retriever.errors import MissingExtraError

PACKAGE = Path(__file__).resolve().parents[2] / "retriever"


def test_only_the_plugin_imports_langchain():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "langchain" not in p.relative_to(PACKAGE).parts
                 and re.search(r"^\s*(from|import)\s+(langchain|retriever\.langchain|\.langchain)\b",
                               p.read_text(encoding="utf-8"), re.MULTILINE)]
    assert offenders == []


def test_missing_langchain_core_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_core", None)  # makes `import langchain_core` fail
    for name in [m for m in sys.modules if m == "retriever.langchain" or m.startswith("retriever.langchain.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtraError, match=r"pip install 'e5rag\[langchain\]'"):
        importlib.import_module("retriever.langchain")
