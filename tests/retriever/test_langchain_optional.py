"""The LangChain plugin is optional: only retriever/langchain/ (and the e5rag.langchain facade)
imports langchain_core, and without it the import error names the extra to install."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "retriever"

# A fresh interpreter in which `import langchain_core` fails as it does when the extra is missing.
BLOCKED = """
import sys
sys.modules["langchain_core"] = None
from e5rag.retriever.errors import MissingExtraError
try:
    import e5rag.langchain
except MissingExtraError as exc:
    print(exc)
else:
    print("imported")
"""


def test_only_the_plugin_imports_langchain():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "langchain" not in p.relative_to(PACKAGE).parts
                 and re.search(r"^\s*(from|import)\s+(langchain|e5rag\.retriever\.langchain|e5rag\.langchain|\.langchain)\b",
                               p.read_text(encoding="utf-8"), re.MULTILINE)]
    assert offenders == []


def test_missing_langchain_core_names_the_extra():
    out = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'e5rag[langchain]'" in out.stdout, out.stdout
