"""The agent's gateway side: routing sidecars for the uplinks bound here.

:class:`GatewayLink` keeps the BGP records of the routers of this host's uplinks loaded
(``bgp_peer`` and ``bgp_network`` by router), derives the sidecars they need
(:func:`netloom.gateway.manager.desired`), has the :class:`~netloom.gateway.manager.Gateway`
run exactly those, and plugs each sidecar into the datapath as its uplink's pseudo port
(:meth:`Agent.set_sidecar`). :class:`TopologyReporter` hands what the sidecars learn to the
cluster through the topology client.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from netloom.agent.core import Agent
from netloom.agent.view import Interest
from netloom.errors import NetloomError
from netloom.gateway.manager import Gateway, desired
from netloom.model.bgp import BgpNetwork, BgpPeer, LearnedRoute, PeerStatus
from netloom.model.records import Port

log = logging.getLogger("netloom.agent")

BGP_KINDS = ("bgp_peer", "bgp_network")


@runtime_checkable
class ReportingClient(Protocol):
    """What the topology client offers for a gateway's reports (sync or async calls)."""

    def report_learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> Any: ...

    def report_peer_status(self, status: PeerStatus) -> Any: ...


class TopologyReporter:
    """A :class:`~netloom.gateway.report.BgpReporter` over the topology client."""

    def __init__(self, client: ReportingClient) -> None:
        self._client = client
        self._pending: set[asyncio.Task[Any]] = set()

    def learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        self._run(self._client.report_learned_routes(port_id, tuple(routes)))

    def peer_status(self, status: PeerStatus) -> None:
        self._run(self._client.report_peer_status(status))

    def _run(self, got: Any) -> None:
        if inspect.isawaitable(got):
            task: asyncio.Task[Any] = asyncio.ensure_future(got)
            self._pending.add(task)
            task.add_done_callback(self._done)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) for the reports still on their way: the last ones of a stopping
        agent are its withdrawals."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("gateway report failed error=%s", task.exception())


class LogReporter:
    """Reports to the log only: a topology client that cannot carry gateway reports."""

    def learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        log.info("learned routes port=%s routes=%d", port_id, len(routes))

    def peer_status(self, status: PeerStatus) -> None:
        log.info("bgp peer=%s state=%s", status.peer_id, status.state.value)


class GatewayLink:
    """Runs the sidecars the records ask for; :meth:`changed` after every topology change."""

    def __init__(self, agent: Agent, gateway: Gateway) -> None:
        self.agent = agent
        self.gateway = gateway
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._routers: set[str] = set()

    def uplinks(self) -> list[Port]:
        """The router ports bound to this host."""
        out = []
        for port_id in self.agent.bound:
            rec = self.agent.view.peek("port", port_id)
            if isinstance(rec, Port) and rec.type == "router":
                out.append(rec)
        return out

    def changed(self, kind: str) -> None:
        if kind not in ("port", *BGP_KINDS):
            return
        for port in self.uplinks():
            if port.device_id not in self._routers:
                self._routers.add(port.device_id)
                for k in BGP_KINDS:
                    self.agent.want(Interest.where(k, "router_id", port.device_id))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="agent-gateway")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            view = self.agent.view
            peers = [r for r in view.of_kind("bgp_peer") if isinstance(r, BgpPeer)]
            nets = [r for r in view.of_kind("bgp_network") if isinstance(r, BgpNetwork)]
            try:
                await self.gateway.apply(desired(self.uplinks(), peers, nets, self.agent.host_id))
            except NetloomError as exc:
                log.error("gateway update failed error=%s", exc)

    async def stop(self) -> None:
        """Stop every sidecar (namespace, bird, veth removed; learned routes withdrawn)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.gateway.close()
        if isinstance(self.gateway.reporter, TopologyReporter):
            await self.gateway.reporter.drain()


__all__ = ["GatewayLink", "LogReporter", "ReportingClient", "TopologyReporter"]
