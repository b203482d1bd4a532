"""``E5VectorStore``: LangChain's ``VectorStore`` over an e5rag store (FAISS directory or Milvus).

Vectors are L2-normalised before they are stored or searched, so the stores' inner product is
cosine for any embeddings; scores are cosine similarities (higher is closer), and relevance
scores are the cosine clipped to [0, 1] (what LangChain's ``_cosine_relevance_score_fn`` gives), so a
``score_threshold`` is a cosine threshold. With ``E5Embeddings``, search methods take ``task=`` to choose the query
instruction per call; documents are embedded as ``f"{title} {text}"`` like ``e5rag index`` does.
"""

from __future__ import annotations

import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from e5rag.indexers import Document, Store, open_store

from ..errors import InputError
from ..fusion import DEFAULT_ALPHA, DEFAULT_FUSION, HybridConfig
from ..instructions import format_document
from ..parents import delete_documents, search_documents
from ..search import check_model, hybrid_search, model_record
from .convert import fill_ids, filter_expression, to_langchain, to_store_document, unit_rows
from .embeddings import E5Embeddings


def _no_extra(kwargs: Mapping[str, Any], method: str) -> None:
    if kwargs:
        raise InputError(f"{method} got unexpected option(s) {sorted(kwargs)}")


class E5VectorStore(VectorStore):
    """A LangChain vector store backed by an e5rag ``Store``; writes are committed per call
    unless ``auto_commit=False`` (then call ``commit()``)."""

    def __init__(self, store: Store, embedding: Embeddings, *, auto_commit: bool = True) -> None:
        if not isinstance(embedding, Embeddings):
            raise InputError(f"embedding must be a LangChain Embeddings, got {type(embedding).__name__}")
        manifest = store.manifest
        if isinstance(embedding, E5Embeddings):
            check_model(store, embedding.encoder, writing=not getattr(store, "readonly", False))
        # Unchanged documents are not embedded again only where the manifest vouches for the model.
        self._skip_unchanged = isinstance(embedding, E5Embeddings) and (
            manifest is None or bool(manifest.model.get("base")))
        self.store = store
        self.embedding = embedding
        self.auto_commit = auto_commit
        self._lock = threading.RLock()  # the async API runs these methods in executor threads
        self._cleanup: Callable[[], None] | None = None
        self._ready = manifest is not None

    def _initialised(self) -> bool:
        """The store has a manifest (checked once: reading it can cost a round trip, e.g. Milvus)."""
        self._ready = self._ready or self.store.manifest is not None
        return self._ready

    @classmethod
    def open(cls, location: str | Path, embedding: Embeddings, *, readonly: bool = False,
             index_type: str | None = None, auto_commit: bool = True, **store_options: Any) -> E5VectorStore:
        """Open or create the store at ``location`` (a directory: FAISS; ``*.db`` or a URI: Milvus);
        ``store_options``: ``store="faiss"|"milvus"``, Milvus ``collection``, ``token``, ``db_name``."""
        store = open_store(location, readonly=readonly, index_type=index_type, **store_options)
        try:
            return cls(store, embedding, auto_commit=auto_commit)
        except BaseException:
            store.close()
            raise

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, *,
                   ids: list[str] | None = None, location: str | Path | None = None,
                   **kwargs: Any) -> E5VectorStore:
        """A store holding ``texts``: at ``location`` (see ``open``), or without one in a temporary
        FAISS directory removed when the object is closed or garbage-collected."""
        if location is None:
            tmp = tempfile.TemporaryDirectory(prefix="e5rag-langchain-")
            vs = cls.open(Path(tmp.name) / "index", embedding, **kwargs)
            vs._cleanup = weakref.finalize(vs, _close_and_remove, vs.store, tmp)
        else:
            vs = cls.open(location, embedding, **kwargs)
        if texts:
            vs.add_texts(texts, metadatas, ids=ids)
        return vs

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    # ------------------------------------------------------------------ embedding
    def _document_vectors(self, docs: Sequence[Document]) -> np.ndarray:
        """Documents as the index embeds them (title prefixed). -> (n, dim) float32, unit rows"""
        texts = [format_document(d.text, d.title) for d in docs]
        if isinstance(self.embedding, E5Embeddings):
            return self.embedding.document_vectors(texts)
        return unit_rows(self.embedding.embed_documents(texts))

    def _query_vector(self, query: str, task: str | None) -> np.ndarray:
        """One query with the call's task (E5Embeddings only). -> (dim,) float32, unit length"""
        if isinstance(self.embedding, E5Embeddings):
            return self.embedding.query_vectors([query], task=task)[0]
        if task is not None:
            raise InputError(f"task= chooses an E5 query instruction and needs E5Embeddings; "
                             f"{type(self.embedding).__name__} embeds queries its own way")
        return unit_rows([self.embedding.embed_query(query)])[0]

    def _model_record(self) -> dict[str, Any]:
        e = self.embedding
        if isinstance(e, E5Embeddings):
            return model_record(e.encoder, e.model_source, e.adapter)
        return {"embeddings": f"{type(e).__module__}.{type(e).__qualname__}"}

    # ------------------------------------------------------------------ writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed and upsert texts (same id: replaced). Missing ids get a uuid4. -> the ids"""
        _no_extra(kwargs, "add_texts()")
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InputError(f"got {len(metadatas)} metadatas for {len(texts)} texts")
        ids = fill_ids(ids, len(texts))
        metas = metadatas or [None] * len(texts)
        docs = [to_store_document(i, t, m) for i, t, m in zip(ids, texts, metas, strict=True)]
        if not docs:
            return []
        todo = docs
        if self._skip_unchanged:
            with self._lock:
                known = self.store.content_hashes(ids) if self._initialised() else {}
            todo = [d for d in docs if known.get(d.id) != d.content_hash]
        if todo:
            vectors = self._document_vectors(todo)
            with self._lock:
                if not self._initialised():
                    self.store.initialize(int(vectors.shape[1]), self._model_record())
                self.store.upsert(todo, vectors)
                if self.auto_commit:
                    self.store.commit()
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete by id; missing ids are ignored. ``ids=None`` (delete all) is refused."""
        _no_extra(kwargs, "delete()")
        if ids is None:
            raise InputError("delete() needs the ids to delete; to empty the store, delete its index")
        with self._lock:
            if not ids or not self._initialised():
                return True
            delete_documents(self.store, [str(i) for i in ids])  # with every chunk of a chunked document
            if self.auto_commit:
                self.store.commit()
        return True

    def commit(self) -> None:
        """Make writes durable (only needed with ``auto_commit=False``)."""
        with self._lock:
            self.store.commit()

    def close(self) -> None:
        """Release the store (and remove a temporary one)."""
        if self._cleanup is not None:
            self._cleanup()
        else:
            self.store.close()

    def __enter__(self) -> E5VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[LCDocument]:
        """Documents that exist, in the order asked, each once."""
        unique = list(dict.fromkeys(str(i) for i in ids))
        with self._lock:
            found = self.store.get(unique)
        return [to_langchain(d) for d in found if d is not None]

    def similarity_search_with_score_by_vector(self, embedding: Sequence[float], k: int = 4,
                                               filter: str | dict | None = None,
                                               **kwargs: Any) -> list[tuple[LCDocument, float]]:
        """Top-k by cosine to ``embedding`` (normalised here). -> [(document, cosine)], best first

        A document indexed as chunks (``e5rag index``) counts once: its best chunk, with
        ``parent_id``, ``chunk``, ``start``, ``end`` in metadata.
        ``nprobe=`` (IVF) / ``ef=`` (HNSW), e.g. in ``as_retriever(search_kwargs=...)``: search breadth."""
        breadth = {name: kwargs.pop(name, None) for name in ("nprobe", "ef")}
        _no_extra(kwargs, "similarity search")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        query = unit_rows([embedding])  # (1, dim)
        with self._lock:
            if not self._initialised():
                return []
            hits = search_documents(self.store, query, k, filter=filter_expression(filter), **breadth)[0]  # k documents
        return [(to_langchain(h.document), h.score) for h in hits]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: str | dict | None = None, *,
                                     task: str | None = None, **kwargs: Any) -> list[tuple[LCDocument, float]]:
        """Top-k for ``query`` embedded with ``task``. -> [(document, cosine)], best first"""
        return self.similarity_search_with_score_by_vector(self._query_vector(query, task), k, filter, **kwargs)

    def similarity_search(self, query: str, k: int = 4, filter: str | dict | None = None, *,
                          task: str | None = None, **kwargs: Any) -> list[LCDocument]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, task=task, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: str | dict | None = None,
                                    **kwargs: Any) -> list[LCDocument]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def hybrid_search_with_score(self, query: str, k: int = 4, filter: str | dict | None = None, *,
                                 task: str | None = None, fusion: str = DEFAULT_FUSION, alpha: float = DEFAULT_ALPHA,
                                 **kwargs: Any) -> list[tuple[LCDocument, float]]:
        """Top-k of the dense ranking (query embedded with ``task``) fused with the store's BM25 ranking of
        the bare query: ``fusion="rrf"`` or ``"weighted"`` (``alpha``: dense weight). -> [(document, fused score)]"""
        _no_extra(kwargs, "hybrid search")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        config = HybridConfig(fusion=fusion, alpha=alpha)
        vector = self._query_vector(query, task)[None, :]  # (1, dim)
        expr = filter_expression(filter)
        with self._lock:
            if not self._initialised():
                return []
            hits = hybrid_search(self.store, vector, [query], k, config, filter=expr)[0]  # k documents
        return [(to_langchain(h.document), h.score) for h in hits]

    def hybrid_search(self, query: str, k: int = 4, filter: str | dict | None = None, **kwargs: Any) -> list[LCDocument]:
        """``hybrid_search_with_score`` without the scores."""
        return [d for d, _ in self.hybrid_search_with_score(query, k, filter, **kwargs)]

    def as_retriever(self, **kwargs: Any) -> VectorStoreRetriever:
        """LangChain's retriever over this store; ``search_type`` may also be ``"hybrid"``
        (``search_kwargs``: ``k``, ``filter``, ``task``, ``fusion``, ``alpha``)."""
        from .hybrid import E5VectorStoreRetriever

        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return E5VectorStoreRetriever(vectorstore=self, tags=tags, **kwargs)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return _cosine_to_relevance

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: str | dict | None = None,
                                                **kwargs: Any) -> list[LCDocument]:
        """MMR over the top ``fetch_k``, on the candidates' stored vectors (nothing is embedded again)."""
        with self._lock:
            candidates = self.similarity_search_with_score_by_vector(embedding, max(k, fetch_k), filter, **kwargs)
            stored = self.store.get_vectors([d.id for d, _ in candidates]) if candidates else {}
        candidates = [(d, s) for d, s in candidates if d.id in stored]  # one deleted meanwhile (Milvus) drops out
        if not candidates:
            return []
        vectors = np.stack([stored[d.id] for d, _ in candidates])  # (fetch_k, dim)
        picked = maximal_marginal_relevance(unit_rows([embedding])[0], vectors, lambda_mult=lambda_mult, k=k)
        return [candidates[i][0] for i in picked]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: str | dict | None = None, *, task: str | None = None,
                                      **kwargs: Any) -> list[LCDocument]:
        return self.max_marginal_relevance_search_by_vector(self._query_vector(query, task).tolist(), k, fetch_k,
                                                            lambda_mult, filter, **kwargs)


def _cosine_to_relevance(score: float) -> float:
    """Cosine in [-1, 1] -> relevance in [0, 1]: the cosine itself, negatives clipped to 0.

    Not ``(1 + cos) / 2``, which squeezes E5 scores into ~0.73-0.86 so that no usual threshold filters."""
    return min(1.0, max(0.0, score))


def _close_and_remove(store: Store, tmp: tempfile.TemporaryDirectory) -> None:
    store.close()
    tmp.cleanup()
