"""``search_type="hybrid"`` for ``E5VectorStore.as_retriever``: LangChain's ``VectorStoreRetriever``
with one more search type, which calls ``E5VectorStore.hybrid_search`` (BM25 fused with the dense
ranking, see ``retriever.fusion``); ``search_kwargs`` take ``k``, ``filter``, ``task``, ``fusion``, ``alpha``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStoreRetriever

HYBRID = "hybrid"


class E5VectorStoreRetriever(VectorStoreRetriever):
    """``VectorStoreRetriever`` that also knows ``search_type="hybrid"``."""

    allowed_search_types: ClassVar[Collection[str]] = (*VectorStoreRetriever.allowed_search_types, HYBRID)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[LCDocument]:
        if self.search_type == HYBRID:
            return self.vectorstore.hybrid_search(query, **(self.search_kwargs | kwargs))
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[LCDocument]:
        if self.search_type == HYBRID:
            return await run_in_executor(None, self.vectorstore.hybrid_search, query, **(self.search_kwargs | kwargs))
        return await super()._aget_relevant_documents(query, run_manager=run_manager, **kwargs)
