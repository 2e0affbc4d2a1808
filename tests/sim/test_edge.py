"""Edge hygiene in the simulation: IPv4 headers a router must not forward (RFC 1812 5.2.2),
source routes, tagged frames from exterior ports, and the fields these checks read."""

from __future__ import annotations

import struct

import pytest

from netloom.packet import ARP_REPLY, ETH_TYPE_ARP, Arp, Ethernet, Frame, Vlan, build, ip_to_int
from netloom.packet.headers import ETH_TYPE_QINQ, IPv4, Tcp
from netloom.sim import Verdict
from netloom.sim.result import F_IP_PROTO, F_TP_DST, F_TP_SRC, F_VLAN

from .conftest import (
    FIP_C,
    IP_A,
    IP_B,
    IP_C,
    MAC_A,
    MAC_B,
    MAC_C,
    MAC_EXT,
    MAC_R2,
    MAC_UP,
    REMOTE,
    Lab,
    dhcp_subnet,
    eth,
    static_fip_lab,
    tcp,
    udp,
)

pytestmark = pytest.mark.unit

LSRR = b"\x83\x07\x04" + bytes([192, 0, 2, 9]) + b"\x00"  # type, length, pointer, 1 hop, EOL
SSRR = b"\x89\x07\x04" + bytes([192, 0, 2, 9]) + b"\x00"


def _inbound(options: bytes = b"") -> Frame:
    """From the outside to C's floating IP, through r1's uplink."""
    ip = IPv4(ip_to_int(REMOTE), ip_to_int(FIP_C), 6, options=options)
    return Frame(eth(MAC_EXT, MAC_UP), ip=ip, l4=Tcp(5555, 22))


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _fixed_csum(data: bytes) -> bytes:
    """The IPv4 header checksum recomputed (so that only the field under test is wrong)."""
    from netloom.packet import checksum

    ihl = (data[14] & 0xF) * 4
    hdr = _patched(data[14 : 14 + ihl], 10, b"\0\0")
    return data[:14] + _patched(hdr, 10, struct.pack("!H", checksum(hdr))) + data[14 + ihl :]


def _bad_headers() -> list[tuple[str, bytes, str]]:
    good = build(_inbound())
    total = len(good) - 14
    return [
        ("checksum", _patched(good, 24, bytes([good[24] ^ 0xFF])), "checksum"),
        ("version", _fixed_csum(_patched(good, 14, b"\x65")), "version"),
        ("ihl", _fixed_csum(_patched(good, 14, b"\x44")), "below 20"),
        ("short-total", _fixed_csum(_patched(good, 16, struct.pack("!H", 19))), "total length"),
        ("long-total", _fixed_csum(_patched(good, 16, struct.pack("!H", total + 1))), "total"),
    ]


@pytest.mark.parametrize(("name", "data", "why"), _bad_headers(), ids=lambda x: str(x)[:12])
def test_router_drops_what_rfc1812_forbids(name: str, data: bytes, why: str) -> None:
    lab = static_fip_lab()
    assert lab.sim("uplink", build(_inbound())).verdict is Verdict.FORWARD
    r = lab.sim("uplink", data)
    assert r.verdict is Verdict.DROP and not r.cacheable, name
    [step] = r.trace.steps
    assert step.decision == "drop" and why in step.detail and "RFC 1812 5.2.2" in step.detail


@pytest.mark.parametrize("option", [LSRR, SSRR], ids=["lsrr", "ssrr"])
def test_source_routed_packets_are_dropped_unless_the_router_allows_them(option: bytes) -> None:
    lab = static_fip_lab()
    r = lab.sim("uplink", _inbound(option))
    assert r.verdict is Verdict.DROP and not r.cacheable
    [step] = [s for s in r.trace.steps if s.decision == "drop"]
    assert step.kind == "router" and "source-routed" in step.detail
    assert "allow_source_route" in step.detail
    lab.update(lab.named["r1"].model_copy(update={"allow_source_route": True}))
    r, out = lab.run("uplink", _inbound(option))
    assert r.verdict is Verdict.FORWARD and not r.cacheable  # never a flow: options
    [(name, f)] = out
    assert name == "C" and f.ip is not None and f.ip.dst == ip_to_int(IP_C)


def test_options_other_than_source_routes_pass_but_make_no_flow() -> None:
    lab = static_fip_lab()
    nops = b"\x01\x01\x01\x00"
    r, out = lab.run("uplink", _inbound(nops))
    assert r.verdict is Verdict.FORWARD and not r.cacheable and [n for n, _ in out] == ["C"]
    r = lab.sim("uplink", _inbound(b"\x83\x01\x00\x00"))  # an option of length 1
    assert r.verdict is Verdict.DROP and "malformed IPv4 options" in r.trace.steps[-1].detail


@pytest.mark.parametrize("tpid", [0x8100, ETH_TYPE_QINQ], ids=["802.1q", "802.1ad"])
def test_tagged_frames_from_exterior_ports_are_dropped(lab: Lab, tpid: int) -> None:
    frame = udp(MAC_A, MAC_B, IP_A, IP_B)
    frame.eth.vlan = Vlan(7, tpid=tpid)
    r, out = lab.run("A", frame)
    assert r.verdict is Verdict.DROP and out == [] and r.changes == ()
    assert r.trace.steps[0].decision == "drop" and "tagged" in r.trace.steps[0].detail
    up = _inbound()
    up.eth.vlan = Vlan(0, tpid=tpid)  # a priority tag too: nothing strips it
    assert static_fip_lab().sim("uplink", up).verdict is Verdict.DROP
    r = lab.sim("A", udp(MAC_A, MAC_B, IP_A, IP_B))
    assert r.verdict is Verdict.FORWARD and r.read & F_VLAN and r.mask.vlan == 0xFFF


def test_arp_reply_flows_read_the_opcode() -> None:
    lab = Lab()
    br = lab.bridge("br")
    lab.vm(br, "A", MAC_A, IP_A, port_security_enabled=False)
    lab.vm(br, "B", MAC_B, IP_B, port_security_enabled=False)
    a = Arp(ARP_REPLY, 0x020000000001, ip_to_int(IP_A), 0x0200000000FF, ip_to_int(IP_B))
    f = Frame(Ethernet(0x0200000000FF, 0x020000000001, ETH_TYPE_ARP), arp=a)
    r = lab.sim("A", f)
    assert r.cacheable and r.read & F_IP_PROTO  # a request would be answered, not flooded


def test_dhcp_server_reads_the_protocol_only_on_bridges_it_serves() -> None:
    lab = static_fip_lab()
    out_tcp = tcp(MAC_C, MAC_R2, IP_C, REMOTE, dport=443)
    r = lab.sim("C", out_tcp)
    assert r.verdict is Verdict.FORWARD and r.read & F_IP_PROTO == 0
    lab.add(dhcp_subnet(lab.named["net2"], cidr="10.0.2.0/24"))
    r = lab.sim("C", out_tcp)
    assert r.read & F_IP_PROTO and not r.read & (F_TP_SRC | F_TP_DST)
    r = lab.sim("C", udp(MAC_C, MAC_R2, IP_C, REMOTE, sport=68, dport=53))
    assert r.read & F_TP_DST and not r.read & F_TP_SRC  # not to the server's port: no request
    r = lab.sim("C", udp(MAC_C, MAC_R2, IP_C, REMOTE, sport=5353, dport=67))
    assert r.read & F_TP_DST and r.read & F_TP_SRC  # to it, but not from the client's port
