"""``E5Retriever``: a LangChain retriever over an e5rag index, task chosen per call.

    retriever = E5Retriever.from_index("my-index", k=5, task="nq")
    retriever.invoke("who wrote Hamlet?")                         # the default task (nq)
    retriever.invoke("coffee prevents diabetes", task="scifact")  # same index, another task
    retriever.batch([q, q], task=["scifact", "quora"])            # one task per input
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list, get_executor_for_config, run_in_executor
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import ConfigDict, PrivateAttr, field_validator

from ..errors import InputError
from ..fusion import DEFAULT_ALPHA, DEFAULT_FUSION, HybridConfig
from ..parents import search_documents
from ..search import SearchIndex
from ..tasks import resolve_task
from .convert import filter_expression, hit_to_langchain, split_per_input

CALL_OPTIONS = ("task", "k", "filter", "score_threshold", "nprobe", "ef")
_IGNORED = ("verbose",)  # BaseRetriever.invoke passes it on


class E5Retriever(BaseRetriever):
    """Top-``k`` documents of an e5rag index (FAISS or Milvus) for a query embedded with ``task``.

    Every field can be overridden per call: ``invoke(query, task=..., k=..., filter=...,
    score_threshold=...)``; in ``batch``/``abatch`` a list gives one value per input. Documents
    come back with ``id`` set and ``metadata["score"]`` (cosine) and ``metadata["title"]``. A long
    document indexed as chunks counts once toward ``k``: its best chunk is the ``page_content``,
    with ``parent_id``, ``chunk``, ``start`` and ``end`` in ``metadata``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: SearchIndex
    """The encoder + store to search (``SearchIndex.open`` or ``E5Retriever.from_index``)."""
    k: int = 4
    """Number of documents to return."""
    task: str | None = None
    """Registered task name or task sentence; None is the default web-search task."""
    filter: str | dict[str, Any] | None = None
    """Filter: an expression (``metadata["lang"] == "en"``) or a LangChain dict (``{"year": {"$gte": 2020}}``)."""
    score_threshold: float | None = None
    """Drop documents whose cosine score is below this (similarity search only)."""
    search_type: Literal["similarity", "hybrid"] = "similarity"
    """"hybrid": the dense ranking fused with the index's BM25 ranking of the bare query."""
    fusion: Literal["rrf", "weighted"] = DEFAULT_FUSION
    """Hybrid fusion: reciprocal rank fusion (k=60) or weighted min-max normalised scores."""
    alpha: float = DEFAULT_ALPHA
    """Weighted fusion: the dense side's weight, 0 (BM25) to 1 (dense)."""
    nprobe: int | None = None
    """IVF indexes: lists scanned per query (None: the index's default, from its manifest)."""
    ef: int | None = None
    """HNSW indexes: candidates kept per query (None: the index's default)."""

    _ready: bool = PrivateAttr(default=False)  # the index has a manifest (reading one can cost a round trip)

    @field_validator("k")
    @classmethod
    def _check_k(cls, k: int) -> int:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return k

    @field_validator("alpha")
    @classmethod
    def _check_alpha(cls, alpha: float) -> float:
        HybridConfig(alpha=alpha)  # 0 <= alpha <= 1, else a clear error at construction
        return alpha

    @field_validator("task")
    @classmethod
    def _check_task(cls, task: str | None) -> str | None:
        resolve_task(task)  # an unknown task name fails at construction, not at the first query
        return task

    @classmethod
    def from_index(cls, location: str | Path, *, encoder: Any = None, model: str | None = None,
                   adapter: str | None = None, store_options: Mapping[str, Any] | None = None,
                   **fields: Any) -> E5Retriever:
        """Open an index read-only (loading the model recorded in it unless ``encoder``/``model``
        is given) and wrap it; ``fields`` are ``k``, ``task``, ``filter``, ``score_threshold``."""
        index = SearchIndex.open(location, encoder, model=model, adapter=adapter, readonly=True,
                                 **dict(store_options or {}))
        return cls(index=index, **fields)

    def close(self) -> None:
        """Close the index's store (releasing a Milvus Lite file for other processes)."""
        self.index.close()

    def __enter__(self) -> E5Retriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ search
    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - set(CALL_OPTIONS) - set(_IGNORED))
        if unknown:
            raise InputError(f"unknown retriever option(s) {unknown}: use {', '.join(CALL_OPTIONS)}")
        opts = {key: kwargs.get(key) if kwargs.get(key) is not None else getattr(self, key) for key in CALL_OPTIONS}
        if isinstance(opts["task"], (list, tuple)) or isinstance(opts["k"], (list, tuple)):
            raise InputError("one query takes one task and one k; lists of them are for batch()")
        if int(opts["k"]) < 1:
            raise InputError(f"k must be at least 1, got {opts['k']}")
        return opts

    def _search(self, query: str, opts: dict[str, Any]) -> list[LCDocument]:
        """Embed ``query`` with the call's task and search. -> at most k documents, best first"""
        if not isinstance(query, str):
            raise InputError(f"the retriever takes a query string, got {type(query).__name__}")
        self._ready = self._ready or self.index.store.manifest is not None
        if not self._ready:  # a new index with nothing added yet
            return []
        threshold = opts["score_threshold"]
        if self.search_type == "hybrid":
            if threshold is not None:
                raise InputError("score_threshold compares cosine scores; hybrid hits carry fused scores: leave it out")
            return [hit_to_langchain(h) for h in self.index.search(
                [query], task=resolve_task(opts["task"]), k=int(opts["k"]), filter=filter_expression(opts["filter"]),
                hybrid=HybridConfig(fusion=self.fusion, alpha=self.alpha), nprobe=opts["nprobe"], ef=opts["ef"])[0]]
        vector = self.index.embed_queries([query], task=resolve_task(opts["task"]))  # (1, dim)
        # k counts documents: a chunked one comes back once, as its best chunk (see ``parents``)
        hits = search_documents(self.index.store, vector, int(opts["k"]), filter=filter_expression(opts["filter"]),
                                nprobe=opts["nprobe"], ef=opts["ef"])[0]
        return [hit_to_langchain(h) for h in hits if threshold is None or h.score >= threshold]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[LCDocument]:
        return self._search(query, self._options(kwargs))

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[LCDocument]:
        return await run_in_executor(None, self._search, query, self._options(kwargs))

    # ------------------------------------------------------------------ batches
    def batch(self, inputs: list[str], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Like ``Runnable.batch``; a list under ``task``/``k``/``filter``/``score_threshold`` gives
        one value per input (e.g. ``task=["scifact", "quora"]``)."""
        per_input = split_per_input(kwargs, len(inputs), CALL_OPTIONS)
        if per_input is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        configs = get_config_list(config, len(inputs))

        def one(i: int) -> Any:
            try:
                return self.invoke(inputs[i], configs[i], **per_input[i])
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        with get_executor_for_config(configs[0]) as executor:
            return list(executor.map(one, range(len(inputs))))

    async def abatch(self, inputs: list[str], config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Async ``batch``, with the same per-input lists."""
        per_input = split_per_input(kwargs, len(inputs), CALL_OPTIONS)
        if per_input is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        configs = get_config_list(config, len(inputs))

        async def one(i: int) -> Any:
            try:
                return await self.ainvoke(inputs[i], configs[i], **per_input[i])
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

        return list(await gather_with_concurrency(configs[0].get("max_concurrency"),
                                                  *(one(i) for i in range(len(inputs)))))
