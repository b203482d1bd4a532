"""Shared fixtures: tiny random models built once per session, an isolated cache directory."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import save_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the user's cache untouched; GGUF conversions land in a per-session folder
    unless E5RAG_TEST_CACHE points at a persistent one (CI uses it to convert SmolLM2 once)."""
    old = os.environ.get("E5RAG_CACHE")
    os.environ["E5RAG_CACHE"] = os.environ.get("E5RAG_TEST_CACHE") or str(tmp_path_factory.mktemp("e5rag-cache"))
    for name in ("E5RAG_SERVER", "E5RAG_API_KEY"):  # a user's running `e5rag serve` must not answer the tests
        os.environ.pop(name, None)
    yield
    if old is None:
        os.environ.pop("E5RAG_CACHE", None)
    else:
        os.environ["E5RAG_CACHE"] = old


@pytest.fixture(scope="session")
def mistral_dir(tmp_path_factory) -> Path:
    """A tiny random Mistral model directory; its tokenizer has no pad token (pads with EOS)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-mistral"), "mistral")


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama model directory with a pad token and left padding."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", pad_token=True, padding_side="left")


@pytest.fixture(scope="session")
def _session_encoder(mistral_dir):
    from e5rag.retriever.encoder import Encoder

    return Encoder.from_pretrained(mistral_dir, max_length=64)


@pytest.fixture
def tiny_encoder(_session_encoder):
    """A fresh copy of the session's tiny Mistral encoder (safe to mutate)."""
    return copy.deepcopy(_session_encoder)
