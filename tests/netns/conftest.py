"""The real system in namespaces: a lab (hosts, VMs, the cluster in the switch netns) with
real ``netloom agent`` processes on the BPF datapath, a two-bridge tenant topology, and the
probes the acceptance tests read:

* the kernel flow table of a host, read straight from its pinned ``nl_flows``/``nl_masks`` maps
  (read-only: no program load, no ring buffer, no injection veth, unlike ``BpfDatapath``
  which would compete with the running agent for upcalls);
* the agent's Prometheus counters (``--metrics-port``, served on the host's loopback);
* TCP echo servers and clients whose sockets are opened inside VM namespaces by this process
  (a socket stays in the namespace it was created in), so no helper process is left behind.

Tenant (addresses chosen per test module)::

    net1 10.0.1.0/24 ── r (10.0.1.1 | 10.0.2.1) ── net2 10.0.2.0/24
                     route1: 10.0.1.0/24 -> r-net1     route2: 10.0.2.0/24 -> r-net2

Every lab gets a unique name and is torn down in a finalizer (``lab down`` by name, then any
namespace left with the lab's prefix), pass or fail.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from netloom.flows.model import Action, FlowKey, Output, Tunnel
from netloom.lab import lab as labmod
from netloom.lab import netns, nsexec, probes
from netloom.lab.cluster import NetnsApiClient
from netloom.lab.lab import AGENT_PROGRAM, Lab
from netloom.lab.plan import AgentTuning, host_name, vm_mac
from netloom.lab.supervisor import alive
from netloom.packet.util import ip_to_int, mac_to_int
from netloom.plan import Applier, parse_documents
from netloom.plan.template import load_plan
from waiting import wait_until

REVISION = "netloom_agent_topology_revision"  # the store revision an agent has applied
METRICS_PORT = 9464  # each host has its own namespace, so every agent can use the same port
NET1, NET2 = "10.0.1", "10.0.2"
GW1, GW2 = f"{NET1}.1", f"{NET2}.1"


def unique_name() -> str:
    """``n`` + 6 hex digits: a valid lab name (<= 8 characters) that no other run uses."""
    return "n" + secrets.token_hex(3)


def need_root() -> None:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("the netns tier needs root and nsenter")
    if shutil.which("clang") is None:
        pytest.skip("the bpf datapath needs clang")
    agent = subprocess.run([*AGENT_PROGRAM, "--help"], capture_output=True, text=True, timeout=60)
    if agent.returncode != 0:  # a broken agent fails the tier, it never skips it
        pytest.fail(f"`python -m netloom.agent --help` failed: {agent.stderr[-2000:]}")


# ---- the kernel flow table, read from the pins ------------------------------------------------


Ident = tuple[int, FlowKey, tuple[Action, ...]]


@dataclass(frozen=True)
class KFlow:
    """One kernel flow: its masked key, mask id, actions and hit count."""

    mask_id: int
    key: FlowKey
    actions: tuple[Action, ...]
    packets: int

    @property
    def ident(self) -> Ident:
        """What identifies a flow across dumps: its hash-map key and what it does (a flow
        removed and installed again with other actions is another flow)."""
        return self.mask_id, self.key, self.actions


def read_flows(pin_dir: str | Path) -> list[KFlow]:
    """Every flow in the pinned ``nl_flows`` map of a host (get_next_key + lookup: only
    syscalls that read). An empty list when the pins are gone."""
    from netloom.datapath.bpf import abi
    from netloom.datapath.bpf import libbpf as lb

    path = Path(pin_dir) / "nl_flows"
    if not path.exists():
        return []
    lib = lb.lib()
    fd = lb.check(lib.bpf_obj_get(str(path).encode()), "open nl_flows")
    try:
        out: list[KFlow] = []
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(abi.FLOW_KEY_SIZE)
        val = ctypes.create_string_buffer(abi.FLOW_VALUE_SIZE)
        while lib.bpf_map_get_next_key(fd, cur, nxt) == 0:
            k = nxt.raw
            if lib.bpf_map_lookup_elem(fd, lb.buf(k), val) == 0:
                mid, _ = abi.FLOW_KEY.unpack_from(k)
                tail = abi.FLOW_TAIL.unpack_from(val.raw, abi.ACTION.size * abi.MAX_ACTIONS)
                out.append(
                    KFlow(
                        mid,
                        abi.unpack_key(k[abi.FLOW_KEY.size :]),
                        abi.unpack_actions(val.raw),
                        tail[4],
                    )
                )
            cur = lb.buf(k)
        return out
    finally:
        os.close(fd)


def flows_to(flows: Sequence[KFlow], ip: str, mac: str | None = None) -> set[Ident]:
    """Flows of packets addressed to ``ip`` (routed flows match it), or to ``mac`` (bridged
    flows match the destination MAC and leave the IP destination out of their mask)."""
    m = mac_to_int(mac) if mac else -1
    return {f.ident for f in flows if f.key.ip_dst == ip_to_int(ip) or f.key.eth_dst == m}


def flows_from(flows: Sequence[KFlow], in_port: int) -> set[Ident]:
    """Flows of packets received from the local interface ``in_port`` (an ifindex)."""
    return {f.ident for f in flows if f.key.in_port == in_port and not f.key.tun_key}


def idents(flows: Sequence[KFlow]) -> set[Ident]:
    return {f.ident for f in flows}


# ---- waiting ------------------------------------------------------------------------------------


# ---- TCP from inside VMs -----------------------------------------------------------------------


class EchoServer:
    """A TCP echo server listening inside a VM namespace (threads of this process)."""

    def __init__(self, ns: str, ip: str, port: int) -> None:
        with netns.entered(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        s.listen(128)
        s.settimeout(0.2)
        self.sock = s
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in [self.sock, *self._conns]:
            c.close()


def tcp_connect(ns: str, ip: str, port: int, timeout: float = 1.0) -> socket.socket | None:
    """A connected socket opened inside ``ns`` (None: refused or timed out)."""
    with netns.entered(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
    except OSError:
        s.close()
        return None
    return s


def echoes(s: socket.socket, timeout: float = 1.0) -> bool:
    """Does one message come back on ``s`` within ``timeout``?"""
    msg = secrets.token_bytes(16)
    s.settimeout(timeout)
    try:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(len(msg) - len(got))
            if not chunk:
                return False
            got += chunk
        return got == msg
    except OSError:
        return False


def can_connect(ns: str, ip: str, port: int, timeout: float = 1.0) -> bool:
    s = tcp_connect(ns, ip, port, timeout)
    if s is None:
        return False
    ok = echoes(s, timeout)
    s.close()
    return ok


def ping_ok(ns: str, ip: str, timeout: float = 0.3) -> bool:
    return bool(probes.ping(ns, ip, timeout=timeout))


# ---- the lab ------------------------------------------------------------------------------------


@dataclass
class VmSpec:
    """A VM of the test topology: host index, bridge (1 or 2), last octet, port fields."""

    host: int
    net: int
    octet: int
    port: dict[str, Any] = field(default_factory=dict)
    mac: str | None = None  # default: the lab's MAC for the slot

    @property
    def ip(self) -> str:
        return f"{NET1 if self.net == 1 else NET2}.{self.octet}"


class NetLab:
    """A lab with real BPF agents and the two-bridge tenant (see the module docstring)."""

    def __init__(
        self,
        name: str,
        hosts: int,
        vms: dict[str, VmSpec],
        *,
        chains: dict[str, list[dict[str, Any]]] | None = None,
        agents: AgentTuning | None = None,
    ) -> None:
        self.name = name
        self.specs = vms
        # the agents' options: idle timeout (default 60 s), conntrack; metrics on METRICS_PORT
        self.agents = replace(agents or AgentTuning(), metrics_port=METRICS_PORT)
        self.lab = Lab.create(self.name, tx_off=True)
        self.lab.state.datapath = "bpf"
        self.ids: dict[str, str] = {}
        self.vm_names: dict[str, str] = {}  # our name -> lab VM name (h1-vm1)
        self._build(hosts, chains or {})

    # -- construction -----------------------------------------------------------------------

    def _build(self, hosts: int, chains: dict[str, list[dict[str, Any]]]) -> None:
        lab = self.lab
        lab.build_underlay()
        for n in range(1, hosts + 1):
            lab.add_host(n)
        lab.start_cluster()
        lab.register_hosts()
        for name, spec in self.specs.items():
            vm = lab.add_vm(host_name(self.name, spec.host), name, ip=f"{spec.ip}/24")
            self.vm_names[name] = vm.name
            if spec.mac is not None:
                netns.set_link(vm.netns, "eth0", mac=spec.mac)
            # no IPv6 link-local chatter (router solicitations, MLD): flood flows appearing
            # at random moments would blur the flow counts the tests make
            nsexec.run(
                vm.netns,
                [
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv6.conf.eth0.disable_ipv6=1",
                ],
            )
        self._topology(chains)
        self.start_agents()
        lab.state.phase = "up"
        lab.save()
        self.wait_ready()

    def _topology(self, chains: dict[str, list[dict[str, Any]]]) -> None:
        """The bundled plan routed-tenants: one tenant's router, bridges net1 and net2 behind
        it, the test's chains, and each VM's port bound to its host."""
        docs = load_plan("routed-tenants").expand(self._plan_params(chains))
        applier = Applier(self.api, parse_documents(docs))
        applier.run()
        got = applier.ids
        self.ids.update(tenant=got["tenant-t"], router=got["router-t"])
        for i in (1, 2):
            self.ids[f"net{i}"], self.ids[f"rp{i}"] = got[f"bridge-net{i}"], got[f"rport-net{i}"]
            self.ids[f"route{i}"] = got[f"route-net{i}"]
        self.ids.update({cname: got[cname] for cname in chains})
        for name, spec in self.specs.items():
            self.ids[name] = got[f"port-{name}"]
            vm = self.vm(name)
            self.lab._vm(vm.name).port_id = self.ids[name]
            self.lab.set_vm_address(vm.name, f"{spec.ip}/24", GW1 if spec.net == 1 else GW2)
        self.lab.save()

    def _plan_params(self, chains: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        hosts = {h.name: h.host_id for h in self.lab.state.hosts}
        vms = []
        for name, spec in self.specs.items():
            vm = self.vm(name)
            port = {k: (f"@{v}" if k.endswith("_filter_id") else v) for k, v in spec.port.items()}
            vms.append(
                {
                    "key": name,
                    "name": name,
                    "net": f"net{spec.net}",
                    "mac": port.pop("mac", vm.mac),
                    "fixed_ips": port.pop("fixed_ips", [spec.ip]),
                    "inbound_filter": port.pop("inbound_filter_id", None),
                    "outbound_filter": port.pop("outbound_filter_id", None),
                    "host_id": hosts[vm.host],
                    "host_if": vm.host_if,
                    "port": port,
                }
            )
        return {
            "tenants": [{"key": "t", "name": self.name}],
            "networks": [
                {
                    "key": f"net{i}",
                    "name": f"net{i}",
                    "tenant": "@tenant-t",
                    "router": "@router-t",
                    "cidr": f"{net}.0/24",
                    "gateway": f"{net}.1",
                    "prefixlen": 24,
                    "router_mac": vm_mac(self.name, 0, i),
                    "dns_servers": [],
                }
                for i, net in ((1, NET1), (2, NET2))
            ],
            "chains": [{"name": cname, "tenant": "@tenant-t"} for cname in chains],
            "rules": [
                {"chain": cname, "position": (pos + 1) * 10, "match": rule}
                for cname, rules in chains.items()
                for pos, rule in enumerate(rules)
            ],
            "vms": vms,
        }

    def add_route(self, net: int) -> str:
        prefix = NET1 if net == 1 else NET2
        return str(
            self.api.create(
                "routes",
                {
                    "router_id": self.ids["router"],
                    "dst": f"{prefix}.0/24",
                    "next_hop_port_id": self.ids[f"rp{net}"],
                },
            )["id"]
        )

    def bind(self, name: str) -> None:
        vm = self.vm(name)
        host = self.lab._host(vm.host)
        assert host.host_id is not None
        self.api.bind_port(self.ids[name], host.host_id, vm.host_if)

    # -- agents -------------------------------------------------------------------------------

    def start_agents(self) -> None:
        self.lab.start_agents(tuning=self.agents)

    def agent_pid(self, host: int) -> int | None:
        ns = host_name(self.name, host)
        for p in self.lab.state.processes:
            if p.role == "agent" and p.netns == ns and alive(p):
                return p.pid
        return None

    def kill_agent(self, host: int) -> None:
        """kill -9 the agent of ``host`` (no clean-up code of it runs) and reap it."""
        pid = self.agent_pid(host)
        assert pid is not None, f"no agent runs on h{host}"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: self.agent_pid(host) is None, 5, "the killed agent to die")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Every host heartbeats, every VM reaches its gateway (ARP and ICMP answered by its
        agent) and every agent serves metrics."""
        api = self.api
        wait_until(lambda: all(h["alive"] for h in api.list("hosts")), timeout, "hosts alive", 0.1)
        for name, spec in self.specs.items():
            ns, gw = self.vm(name).netns, GW1 if spec.net == 1 else GW2
            wait_until(partial(ping_ok, ns, gw), timeout, f"{name} to reach its gateway", 0.05)
        for h in range(1, len(self.lab.state.hosts) + 1):
            wait_until(partial(self.metrics, h), timeout, f"h{h} metrics", 0.05)

    # -- probes -------------------------------------------------------------------------------

    @property
    def api(self) -> NetnsApiClient:
        return self.lab.api()

    def vm(self, name: str) -> labmod.VM:
        return self.lab.vm(self.vm_names[name])

    def ns(self, name: str) -> str:
        return self.vm(name).netns

    def ip(self, name: str) -> str:
        return self.specs[name].ip

    def host_ns(self, host: int) -> str:
        return host_name(self.name, host)

    def pin_dir(self, host: int) -> str:
        d = self.lab.state.hosts[host - 1].bpf_pin_dir
        assert d is not None
        return d

    def flows(self, host: int) -> list[KFlow]:
        return read_flows(self.pin_dir(host))

    def mac(self, name: str) -> str:
        return self.specs[name].mac or self.vm(name).mac

    def host_of(self, name: str) -> int:
        return self.specs[name].host

    def ifindex(self, name: str) -> int:
        """The host-side interface of VM ``name`` (its datapath port on its host)."""
        vm = self.vm(name)
        return netns.link_info(self.host_ns(self.host_of(name)), vm.host_if).index

    def to_vm(self, flows: Sequence[KFlow], name: str) -> set[Ident]:
        return flows_to(flows, self.ip(name), self.mac(name))

    def from_vm(self, flows: Sequence[KFlow], name: str) -> set[Ident]:
        return flows_from(flows, self.ifindex(name))

    def delivering_to(self, flows: Sequence[KFlow], host: int, name: str) -> set[Ident]:
        """Flows on ``host`` that send to VM ``name``: addressed to it, or with an action
        that outputs on its interface (its host) or tunnels with its VNI (other hosts), such
        as a bridge's flood flows."""
        if host == self.host_of(name):
            target: Action = Output(self.ifindex(name))
            hits = {f.ident for f in flows if target in f.actions}
        else:
            vni = self.api.get("ports", self.ids[name])["tunnel_key"]
            hits = {
                f.ident
                for f in flows
                if any(isinstance(a, Tunnel) and a.vni == vni for a in f.actions)
            }
        return hits | self.to_vm(flows, name)

    def metrics(self, host: int) -> dict[str, float]:
        """The agent's samples (name{labels} -> value); {} when it does not answer."""
        try:
            with netns.entered(self.host_ns(host)):
                r = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=1)
            text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def store_revision(self) -> int:
        """The store's current revision (the API's /healthz)."""
        api = self.api
        with netns.entered(api.netns):
            r = urllib.request.urlopen(f"{api.base_url}/healthz", timeout=5)
        return int(json.loads(r.read())["revision"])

    def wait_applied(self, timeout: float = 5.0) -> None:
        """Wait until every agent has applied every store change made so far: its topology
        revision reached the store's, and the agent handles a change (invalidating what it
        tagged) before its revision moves."""
        rev = self.store_revision()
        for h in range(1, len(self.lab.state.hosts) + 1):

            def applied(h: int = h) -> bool:
                return self.metrics(h).get(REVISION, -1.0) >= rev

            wait_until(
                applied,
                timeout,
                f"h{h}'s agent to apply revision {rev}",
                0.02,
            )

    def exec(self, name: str, argv: Sequence[str], **kw: Any) -> Any:
        return self.lab.exec(self.vm_names[name], argv, **kw)


@contextmanager
def netlab(hosts: int, vms: dict[str, VmSpec], **kw: Any) -> Iterator[NetLab]:
    """A :class:`NetLab` torn down however the block ends (also when building it fails)."""
    need_root()
    name = unique_name()
    try:
        yield NetLab(name, hosts, vms, **kw)
    finally:
        try:
            labmod.down(name)
        finally:
            for ns in netns.list_netns(f"{name}-"):  # never leak a namespace
                netns.delete(ns)


__all__ = [
    "GW1",
    "GW2",
    "METRICS_PORT",
    "NET1",
    "NET2",
    "EchoServer",
    "KFlow",
    "NetLab",
    "VmSpec",
    "can_connect",
    "echoes",
    "flows_from",
    "flows_to",
    "idents",
    "netlab",
    "ping_ok",
    "read_flows",
    "tcp_connect",
    "unique_name",
]
