"""``from e5rag.langchain import E5Embeddings, E5Retriever, E5VectorStore``: the LangChain plugin
(implemented in ``e5rag.retriever.langchain``; needs ``pip install 'e5rag[langchain]'``)."""

from e5rag.retriever.langchain import E5Embeddings, E5Retriever, E5VectorStore

__all__ = ["E5Embeddings", "E5Retriever", "E5VectorStore"]
