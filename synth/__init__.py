"""Synthetic training data the E5-Mistral way (arXiv 2401.00368, section 3.1).

Two-step prompting over six task kinds and the XLM-R languages, against any OpenAI-compatible
endpoint or a local transformers model; validated, deduplicated, resumable JSONL output.
Heavy dependencies (httpx, torch, transformers) are imported only when a backend is built.

Output: one JSON object a line, ``{"id", "kind", "language", "task", "query", "positive",
"negative", "model", "prompt_hash"}``. ``id`` is ``"{seed}-{request index}"``; ``language`` is a
code from ``synth.languages`` (``"src-tgt"`` for bitext); ``task`` is the instruction to train
with. The kind's JSON keys map to (query, positive, negative) as follows:

==============================  ==============  ==================  ========================
kind                            query           positive            negative
==============================  ==============  ==================  ========================
short-long                      user_query      positive_document   hard_negative_document
long-short                      input_text      label               misleading_label
short-short, long-long          input           positive_document   hard_negative_document
sts, bitext                     S1              S2                  S3
==============================  ==============  ==================  ========================

Brainstormed task pools are kept beside the output in ``<out>.tasks.jsonl`` (one row a round:
``{"kind", "round", "tasks", "model", "prompt_hash"}``) and reused when a run is resumed.
"""

from __future__ import annotations

from .backend import ChatBackend, ChatRequest, Completion, RequestFailed, SynthError, make_backend
from .config import HttpBackendConfig, LocalBackendConfig, SynthConfig
from .kinds import ALL_KINDS, KIND_SPECS, Kind, KindSpec, resolve_kind, row_fields
from .languages import LANGUAGES, MAJOR_LANGUAGES, language_weights, paper_weights, resolve_language
from .pipeline import synthesize, synthesize_async
from .summary import SynthSummary

__all__ = [
    "ALL_KINDS", "KIND_SPECS", "LANGUAGES", "MAJOR_LANGUAGES", "ChatBackend", "ChatRequest", "Completion",
    "HttpBackendConfig", "Kind", "KindSpec", "LocalBackendConfig", "RequestFailed", "SynthConfig",
    "SynthError", "SynthSummary", "language_weights", "make_backend", "paper_weights", "resolve_kind",
    "resolve_language", "row_fields", "synthesize", "synthesize_async",
]
