"""Indexes recorded before e5rag hashed weight contents keep opening with the model that built them.

Older manifests name a model directory's weights by ``config.json`` plus weight file names and
sizes (``hf:NAME:HEX``), which two same-shape models with different weights share. When such a
record matches the encoder in use (same legacy identity and, where recorded, the same source
path), it is upgraded to the content hash (``hf:NAME:sha256=HEX``) the first time the index is
opened for writing (or opened at all, where a writer can be taken), with one warning saying so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import ModelLoadError
from .loading import CONTENT_HASH_TAG, legacy_model_identity, resolve_source

log = logging.getLogger(__name__)


def is_legacy(record: dict[str, Any]) -> bool:
    """A model-directory identity written before weight contents were hashed."""
    base = str(record.get("base") or "")
    return base.startswith("hf:") and CONTENT_HASH_TAG not in base


def _same_path(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def upgraded_record(record: dict[str, Any], encoder) -> dict[str, Any] | None:
    """``record`` with the encoder's content-hash base when its legacy base names this encoder's
    weights; None when the record is not legacy or is another model's."""
    if not is_legacy(record) or encoder.source is None:
        return None
    recorded_source = record.get("source")
    if recorded_source and not _same_path(recorded_source, encoder.source):
        return None
    try:
        source = resolve_source(encoder.source)
    except ModelLoadError:
        return None
    if legacy_model_identity(source) != record["base"]:
        return None
    return {**record, "base": encoder.fingerprint.base}


def comparable_record(record: dict[str, Any], encoder) -> dict[str, Any]:
    """The record to compare the encoder against: upgraded where it is this encoder's legacy record."""
    return upgraded_record(record, encoder) or record


def _where(store) -> str:
    return str(getattr(store, "root", None) or getattr(store, "location", None) or store.kind)


def migrate(store, encoder) -> bool:
    """Write the upgraded record into a writable ``store`` (say so once). -> whether it did."""
    manifest = store.manifest
    if manifest is None or getattr(store, "readonly", False):
        return False
    new = upgraded_record(manifest.model, encoder)
    if new is None:
        return False
    store.set_model(new)
    store.commit()
    log.warning("index %s: its model record %s was upgraded to %s (a hash of the weights' contents, "
                "which tells same-shape models apart); this happens once", _where(store), manifest.model["base"],
                new["base"])
    return True
