"""Route events of a namespace, event-driven: a netlink socket opened inside the namespace
(setns on this thread only, :mod:`netloom.netns`), joined to the IPv4 route group
(RFC 3549 §3.1.1), read by the event loop when it is readable. Nothing polls.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from netloom.gateway.routes import KernelRoute, parse_route
from netloom.netns import entered

NETLINK_ROUTE = 0
_RCVBUF = 8 << 20  # 1000 prefixes announced at once must not overflow the socket


class RouteWatch:
    """Calls ``on_route(event, route)`` for every IPv4 route added or removed in ``ns``."""

    def __init__(self, ns: str, on_route: Callable[[str, KernelRoute], None]) -> None:
        self._ns = ns
        self._on_route = on_route
        self._marshal = MarshalRtnl()
        self._sock: socket.socket | None = None
        self.overruns = 0  # ENOBUFS: events were lost (the caller resynchronises)

    def start(self, on_overrun: Callable[[], None]) -> None:
        with entered(self._ns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind((0, RTMGRP_IPV4_ROUTE))
        sock.setblocking(False)
        self._sock = sock
        self._on_overrun = on_overrun
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:  # ENOBUFS: the kernel dropped events
                self.overruns += 1
                self._on_overrun()
                continue
            for msg in self._marshal.parse(data):
                self._message(msg)

    def _message(self, msg: Any) -> None:
        got = parse_route(msg)
        if got is not None:
            self._on_route(*got)

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()


__all__ = ["RouteWatch"]
