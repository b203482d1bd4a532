"""Document embeddings cached by (model fingerprint, corpus hash): index once, ask many ways.

Documents are embedded without an instruction, so evaluating the same corpus with another task
or without the instruction re-encodes only the queries. Each entry is a folder under
``cache_dir()/embeddings/`` holding ``vectors.npy`` (n, dim) float32, ``ids.json`` and
``meta.json``; it is written to a temporary folder and renamed, so a reader never sees half of it.
While a corpus is being encoded, finished chunks are kept in ``<entry>.partial-<chunk>/`` so an
interrupted run (a long CPU encode) resumes where it stopped instead of starting over.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e5rag.fsutil import atomic_write_bytes, publish_dir
from e5rag.indexers import Document

from ..fingerprint import ModelFingerprint
from ..instructions import format_document
from ..loading import cache_dir

log = logging.getLogger(__name__)

# Bump when the way a document is turned into text for the encoder changes.
DOC_FORMAT = "title+space+text/v1"


def corpus_hash(docs: Sequence[Document]) -> str:
    """SHA-256 over every document's id and the exact text the encoder sees, in order."""
    digest = hashlib.sha256()
    for d in docs:
        digest.update(d.id.encode())
        digest.update(b"\0")
        digest.update(format_document(d.text, d.title).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def cache_key(fingerprint: ModelFingerprint, corpus_digest: str) -> str:
    """Folder name of an entry: a digest of the full fingerprint, the document format and the corpus."""
    blob = json.dumps({"model": fingerprint.to_dict(), "doc_format": DOC_FORMAT, "corpus": corpus_digest},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class EmbeddingCache:
    """Document vectors on disk; ``root`` defaults to ``cache_dir()/embeddings``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def path_for(self, fingerprint: ModelFingerprint, docs: Sequence[Document]) -> Path:
        return self.root / cache_key(fingerprint, corpus_hash(docs))

    def load(self, fingerprint: ModelFingerprint, docs: Sequence[Document]) -> np.ndarray | None:
        """Cached vectors (n, dim) float32 in ``docs`` order, or None (absent or not matching)."""
        entry = self.path_for(fingerprint, docs)
        if not (entry / "meta.json").is_file():
            return None
        try:
            ids = json.loads((entry / "ids.json").read_text())
            vectors = np.load(entry / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable embedding cache entry %s: %s", entry, exc)
            return None
        if ids != [d.id for d in docs] or vectors.shape != (len(docs), fingerprint.dim):
            log.warning("ignoring embedding cache entry %s: it does not match this corpus", entry)
            return None
        return vectors.astype(np.float32, copy=False)

    def save(self, fingerprint: ModelFingerprint, docs: Sequence[Document], vectors: np.ndarray,
             extra: dict[str, Any] | None = None) -> Path:
        """Write an entry atomically (temporary folder, then rename). vectors: (n, dim) float32"""
        if vectors.shape != (len(docs), fingerprint.dim):
            raise ValueError(f"vectors have shape {vectors.shape}, expected ({len(docs)}, {fingerprint.dim})")
        entry = self.path_for(fingerprint, docs)

        def write(tmp: Path) -> None:
            np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
            (tmp / "ids.json").write_text(json.dumps([d.id for d in docs]))
            meta = {"model": fingerprint.to_dict(), "doc_format": DOC_FORMAT, "corpus_sha256": corpus_hash(docs),
                    "count": len(docs), **(extra or {})}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))

        # an existing entry here is damaged or stale (load() refused it): replace it
        publish_dir(entry, write, complete_marker="meta.json", replace=True)
        return entry

    # ------------------------------------------------------------------ resumable encoding
    def _partial_dir(self, fingerprint: ModelFingerprint, docs: Sequence[Document], chunk: int) -> Path:
        entry = self.path_for(fingerprint, docs)
        return entry.with_name(f"{entry.name}.partial-{chunk}")

    def load_chunks(self, fingerprint: ModelFingerprint, docs: Sequence[Document], chunk: int) -> list[np.ndarray]:
        """The leading run of finished chunks ((chunk, dim) each, the last may be shorter), in order."""
        folder = self._partial_dir(fingerprint, docs, chunk)
        out: list[np.ndarray] = []
        for i, start in enumerate(range(0, len(docs), chunk)):
            f = folder / f"chunk-{i:06d}.npy"
            try:
                part = np.load(f, allow_pickle=False)
            except (OSError, ValueError):
                break
            if part.shape != (len(docs[start:start + chunk]), fingerprint.dim):
                break
            out.append(part)
        return out

    def save_chunk(self, fingerprint: ModelFingerprint, docs: Sequence[Document], chunk: int, index: int,
                   vectors: np.ndarray) -> None:
        """Keep one finished chunk (written to a temporary file, then renamed)."""
        folder = self._partial_dir(fingerprint, docs, chunk)
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32))
        atomic_write_bytes(folder / f"chunk-{index:06d}.npy", buffer.getvalue(), unique=True)

    def drop_chunks(self, fingerprint: ModelFingerprint, docs: Sequence[Document], chunk: int) -> None:
        shutil.rmtree(self._partial_dir(fingerprint, docs, chunk), ignore_errors=True)
