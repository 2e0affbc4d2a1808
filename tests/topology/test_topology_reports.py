"""Agent -> cluster reports through a real TopologyServer and TopologyClient: learned routes
become routes of the uplink's router (a diff, batched), a session's state is kept for the API,
a host reporting for a port that is not its own is refused, and what a host learned goes when
its session ends, when its connection closes, when it goes silent, and when the cluster starts
without it."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from functools import partial
from typing import Any

import pytest

from api.conftest import assert_integrity
from netloom.api import views
from netloom.api.reports import ClusterReports
from netloom.api.service import ObjectService
from netloom.api.tx import BGP_STATUS, SNAT_BLOCKS
from netloom.model import addressing
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.model.neighbors import ARP_KIND, ArpEntry
from netloom.store.memory import MemoryStore
from netloom.topology.client import TopologyClient
from netloom.topology.protocol import Error, Hello, Lease, Pong, Routes, Welcome
from netloom.topology.server import TopologyServer
from waiting import eventually

from .conftest import RawAgent, run

pytestmark = pytest.mark.unit

Gw = dict[str, str]


def _gateway(service: ObjectService) -> Gw:
    """Two gateway hosts, a provider router with an uplink on each, a peer per uplink."""
    t: Gw = {}
    t["router"] = service.create("router", {"name": "provider"})[0]["id"]
    for g in (1, 2):
        t[f"host{g}"] = service.create("host", {"name": f"gw-{g}"})[0]["id"]
        t[f"uplink{g}"] = service.create(
            "port",
            {
                "device_id": t["router"],
                "type": "router",
                "address": f"198.19.{g}.2/24",
                "host_id": t[f"host{g}"],
                "interface_name": f"uplink{g}",
            },
        )[0]["id"]
        t[f"peer{g}"] = service.create(
            "bgp_peer",
            {"router_id": t["router"], "address": f"198.19.{g}.1", "asn": 64512, "local_as": 1},
        )[0]["id"]
    return t


def _prefixes(n: int, peer: str, g: int = 1) -> list[LearnedRoute]:
    return [LearnedRoute(f"10.{i >> 8}.{i & 255}.0/24", f"198.19.{g}.1", peer) for i in range(n)]


def _learned(store: MemoryStore, peer: str) -> dict[str, Any]:
    return {
        it.data["dst"]: it.data for it in store.list("route") if it.data["learned_from"] == peer
    }


async def _serve(store: MemoryStore, **kw: Any) -> tuple[TopologyServer, int]:
    server = TopologyServer(store, reports=ClusterReports(ObjectService(store)), **kw)
    return server, await server.start("127.0.0.1", 0)


def test_a_report_replaces_the_uplinks_learned_routes() -> None:
    store = MemoryStore()
    service = ObjectService(store)
    gw = _gateway(service)

    async def scenario() -> None:
        server, port = await _serve(store)
        client = TopologyClient(gw["host1"], ("127.0.0.1", port))
        try:
            await client.start()
            await client.wait_connected(5)
            client.report_learned_routes(gw["uplink1"], _prefixes(1000, gw["peer1"]))
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 1000, 10, "1000")
            route = _learned(store, gw["peer1"])["10.3.231.0/24"]
            assert route["router_id"] == gw["router"]
            assert route["next_hop_port_id"] == gw["uplink1"]
            assert route["next_hop_gateway"] == "198.19.1.1"
            assert route["name"] == "bgp 198.19.1.1"
            client.report_peer_status(
                PeerStatus(gw["peer1"], gw["uplink1"], SessionState.ESTABLISHED, 5.0, 1000, True)
            )
            # withdraw half, move one to another next hop: only the difference is written
            smaller = _prefixes(500, gw["peer1"])
            smaller[0] = LearnedRoute(smaller[0].dst, "198.19.1.77", gw["peer1"])
            rev = store.revision()
            client.report_learned_routes(gw["uplink1"], smaller)
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 500, 10, "500")
            await eventually(lambda: store.get(BGP_STATUS, gw["peer1"]) is not None, 5, "status")
            assert _learned(store, gw["peer1"])["10.0.0.0/24"]["next_hop_gateway"] == "198.19.1.77"
            assert store.revision() - rev <= 4  # 501 changes, 3 commits + the status
            shown = views.public(store, "bgp_peer", service.get("bgp_peer", gw["peer1"])[0])
            assert shown["status"] == {
                "state": "established",
                "since": 5.0,
                "routes": 1000,
                "port_id": gw["uplink1"],
                "host_id": gw["host1"],
                "bfd_up": True,
            }
            assert_integrity(store)
        finally:
            await client.stop()
            await server.stop()

    run(scenario())


def test_a_host_cannot_report_for_a_port_it_does_not_own() -> None:
    store = MemoryStore()
    gw = _gateway(ObjectService(store))

    async def scenario() -> None:
        server, port = await _serve(store)
        agent = await RawAgent.connect(port)
        try:
            agent.send(Hello(gw["host2"]))
            assert isinstance(await agent.recv(), Welcome)
            assert isinstance(await agent.recv(), Pong)
            before = store.revision()
            agent.send(Routes(gw["uplink1"], [("0.0.0.0/0", "198.19.1.1", gw["peer1"])]))
            err = await agent.recv()
            assert isinstance(err, Error) and err.field == "port_id", err
            assert "not bound to host" in err.message
            # a peer of another uplink's subnet, a next hop off the subnet: refused too
            agent.send(Routes(gw["uplink2"], [("0.0.0.0/0", "198.19.9.1", gw["peer2"])]))
            err = await agent.recv()
            assert isinstance(err, Error) and err.field == "next_hop", err
            agent.send(Routes(gw["uplink2"], [("0.0.0.0/0", "198.19.2.1", "nonsense")]))
            err = await agent.recv()
            assert isinstance(err, Error) and err.field == "peer_id", err
            agent.send(Routes(gw["uplink2"], [("10.0.0.1/24", "198.19.2.1", gw["peer2"])]))
            err = await agent.recv()
            assert isinstance(err, Error) and err.field == "dst", err
            assert store.revision() == before
            assert _learned(store, gw["peer1"]) == {} and _learned(store, gw["peer2"]) == {}
        finally:
            agent.writer.close()
            await server.stop()

    run(scenario())


def test_session_end_and_host_death_remove_learned_routes() -> None:
    store = MemoryStore()
    gw = _gateway(ObjectService(store))

    async def scenario() -> None:
        server, port = await _serve(store, host_timeout_s=0.6)
        one = TopologyClient(gw["host1"], ("127.0.0.1", port))
        two = TopologyClient(gw["host2"], ("127.0.0.1", port))
        try:
            for c in (one, two):
                await c.start()
                await c.wait_connected(5)
            one.report_learned_routes(gw["uplink1"], _prefixes(20, gw["peer1"]))
            two.report_learned_routes(gw["uplink2"], _prefixes(20, gw["peer2"], 2))
            await eventually(lambda: len(_learned(store, gw["peer2"])) == 20, 10, "routes 2")
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 20, 10, "routes 1")
            # a status that lags the routes (not established yet) keeps them
            two.report_peer_status(
                PeerStatus(gw["peer2"], gw["uplink2"], SessionState.ACTIVE, 8.0, 20)
            )
            two.report_peer_status(
                PeerStatus(gw["peer2"], gw["uplink2"], SessionState.ESTABLISHED, 8.5, 20)
            )
            await eventually(
                lambda: (
                    (s := store.get(BGP_STATUS, gw["peer2"])) is not None
                    and s.data["state"] == "established"
                ),
                5,
                "established",
            )
            assert len(_learned(store, gw["peer2"])) == 20
            # host 2's session goes idle: its routes go, host 1's stay
            two.report_peer_status(
                PeerStatus(gw["peer2"], gw["uplink2"], SessionState.IDLE, 9.0, 0)
            )
            await eventually(lambda: _learned(store, gw["peer2"]) == {}, 10, "session end")
            # host 1 dies (no more heartbeats): its routes go and its session is down
            one.report_peer_status(
                PeerStatus(gw["peer1"], gw["uplink1"], SessionState.ESTABLISHED, 9.0, 20)
            )
            await eventually(lambda: store.get(BGP_STATUS, gw["peer1"]) is not None, 5, "up")
            await one.stop()
            await eventually(lambda: _learned(store, gw["peer1"]) == {}, 10, "host death")
            await eventually(
                lambda: (
                    (s := store.get(BGP_STATUS, gw["peer1"])) is not None
                    and s.data["state"] == "down"
                ),
                5,
                "status down",
            )
            assert_integrity(store)
        finally:
            await one.stop()
            await two.stop()
            await server.stop()

    run(scenario())


def _state_is(store: MemoryStore, peer: str, state: SessionState) -> bool:
    s = store.get(BGP_STATUS, peer)
    return s is not None and s.data["state"] == state.value


def test_a_stale_down_status_after_the_routes_leaves_them() -> None:
    """The gateway reads bird's session states on a timer and its routes as events: routes,
    then a stale ``down``, then ``established`` must leave the routes in place."""
    store = MemoryStore()
    gw = _gateway(ObjectService(store))

    async def scenario() -> None:
        server, port = await _serve(store)
        client = TopologyClient(gw["host1"], ("127.0.0.1", port))
        try:
            await client.start()
            await client.wait_connected(5)
            client.report_learned_routes(gw["uplink1"], _prefixes(3, gw["peer1"]))
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 3, 10, "routes")
            for state in (SessionState.DOWN, SessionState.ESTABLISHED):
                client.report_peer_status(PeerStatus(gw["peer1"], gw["uplink1"], state, 1.0, 3))
                await eventually(partial(_state_is, store, gw["peer1"], state), 5, state.value)
                assert len(_learned(store, gw["peer1"])) == 3
        finally:
            await client.stop()
            await server.stop()

    run(scenario())


def test_cluster_start_removes_what_dead_hosts_learned() -> None:
    store = MemoryStore()
    service = ObjectService(store)
    gw = _gateway(service)
    reports = ClusterReports(service)
    service.set_host_alive(gw["host1"], True)
    reports.learned_routes(gw["host1"], gw["uplink1"], _prefixes(5, gw["peer1"]))
    reports.learned_routes(gw["host2"], gw["uplink2"], _prefixes(5, gw["peer2"], 2))
    stale = addressing.learned_route_id(gw["uplink2"], gw["peer2"], "10.0.0.0/24", "198.19.2.1")
    assert store.get("route", stale) is not None

    async def scenario() -> None:
        server, _ = await _serve(store, host_timeout_s=30)
        try:
            await eventually(lambda: _learned(store, gw["peer2"]) == {}, 10, "sweep")
            assert len(_learned(store, gw["peer1"])) == 5  # host 1 is alive: kept
            assert_integrity(store)
        finally:
            await server.stop()

    run(scenario())


def test_reports_coalesce_wait_for_the_connection_and_may_come_from_a_thread() -> None:
    store = MemoryStore()
    gw = _gateway(ObjectService(store))

    async def scenario() -> None:
        server, port = await _serve(store)
        client = TopologyClient(gw["host1"], ("127.0.0.1", port))
        try:
            # before the client runs: kept, and only the latest set per port is sent
            for n in (5, 7, 3):
                client.report_learned_routes(gw["uplink1"], _prefixes(n, gw["peer1"]))
            await client.start()
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 3, 10, "latest set")
            assert client.reports_sent == 1
            # from another thread (a netlink watcher's, say)
            thread = threading.Thread(
                target=client.report_learned_routes, args=(gw["uplink1"], _prefixes(9, gw["peer1"]))
            )
            thread.start()
            thread.join()
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 9, 10, "from a thread")
        finally:
            await client.stop()
            await server.stop()

    run(scenario())


def test_arp_entries_of_uplinks_are_kept_checked_watched_and_go_with_their_host() -> None:
    store = MemoryStore()
    gw = _gateway(ObjectService(store))
    entry = ArpEntry(gw["router"], "198.19.1.1", "02:00:00:00:aa:01", gw["uplink1"], 99.0)

    async def scenario() -> None:
        server, port = await _serve(store, host_timeout_s=0.6)
        one = TopologyClient(gw["host1"], ("127.0.0.1", port))
        two = TopologyClient(gw["host2"], ("127.0.0.1", port))
        try:
            for c in (one, two):
                await c.start()
                await c.wait_connected(5)
            seen = await two.watch_field(ARP_KIND, "router_id", gw["router"])
            assert seen == {}
            one.report_arp(entry)
            await eventually(lambda: two.cached(ARP_KIND, entry.id) is not None, 10, "watched")
            assert two.cached(ARP_KIND, entry.id) == {**entry.doc(gw["host1"])}
            # refused: another host's uplink, an address off the uplink's subnet
            rev = store.revision()
            two.report_arp(dataclasses.replace(entry, ip="198.19.2.1"))  # uplink1 is host 1's
            one.report_arp(dataclasses.replace(entry, ip="198.19.9.1"))
            one.report_arp(dataclasses.replace(entry, ip="198.19.1.7"))  # a good one, last
            await eventually(lambda: len(store.list(ARP_KIND)) == 2, 10, "the good one")
            assert store.revision() == rev + 1
            await one.stop()  # host 1 dies: what it learned goes
            await eventually(lambda: store.list(ARP_KIND) == [], 10, "gone with the host")
        finally:
            await one.stop()
            await two.stop()
            await server.stop()

    run(scenario())


def _snat_holders(store: MemoryStore) -> set[str]:
    return {h for it in store.list(SNAT_BLOCKS) for h in it.data["blocks"].values()}


def test_a_closed_connection_drops_what_the_host_learned_at_once_but_not_its_snat_blocks() -> None:
    """An agent that dies closes its connection (its bird dies with it): its routes, session
    and ARP entries go long before the heartbeat timeout; its SNAT blocks stay, and an agent
    that comes back reports its routes again. A server that stops drops nothing."""
    store = MemoryStore()
    gw = _gateway(ObjectService(store))
    entry = ArpEntry(gw["router"], "198.19.1.1", "02:00:00:00:aa:01", gw["uplink1"], 99.0)
    up = PeerStatus(gw["peer1"], gw["uplink1"], SessionState.ESTABLISHED, 1.0, 20)

    async def scenario() -> None:
        server, port = await _serve(store, host_timeout_s=3600)
        one = TopologyClient(gw["host1"], ("127.0.0.1", port))
        again = TopologyClient(gw["host1"], ("127.0.0.1", port))
        try:
            await one.start()
            await one.wait_connected(5)
            await one.lease_snat_block(gw["router"], "203.0.113.1")
            one.report_learned_routes(gw["uplink1"], _prefixes(20, gw["peer1"]))
            one.report_peer_status(up)
            one.report_arp(entry)
            await eventually(lambda: len(store.list(ARP_KIND)) == 1, 10, "arp")
            await eventually(partial(_state_is, store, gw["peer1"], up.state), 10, "up")
            assert len(_learned(store, gw["peer1"])) == 20
            await one.stop()
            await eventually(lambda: _learned(store, gw["peer1"]) == {}, 10, "routes gone")
            await eventually(lambda: store.list(ARP_KIND) == [], 10, "arp gone")
            await eventually(partial(_state_is, store, gw["peer1"], SessionState.DOWN), 10, "down")
            assert _snat_holders(store) == {gw["host1"]}
            assert server.host_alive(gw["host1"])  # down only when the timeout says so
            again.report_learned_routes(gw["uplink1"], _prefixes(20, gw["peer1"]))
            await again.start()
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 20, 10, "back")
            await server.stop()
            assert len(_learned(store, gw["peer1"])) == 20
            assert_integrity(store)
        finally:
            await one.stop()
            await again.stop()
            await server.stop()

    run(scenario())


def test_a_silent_host_loses_its_routes_and_snat_blocks_at_the_timeout() -> None:
    """A host that goes quiet without closing (a hang, a power loss behind a switch) is taken
    out by the heartbeat timeout: routes, session, and its SNAT blocks too."""
    store = MemoryStore()
    gw = _gateway(ObjectService(store))

    async def scenario() -> None:
        server, port = await _serve(store, host_timeout_s=0.6)
        agent = await RawAgent.connect(port)
        try:
            agent.send(Hello(gw["host1"]))
            agent.send(Lease(1, gw["router"], "203.0.113.1"))
            agent.send(Routes(gw["uplink1"], [("0.0.0.0/0", "198.19.1.1", gw["peer1"])]))
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 1, 10, "routes")
            await eventually(lambda: _snat_holders(store) == {gw["host1"]}, 10, "leased")
            await eventually(lambda: not server.host_alive(gw["host1"]), 10, "timeout")
            await eventually(lambda: _learned(store, gw["peer1"]) == {}, 10, "routes gone")
            await eventually(lambda: _snat_holders(store) == set(), 10, "blocks released")
            await asyncio.wait_for(agent.reader.read(), 10)  # what was sent, then the end
            assert agent.reader.at_eof()  # the server closed it
        finally:
            agent.writer.close()
            await server.stop()

    run(scenario())


def test_a_slow_host_marked_down_reports_again() -> None:
    """An agent too busy to heartbeat is marked down and loses its routes while still
    connected; the server closes its connection, so it reconnects and reports them again."""
    store = MemoryStore()
    gw = _gateway(ObjectService(store))

    async def scenario() -> None:
        server, port = await _serve(store, host_timeout_s=0.6)
        client = TopologyClient(gw["host1"], ("127.0.0.1", port))
        beat = client._start_heartbeat
        client._start_heartbeat = lambda period: None  # type: ignore[method-assign]
        try:
            client.report_learned_routes(gw["uplink1"], _prefixes(5, gw["peer1"]))
            await client.start()
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 5, 10, "routes")
            await eventually(lambda: client.connects == 2, 10, "closed by the server")
            client._start_heartbeat = beat  # type: ignore[method-assign]
            await eventually(lambda: len(_learned(store, gw["peer1"])) == 5, 10, "again")
            assert server.host_alive(gw["host1"])
        finally:
            await client.stop()
            await server.stop()

    run(scenario())
