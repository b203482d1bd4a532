"""How texts are shown to the embedder (E5-Mistral, arXiv 2401.00368, section 3).

Queries carry a one-sentence task definition; documents carry none, so one document index
serves every task and the task is chosen per query at search time.
"""

from __future__ import annotations

from collections.abc import Sequence

QUERY_TEMPLATE = "Instruct: {task}\nQuery: {query}"


def format_query(task: str | None, query: str) -> str:
    """``Instruct: {task}\\nQuery: {query}``; with no task (the ablation) the bare query."""
    if task is None:
        return query
    return QUERY_TEMPLATE.format(task=task.strip(), query=query)


def format_document(text: str, title: str | None = None) -> str:
    """A document as E5's own evaluation embeds it: ``f"{title} {text}".strip()``, no instruction."""
    if title:
        return f"{title} {text}".strip()
    return text


def format_queries(tasks: str | None | Sequence[str | None], queries: Sequence[str]) -> list[str]:
    """Format ``queries`` with one task for all, or one task per query (same length)."""
    if tasks is None or isinstance(tasks, str):
        return [format_query(tasks, q) for q in queries]
    tasks = list(tasks)
    if len(tasks) != len(queries):
        from .errors import InputError

        raise InputError(
            f"got {len(tasks)} tasks for {len(queries)} queries: pass one task for all queries "
            "or exactly one per query"
        )
    return [format_query(t, q) for t, q in zip(tasks, queries, strict=True)]
