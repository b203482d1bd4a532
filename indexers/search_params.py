"""Run-time search breadth of approximate indexes: IVF ``nprobe`` and HNSW ``ef``.

``nprobe``: how many of an IVF index's ``nlist`` lists a query scans; ``ef``: how many candidates
an HNSW search keeps (at least k). FAISS's own defaults (nprobe=1, efSearch=16) give recall@10
around 0.6-0.9 on clustered embeddings; the defaults here give >= 0.95 on the Gaussian mixtures of
``tests/indexers/test_search_params.py`` and ``benchmarks/index_scale.py``. A new index records them
in its manifest (``search_params``); every search may override them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from .base import StoreInputError

DEFAULT_EF = 128
MIN_NPROBE = 16  # nprobe = max(16, nlist / 16), at most nlist
NPROBE_FRACTION = 16

Family = Literal["ivf", "hnsw", "other"]
_MILVUS_IVF = ("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "IVF_RABITQ", "SCANN", "GPU_IVF_FLAT", "GPU_IVF_PQ")


@dataclass(frozen=True)
class SearchParams:
    """``nprobe`` (IVF lists scanned) and ``ef`` (HNSW candidates); None: the index's default."""

    nprobe: int | None = None
    ef: int | None = None

    def __post_init__(self) -> None:
        for name in ("nprobe", "ef"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise StoreInputError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, int]:
        return {k: v for k, v in (("nprobe", self.nprobe), ("ef", self.ef)) if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SearchParams:
        d = d or {}
        return cls(nprobe=d.get("nprobe"), ef=d.get("ef"))

    def over(self, base: SearchParams) -> SearchParams:
        """These values where set, else ``base``'s."""
        return SearchParams(self.nprobe if self.nprobe is not None else base.nprobe,
                            self.ef if self.ef is not None else base.ef)


def family(index_type: str) -> tuple[Family, int | None]:
    """(kind, nlist) of a FAISS factory string (``IVF1024,Flat``, ``HNSW32``) or Milvus index type."""
    text = index_type.strip().upper()
    ivf = re.match(r"^(?:IDMAP2?,)?IVF(\d+)", text)
    if ivf:
        return "ivf", int(ivf.group(1))
    if text in _MILVUS_IVF:
        return "ivf", None
    if re.match(r"^(?:IDMAP2?,)?HNSW", text):
        return "hnsw", None
    return "other", None


def default_search_params(index_type: str, nlist: int | None = None, lite_autoindex_is_hnsw: bool = False) -> SearchParams:
    """The defaults for an index type (``nlist``: an IVF index's list count when not in the name)."""
    kind, named = family(index_type)
    if kind == "other" and lite_autoindex_is_hnsw and index_type.strip().upper() == "AUTOINDEX":
        kind = "hnsw"
    if kind == "ivf":
        lists = named or nlist or 128
        return SearchParams(nprobe=min(lists, max(MIN_NPROBE, lists // NPROBE_FRACTION)))
    if kind == "hnsw":
        return SearchParams(ef=DEFAULT_EF)
    return SearchParams()


def check_applies(params: SearchParams, index_type: str, lite_autoindex_is_hnsw: bool = False) -> None:
    """Refuse a parameter the index does not have (e.g. ``ef`` on an IVF index)."""
    kind, _ = family(index_type)
    if kind == "other" and lite_autoindex_is_hnsw and index_type.strip().upper() == "AUTOINDEX":
        kind = "hnsw"
    if params.nprobe is not None and kind != "ivf":
        raise StoreInputError(f"index type {index_type!r} has no search parameter 'nprobe': nprobe applies to "
                              "IVF indexes (ef to HNSW ones)")
    if params.ef is not None and kind != "hnsw":
        raise StoreInputError(f"index type {index_type!r} has no search parameter 'ef': ef applies to "
                              "HNSW indexes (nprobe to IVF ones)")
