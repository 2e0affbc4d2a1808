"""NSDB: one Store interface (:mod:`netloom.store.base`), three backends."""

from __future__ import annotations

from netloom.errors import InvalidInput
from netloom.store.base import Change, Check, Delete, Item, Op, Put, Store, Watch


def open_store(url: str) -> Store:
    """Open a store from a URL: ``memory:``, ``sqlite:PATH`` or ``zookeeper:HOST:PORT,...``
    (optionally ``zookeeper:HOSTS/chroot``)."""
    scheme, _, rest = url.partition(":")
    if scheme == "memory":
        from netloom.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite" and rest:
        from netloom.store.sqlite import SqliteStore

        return SqliteStore(rest)
    if scheme == "zookeeper" and rest:
        from netloom.store.zookeeper import ZooKeeperStore

        return ZooKeeperStore(rest)
    raise InvalidInput(
        f"bad store URL {url!r}: want memory:, sqlite:PATH or zookeeper:HOST:PORT[,...]",
        field="store",
    )


__all__ = ["Change", "Check", "Delete", "Item", "Op", "Put", "Store", "Watch", "open_store"]
