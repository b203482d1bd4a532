"""Build a replacement index beside the live one, then switch to it atomically (``e5rag reindex``).

* FAISS: the replacement is a FAISS index of its own in ``{index}/reindex.staging`` (its manifest
  names the target model, so an interrupted rebuild is found and resumed, or removed). The switch
  moves its committed generation into the index folder as the next generation and replaces
  ``CURRENT`` (``atomic.publish``): readers see the old index or the new one, never a mix.
* Milvus (Lite and server): the replacement is the collection ``{name}__g{n+1}`` beside the live
  one; the switch points the alias ``{name}`` at it (the first time, the real collection ``{name}``
  is renamed to ``{name}__g0`` and the alias created in its place), and only then drops the old one.

The caller holds the live index open for writing (``source``), which for FAISS keeps other writers
out for the whole rebuild. Nothing here knows about models: the target record is opaque.
"""

from __future__ import annotations

import logging
import re
import shutil
from typing import Any

from . import atomic
from .base import Store, StoreError

log = logging.getLogger(__name__)

FAISS_STAGING_DIR = "reindex.staging"
GENERATION_SUFFIX = "__g"


class Staging:
    """A replacement index being built; ``store`` is it, open for writing."""

    store: Store
    where: str

    def switch(self) -> None:
        """Make the staged index the live one (atomic for readers), then remove the old one."""
        raise NotImplementedError

    def discard(self) -> None:
        """Remove the staged index."""
        raise NotImplementedError

    def close(self) -> None:
        self.store.close()


# ---------------------------------------------------------------------------------------- FAISS
class FaissStaging(Staging):
    def __init__(self, source, readonly: bool = False) -> None:
        from .faiss_store import FaissStore

        self.source = source
        self.dir = source.root / FAISS_STAGING_DIR
        self.where = str(self.dir)
        try:
            self.store = FaissStore(self.dir, index_type=source.manifest.index_type, readonly=readonly)
        except StoreError:
            if readonly:
                raise
            # CURRENT names a generation that is gone: a switch was interrupted after it moved it.
            log.info("removing the unusable staging index %s", self.dir)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.store = FaissStore(self.dir, index_type=source.manifest.index_type)

    def switch(self) -> None:
        self.store.commit()
        staged = atomic.current_generation(self.dir)
        if staged is None:
            raise StoreError(f"nothing was staged in {self.dir}")
        self.store.close()
        atomic.publish(self.source.root, staged)  # the source store holds the index's writer lock
        shutil.rmtree(self.dir, ignore_errors=True)

    def discard(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def faiss_staging_exists(source) -> bool:
    return (source.root / FAISS_STAGING_DIR / atomic.CURRENT).is_file()


# ---------------------------------------------------------------------------------------- Milvus
def _generation(name: str, collection: str) -> int | None:
    match = re.fullmatch(re.escape(name) + re.escape(GENERATION_SUFFIX) + r"(\d+)", collection)
    return int(match.group(1)) if match else None


def milvus_live_collection(source) -> str:
    """The collection the index's name stands for: the alias target, or the name itself."""
    with source._rpc("describe"):  # described through an alias, a collection reports its own name
        return source._client.describe_collection(source.collection)["collection_name"]


class MilvusStaging(Staging):
    def __init__(self, source, options: dict[str, Any], readonly: bool = False) -> None:
        from .milvus_store import MilvusStore

        self.source = source
        self.name = source.collection
        self.live = milvus_live_collection(source)
        n = _generation(self.name, self.live) or 0
        self.staged_name = f"{self.name}{GENERATION_SUFFIX}{n + 1}"
        self.where = f"{source.location} (collection {self.staged_name!r})"
        opts = {k: v for k, v in options.items() if k not in ("collection", "store")}
        if not readonly:
            self._drop_older(n)
        def open_staged():
            return MilvusStore(source.uri, collection=self.staged_name, index_type=source.manifest.index_type,
                               readonly=readonly, **opts)

        try:
            self.store = open_staged()
        except StoreError as exc:
            if readonly:
                raise
            # Index files a kill left truncated are rebuilt by MilvusStore; a staged collection that still
            # cannot be loaded has damaged rows: start the staging again.
            log.warning("dropping the staged collection %s, which cannot be loaded (%s)", self.staged_name, exc)
            with source._rpc("drop the staged collection of"):
                source._client.drop_collection(self.staged_name)
            self.store = open_staged()

    def _drop_older(self, live: int) -> None:
        """Generations before the live one: left when a switch was killed before it dropped the old one."""
        with self.source._rpc("list collections of"):
            names = self.source._client.list_collections()
        for name in names:
            k = _generation(self.name, name)
            if k is not None and k < live and name != self.live:
                log.info("dropping %s, left by an interrupted reindex", name)
                with self.source._rpc("drop an old collection of"):
                    self.source._client.drop_collection(name)

    def switch(self) -> None:
        self.store.commit()
        self.store.close()
        client = self.source._client
        with self.source._rpc("switch the alias of"):
            if self.live == self.name:  # first rebuild: the name becomes an alias
                old = f"{self.name}{GENERATION_SUFFIX}0"
                client.rename_collection(self.name, old)
                client.create_alias(self.staged_name, self.name)
            else:
                old = self.live
                client.alter_alias(self.staged_name, self.name)
        with self.source._rpc("drop the old collection of"):
            client.drop_collection(old)

    def discard(self) -> None:
        self.store.close()
        with self.source._rpc("drop the staged collection of"):
            if self.source._client.has_collection(self.staged_name):
                self.source._client.drop_collection(self.staged_name)


def finish_interrupted_switch(location: str, options: dict[str, Any]) -> bool:
    """Complete a first switch killed between renaming ``{name}`` to ``{name}__g0`` and creating the
    alias (the staged generation was complete by then). -> whether there was one to finish."""
    from .milvus_store import DEFAULT_COLLECTION, MilvusStore

    opts = {k: v for k, v in options.items() if k != "store"}
    with MilvusStore(location, **opts) as probe:  # a missing collection creates nothing
        if probe.manifest is not None:
            return False
        name, client = probe.collection, probe._client
        with probe._rpc("list collections of"):
            names = client.list_collections()
        generations = sorted((k, n) for n in names if (k := _generation(name or DEFAULT_COLLECTION, n)) is not None)
        if not generations or generations[0][0] != 0 or len(generations) < 2:
            return False
        newest = generations[-1][1]
        log.warning("finishing an interrupted switch of %s: %r becomes %r", location, newest, name)
        with probe._rpc("switch the alias of"):
            client.create_alias(newest, name)
        with probe._rpc("drop the old collection of"):
            client.drop_collection(generations[0][1])
        return True


def milvus_staging_exists(source) -> bool:
    live = milvus_live_collection(source)
    n = _generation(source.collection, live) or 0
    with source._rpc("list collections of"):
        return source._client.has_collection(f"{source.collection}{GENERATION_SUFFIX}{n + 1}")


# ---------------------------------------------------------------------------------------- both
def staging_exists(source: Store) -> bool:
    """Whether an interrupted rebuild left a staged index beside ``source``."""
    return faiss_staging_exists(source) if source.kind == "faiss" else milvus_staging_exists(source)


def open_staging(source: Store, options: dict[str, Any] | None = None, *, readonly: bool = False) -> Staging:
    """The staged index beside ``source`` (created empty when there is none, unless ``readonly``).

    ``options``: the Milvus options ``source`` was opened with (token, db_name).
    """
    if source.manifest is None:
        raise StoreError("the index is empty: there is nothing to rebuild")
    if source.kind == "faiss":
        return FaissStaging(source, readonly=readonly)
    if source.kind == "milvus":
        return MilvusStaging(source, dict(options or {}), readonly=readonly)
    raise StoreError(f"a {source.kind} store cannot be rebuilt in place")
