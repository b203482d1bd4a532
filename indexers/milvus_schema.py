"""The e5rag collection schema and vector-index settings for Milvus (Lite or server).

One row per document: ``id`` (VARCHAR primary key), ``vector`` (FLOAT_VECTOR, dim of the model),
``title`` and ``text`` (VARCHAR), ``metadata`` (JSON), ``content_hash`` (VARCHAR, for skipping
unchanged documents on re-index). Metric: inner product on the caller's L2-normalised vectors,
so scores equal the FAISS store's and a numpy ``q @ d.T``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import StoreInputError
from .search_params import SearchParams, default_search_params

ID, VECTOR, TITLE, TEXT, METADATA, HASH = "id", "vector", "title", "text", "metadata", "content_hash"
DOC_FIELDS = (TITLE, TEXT, METADATA)
SPARSE, BM25_FUNCTION = "text_bm25", "text_bm25_function"  # hybrid search: BM25 of the text (build_schema)
VARCHAR_MAX = 65535  # Milvus' VARCHAR limit (a server counts UTF-8 bytes)
JSON_MAX = 65536  # a Milvus server's default JSON field limit, in bytes
HASH_LEN = 64
METRIC = "IP"
MAX_TOPK = 16384  # Milvus' limit on k (and on queries per request)

# What Milvus Lite 3.x builds (milvus_lite.index.factory). It also accepts IVF_PQ, DISKANN, SCANN and
# GPU_* at creation but never builds them and silently searches by brute force: refused here.
LITE_INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "HNSW_SQ", "AUTOINDEX")
SERVER_INDEX_TYPES = LITE_INDEX_TYPES + (
    "IVF_PQ", "IVF_RABITQ", "HNSW_PQ", "HNSW_PRQ", "SCANN", "DISKANN",
    "GPU_BRUTE_FORCE", "GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA")
_ALIASES = {"BRUTE_FORCE": "FLAT", "IVFFLAT": "IVF_FLAT", "AUTO": "AUTOINDEX"}

_IVF_LIKE = ("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "IVF_RABITQ", "SCANN", "GPU_IVF_FLAT", "GPU_IVF_PQ")
_BUILD_DEFAULTS: dict[str, dict[str, Any]] = {
    **{t: {"nlist": 128} for t in _IVF_LIKE}, "IVF_PQ": {"nlist": 128, "m": 16}, "GPU_IVF_PQ": {"nlist": 128, "m": 16},
    "HNSW": {"M": 16, "efConstruction": 200}, "HNSW_SQ": {"M": 16, "efConstruction": 200},
}


def normalize_index_type(name: str, lite: bool) -> str:
    """Upper-case canonical Milvus index type, or a ``StoreInputError`` naming the allowed ones."""
    key = name.strip().upper().replace("-", "_")
    key = _ALIASES.get(key, key)
    allowed = LITE_INDEX_TYPES if lite else SERVER_INDEX_TYPES
    if key in allowed:
        return key
    if lite and key in SERVER_INDEX_TYPES:
        raise StoreInputError(
            f"index_type {name!r} is not built by Milvus Lite (it would silently search by brute force): "
            f"use one of {', '.join(LITE_INDEX_TYPES)}, or a Milvus server for {key}")
    raise StoreInputError(f"unknown Milvus index_type {name!r}: use one of {', '.join(allowed)}")


@dataclass(frozen=True)
class IndexConfig:
    """Vector index of a collection. ``build``: creation parameters; ``search``: per-query ones
    (HNSW ``ef`` is raised to at least k; IVF ``nprobe``)."""

    index_type: str
    lite: bool
    build: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_type", normalize_index_type(self.index_type, self.lite))
        if not isinstance(self.build, dict) or not isinstance(self.search, dict):
            raise StoreInputError("index_params and search_params must be dicts of Milvus index parameters")
        object.__setattr__(self, "build", {**_BUILD_DEFAULTS.get(self.index_type, {}), **self.build})

    def default_search(self) -> SearchParams:
        """Default nprobe/ef for this index (``indexers.search_params``; Lite's AUTOINDEX is HNSW)."""
        return default_search_params(self.index_type, self.build.get("nlist"), lite_autoindex_is_hnsw=self.lite)

    def search_params(self, k: int, call: SearchParams | None = None) -> dict[str, Any]:
        """The ``search_params`` argument of ``MilvusClient.search`` for top-``k``; ``call`` overrides."""
        params: dict[str, Any] = dict(self.default_search().to_dict())
        params.update(self.search)
        params.update((call or SearchParams()).to_dict())
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)
        return {"metric_type": METRIC, "params": params}


def build_schema(client, dim: int, bm25: bool = False):
    """The e5rag collection schema (see module docstring). ``bm25``: the text field gets Milvus' analyzer
    and a BM25 function fills a sparse field from it (Milvus 2.5+ and Milvus Lite; hybrid search)."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID, DataType.VARCHAR, is_primary=True, max_length=VARCHAR_MAX)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=int(dim))
    schema.add_field(TITLE, DataType.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field(TEXT, DataType.VARCHAR, max_length=VARCHAR_MAX, **({"enable_analyzer": True} if bm25 else {}))
    schema.add_field(METADATA, DataType.JSON)
    schema.add_field(HASH, DataType.VARCHAR, max_length=HASH_LEN)
    if bm25:
        from pymilvus import Function, FunctionType

        schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name=BM25_FUNCTION, function_type=FunctionType.BM25,
                                     input_field_names=[TEXT], output_field_names=[SPARSE]))
    return schema


def supports_bm25(version: str) -> bool:
    """Whether a Milvus server version string (``v2.5.4``, ``2.3.5``) has the BM25 function (2.5+)."""
    import re

    match = re.search(r"(\d+)\.(\d+)", version or "")
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (2, 5)


def has_bm25(description: dict[str, Any]) -> bool:
    """Whether a described collection has e5rag's BM25 sparse field."""
    return any(f.get("name") == SPARSE for f in description.get("fields", []))


def build_index_params(client, config: IndexConfig, bm25: bool = False):
    """``index_params`` for ``create_collection``. pymilvus 3 sends build parameters as flat key-value
    pairs, which Milvus Lite 3.2 ignores (it reads only a JSON ``params`` entry, which servers also
    accept), so Lite gets them nested."""
    params = client.prepare_index_params()
    build = {"params": dict(config.build)} if config.lite and config.build else dict(config.build)
    params.add_index(VECTOR, index_type=config.index_type, metric_type=METRIC, params=build)
    if bm25:
        params.add_index(SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return params


def check_schema(description: dict[str, Any], dim: int) -> str | None:
    """Why a described collection is not an e5rag collection of dimension ``dim`` (None when it is)."""
    fields = {f["name"]: f for f in description.get("fields", [])}
    missing = [n for n in (ID, VECTOR, *DOC_FIELDS, HASH) if n not in fields]
    if missing:
        return f"it has no field(s) {', '.join(missing)}"
    got = int(fields[VECTOR].get("params", {}).get("dim", -1))
    if got != dim:
        return f"its vector field has dimension {got} but its manifest says {dim}"
    return None
