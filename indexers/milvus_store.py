"""Milvus store: the same ``Store`` interface on a Milvus Lite directory (``*.db``) or a Milvus server.

Built on pymilvus' ``MilvusClient``. One collection per index (default ``e5rag``), schema in
``indexers.milvus_schema``; the manifest (format version, dim, metric, index type, the model dict)
is a JSON collection property (``e5rag.manifest``) written in the same request that creates the
collection, so a collection never exists without it.

Deployment notes:

* Milvus Lite (``*.db``): one process at a time may open an index, readers included; a second one
  gets a "... is in use by another process" ``StoreError`` (``indexers.milvus_local``). Default index
  FLAT (exact, like the FAISS default); Lite builds only FLAT, IVF_FLAT, IVF_SQ8, HNSW, HNSW_SQ and
  AUTOINDEX (= HNSW) and other types are refused.
* Milvus server (``http(s)://host:19530``, with ``token``, ``db_name``): default AUTOINDEX; the
  server validates the index type. Collections are created with Strong consistency, so reads see
  every write that returned.
* Writes are visible at once; ``commit()`` flushes, after which they survive the writing process
  being killed. Texts over 65,535 bytes are stored truncated with a warning (``indexers.milvus_rows``).
* ``search(filter=EXPR)``: e5rag's filter grammar (``indexers.filters``) is translated so that Lite and
  a server give the FAISS store's results (``indexers.milvus_filter``); any other Milvus boolean
  expression (``id like "d%"``) is passed on as written.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from e5rag.redact import redact as redact_text
from e5rag.redact import redact_url

from . import milvus_local
from .base import (
    FORMAT_VERSION,
    Document,
    Hit,
    Manifest,
    Store,
    StoreError,
    StoreInputError,
    UnsupportedFilterError,
    check_documents,
    check_vectors,
)
from .milvus_filter import milvus_expression
from .milvus_rows import batches, id_chunks, ids_expr, to_document, to_rows
from .milvus_schema import (
    DOC_FIELDS,
    HASH,
    ID,
    MAX_TOPK,
    SPARSE,
    VECTOR,
    IndexConfig,
    build_index_params,
    build_schema,
    check_schema,
    has_bm25,
    supports_bm25,
)
from .search_params import SearchParams, check_applies

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "e5rag"
MANIFEST_KEY = "e5rag.manifest"
SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_MAX_RESULT_ROWS = 8192  # hits (with their documents) per search request
_MAX_QUERY_BYTES = 16 * 1024 * 1024

_quiet: ContextVar[bool] = ContextVar("e5rag_milvus_quiet", default=False)


class _DropWhileQuiet(logging.Filter):
    """pymilvus logs every failed RPC with a traceback before raising; we raise a StoreError instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _quiet.get()


_FILTER = _DropWhileQuiet()


def _pymilvus():
    try:
        import pymilvus
    except ImportError as exc:
        raise StoreError("the Milvus store needs pymilvus (and milvus-lite for *.db files): "
                         "pip install 'e5rag[milvus]'") from exc
    logger = logging.getLogger("pymilvus.decorators")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return pymilvus


def is_server_uri(location: str) -> bool:
    return location.startswith(SERVER_SCHEMES)


def redact(uri: str) -> str:
    """The URI without a ``user:password@`` part (or credential parameters), for messages."""
    return redact_url(uri)


def _one_line(message: str, expr: str | None) -> str:
    """A server message on one line, without the echoed expression and its ``^^^`` marker."""
    lines = [ln.strip() for ln in message.strip().splitlines()]
    keep = [ln for ln in lines if ln and set(ln) - {"^", " "} and (expr is None or ln != expr.strip())]
    return "; ".join(keep) or message.strip()


class MilvusStore(Store):
    """Documents and vectors in one Milvus collection. ``readonly`` opens refuse every write."""

    kind = "milvus"

    def __init__(self, uri: str | Path, *, index_type: str | None = None, readonly: bool = False,
                 token: str | None = None, collection: str | None = None, db_name: str | None = None,
                 index_params: dict[str, Any] | None = None, search_params: dict[str, Any] | None = None,
                 timeout: float | None = None) -> None:
        self.uri = str(uri)
        self.lite = not is_server_uri(self.uri)
        self.location = self.uri if self.lite else redact(self.uri)
        self._secrets = (token, urlsplit(self.uri).password) if not self.lite else (token,)
        collection = DEFAULT_COLLECTION if collection is None else collection
        if not isinstance(collection, str) or not _NAME.match(collection):
            raise StoreInputError(f"collection {collection!r} is not a valid Milvus collection name: use letters, "
                                  "digits and underscores, starting with a letter or underscore")
        self.collection, self.readonly, self.db_name = collection, readonly, db_name
        self._search_params = dict(search_params or {})
        self._config = IndexConfig(index_type or ("FLAT" if self.lite else "AUTOINDEX"), self.lite,
                                   dict(index_params or {}), self._search_params)
        self._requested_type = index_type
        self._client = None
        self._path = Path(self.uri).expanduser() if self.lite else None
        self._acquired = False
        self._dirty = False
        self._manifest: Manifest | None = None
        self._bm25 = False  # the collection has the BM25 sparse field (hybrid search)
        pymilvus = _pymilvus()
        try:
            target = milvus_local.acquire(self._path, readonly) if self.lite else self.uri
            self._acquired = self.lite
            with self._rpc("connect to"):
                self._client = pymilvus.MilvusClient(uri=target, token=token or "", db_name=db_name or "",
                                                     timeout=timeout,
                                                     **(milvus_local.CLIENT_OPTIONS if self.lite else {}))
            if db_name:
                self._ensure_database(db_name)
            self._manifest = self._open_collection()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _rpc(self, action: str, filter_expr: str | None = None, sent_expr: str | None = None):
        """Run pymilvus calls; their errors become one-line ``StoreError``s naming the index."""
        import grpc
        from pymilvus.exceptions import (
            ConnectionConfigException,
            ConnectionNotExistException,
            MilvusException,
            MilvusUnavailableException,
        )

        token = _quiet.set(True)
        try:
            yield
        except grpc.RpcError as exc:  # e.g. an RPC an older server does not implement
            detail = redact_text(exc.details() if hasattr(exc, "details") else str(exc), self._secrets)
            raise StoreError(f"could not {action} Milvus index {self._where()}: {detail}") from None
        except MilvusException as exc:
            message = redact_text(_one_line(exc.message or str(exc), sent_expr), self._secrets)
            unreachable = (MilvusUnavailableException, ConnectionNotExistException, ConnectionConfigException)
            if filter_expr is not None and not isinstance(exc, unreachable):
                raise UnsupportedFilterError(f"Milvus could not evaluate the filter {filter_expr!r}: {message}") from None
            raise StoreError(f"could not {action} Milvus index {self._where()}: {message}") from None
        finally:
            _quiet.reset(token)

    def _where(self) -> str:
        where = f"{self.location} (collection {self.collection!r}"
        return where + (f", database {self.db_name!r})" if self.db_name else ")")

    def _ensure_database(self, db_name: str) -> None:
        """The client already addresses ``db_name``; make sure it exists (created by writers)."""
        with self._rpc("list databases of"):
            known = self._client.list_databases()
        if db_name not in known:
            if self.readonly:
                raise StoreError(f"no database {db_name!r} at {self.location} (it has {', '.join(known)}): "
                                 "build an index there with `e5rag index`")
            with self._rpc("create database in"):
                self._client.create_database(db_name)

    def _open_collection(self) -> Manifest | None:
        with self._rpc("open"):
            exists = self._client.has_collection(self.collection)
        if not exists:
            if self.readonly:
                raise StoreError(self._missing_message())
            return None
        with self._rpc("describe"):
            description = self._client.describe_collection(self.collection)
        raw = (description.get("properties") or {}).get(MANIFEST_KEY)
        if raw is None:
            raise StoreError(f"collection {self.collection!r} at {self.location} was not made by e5rag (it has no "
                             f"{MANIFEST_KEY!r} property): pass another --collection")
        try:
            manifest = Manifest.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"index {self._where()} has a damaged {MANIFEST_KEY!r} property: {exc}") from None
        if manifest.format_version > FORMAT_VERSION:
            raise StoreError(f"index {self._where()} has format version {manifest.format_version}, newer than this "
                             f"e5rag reads ({FORMAT_VERSION}): upgrade e5rag")
        self._bm25 = has_bm25(description)
        problem = check_schema(description, manifest.dim)
        if problem:
            raise StoreError(f"collection {self.collection!r} at {self.location} is not an e5rag index: {problem}")
        if self._requested_type and IndexConfig(self._requested_type, self.lite).index_type != manifest.index_type:
            log.warning("index %s already has a %s index; index type %s is ignored", self._where(),
                        manifest.index_type, self._requested_type)
        self._config = IndexConfig(manifest.index_type, self.lite, {}, {**manifest.search_params, **self._search_params})
        self._load(description.get("collection_name") or self.collection)
        return manifest

    def _load(self, real_name: str) -> None:
        """Load the collection. On Lite, a load that fails on a segment index file (left truncated by a
        process killed while Lite wrote it after a flush) is retried once without those files, which
        Lite then rebuilds from the committed segments (``milvus_local``)."""
        def load() -> None:  # Lite's server would log a failure's traceback: keep it, the error has the reason
            with milvus_local.captured_logs(milvus_local.SERVER_LOGGER) if self.lite else nullcontext():
                with self._rpc("load"):
                    self._client.load_collection(self.collection)

        try:
            load()
            return
        except StoreError as exc:
            files = milvus_local.index_files(self._path, real_name, self.db_name) if self.lite else []
            if not files:
                raise
            log.warning("%s; rebuilding its %d segment index file(s) from the committed rows", exc, len(files))
        for f in files:
            f.unlink(missing_ok=True)
        load()

    def _missing_message(self) -> str:
        with self._rpc("list collections of"):
            others = self._client.list_collections()
        if self.lite:
            extra = f" (it has collections {', '.join(others)}: pass --collection)" if others else ""
            return milvus_local.no_index_message(self.location) + extra
        db = f" --db-name {self.db_name}" if self.db_name else ""
        where = f"database {self.db_name!r} of {self.location}" if self.db_name else self.location
        return (f"no collection {self.collection!r} in {where}: build one with "
                f"`e5rag index SOURCE --index {self.location} --collection {self.collection}{db}`")

    def _writable(self) -> Manifest:
        if self.readonly:
            raise StoreError(f"index {self._where()} was opened read-only")
        return self._require_init()

    def _require_init(self) -> Manifest:
        if self._manifest is None:
            raise StoreError(f"index {self._where()} is empty: add documents first")
        return self._manifest

    # ------------------------------------------------------------------ state
    @property
    def manifest(self) -> Manifest | None:
        return None if self._manifest is None else replace(self._manifest, count=self.count())

    @property
    def index_config(self) -> IndexConfig:
        return self._config

    def initialize(self, dim: int, model: dict[str, Any]) -> None:
        if self._manifest is not None:
            raise StoreError(f"index {self._where()} is already initialised")
        if self.readonly:
            raise StoreError(f"index {self._where()} was opened read-only")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise StoreInputError(f"dim must be a positive integer, got {dim!r}")
        try:
            model = json.loads(json.dumps(dict(model)))
        except (TypeError, ValueError) as exc:
            raise StoreInputError(f"the model record must be JSON-serialisable: {exc}") from None
        manifest = Manifest(store=self.kind, dim=int(dim), model=model, index_type=self._config.index_type,
                            search_params=self._config.default_search().to_dict())
        record = {k: v for k, v in manifest.to_dict().items() if k != "count"}
        bm25 = self._server_has_bm25()
        schema = build_schema(self._client, manifest.dim, bm25=bm25)
        # Lite lacks the AllocTimestamp RPC that pymilvus calls while waiting for the index: the gRPC
        # server would log a NotImplementedError traceback although the collection is created fine.
        quiet_server = milvus_local.captured_logs("grpc._server") if self.lite else nullcontext()
        try:
            with quiet_server, self._rpc(f"create a {self._config.index_type} index in"):
                self._client.create_collection(
                    self.collection, schema=schema, index_params=build_index_params(self._client, self._config, bm25),
                    consistency_level="Strong", properties={MANIFEST_KEY: json.dumps(record, sort_keys=True)})
        except StoreError:
            # Another process (a sibling --shard / rank) may have created it first: adopt theirs when it
            # is an e5rag index of the same dimension, and never drop a collection someone else made.
            theirs = self._created_by_another(manifest.dim)
            if theirs is not None:
                self._manifest = theirs
                return
            self._drop_partial()
            raise
        self._manifest = manifest
        self._bm25 = bm25

    def _created_by_another(self, dim: int) -> Manifest | None:
        """The manifest of this collection if it now exists as a complete e5rag index of ``dim``."""
        try:
            theirs = self._open_collection()
        except StoreError:
            return None
        if theirs is None or theirs.dim != dim:
            return None
        log.info("index %s was created by another process at the same time; using it", self._where())
        return theirs

    def _server_has_bm25(self) -> bool:
        """Milvus Lite and servers 2.5+ run the BM25 function; older servers (e.g. 2.3) do not."""
        if self.lite:
            return True
        try:
            with self._rpc("read the version of"):
                version = self._client.get_server_version()
        except StoreError as exc:  # a server that cannot say is treated as one without BM25
            log.info("%s", exc)
            version = ""
        if not supports_bm25(version):
            log.info("Milvus server %s has no BM25 function: index %s is made without it (no hybrid search)",
                     version, self._where())
            return False
        return True

    def _drop_partial(self) -> None:
        """A collection left without its index by a refused create_index is removed, not kept half-made."""
        try:
            with self._rpc("clean up"):
                if self._client.has_collection(self.collection):
                    self._client.drop_collection(self.collection)
        except StoreError as exc:
            log.warning("%s", exc)

    def count(self) -> int:
        if self._manifest is None:
            return 0
        with self._rpc("count documents in"):
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    # ------------------------------------------------------------------ writes
    def upsert(self, docs: Sequence[Document], vectors: np.ndarray) -> None:
        manifest = self._writable()
        docs = list(docs)
        check_documents(docs)
        vecs = check_vectors(vectors, manifest.dim, len(docs))
        if not docs:
            return
        rows, sizes = to_rows(docs, vecs)
        with self._rpc("write to"):
            for batch in batches(rows, sizes):
                self._client.upsert(self.collection, list(batch))
        self._dirty = True

    def update_metadata(self, docs: Sequence[Document]) -> None:
        """Milvus has no partial update: the rows are upserted again with their stored vectors."""
        docs = list(docs)
        check_documents(docs)
        found = self._query_ids([d.id for d in docs], [VECTOR])
        self._check_existing(docs, found)
        if docs:
            self.upsert(docs, np.asarray([found[d.id][VECTOR] for d in docs], dtype=np.float32))

    def delete(self, ids: Sequence[str]) -> int:
        self._writable()
        existing = list(self.content_hashes(list(dict.fromkeys(ids))))  # Milvus' delete count is not real
        with self._rpc("delete from"):
            for chunk in id_chunks(existing):
                self._client.delete(self.collection, filter=ids_expr(chunk))
        if existing:
            self._dirty = True
        return len(existing)

    def commit(self) -> None:
        """Flush written rows to disk (Lite: a segment; server: sealed segments)."""
        if self._dirty and self._client is not None:
            with self._rpc("flush"):
                self._client.flush(self.collection)
            self._dirty = False

    def set_model(self, model: dict[str, Any]) -> None:
        """Replace the manifest's model record (the collection property; written at once)."""
        manifest = self._writable()
        try:
            model = json.loads(json.dumps(dict(model)))
        except (TypeError, ValueError) as exc:
            raise StoreInputError(f"the model record must be JSON-serialisable: {exc}") from None
        updated = replace(manifest, model=model)
        record = {k: v for k, v in updated.to_dict().items() if k != "count"}
        with self._rpc("update the manifest of"):
            self._client.alter_collection_properties(self.collection,
                                                     properties={MANIFEST_KEY: json.dumps(record, sort_keys=True)})
        self._manifest = updated

    def iter_documents(self, batch_size: int = 1000):
        """Every document in the collection, in lists of up to ``batch_size`` (pymilvus' query iterator)."""
        if self._manifest is None:
            return
        if not 1 <= batch_size <= 16384:
            raise StoreInputError(f"batch_size must be between 1 and 16384, got {batch_size}")
        with self._rpc("read from"):
            it = self._client.query_iterator(self.collection, batch_size=batch_size, filter="",
                                             output_fields=[ID, *DOC_FIELDS])
        try:
            while True:
                with self._rpc("read from"):
                    rows = it.next()
                if not rows:
                    return
                yield [to_document(row) for row in rows]
        finally:
            it.close()

    # ------------------------------------------------------------------ reads
    def _query_ids(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        if self._manifest is None:
            return {}
        bad = [i for i in ids if not isinstance(i, str)]
        if bad:
            raise StoreInputError(f"document ids must be strings, got {bad[0]!r}")
        found: dict[str, dict[str, Any]] = {}
        with self._rpc("read from"):
            for chunk in id_chunks(list(dict.fromkeys(ids))):
                for row in self._client.query(self.collection, filter=ids_expr(chunk), output_fields=[ID, *fields]):
                    found[row[ID]] = row
        return found

    def get(self, ids: Sequence[str]) -> list[Document | None]:
        found = self._query_ids(list(ids), list(DOC_FIELDS))
        return [to_document(found[i]) if i in found else None for i in ids]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return {i: row[HASH] for i, row in self._query_ids(list(ids), [HASH]).items()}

    def ids(self) -> list[str]:
        if self._manifest is None:
            return []
        out: list[str] = []
        # Lite lacks the RPC the iterator first tries for a timestamp; pymilvus logs that and goes on.
        quiet = logging.getLogger("pymilvus.client.iterator.query_iterator")
        if _FILTER not in quiet.filters:
            quiet.addFilter(_FILTER)
        with self._rpc("list the ids of"):
            rows = self._client.query_iterator(self.collection, batch_size=4096, filter="", output_fields=[ID])
            try:
                while batch := rows.next():
                    out += [r[ID] for r in batch]
            finally:
                rows.close()
        return out

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {i: np.asarray(row[VECTOR], dtype=np.float32) for i, row in self._query_ids(list(ids), [VECTOR]).items()}

    def search(self, queries: np.ndarray, k: int, filter: str | None = None, *, nprobe: int | None = None,
               ef: int | None = None) -> list[list[Hit]]:
        """Top-k by inner product per query row. queries: (n, dim) float32 -> n lists of hits."""
        manifest = self._require_init()
        q = check_vectors(queries, manifest.dim)
        if not 1 <= k <= MAX_TOPK:
            raise StoreInputError(f"k must be between 1 and {MAX_TOPK} (Milvus' limit), got {k}")
        call = SearchParams(nprobe, ef)
        check_applies(call, manifest.index_type, lite_autoindex_is_hnsw=self.lite)
        expr = milvus_expression(filter, self.lite) if filter and filter.strip() else ""
        per_request = max(1, min(_MAX_RESULT_ROWS // k, _MAX_QUERY_BYTES // q[0].nbytes if len(q) else 1, MAX_TOPK))
        params = self._config.search_params(k, call)
        results: list[list[Hit]] = []
        with self._rpc("search", filter_expr=filter if expr else None, sent_expr=expr):
            for start in range(0, len(q), per_request):
                found = self._client.search(self.collection, data=q[start:start + per_request], limit=k, filter=expr,
                                            output_fields=list(DOC_FIELDS), search_params=params)
                results += [[Hit(to_document({**hit["entity"], ID: hit[ID]}), float(hit["distance"]), rank + 1)
                             for rank, hit in enumerate(hits)] for hits in found]
        return results

    def keyword_search(self, queries: Sequence[str], k: int, filter: str | None = None) -> list[list[Hit]]:
        """Top-k by Milvus' BM25 function over the text field, per bare query -> n lists of hits."""
        self._require_init()
        if not 1 <= k <= MAX_TOPK:
            raise StoreInputError(f"k must be between 1 and {MAX_TOPK} (Milvus' limit), got {k}")
        if not self._bm25:
            raise StoreError(f"index {self._where()} has no BM25 field (it was made before hybrid search, or on a "
                             "Milvus server older than 2.5): re-index into a new collection on Milvus 2.5+ or "
                             "Milvus Lite, or use a FAISS index directory, for hybrid search")
        expr = milvus_expression(filter, self.lite) if filter and filter.strip() else ""
        results: list[list[Hit]] = []
        with self._rpc("search", filter_expr=filter if expr else None, sent_expr=expr):
            for text in queries:
                if not text.strip():
                    results.append([])
                    continue
                found = self._client.search(self.collection, data=[text], anns_field=SPARSE, limit=k, filter=expr,
                                            output_fields=list(DOC_FIELDS), search_params={"metric_type": "BM25"})
                # Milvus Lite reports BM25 as a negative distance, servers as the (positive) score
                results.append([Hit(to_document({**hit["entity"], ID: hit[ID]}), abs(float(hit["distance"])), r + 1)
                                for r, hit in enumerate(found[0])])
        return results

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing must not hide the error that made us close
                log.debug("closing the Milvus client failed: %s", exc)
        if getattr(self, "_acquired", False):
            self._acquired = False
            milvus_local.release(self._path)
