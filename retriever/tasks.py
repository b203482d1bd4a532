"""The registry of named task definitions (the paper's evaluation instructions).

``resolve_task`` accepts a registered name (case-insensitive, ``-``/``_``/spaces ignored) or free
text; a single word that is not registered is refused, since it is almost always a typo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Task:
    """A named task definition; ``kind`` says whether documents or other queries are retrieved."""

    name: str
    definition: str
    kind: str = "retrieval"


_TASKS: tuple[Task, ...] = (
    Task("web-search", "Given a web search query, retrieve relevant passages that answer the query"),
    Task("scifact", "Given a scientific claim, retrieve documents that support or refute the claim"),
    Task("arguana", "Given a claim, find documents that refute the claim"),
    Task("nfcorpus", "Given a question, retrieve relevant documents that best answer the question"),
    Task("fiqa2018", "Given a financial question, retrieve user replies that best answer the question"),
    Task("msmarco", "Given a web search query, retrieve relevant passages that answer the query"),
    Task("nq", "Given a question, retrieve Wikipedia passages that answer the question"),
    Task("hotpotqa", "Given a multi-hop question, retrieve documents that can help answer the question"),
    Task("trec-covid", "Given a query on COVID-19, retrieve documents that answer the query"),
    Task(
        "quora",
        "Given a question, retrieve questions that are semantically equivalent to the given question",
        "symmetric",
    ),
    Task("sts", "Retrieve semantically similar text.", "symmetric"),
    Task("bitext", "Retrieve parallel sentences.", "symmetric"),
)

DEFAULT_TASK = "web-search"
_ALIASES = {"fiqa": "fiqa2018", "ms-marco": "msmarco", "treccovid": "trec-covid", "default": DEFAULT_TASK}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


_BY_KEY = {_key(t.name): t for t in _TASKS}
_BY_KEY.update({_key(alias): _BY_KEY[_key(target)] for alias, target in _ALIASES.items()})


def list_tasks() -> tuple[Task, ...]:
    """Every registered task, in registry order."""
    return _TASKS


def get_task(name: str) -> Task | None:
    """The registered task called ``name`` (or an alias of it), else None."""
    return _BY_KEY.get(_key(name))


def resolve_task(name_or_text: str | None) -> str:
    """Task definition for a registered name or free text; None gives the default task."""
    if name_or_text is None:
        return get_task(DEFAULT_TASK).definition  # type: ignore[union-attr]
    text = name_or_text.strip()
    if not text:
        raise InputError("the task is empty: pass a registered task name (see `e5rag tasks`) or a sentence")
    task = get_task(text)
    if task is not None:
        return task.definition
    if len(text.split()) == 1:
        names = ", ".join(t.name for t in _TASKS)
        raise InputError(f"unknown task name {text!r}: use one of {names}, or write the task as a sentence")
    return text
