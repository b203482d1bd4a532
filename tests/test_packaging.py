"""The wheel installs exactly one import package, ``e5rag``, mapped over the repository's folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"e5rag": "e5rag", "e5rag.retriever": "retriever", "e5rag.indexers": "indexers",
           "e5rag.training": "training", "e5rag.synth": "synth"}


def _declared() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_package_list_names_every_source_package():
    cfg = _declared()
    assert cfg["package-dir"] == FOLDERS
    found = set()
    for name, folder in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *rel)))
    assert sorted(cfg["packages"]) == sorted(found)


def test_wheel_holds_only_e5rag(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    pytest.importorskip("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("e5rag-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"e5rag", wheel.name.split("-py")[0] + ".dist-info"}
    assert "e5rag/retriever/default_model/adapter_model.safetensors" in names  # the shipped adapter
    assert "e5rag/cli/__init__.py" in names and "e5rag/__main__.py" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "e5rag = e5rag.cli:main" in entry


def test_old_top_level_names_are_not_importable(tmp_path):
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            "print([n for n in ('retriever', 'indexers', 'training', 'synth') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_public_entry_points():
    code = ("import e5rag, e5rag.langchain; from e5rag import Encoder, SearchIndex; "
            "print(Encoder.__module__, SearchIndex.__module__, e5rag.langchain.E5Retriever.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["e5rag.retriever.encoder", "e5rag.retriever.search", "E5Retriever"], out.stderr
    help_ = subprocess.run([sys.executable, "-m", "e5rag", "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "usage: e5rag" in help_.stdout


def test_dependency_floors_are_the_tested_versions():
    """Every declared floor is the minor version this environment tests: a floor below it would claim
    support for versions nobody ran (move the floor when the environment moves)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *(d for deps in project["optional-dependencies"].values() for d in deps)]
    checked, wrong = [], []
    for text in declared:
        req = Requirement(text)
        floors = [s.version for s in req.specifier if s.operator == ">="]
        if req.name == "e5rag" or not floors:
            continue
        try:
            installed = Version(version(req.name))
        except PackageNotFoundError:  # e.g. faiss-gpu on a CPU machine
            continue
        checked.append(req.name)
        if Version(floors[0]).release[:2] != installed.release[:2]:
            wrong.append(f"{req.name}>={floors[0]} but {installed} is what is tested")
    assert not wrong, wrong
    assert {"torch", "transformers", "peft", "langchain-core", "pymilvus", "faiss-cpu", "numpy"} <= set(checked)


def test_no_maintainer_only_paths_in_docs_or_code():
    """README, docs and code name data by what it is (``beir/scifact``), not by where the maintainers
    keep it; recorded benchmark results (``benchmarks/results``) keep the commands as they ran."""
    needles = ("/work" + "/", "../" + "shared/", '"shared" / ' + '"datasets"')
    files = [p for p in (REPO / "README.md", *REPO.glob("*/*.md"), *REPO.glob("examples/*")) if p.is_file()]
    for folder in ("e5rag", "retriever", "indexers", "training", "synth", "benchmarks", "tests", "scripts", ".ci"):
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".sh", ".md", ".yaml", "") and p.is_file()]
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()[:80]}" for p in sorted(set(files))
             if "results" not in p.parts and "__pycache__" not in p.parts
             for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if any(x in line for x in needles)]
    assert not found, "\n".join(found)
