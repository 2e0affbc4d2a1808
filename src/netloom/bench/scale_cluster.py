"""``python -m netloom.bench.scale_cluster STATS_FILE [netloom cluster options]``.

The cluster of ``netloom cluster`` (:func:`netloom.cluster.run.run_cluster`) with one probe: the
store it opens is wrapped so that every ``Store.watch`` opened (and cancelled) on it is counted
and the count written to ``STATS_FILE`` (JSON). The scale harness runs the cluster as a separate
process so that its RSS and CPU are measured alone; this probe is how the harness still sees,
from outside, that the whole cloud costs the store exactly one watch (interest-based fan-out).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netloom.bench.fanout import CountingStore
from netloom.cluster.config import (
    DEFAULT_API_ADDR,
    DEFAULT_STATE_DIR,
    DEFAULT_TOPOLOGY_ADDR,
    ClusterOptions,
    default_store,
    listen,
    open_store_checked,
    parse_addr,
)
from netloom.cluster.logs import LOG_LEVELS, setup_logging
from netloom.cluster.run import run_cluster
from netloom.errors import NetloomError, print_error
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


def _parser() -> argparse.ArgumentParser:
    """The options of ``netloom cluster`` that the scale harness passes."""
    p = argparse.ArgumentParser(prog="python -m netloom.bench.scale_cluster")
    p.add_argument("stats", type=Path, help="where the watch counts are written (JSON)")
    p.add_argument("--store", default=None)
    p.add_argument("--api", default=DEFAULT_API_ADDR)
    p.add_argument("--topology", default=DEFAULT_TOPOLOGY_ADDR)
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--host-timeout", type=float, default=5.0)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        options = ClusterOptions(parse_addr(args.topology, "topology"), args.host_timeout)
        url = args.store or default_store(args.state_dir)
        with listen(*parse_addr(args.api, "api"), "api") as api_sock:
            store = WatchCountingStore(open_store_checked(url), args.stats)
            try:
                run_cluster(store, url, api_sock, options)
            finally:
                store.close()
    except NetloomError as exc:
        print_error(exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()


__all__ = ["WatchCountingStore", "main"]
