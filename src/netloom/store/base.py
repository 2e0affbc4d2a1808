"""The NSDB interface every backend implements (memory, SQLite, ZooKeeper).

The store knows nothing of the topology model: it keeps JSON documents addressed by
``(kind, id)``, each with a version that starts at 1 and grows by one per write. Writes go
through :meth:`Store.commit`, an atomic list of operations whose ``expect_version`` fields are
compare-and-set conditions (``0`` = must not exist, ``None`` = no condition). Every commit gets
the next **revision** (a store-wide counter, strictly increasing) and appears, in commit order,
exactly once in the change stream that :meth:`Store.watch` delivers, resumable from any revision
the store still keeps (older ones raise :class:`~netloom.errors.Compacted`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Item:
    kind: str
    id: str
    version: int
    data: Doc


@dataclass(frozen=True, slots=True)
class Put:
    kind: str
    id: str
    data: Doc
    expect_version: int | None = None  # 0: create only; n: update only if at version n


@dataclass(frozen=True, slots=True)
class Delete:
    kind: str
    id: str
    expect_version: int | None = None  # None: must exist (any version)


@dataclass(frozen=True, slots=True)
class Check:
    """Fails the commit unless (kind, id) is at ``version`` (0: does not exist)."""

    kind: str
    id: str
    version: int


Op = Put | Delete | Check


@dataclass(frozen=True, slots=True)
class Change:
    revision: int
    kind: str
    id: str
    op: Literal["put", "delete"]
    version: int  # the new version (put) or the last version (delete)
    data: Doc | None  # None for delete


ChangeCallback = Callable[[list[Change]], None]


class Watch(Protocol):
    """A running subscription; the callback receives lists of changes in revision order, each
    change once, from a background thread."""

    def cancel(self) -> None: ...


class Store(Protocol):
    def get(self, kind: str, id: str) -> Item | None: ...

    def list(self, kind: str) -> builtins.list[Item]: ...

    def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Item | None]:
        """:meth:`get` of each ``(kind, id)``, in order (a backend may pipeline them)."""
        ...

    def commit(self, ops: Sequence[Op]) -> int:
        """Apply ``ops`` atomically; return the new revision.

        Raises VersionConflict (a version condition failed), AlreadyExists (expect_version=0 on
        an existing object), NotFound (update/delete/check of a missing object), StoreError."""
        ...

    def revision(self) -> int: ...

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        """Changes with revision > since, oldest first. Raises Compacted if ``since`` is older
        than what the store keeps."""
        ...

    def watch(self, since: int, callback: ChangeCallback) -> Watch: ...

    def close(self) -> None: ...


__all__ = [
    "Change",
    "ChangeCallback",
    "Check",
    "Delete",
    "Doc",
    "Item",
    "Op",
    "Put",
    "Store",
    "Watch",
]
