"""``python -m netloom.bench.scale_cluster STATS_FILE [netloom cluster options]``.

The ``netloom cluster`` command, unchanged, with one probe: the store it opens is wrapped so
that every ``Store.watch`` opened (and cancelled) on it is counted and the count written to
``STATS_FILE`` (JSON). The scale harness runs the cluster as a separate process so that its RSS
and CPU are measured alone; this probe is how the harness still sees, from outside, that the
whole cloud costs the store exactly one watch (Decision 6).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from netloom.bench.fanout import CountingStore
from netloom.store.base import ChangeCallback, Store, Watch


class WatchCountingStore(CountingStore):
    """A :class:`~netloom.bench.fanout.CountingStore` that also tracks open watches and keeps
    ``stats`` = ``{"store_watches": open watches, "store_watches_opened": total}`` on disk, so
    the harness reads the count from outside the cluster process."""

    def __init__(self, inner: Store, stats: Path) -> None:
        super().__init__(inner)
        self.stats = stats
        self.open = 0
        self._write()

    def _write(self) -> None:
        tmp = self.stats.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"store_watches": self.open, "store_watches_opened": self.watches})
        )
        tmp.replace(self.stats)

    def watch(self, since: int, callback: ChangeCallback) -> Watch:
        w = super().watch(since, callback)
        self.open += 1
        self._write()
        return _CountedWatch(w, self)

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
