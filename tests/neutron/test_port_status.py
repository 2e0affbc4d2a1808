"""A Neutron port's status comes from its host's agent: ``ACTIVE`` once the agent plugged the
``tap`` + 11 characters interface Nova makes, ``DOWN`` before, when it goes, when the port is
unbound, and when a host it was never bound to reports it. In process: store, object service,
topology server with the cluster's reports, one agent on a memory datapath whose interfaces
come and go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from netloom.agent.core import Agent, AgentConfig
from netloom.agent.driver import AgentDriver
from netloom.api.neutron import docs, floatingips, networks, port_status, ports, subnets
from netloom.api.reports import ClusterReports
from netloom.api.service import ObjectService
from netloom.api.tx import WIRED, Doc
from netloom.datapath.base import PortKind
from netloom.datapath.memory import MemoryDatapath
from netloom.errors import NotFound
from netloom.store.memory import MemoryStore
from netloom.topology.client import TopologyClient
from netloom.topology.server import TopologyServer
from waiting import eventually

pytestmark = pytest.mark.unit

PROJECT = "6f1c2b1e7a5d4c3b9a8e7f6d5c4b3a29"
ADMIN = docs.Caller()


class HostDatapath(MemoryDatapath):
    """A memory datapath whose interfaces exist only once a test made them."""

    def __init__(self) -> None:
        super().__init__()
        self.interfaces: set[str] = set()

    def add_port(self, ifname: str, kind: PortKind, *, mtu: int | None = None) -> int:
        if ifname not in self.interfaces:
            raise NotFound(f"no interface {ifname}", field="ifname")
        return super().add_port(ifname, kind, mtu=mtu)

    def port_present(self, port: int) -> bool:
        names = {p.ifname for p in self.ports() if p.port == port}
        return bool(names & self.interfaces)


@dataclass
class World:
    svc: ObjectService
    dp: HostDatapath
    hosts: dict[str, str]
    network: str

    def port(self, port_id: str) -> Doc:
        return ports_get(self.svc, port_id)

    def new_port(self) -> str:
        body = {"port": {"network_id": self.network, "tenant_id": PROJECT}}
        return str(ports.create(self.svc, ADMIN, body)["id"])

    def bind(self, port_id: str, host: str) -> Doc:
        body = {"port": {"binding:host_id": host}}
        return ports.update(self.svc, ADMIN, port_id, body, None)


def ports_get(svc: ObjectService, port_id: str) -> Doc:
    item = svc.store.get(docs.kind("port"), port_id)
    assert item is not None
    return dict(item.data)


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    store = MemoryStore()
    svc = ObjectService(store)
    server = TopologyServer(store, reports=ClusterReports(svc))
    tport = await server.start("127.0.0.1", 0)
    hosts = {name: svc.create("host", {"name": name})[0]["id"] for name in ("h1", "h2")}
    net = networks.create(svc, ADMIN, {"network": {"name": "n", "tenant_id": PROJECT}})
    body = {"subnet": {"network_id": net["id"], "cidr": "10.9.0.0/24", "ip_version": 4}}
    subnets.create(svc, ADMIN, {"subnet": {**body["subnet"], "tenant_id": PROJECT}})
    dp = HostDatapath()
    agent = Agent(AgentConfig(hosts["h1"]), dp)
    client = TopologyClient(hosts["h1"], ("127.0.0.1", tport))
    driver = AgentDriver(agent, client, metrics_port=None, state_port=None, tick_s=0.05)
    await driver.start()
    try:
        yield World(svc, dp, hosts, net["id"])
    finally:
        await driver.stop()
        await server.stop()


def test_a_port_goes_active_when_its_tap_appears_on_the_bound_host() -> None:
    async def scenario() -> None:
        async with world() as w:
            pid = w.new_port()
            tap = ports.tap_name(pid)
            assert w.bind(pid, "h1")["status"] == "DOWN"  # bound: not yet wired
            await asyncio.sleep(0)
            rev = w.port(pid)["revision_number"]
            w.dp.interfaces.add(tap)  # Nova/os-vif plugs the VM's tap
            await eventually(lambda: w.port(pid)["status"] == "ACTIVE", what="ACTIVE")
            assert w.port(pid)["revision_number"] == rev + 1
            w.dp.interfaces.discard(tap)  # the VM goes
            await eventually(lambda: w.port(pid)["status"] == "DOWN", what="DOWN again")
            w.dp.interfaces.add(tap)
            await eventually(lambda: w.port(pid)["status"] == "ACTIVE", what="ACTIVE again")
            assert w.bind(pid, "")["status"] == "DOWN"  # unbound
            await eventually(lambda: not list(w.svc.store.list(WIRED)), what="report gone")
            assert w.port(pid)["status"] == "DOWN"

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_rebinding_to_the_host_where_it_is_plugged_is_active_at_once() -> None:
    async def scenario() -> None:
        async with world() as w:
            pid = w.new_port()
            w.dp.interfaces.add(ports.tap_name(pid))
            w.bind(pid, "h1")
            await eventually(lambda: w.port(pid)["status"] == "ACTIVE", what="ACTIVE")
            assert w.bind(pid, "h2")["status"] == "DOWN"  # h2 has no agent: never wired
            await eventually(lambda: not list(w.svc.store.list(WIRED)), what="h1 unplugged")
            assert w.port(pid)["status"] == "DOWN"

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_reports_of_another_host_or_a_disabled_port_leave_it_down() -> None:
    store = MemoryStore()
    svc = ObjectService(store)
    hosts = {name: svc.create("host", {"name": name})[0]["id"] for name in ("h1", "h2")}
    net = networks.create(svc, ADMIN, {"network": {"name": "n", "tenant_id": PROJECT}})
    w = World(svc, HostDatapath(), hosts, net["id"])
    pid = w.new_port()
    w.bind(pid, "h1")
    port_status.report(svc, hosts["h2"], pid, up=True)  # not bound there: moot
    assert w.port(pid)["status"] == "DOWN"
    assert not list(store.list(WIRED))
    port_status.report(svc, hosts["h1"], pid, up=True)
    assert w.port(pid)["status"] == "ACTIVE"
    body = {"port": {"admin_state_up": False}}
    assert ports.update(svc, ADMIN, pid, body, None)["status"] == "DOWN"
    ports.update(svc, ADMIN, pid, {"port": {"admin_state_up": True}}, None)
    assert w.port(pid)["status"] == "ACTIVE"
    ClusterReports(svc).hosts_down({hosts["h1"]}, set())  # its agent died
    assert w.port(pid)["status"] == "DOWN"
    port_status.report(svc, hosts["h1"], pid, up=True)
    floatingips.delete_port(svc, ADMIN, pid, None)
    assert not list(store.list(WIRED))
