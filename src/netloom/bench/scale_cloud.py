"""The cloud of ``netloom bench scale``: its plan (pure) and its provisioning (REST only).

Shape: ``ceil(vms / 20)`` tenants, each with a router, two bridges (one /24 each,
DHCP on both), a stateful security group (an egress chain that accepts and tracks, an ingress
chain that accepts return traffic, ICMP and TCP/22 from the tenant's own /23, and drops the
rest) on every VM port; VM ports bound 10 per host except one host that carries 100; and
``gateways`` hosts each carrying one uplink port of a provider router.

Addresses: tenant ``t`` owns 10.x.y.0/23 (its two /24s are subnets ``2t`` and ``2t + 1``);
underlay addresses come from 198.18.0.0/15, the range RFC 2544 (Appendix C.2.2) reserves for
benchmarks, because a thousand hosts do not fit the three documentation /24s; external
(uplink) addresses from 203.0.113.0/24 (RFC 5737). Nothing here is ever routed: the scale
harness runs memory datapaths only.

Provisioning goes through the public REST API (:class:`~netloom.api.client.ApiClient`), many
requests in flight from a thread pool (one HTTP client per thread), tenants independent of each
other. VM ports are created already bound (``host_id`` + ``interface_name`` in the create body,
as Neutron's ``binding:host_id`` on port create), which is one request per VM.
"""

from __future__ import annotations

import ipaddress
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from netloom.api.client import ApiClient
from netloom.errors import ApiError, InvalidInput

VMS_PER_TENANT = 20
VMS_PER_HOST = 10
BIG_HOST_VMS = 100
BIG_HOST_TENANTS = 50  # the 100-VM host's VMs: 2 in each of 50 tenants (see _big_host_vms)
UNDERLAY_BASE = int(ipaddress.IPv4Address("198.18.0.0"))  # RFC 2544 benchmark range
UNDERLAY_MAX = 2**17 - 2
MAX_TENANTS = 32768  # 2 * tenants /24s fit 10.0.0.0/8

T = TypeVar("T")


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
    topology (what its ports reach, Decision 6) and the comparison measures its workload,
    not the cloud's size. Every cloud of >= 1 000 VMs has >= 50 tenants, so the host's
    workload (50 tenants, both bridges of each) is identical in both."""
    reach = min(tenants, BIG_HOST_TENANTS)
    order = [t * VMS_PER_TENANT + k for k in range(VMS_PER_TENANT) for t in range(reach)]
    return set([i for i in order if i < vms][:big])


# ---- provisioning ----------------------------------------------------------------------------


class Provisioner:
    """Creates a planned cloud through the REST API with ``threads`` requests in flight."""

    def __init__(self, api_url: str, threads: int = 24) -> None:
        self.api_url = api_url
        self.threads = threads
        self._local = threading.local()
        self._clients: list[ApiClient] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.conflicts = 0
        self.phases: dict[str, float] = {}

    def _api(self) -> ApiClient:
        c: ApiClient | None = getattr(self._local, "client", None)
        if c is None:
            c = ApiClient(self.api_url, timeout=120.0)
            self._local.client = c
            with self._lock:
                self._clients.append(c)
        return c

    def close(self) -> None:
        for c in self._clients:
            c.close()

    def create(self, collection: str, **data: Any) -> dict[str, Any]:
        """Create; a ``version_conflict`` (409: concurrent writers of a shared counter, e.g.
        the tunnel-key allocator, and nothing committed) is retried after a jittered pause,
        as any client of a compare-and-set API must."""
        for attempt in range(50):
            try:
                doc = self._api().create(collection, data)
                break
            except ApiError as exc:
                if exc.code != "version_conflict" or attempt == 49:
                    raise
                with self._lock:
                    self.conflicts += 1
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        with self._lock:
            self.requests += 1
        return doc

    def link(self, a: str, b: str) -> None:
        self._api().link_ports(a, b)
        with self._lock:
            self.requests += 1

    def _parallel(self, name: str, fn: Callable[[T], None], items: Iterable[T]) -> None:
        t0 = time.monotonic()
        with ThreadPoolExecutor(self.threads) as pool:
            for _ in pool.map(fn, items):
                pass
        self.phases[name] = round(time.monotonic() - t0, 3)

    def provision(self, cloud: Cloud) -> None:
        """Hosts + tunnel zone, provider router + uplinks, tenants, then VM ports."""
        self._parallel("hosts", lambda h: self._host(h), cloud.hosts)
        t0 = time.monotonic()
        self.create(
            "tunnel_zones",
            name="scale-tz",
            members=[{"host_id": h.id, "ip": h.ip} for h in cloud.hosts],
        )
        self._provider(cloud)
        self.phases["tunnel_zone_provider"] = round(time.monotonic() - t0, 3)
        self._parallel("tenants", lambda t: self._tenant(t), cloud.tenants)
        self._parallel("vm_ports", lambda v: self._vm(cloud, v), cloud.vms)

    def _host(self, h: HostPlan) -> None:
        h.id = str(self.create("hosts", name=h.name)["id"])

    def _provider(self, cloud: Cloud) -> None:
        r = str(self.create("routers", name="provider")["id"])
        cloud.provider_router = r
        for g, hi in enumerate(cloud.gateways):
            h = cloud.hosts[hi]
            p = self.create(
                "ports",
                device_id=r,
                type="router",
                name=f"uplink{g}",
                mac=_mac(0x02BB, g),
                address=f"203.0.113.{g + 2}/24",
                host_id=h.id,
                interface_name="uplink0",
            )
            cloud.uplinks.append(str(p["id"]))
            h.ports.append(str(p["id"]))
        for up in cloud.uplinks:  # ECMP default route over every uplink
            self.create("routes", router_id=r, dst="0.0.0.0/0", next_hop_port_id=up)

    def _tenant(self, t: TenantPlan) -> None:
        tid = str(self.create("tenants", name=f"tenant{t.index}")["id"])
        t.router_id = str(self.create("routers", tenant_id=tid, name=f"r{t.index}")["id"])
        t.bridge_ids = tuple(  # type: ignore[assignment]
            str(self.create("bridges", tenant_id=tid, name=f"t{t.index}-net{s}")["id"])
            for s in (0, 1)
        )
        self._security_group(t, tid)
        macs = []
        for s in (0, 1):
            net, gw = t.subnet(s), t.gateway(s)
            self.create(
                "dhcp_subnets",
                bridge_id=t.bridge_ids[s],
                cidr=str(net),
                gateway=gw,
                dns_servers=[gw],
            )
            mac = _mac(0x02AA, 2 * t.index + s)
            rp = self.create(
                "ports",
                device_id=t.router_id,
                type="router",
                name=f"r{t.index}-net{s}",
                mac=mac,
                address=f"{gw}/{net.prefixlen}",
            )
            bp = self.create(
                "ports", device_id=t.bridge_ids[s], type="bridge", name=f"net{s}-r{t.index}"
            )
            self.link(str(rp["id"]), str(bp["id"]))
            self.create(
                "routes", router_id=t.router_id, dst=str(net), next_hop_port_id=str(rp["id"])
            )
            macs.append(mac)
        t.router_macs = (macs[0], macs[1])

    def _security_group(self, t: TenantPlan, tid: str) -> None:
        """Egress (from the VM): accept and track. Ingress (to the VM): return traffic, ICMP,
        TCP/22 from the tenant's /23, then drop (a typical default security group)."""
        t.egress_chain = str(self.create("chains", tenant_id=tid, name="sg-egress")["id"])
        self.create("rules", chain_id=t.egress_chain, position=0, action="accept")
        t.ingress_chain = str(self.create("chains", tenant_id=tid, name="sg-ingress")["id"])
        rules: tuple[dict[str, Any], ...] = (
            {"action": "accept", "match_return_flow": True},
            {"action": "accept", "nw_proto": 1},
            {
                "action": "accept",
                "nw_proto": 6,
                "nw_src": str(t.supernet),
                "tp_dst": {"start": 22, "end": 22},
            },
            {"action": "drop"},
        )
        for pos, extra in enumerate(rules):
            self.create("rules", chain_id=t.ingress_chain, position=pos * 10, **extra)

    def _vm(self, cloud: Cloud, v: VmPlan) -> None:
        t = cloud.tenants[v.tenant]
        h = cloud.hosts[v.host]
        doc = self.create(
            "ports",
            device_id=t.bridge_ids[v.subnet],
            type="bridge",
            name=f"vm{v.index}",
            mac=v.mac,
            fixed_ips=[v.ip],
            inbound_filter_id=t.egress_chain,
            outbound_filter_id=t.ingress_chain,
            host_id=h.id,
            interface_name=v.ifname,
        )
        v.id = str(doc["id"])
        v.tunnel_key = int(doc["tunnel_key"])
        with self._lock:
            h.ports.append(v.id)


__all__ = ["Cloud", "HostPlan", "Provisioner", "TenantPlan", "VmPlan", "plan_cloud"]
