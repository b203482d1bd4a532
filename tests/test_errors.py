"""One exception root: every error e5rag raises on purpose is an ``E5RagError``, defined in a
standard-library-only module that every layer (indexers included) can import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_store_and_retriever_errors_share_the_root():
    import e5rag
    from e5rag.errors import E5RagError
    from e5rag.indexers import StoreError, StoreInputError, UnsupportedFilterError
    from e5rag.retriever import errors

    assert e5rag.E5RagError is errors.E5RagError is E5RagError
    for cls in (StoreError, StoreInputError, UnsupportedFilterError, errors.InputError, errors.ModelLoadError,
                errors.IndexMismatchError, errors.MissingExtraError):
        assert issubclass(cls, E5RagError), cls
    with pytest.raises(E5RagError, match="only apply to a Milvus store"):
        from e5rag.indexers import open_store

        open_store(REPO / "nowhere", store="faiss", token="x")


def test_root_module_imports_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import e5rag.errors; "
            "import json; print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    new = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert new <= {"e5rag", *sys.stdlib_module_names}, new - set(sys.stdlib_module_names)


def test_dead_code_and_unused_dependency_removed():
    from e5rag.retriever import errors, loading
    from e5rag.training import distributed

    assert not hasattr(errors, "IndexError_")
    assert not hasattr(loading, "PRODUCTION_MODEL")
    assert not hasattr(distributed, "broadcast_object")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert not [d for deps in extras.values() for d in deps if d.startswith("ranx")]
