"""The agent's gateway reports go to the topology client, sync or async, and a stopping
agent waits for its last ones (the withdrawals)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from netloom.agent.gateway import ReportingClient, TopologyReporter
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState

pytestmark = pytest.mark.unit

ROUTE = LearnedRoute("198.18.0.0/24", "198.19.1.1", "peer")
STATUS = PeerStatus("peer", "port", SessionState.ESTABLISHED, 1.0, 1)


class AsyncClient:
    def __init__(self) -> None:
        self.got: list[Any] = []

    async def report_learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        await asyncio.sleep(0)
        self.got.append((port_id, tuple(routes)))

    async def report_peer_status(self, status: PeerStatus) -> None:
        await asyncio.sleep(0)
        self.got.append(status)


class SyncClient:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def report_learned_routes(self, port_id: str, routes: Sequence[LearnedRoute]) -> None:
        self.got.append((port_id, tuple(routes)))

    def report_peer_status(self, status: PeerStatus) -> None:
        self.got.append(status)


def test_reports_reach_an_async_client_before_drain_returns() -> None:
    async def scenario() -> None:
        client = AsyncClient()
        assert isinstance(client, ReportingClient)
        r = TopologyReporter(client)
        r.learned_routes("port", [ROUTE])
        r.peer_status(STATUS)
        r.learned_routes("port", ())
        await r.drain()
        assert client.got == [("port", (ROUTE,)), STATUS, ("port", ())]

    asyncio.run(scenario())


def test_reports_reach_a_sync_client_at_once() -> None:
    client = SyncClient()
    r = TopologyReporter(client)
    r.learned_routes("port", [ROUTE])
    r.peer_status(STATUS)
    assert client.got == [("port", (ROUTE,)), STATUS]


def test_a_client_without_the_calls_is_not_a_reporting_client() -> None:
    assert not isinstance(object(), ReportingClient)
