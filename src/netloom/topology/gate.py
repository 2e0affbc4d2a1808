"""Hellos ahead of the view: an agent moving from a cluster process that was ahead of this one
names a revision this view has not reached yet. Its frames wait until the store watch gets
there (revisions are the store's, so it does), then are handled in order: the agent is never
answered with versions older than it holds. A bound (the host timeout) all the same."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from netloom.topology.protocol import ClientMsg, Hello
from netloom.topology.subscriptions import Conn


class HelloGate:
    """Parks the frames of connections whose hello is ahead of the view (loop only)."""

    def __init__(self, handle: Callable[[Conn, ClientMsg], None], bound_s: float) -> None:
        self._handle = handle
        self._bound = bound_s
        self._parked: dict[Conn, list[ClientMsg]] = {}

    def admit(self, conn: Conn, msg: ClientMsg, revision: int) -> bool:
        """True: handle ``msg`` now; False: it waits for the view."""
        parked = self._parked.get(conn)
        if parked is not None:
            parked.append(msg)
            return False
        if isinstance(msg, Hello) and msg.since is not None and msg.since > revision:
            self._parked[conn] = [msg]
            loop = asyncio.get_running_loop()
            loop.call_later(self._bound, self._release, lambda since: True, conn)
            return False
        return True

    def caught_up(self, revision: int) -> None:
        """The view reached ``revision``: handle the connections it now covers."""
        if self._parked:
            self._release(lambda since: since <= revision)

    def forget(self, conn: Conn) -> None:
        self._parked.pop(conn, None)

    def _release(self, ready: Callable[[int], bool], only: Conn | None = None) -> None:
        for conn, msgs in list(self._parked.items()):
            hello = msgs[0]
            assert isinstance(hello, Hello) and hello.since is not None
            if (only is None or conn is only) and ready(hello.since):
                del self._parked[conn]
                for msg in msgs:
                    self._handle(conn, msg)


__all__ = ["HelloGate"]
