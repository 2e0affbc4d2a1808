"""The cloud of ``netloom bench scale``: its plan (pure) and its provisioning (REST only).

Shape: ``ceil(vms / 20)`` tenants, each with a router, two bridges (one /24 each,
DHCP on both), a stateful security group (an egress chain that accepts and tracks, an ingress
chain that accepts return traffic, ICMP and TCP/22 from the tenant's own /23, and drops the
rest) on every VM port; VM ports bound 10 per host except one host that carries 100; and
``gateways`` hosts each carrying one uplink port of a provider router, with a BGP peer on each
whose learned routes the gateway agents report (:func:`netloom.bench.scale_agents.learn_routes`).

Addresses: tenant ``t`` owns 10.x.y.0/23 (its two /24s are subnets ``2t`` and ``2t + 1``);
underlay addresses come from 198.18.0.0/15, the range RFC 2544 (Appendix C.2.2) reserves for
benchmarks, because a thousand hosts do not fit the three documentation /24s; external
(uplink) addresses from 203.0.113.0/24 (RFC 5737). Nothing here is ever routed: the scale
harness runs memory datapaths only.

Provisioning is the bundled plan ``scale-cloud`` (``netloom/plan/plans/scale-cloud.yaml``) with
this module's placement as its parameters, applied by the one applier (:mod:`netloom.plan`)
through the public REST API, ``threads`` requests in flight: every dependency level of the plan
(hosts and tenants; then routers, bridges, chains, the tunnel zone and uplinks; then ports,
rules and DHCP subnets; then routes) is created concurrently. VM ports are created already bound
(``host_id`` + ``interface_name`` in the create body, as Neutron's ``binding:host_id`` on port
create), which is one request per VM.
"""

from __future__ import annotations

import ipaddress
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netloom.api.client import ApiClient
from netloom.errors import InvalidInput
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan

VMS_PER_TENANT = 20
VMS_PER_HOST = 10
BIG_HOST_VMS = 100
BIG_HOST_TENANTS = 50  # the 100-VM host's VMs: 2 in each of 50 tenants (see _big_host_vms)
UNDERLAY_BASE = int(ipaddress.IPv4Address("198.18.0.0"))  # RFC 2544 benchmark range
UNDERLAY_MAX = 2**17 - 2
MAX_TENANTS = 32768  # 2 * tenants /24s fit 10.0.0.0/8


@dataclass(slots=True)
class HostPlan:
    index: int
    name: str
    ip: str
    gateway: bool = False
    id: str = ""
    ports: list[str] = field(default_factory=list)  # port ids bound here (filled on create)

    @property
    def big(self) -> bool:
        return self.index == 0


@dataclass(slots=True)
class VmPlan:
    index: int
    tenant: int
    subnet: int  # 0 or 1: which bridge
    ip: str
    mac: str
    host: int
    ifname: str
    id: str = ""
    tunnel_key: int = 0


@dataclass(slots=True)
class TenantPlan:
    index: int
    vms: list[int] = field(default_factory=list)
    router_id: str = ""
    router_macs: tuple[str, str] = ("", "")
    bridge_ids: tuple[str, str] = ("", "")
    ingress_chain: str = ""
    egress_chain: str = ""

    def subnet(self, s: int) -> ipaddress.IPv4Network:
        n = 2 * self.index + s
        return ipaddress.IPv4Network(f"10.{n >> 8}.{n & 255}.0/24")

    @property
    def supernet(self) -> ipaddress.IPv4Network:
        return self.subnet(0).supernet()

    def gateway(self, s: int) -> str:
        return str(self.subnet(s).network_address + 1)


@dataclass(slots=True)
class Cloud:
    hosts: list[HostPlan]
    tenants: list[TenantPlan]
    vms: list[VmPlan]
    gateways: list[int]
    provider_router: str = ""
    uplinks: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)  # the BGP peer of each uplink

    def expected_ports(self, host: int) -> int:
        return len(self.hosts[host].ports)


def _mac(prefix: int, n: int) -> str:
    v = (prefix << 32) | n
    return ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def plan_cloud(hosts: int, vms: int, gateways: int, seed: int = 7) -> Cloud:
    """Place ``vms`` VMs on ``hosts`` hosts: host 0 carries ``min(100, vms)`` (in the same
    50 tenants whatever the cloud's size: :func:`_big_host_vms`), then 10 per host over the
    hosts that are not gateways; the last ``gateways`` hosts are the gateways. The other
    placements are shuffled (seeded) so a tenant's VMs spread over many hosts."""
    if hosts < 1 or vms < 1 or gateways < 0:
        raise InvalidInput("hosts and vms must be >= 1, gateways >= 0", field="hosts")
    if hosts > UNDERLAY_MAX:
        raise InvalidInput(f"at most {UNDERLAY_MAX} hosts", field="hosts")
    tenants = math.ceil(vms / VMS_PER_TENANT)
    if tenants > MAX_TENANTS:
        raise InvalidInput(f"at most {MAX_TENANTS * VMS_PER_TENANT} vms", field="vms")
    vm_hosts = hosts - gateways
    big = min(BIG_HOST_VMS, vms)
    capacity = big + max(0, vm_hosts - 1) * VMS_PER_HOST
    if vm_hosts < 1 or capacity < vms:
        need = 1 + math.ceil((vms - big) / VMS_PER_HOST) + gateways
        raise InvalidInput(
            f"{vms} vms ({big} on one host, {VMS_PER_HOST} per other host) and {gateways} "
            f"gateways need at least {need} hosts",
            field="hosts",
        )
    hs = [
        HostPlan(
            i,
            f"scale-h{i}",
            str(ipaddress.IPv4Address(UNDERLAY_BASE + 1 + i)),
            gateway=i >= vm_hosts,
        )
        for i in range(hosts)
    ]
    on_big = _big_host_vms(vms, tenants, big)
    slots: list[int] = []
    for h in range(1, vm_hosts):
        slots += [h] * VMS_PER_HOST
        if len(slots) >= vms - big:
            break
    slots = slots[: vms - big]
    random.Random(seed).shuffle(slots)
    rest = iter(slots)
    slots = [0 if i in on_big else next(rest) for i in range(vms)]
    ts = [TenantPlan(t) for t in range(tenants)]
    per_host: dict[int, int] = {}
    out: list[VmPlan] = []
    for i in range(vms):
        t, k = divmod(i, VMS_PER_TENANT)
        s, j = k % 2, k // 2
        net = ts[t].subnet(s)
        h = slots[i]
        n = per_host.get(h, 0)
        per_host[h] = n + 1
        out.append(VmPlan(i, t, s, str(net.network_address + 10 + j), _mac(0x0200, i), h, f"vm{n}"))
        ts[t].vms.append(i)
    return Cloud(hs, ts, out, list(range(vm_hosts, hosts)))


def _big_host_vms(vms: int, tenants: int, big: int) -> set[int]:
    """The VMs of the 100-VM host: spread evenly over the first :data:`BIG_HOST_TENANTS`
    tenants, one per bridge in turn (VM ``k`` of tenant ``t`` is index ``20 t + k``).

    Why fixed and not shuffled like the others: the flatness goal compares the *same* agent
    in a 1 000- and a 10 000-VM cloud. Shuffled, its 100 VMs fall into 44 tenants of the
    small cloud's 50 but 95 of the big one's 500: the agent then rightly holds twice the
    topology (what its ports reach) and the comparison measures its workload,
    not the cloud's size. Every cloud of >= 1 000 VMs has >= 50 tenants, so the host's
    workload (50 tenants, both bridges of each) is identical in both."""
    reach = min(tenants, BIG_HOST_TENANTS)
    order = [t * VMS_PER_TENANT + k for k in range(VMS_PER_TENANT) for t in range(reach)]
    return set([i for i in order if i < vms][:big])


def peer_address(g: int) -> str:
    """The address of gateway ``g``'s BGP peer, on the uplinks' subnet."""
    return f"203.0.113.{100 + g}"


# ---- provisioning ----------------------------------------------------------------------------


def cloud_params(cloud: Cloud) -> dict[str, Any]:
    """The ``scale-cloud`` plan's parameters for a placed cloud (pure: data in, data out)."""
    hosts = [{"name": h.name} for h in cloud.hosts]
    members = [{"host_id": f"@host-{h.name}", "ip": h.ip} for h in cloud.hosts]
    uplinks = [
        {
            "mac": _mac(0x02BB, g),
            "address": f"203.0.113.{g + 2}/24",
            "host": cloud.hosts[hi].name,
            "peer": peer_address(g),
        }
        for g, hi in enumerate(cloud.gateways)
    ]
    tenants = [
        {
            "key": f"t{t.index}",
            "name": f"tenant{t.index}",
            "supernet": str(t.supernet),
            "inbound_filter": None,
            "outbound_filter": None,
        }
        for t in cloud.tenants
    ]
    networks = [
        {
            "key": f"t{t.index}-net{s}",
            "name": f"t{t.index}-net{s}",
            "tenant": f"@tenant-t{t.index}",
            "router": f"@router-t{t.index}",
            "cidr": str(t.subnet(s)),
            "gateway": t.gateway(s),
            "prefixlen": t.subnet(s).prefixlen,
            "router_mac": _router_mac(t, s),
            "dns_servers": [t.gateway(s)],
        }
        for t in cloud.tenants
        for s in (0, 1)
    ]
    return {
        "hosts": hosts,
        "members": members,
        "uplinks": uplinks,
        "tenants": tenants,
        "networks": networks,
        "vms": [_vm_item(cloud, v) for v in cloud.vms],
    }


def _router_mac(t: TenantPlan, s: int) -> str:
    return _mac(0x02AA, 2 * t.index + s)


def _vm_item(cloud: Cloud, v: VmPlan) -> dict[str, Any]:
    return {
        "key": f"vm{v.index}",
        "name": f"vm{v.index}",
        "net": f"t{v.tenant}-net{v.subnet}",
        "mac": v.mac,
        "fixed_ips": [v.ip],
        "host_id": f"@host-{cloud.hosts[v.host].name}",
        "host_if": v.ifname,
        # inbound = what enters the virtual port from the VM (MidoNet's naming)
        "inbound_filter": f"@t{v.tenant}-sg-egress",
        "outbound_filter": f"@t{v.tenant}-sg-ingress",
    }


class CountingClient:
    """An :class:`ApiClient` that counts the requests the applier makes (thread-safe)."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.requests = 0

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def get(self, collection: str, id: str) -> dict[str, Any]:
        self._count()
        return self._client.get(collection, id)

    def list(
        self, collection: str, filters: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        self._count()
        return self._client.list(collection, filters)

    def create(self, collection: str, data: dict[str, Any]) -> dict[str, Any]:
        self._count()
        return self._client.create(collection, data)

    def update(
        self,
        collection: str,
        id: str,
        changes: dict[str, Any],
        *,
        if_version: int | None = None,
    ) -> dict[str, Any]:
        self._count()
        return self._client.update(collection, id, changes, if_version=if_version)

    def delete(self, collection: str, id: str, *, cascade: bool = False) -> Any:
        self._count()
        return self._client.delete(collection, id, cascade=cascade)

    def link_ports(self, port_id: str, peer_id: str) -> dict[str, Any]:
        self._count()
        return self._client.link_ports(port_id, peer_id)

    def unlink_port(self, port_id: str) -> Any:
        self._count()
        return self._client.unlink_port(port_id)

    def bind_port(self, port_id: str, host_id: str, interface_name: str) -> dict[str, Any]:
        self._count()
        return self._client.bind_port(port_id, host_id, interface_name)


class Provisioner:
    """Applies the ``scale-cloud`` plan for a placed cloud, ``threads`` requests in flight,
    and writes the ids the API gave back into the cloud's plan objects."""

    def __init__(self, api_url: str, threads: int = 24) -> None:
        self.api_url = api_url
        self.threads = threads
        self.requests = 0
        self.conflicts = 0
        self.phases: dict[str, float] = {}
        # the wall time of the plan level that created the VM ports (with the other objects
        # of that level: router ports, rules, DHCP subnets)
        self.vm_port_seconds = 0.0

    def provision(self, cloud: Cloud) -> None:
        docs = parse_documents(load_plan("scale-cloud").expand(cloud_params(cloud)))
        # one client: httpx's pool keeps a connection per thread in flight
        with ApiClient(self.api_url, timeout=120.0) as api:
            client = CountingClient(api)
            applier = Applier(client, docs, workers=self.threads)
            try:
                applier.run()
            finally:
                self.requests = client.requests
                self.conflicts = applier.conflicts_retried
        self.phases = {what: round(took, 3) for what, took in applier.level_seconds}
        vm_level = next(
            (
                i
                for i, level in enumerate(applier.levels)
                if any(d.handle == "port-vm0" for d in level)
            ),
            None,
        )
        if vm_level is not None:
            self.vm_port_seconds = applier.level_seconds[vm_level][1]
        _fill_ids(cloud, applier.ids, {d.handle: doc for d, doc in applier.created if d.handle})

    def close(self) -> None:
        """Nothing held between runs (kept for the callers' try/finally)."""


def _fill_ids(cloud: Cloud, ids: Mapping[str, str], docs: Mapping[str, dict[str, Any]]) -> None:
    for h in cloud.hosts:
        h.id = ids[f"host-{h.name}"]
    cloud.provider_router = ids["provider"]
    for g, hi in enumerate(cloud.gateways):
        cloud.uplinks.append(ids[f"uplink{g}"])
        cloud.peers.append(ids[f"peer{g}"])
        cloud.hosts[hi].ports.append(ids[f"uplink{g}"])
    for t in cloud.tenants:
        k = f"t{t.index}"
        t.router_id = ids[f"router-{k}"]
        t.bridge_ids = (ids[f"bridge-{k}-net0"], ids[f"bridge-{k}-net1"])
        t.router_macs = (_router_mac(t, 0), _router_mac(t, 1))
        t.egress_chain, t.ingress_chain = ids[f"{k}-sg-egress"], ids[f"{k}-sg-ingress"]
    for v in cloud.vms:
        v.id = ids[f"port-vm{v.index}"]
        v.tunnel_key = int(docs[f"port-vm{v.index}"]["tunnel_key"])
        cloud.hosts[v.host].ports.append(v.id)


__all__ = [
    "Cloud",
    "CountingClient",
    "HostPlan",
    "Provisioner",
    "TenantPlan",
    "VmPlan",
    "cloud_params",
    "peer_address",
    "plan_cloud",
]
