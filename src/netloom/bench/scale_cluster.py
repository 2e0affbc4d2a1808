"""``python -m netloom.bench.scale_cluster STATS_FILE [netloom cluster options]``.

The ``netloom cluster`` command, unchanged, with one probe: the store it opens is wrapped so
that every ``Store.watch`` opened (and cancelled) on it is counted and the count written to
``STATS_FILE`` (JSON). The scale harness runs the cluster as a separate process so that its RSS
and CPU are measured alone; this probe is how the harness still sees, from outside, that the
whole cloud costs the store exactly one watch (Decision 6).
"""

from __future__ import annotations

import builtins
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from netloom.store.base import Change, ChangeCallback, Item, Op, Store, Watch


class WatchCountingStore:
    """Delegates to a real store; keeps ``STATS_FILE`` = ``{"store_watches": open watches,
    "store_watches_opened": total}``."""

    def __init__(self, inner: Store, stats: Path) -> None:
        self.inner = inner
        self.stats = stats
        self.open = 0
        self.opened = 0
        self._write()

    def _write(self) -> None:
        tmp = self.stats.with_suffix(".tmp")
        tmp.write_text(json.dumps({"store_watches": self.open,
                                   "store_watches_opened": self.opened}))  # fmt: skip
        tmp.replace(self.stats)

    def get(self, kind: str, id: str) -> Item | None:
        return self.inner.get(kind, id)

    def list(self, kind: str) -> builtins.list[Item]:
        return self.inner.list(kind)

    def commit(self, ops: Sequence[Op]) -> int:
        return self.inner.commit(ops)

    def revision(self) -> int:
        return self.inner.revision()

    def changes(self, since: int, limit: int = 10_000) -> builtins.list[Change]:
        return self.inner.changes(since, limit)

    def watch(self, since: int, callback: ChangeCallback) -> Watch:
        w = self.inner.watch(since, callback)
        self.open += 1
        self.opened += 1
        self._write()
        return _CountedWatch(w, self)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # backend extras (compact...)
        return getattr(self.inner, name)


class _CountedWatch:
    def __init__(self, inner: Watch, store: WatchCountingStore) -> None:
        self.inner = inner
        self.store = store

    def cancel(self) -> None:
        self.inner.cancel()
        self.store.open -= 1
        self.store._write()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write("usage: python -m netloom.bench.scale_cluster STATS_FILE [options]\n")
        raise SystemExit(2)
    stats = Path(args.pop(0))
    from netloom.cli import cluster as cluster_mod

    opener = cluster_mod.open_store_checked

    def counted(url: str) -> Any:
        return WatchCountingStore(opener(url), stats)

    cluster_mod.open_store_checked = counted
    _run(cluster_mod.cluster, args)


def _run(command: Any, args: list[str]) -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(command)
    app(args)


if __name__ == "__main__":
    main()


__all__ = ["WatchCountingStore", "main"]
