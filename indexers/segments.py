"""Append-only vector segments of a FAISS generation, and when to merge them (``e5rag compact``).

A generation (``indexers.atomic``) holds a base ``index.faiss`` written when the generation was made.
Every later commit appends the vectors it added as one segment file ``seg-NNNNNN.npz`` (int64 ids,
float32 vectors; no pickle) and lists it, with the ids of vectors that were replaced or deleted,
in the same SQLite transaction as the documents (``indexers.docstore``). So a commit writes what
changed, not the whole store; a file that no committed transaction lists is a killed writer's
leftover, removed by the next writer. Opening the index adds the listed segments to the base and
drops the dead ids. Compaction writes a new generation whose base holds exactly the live vectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from e5rag import fsutil

SEGMENT_NAME = re.compile(r"seg-[0-9]{6,12}\.npz")

# Compaction is due after a commit when the vectors outside the base (appended or dead) exceed this
# share of it. Merging at a fixed share keeps the bytes written per added vector bounded whatever the
# size of the store (amortised: each compaction rewrites about 1/COMPACT_SHARE times what was appended
# since the last), and bounds the work an open does beyond reading the base (an HNSW graph must insert
# every appended vector). Between compactions, FANOUT segments of one level are merged into one of the
# next level (a logarithmic method), so an open reads O(log n) files, not one per commit.
COMPACT_SHARE = 0.25
FANOUT = 4

def segment_name(seq: int) -> str:
    return f"seg-{seq:06d}.npz"


def write_segment(path: Path, iids: np.ndarray, vectors: np.ndarray) -> None:
    """Write one segment durably (temporary file, fsync, rename)."""
    with fsutil.atomic_open(path, "wb") as fh:
        np.savez(fh, ids=np.ascontiguousarray(iids, dtype=np.int64),
                 vectors=np.ascontiguousarray(vectors, dtype=np.float32))


def read_segment(path: Path, dim: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (rows,), vectors (rows, dim)) of a segment; ``ValueError`` naming what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as data:
            iids, vectors = data["ids"], data["vectors"]
    except FileNotFoundError:
        raise ValueError("is missing") from None
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}), it may be truncated") from None
    if iids.dtype != np.int64 or vectors.dtype != np.float32 or vectors.shape != (rows, dim) or iids.shape != (rows,):
        raise ValueError(f"holds {vectors.shape} {vectors.dtype} vectors, the index expects ({rows}, {dim}) float32")
    return iids, vectors


@dataclass(frozen=True)
class Layout:
    """What a generation holds beyond its base: the row counts the compaction rule looks at."""

    base_rows: int  # vectors in index.faiss (live or dead)
    segment_rows: int  # vectors appended in segment files since
    segments: int  # segment files
    dead: int  # stored vectors (base or segments) whose document was replaced or deleted


def compaction_due(layout: Layout) -> bool:
    """Whether the appended and dead vectors make writing a new base worth it (see COMPACT_SHARE)."""
    outside = layout.segment_rows + layout.dead
    return outside > 0 and outside > COMPACT_SHARE * max(layout.base_rows, 1)


def merge_run(levels: list[int]) -> int:
    """How many trailing segments to merge, given the levels of the segments in order: FANOUT of the
    last level, else 0. Merges happen only at the tail, so levels never increase along the list."""
    if len(levels) < FANOUT or len(set(levels[-FANOUT:])) != 1:
        return 0
    return FANOUT
