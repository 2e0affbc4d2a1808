"""The BPF datapath with real traffic between namespaces: NAT flows with checksum offload off,
the upcall -> install -> re-inject path, VXLAN between two hosts, and agent restart."""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from netloom.datapath.base import PortKind, TunnelSettings, Upcall, UpcallReason
from netloom.datapath.bpf import BpfDatapath
from netloom.errors import DatapathError
from netloom.flows.model import (
    EXACT,
    Flow,
    FlowKey,
    Output,
    SetEthDst,
    SetEthSrc,
    SetIpDst,
    SetIpSrc,
    SetTpDst,
    SetTpSrc,
    Tunnel,
)
from netloom.lab.probes import wait_listening

from .conftest import Lab, have_bpf, in_ns, sh, wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.bpf,
    pytest.mark.skipif(not have_bpf(), reason="needs root and clang"),
]

PY = sys.executable
ROUTER_MAC = "02:00:00:00:fe:fe"
VIP = "10.9.9.9"


def ip(s: str) -> int:
    return int.from_bytes(bytes(int(x) for x in s.split(".")), "big")


def mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


@dataclass
class Vm:
    ns: str
    host_if: str
    addr: str
    mac: str


def add_vm(
    lab: Lab, host_ns: str, name: str, addr: str, vmac: str, *, mtu: int = 1500, tx_off: bool = True
) -> Vm:
    ns = lab.ns(name)
    host_if = f"{name}h"
    sh(
        "ip",
        "link",
        "add",
        host_if,
        "netns",
        host_ns,
        "mtu",
        str(mtu),
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
        "mtu",
        str(mtu),
        "address",
        vmac,
    )
    in_ns(host_ns, "ip", "link", "set", host_if, "up")
    in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
    in_ns(ns, "ip", "link", "set", "eth0", "up")
    if tx_off:
        in_ns(ns, "ethtool", "-K", "eth0", "tx", "off")
    return Vm(ns, host_if, addr, vmac)


SERVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("up", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"""

CLIENT = r"""
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(data); c.shutdown(socket.SHUT_WR)
r = b""
while True:
    b = c.recv(4096)
    if not b: break
    r += b
print(r.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}")
"""


def csum_errors(ns: str) -> int:
    """TCP InCsumErrors + UDP InCsumErrors of a namespace (/proc/net/snmp, RFC 4022/4113)."""
    lines = in_ns(ns, "cat", "/proc/net/snmp").stdout.splitlines()
    total = 0
    for i in range(0, len(lines) - 1, 2):
        names, values = lines[i].split(), lines[i + 1].split()
        if names[0] in ("Tcp:", "Udp:"):
            total += int(dict(zip(names, values, strict=True)).get("InCsumErrors", 0))
    return total


def transfer(
    lab: Lab, client: Vm, server: Vm, dst: str, dport: int, sport: int, size: int = 2_000_000
) -> bool:
    srv = lab.popen(server.ns, PY, "-c", SERVER, str(sport), stdout=-1)
    assert srv.stdout is not None
    assert srv.stdout.readline().strip() == b"up"
    r = in_ns(client.ns, PY, "-c", CLIENT, dst, str(dport), str(size), check=False)
    srv.wait(timeout=10)
    return r.stdout.strip() == "True"


def nat_flows(v1: Vm, v2: Vm, p1: int, p2: int) -> list[Flow]:
    """VIP:8080 on V1's side is V2:80 (DNAT one way, SNAT back), routed via ROUTER_MAC."""
    fwd = Flow(
        FlowKey(in_port=p1, eth_type=0x800, ip_proto=6, ip_dst=ip(VIP), tp_dst=8080),
        FlowKey(
            in_port=EXACT.in_port,
            eth_type=0xFFFF,
            ip_proto=0xFF,
            ip_dst=EXACT.ip_dst,
            tp_dst=0xFFFF,
        ),
        (
            SetEthSrc(mac(ROUTER_MAC)),
            SetEthDst(mac(v2.mac)),
            SetIpDst(ip(v2.addr)),
            SetTpDst(80),
            Output(p2),
        ),
    )
    rev = Flow(
        FlowKey(in_port=p2, eth_type=0x800, ip_proto=6, ip_src=ip(v2.addr), tp_src=80),
        FlowKey(
            in_port=EXACT.in_port,
            eth_type=0xFFFF,
            ip_proto=0xFF,
            ip_src=EXACT.ip_src,
            tp_src=0xFFFF,
        ),
        (
            SetEthSrc(mac(ROUTER_MAC)),
            SetEthDst(mac(v1.mac)),
            SetIpSrc(ip(VIP)),
            SetTpSrc(8080),
            Output(p1),
        ),
    )
    return [fwd, rev]


def two_vms(lab: Lab, host: str, tx_off: bool = True) -> tuple[Vm, Vm]:
    v1 = add_vm(lab, host, "a", "10.1.0.1", "02:00:00:00:00:01", tx_off=tx_off)
    v2 = add_vm(lab, host, "b", "10.1.0.2", "02:00:00:00:00:02", tx_off=tx_off)
    in_ns(v1.ns, "ip", "route", "add", f"{VIP}/32", "dev", "eth0")
    in_ns(v1.ns, "ip", "neigh", "add", VIP, "lladdr", ROUTER_MAC, "dev", "eth0")
    in_ns(v2.ns, "ip", "neigh", "add", v1.addr, "lladdr", ROUTER_MAC, "dev", "eth0")
    return v1, v2


def test_tcp_through_nat_flow_tx_off(lab: Lab) -> None:
    host = lab.ns("h1")
    v1, v2 = two_vms(lab, host)
    dp = BpfDatapath(lab.host_name("h1"), netns=host)
    try:
        p1, p2 = dp.add_port(v1.host_if, PortKind.VM), dp.add_port(v2.host_if, PortKind.VM)
        flows = nat_flows(v1, v2, p1, p2)
        dp.install(flows)
        assert transfer(lab, v1, v2, VIP, 8080, 80)
        stats = {f.actions[-1]: s for f, s in dp.dump()}
        assert stats[Output(p2)].packets > 10 and stats[Output(p1)].packets > 10
        assert csum_errors(v1.ns) == 0 and csum_errors(v2.ns) == 0
    finally:
        dp.destroy()


RAW_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(int(sys.argv[2])):
    s.send(bytes.fromhex(sys.argv[1]))
"""


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8], ids=["802.1q", "802.1ad"])
def test_tagged_frames_from_a_vm_are_dropped(lab: Lab, tpid: int) -> None:
    """Tagged frames written by the VM: the receive path moves an outer tag into skb
    metadata before tc sees it; a flow that forwards everything from the port forwards none."""
    from .dpvectors import frame

    host = lab.ns("h1")
    v1, v2 = two_vms(lab, host)
    dp = BpfDatapath(lab.host_name("h1"), netns=host)
    try:
        p1, p2 = dp.add_port(v1.host_if, PortKind.VM), dp.add_port(v2.host_if, PortKind.VM)
        # the flow takes every frame from v1 to v2's MAC, tagged or not (the VM's own IPv6
        # chatter goes to multicast MACs and must not count)
        key = FlowKey(in_port=p1, eth_dst=mac(v2.mac))
        dp.install(
            [Flow(key, FlowKey(in_port=EXACT.in_port, eth_dst=EXACT.eth_dst), (Output(p2),))]
        )
        tagged = bytearray(frame(src_mac=mac(v1.mac), dst_mac=mac(v2.mac), vlan=100))
        tagged[12:14] = tpid.to_bytes(2, "big")
        in_ns(v1.ns, PY, "-c", RAW_SEND, tagged.hex(), "3")
        wait_until(lambda: dp.counters().tagged_dropped >= 3, 5, "tagged frames counted")
        [(_, stats)] = dp.dump()
        assert stats.packets == 0  # nothing tagged rode the flow
    finally:
        dp.destroy()


class Agent(threading.Thread):
    """A trivial 'simulation': every miss gets the NAT flow of its direction, then re-inject."""

    def __init__(self, dp: BpfDatapath, flows: dict[int, Flow]) -> None:
        super().__init__(daemon=True)
        self.dp, self.flows, self.stop, self.handled = dp, flows, threading.Event(), 0
        self.reasons: list[UpcallReason] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for up in self.dp.poll_upcalls(0.05):
                self.reasons.append(up.reason)
                flow = self.flows.get(up.in_port)
                if flow is None:
                    continue
                self.dp.install([flow])
                self.dp.reinject(up)
                self.handled += 1


@pytest.mark.parametrize("tx_off", [True, False], ids=["tx-off", "tx-on"])
def test_miss_upcall_install_reinject(lab: Lab, tx_off: bool) -> None:
    """The SYN (and the SYN-ACK) miss, go to the agent, come back with valid checksums."""
    host = lab.ns("h1")
    v1, v2 = two_vms(lab, host, tx_off=tx_off)
    dp = BpfDatapath(lab.host_name("h1"), netns=host)
    agent = None
    try:
        p1, p2 = dp.add_port(v1.host_if, PortKind.VM), dp.add_port(v2.host_if, PortKind.VM)
        fwd, rev = nat_flows(v1, v2, p1, p2)
        agent = Agent(dp, {p1: fwd, p2: rev})
        agent.start()
        assert transfer(lab, v1, v2, VIP, 8080, 80, size=200_000)
        assert agent.handled >= 2
        assert set(agent.reasons) == {UpcallReason.MISS}
        assert csum_errors(v1.ns) == 0 and csum_errors(v2.ns) == 0
    finally:
        if agent:
            agent.stop.set()
            agent.join(2)
        dp.destroy()


def link_packets(ns: str, dev: str) -> int:
    """rx + tx packets of one interface (``ip -s``), read inside its namespace."""
    st = json.loads(in_ns(ns, "ip", "-j", "-s", "link", "show", "dev", dev).stdout)[0]["stats64"]
    return int(st["rx"]["packets"]) + int(st["tx"]["packets"])


@pytest.mark.parametrize(
    ("bpf_encap", "tx_off"),
    [(True, True), (True, False), (False, True)],
    ids=["bpf-encap-csum-off", "bpf-encap-gso", "vxlan-device"],
)
def test_tcp_across_vxlan_collect_md(lab: Lab, bpf_encap: bool, tx_off: bool) -> None:
    """RFC 7348 between two hosts. With ``bpf_encap`` the program adds and removes the
    outer headers itself (the VXLAN device sees no packet); without, the collect_md device
    does. Both with complete checksums (tx off) and with GSO super-packets (tx on)."""
    h1, h2 = lab.ns("h1"), lab.ns("h2")
    lab.veth(h1, "ul0", h2, "ul0")
    in_ns(h1, "ip", "addr", "add", "192.0.2.1/24", "dev", "ul0")
    in_ns(h2, "ip", "addr", "add", "192.0.2.2/24", "dev", "ul0")
    v1 = add_vm(lab, h1, "a", "10.1.0.1", "02:00:00:00:00:01", mtu=1450, tx_off=tx_off)
    v2 = add_vm(lab, h2, "b", "10.1.0.2", "02:00:00:00:00:02", mtu=1450, tx_off=tx_off)
    in_ns(v1.ns, "ip", "neigh", "add", v2.addr, "lladdr", v2.mac, "dev", "eth0")
    in_ns(v2.ns, "ip", "neigh", "add", v1.addr, "lladdr", v1.mac, "dev", "eth0")
    d1 = BpfDatapath(lab.host_name("h1"), netns=h1)
    d2 = BpfDatapath(lab.host_name("h2"), netns=h2)
    try:
        d1.set_tunnel(TunnelSettings(local_ip=ip("192.0.2.1"), bpf_encap=bpf_encap))
        d2.set_tunnel(TunnelSettings(local_ip=ip("192.0.2.2"), bpf_encap=bpf_encap))
        p1, p2 = d1.add_port(v1.host_if, PortKind.VM), d2.add_port(v2.host_if, PortKind.VM)
        d2.bind_tunnel_key(100, p2)
        d1.bind_tunnel_key(101, p1)
        m = FlowKey(in_port=EXACT.in_port)
        d1.install([Flow(FlowKey(in_port=p1), m, (Tunnel(100, ip("192.0.2.2")),))])
        d2.install([Flow(FlowKey(in_port=p2), m, (Tunnel(101, ip("192.0.2.1")),))])
        assert transfer(lab, v1, v2, v2.addr, 80, 80)
        assert csum_errors(v1.ns) == 0 and csum_errors(v2.ns) == 0
        packets = d1.dump()[0][1].packets + d2.dump()[0][1].packets
        assert packets > 20
        # The device still carries what the fast path leaves to it (here: the VMs' IPv6
        # router solicitations, which the flows tunnel too), never the TCP stream.
        via_device = link_packets(h1, "nlvx0") + link_packets(h2, "nlvx0")
        ul_filters = in_ns(h1, "tc", "filter", "show", "dev", "ul0", "ingress").stdout
        assert ("nl_underlay_ingress" in ul_filters) == bpf_encap
        vm_filters = in_ns(h1, "tc", "filter", "show", "dev", v1.host_if, "ingress").stdout
        assert "nl_port_ingress" in vm_filters  # the kind-specific entry point
        if bpf_encap:
            assert via_device <= 8 < packets
        else:
            assert via_device >= packets
    finally:
        d1.destroy()
        d2.destroy()
    # destroy() removed our filter from the underlay NIC and nothing else
    assert "nl_" not in in_ns(h1, "tc", "filter", "show", "dev", "ul0", "ingress").stdout


OWNER = r"""
import sys, time
from netloom.datapath.bpf import BpfDatapath
from netloom.errors import DatapathError
from netloom.datapath.base import PortKind
from netloom.flows.model import EXACT, Flow, FlowKey, Output
host, ns, a, b = sys.argv[1:5]
dp = BpfDatapath(host, netns=ns)
pa, pb = dp.add_port(a, PortKind.VM), dp.add_port(b, PortKind.VM)
m = FlowKey(in_port=EXACT.in_port)
fa, fb = FlowKey(in_port=pa), FlowKey(in_port=pb)
dp.install([Flow(fa, m, (Output(pb),)), Flow(fb, m, (Output(pa),))])
print("ready", flush=True)
while True:
    dp.poll_upcalls(0.5)
"""


def test_restart_keeps_forwarding_and_adopts(lab: Lab) -> None:
    """kill -9 the owner mid-stream: iperf3 goes on; a new process adopts the pinned maps."""
    host = lab.ns("h1")
    v1 = add_vm(lab, host, "a", "10.1.0.1", "02:00:00:00:00:01")
    v2 = add_vm(lab, host, "b", "10.1.0.2", "02:00:00:00:00:02")
    in_ns(v1.ns, "ip", "neigh", "add", v2.addr, "lladdr", v2.mac, "dev", "eth0")
    in_ns(v2.ns, "ip", "neigh", "add", v1.addr, "lladdr", v1.mac, "dev", "eth0")
    name = lab.host_name("h1")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    owner = lab.popen(
        host,
        PY,
        "-c",
        OWNER,
        name,
        "/run/netns/" + host,
        v1.host_if,
        v2.host_if,
        stdout=-1,
        env=env,
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == b"ready"
    srv = lab.popen(v2.ns, "iperf3", "-s", "-1", "-p", "5201", stdout=-3)
    wait_listening(v2.ns, 5201, srv)
    before = link_packets(host, v2.host_if)
    started = time.monotonic()
    cli = lab.popen(
        v1.ns, "iperf3", "-c", v2.addr, "-p", "5201", "-t", "3", "-i", "0.5", "--json", stdout=-1
    )
    # mid-stream: the transfer is under way (well past the handshake)
    wait_until(lambda: link_packets(host, v2.host_if) > before + 1000, 5, "the iperf3 stream")
    owner.kill()
    owner.wait(5)
    killed_at = time.monotonic() - started
    out, _ = cli.communicate(timeout=20)
    srv.wait(5)
    res = json.loads(out)
    assert "error" not in res, res.get("error")
    after_kill = [iv["sum"]["bytes"] for iv in res["intervals"] if iv["sum"]["start"] >= killed_at]
    assert after_kill and all(b > 0 for b in after_kill)
    dp = BpfDatapath(name, netns=host)
    try:
        assert {p.ifname for p in dp.ports()} == {v1.host_if, v2.host_if}
        flows = dp.dump()
        assert len(flows) == 2 and all(s.packets > 100 for _f, s in flows)
    finally:
        dp.destroy()


def test_an_upcall_longer_than_the_injection_link_is_not_replayed(lab: Lab) -> None:
    """A coalesced (GRO) packet can reach the agent longer than the injection veth's MTU: its
    replay is skipped (the sender retransmits, the installed flow carries it), and an executed
    packet that long is a DatapathError naming the kernel's reason, never a bare OSError."""
    host = lab.ns("h1")
    v1, _v2 = two_vms(lab, host)
    dp = BpfDatapath(lab.host_name("h1"), netns=host)
    try:
        p1 = dp.add_port(v1.host_if, PortKind.VM)
        big = bytes(12) + b"\x08\x00" + bytes(70_000)
        dp.reinject(Upcall(big, p1, UpcallReason.MISS, pkt_len=len(big)))
        with pytest.raises(DatapathError) as err:
            dp.execute(big, [], in_port=p1)
        assert err.value.errno == errno.EMSGSIZE
    finally:
        dp.destroy()
