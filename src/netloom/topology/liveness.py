"""Host liveness for the topology service: heard-from times, up/down marks, the store write.

A host is alive while its agent's frames keep arriving; one not heard from for the timeout is
marked down, unless another cluster process of the same store holds it (``last_held``, from
:mod:`netloom.topology.members`): its silence counts from the last time another process said
it holds it. Writes go to a one-thread executor so they never block the event loop and stay in
order (alive, then down, then alive again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from netloom.errors import NotFound, VersionConflict
from netloom.store.base import Put, Store

log = logging.getLogger(__name__)

# any return value is ignored: ObjectService.set_host_alive (returns the doc) fits as is
SetHostAlive = Callable[[str, bool], object]


def store_host_alive(store: Store, retries: int = 5) -> SetHostAlive:
    """The default liveness writer: compare-and-set of the ``host`` doc's ``alive`` field.

    CAS (``Put(expect_version=...)``) so a concurrent API edit of the host is never lost; on a
    conflict we re-read and retry. A host without a doc is left alone: the topology service
    reports liveness, it does not create hosts.
    """

    def set_alive(host_id: str, alive: bool) -> None:  # noqa: FBT001 (SetHostAlive's shape)
        for _ in range(retries):
            item = store.get("host", host_id)
            if item is None or item.data.get("alive") is alive:
                return
            try:
                store.commit(
                    [
                        Put(
                            "host",
                            host_id,
                            {**item.data, "alive": alive},
                            expect_version=item.version,
                        )
                    ]
                )
                return
            except (VersionConflict, NotFound):
                continue
        log.warning("could not set host %s alive=%s after %d conflicts", host_id, alive, retries)

    return set_alive


class Liveness:
    """Which hosts are up, as the topology server decides it (touched from the loop only)."""

    def __init__(
        self,
        timeout_s: float,
        set_alive: SetHostAlive,
        on_down: Callable[[str], None] | None = None,
        last_held: Callable[[str], float | None] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._set_alive = set_alive
        self._on_down = on_down  # on the loop, when a host is marked down
        self._last_held = last_held  # when another cluster process last said it holds a host
        self._last_seen: dict[str, float] = {}
        self._alive: dict[str, bool] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="topology-alive")

    def seed(self, host_ids: Iterable[str]) -> None:
        """Hosts alive per the store: each gets one timeout to be heard from."""
        now = time.monotonic()
        for host in host_ids:
            self._alive[host] = True
            self._last_seen[host] = now

    def observed(self, host: str, *, alive: bool, held_here: bool) -> None:
        """The store's ``alive`` of ``host`` changed (another cluster process may have written
        it): a host alive there gets one timeout to be heard from here; one marked down while
        this process holds its connection is marked alive again."""
        if alive:
            if host not in self._alive:
                self._alive[host] = True
                self._last_seen[host] = time.monotonic()
        elif self._alive.get(host, False):
            if held_here:
                self._mark(host, alive=True)
            else:
                self._alive[host] = False  # its down was decided (and handled) elsewhere

    def is_alive(self, host: str) -> bool:
        return self._alive.get(host, False)

    def heard_from(self, host: str) -> None:
        self._last_seen[host] = time.monotonic()
        if not self._alive.get(host, False):
            self._mark(host, alive=True)

    def _mark(self, host: str, *, alive: bool) -> None:
        self._alive[host] = alive
        fut = self._pool.submit(self._set_alive, host, alive)
        fut.add_done_callback(self._log_alive_failure)
        if not alive and self._on_down is not None:
            self._on_down(host)

    @staticmethod
    def _log_alive_failure(fut: Future[object]) -> None:
        exc = fut.exception()
        if exc is not None:
            log.error("writing host liveness failed: %s", exc)

    async def reap_loop(self) -> None:
        """Mark down every host not heard from for ``timeout_s``."""
        period = min(self.timeout_s / 5, 1.0)
        while True:
            await asyncio.sleep(period)
            deadline = time.monotonic() - self.timeout_s
            for host, seen in list(self._last_seen.items()):
                if seen < deadline and self._alive.get(host, False):
                    held = self._last_held(host) if self._last_held is not None else None
                    if held is None or held < deadline:
                        self._mark(host, alive=False)

    def shutdown(self) -> None:
        """Wait for the pending liveness writes (blocking: run it in an executor)."""
        self._pool.shutdown()


__all__ = ["Liveness", "SetHostAlive", "store_host_alive"]
