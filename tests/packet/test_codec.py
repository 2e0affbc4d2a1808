"""Packet parse/build: known vectors, checksums, and hypothesis properties."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netloom.packet import (
    Arp,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    ParseError,
    Tcp,
    Udp,
    Vlan,
    build,
    checksum,
    ipv4_header_ok,
    parse,
    parse_dhcp,
)
from netloom.packet.codec import ip_option_types
from netloom.packet.dhcp import (
    DhcpMessage,
    build_dhcp,
    opt_classless_routes,
    parse_classless_routes,
)

pytestmark = pytest.mark.unit

_FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_rfc1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\xff\xff") == 0x0000


def test_ipv4_header_checksum_of_a_known_packet() -> None:
    # A classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(hdr) == 0xB861


def test_udp_round_trip_and_checksums() -> None:
    f = Frame(
        Ethernet(0x020000000002, 0x020000000001, 0x0800),
        ip=IPv4(0x0A000001, 0x0A000002, 17, ttl=64, ident=7, flags=2),
        l4=Udp(1234, 53),
        payload=b"abc",
    )
    data = build(f)
    assert ipv4_header_ok(data)
    g = parse(data)
    assert isinstance(g, Frame) and g.ip is not None and isinstance(g.l4, Udp)
    assert g.l4.length == 11 and g.payload == b"abc" and g.ip.df
    # the L4 checksum verifies: summing the pseudo-header and segment gives 0
    from netloom.packet.checksum import fold, ones_sum

    seg = data[34:]
    pseudo = struct.pack("!IIBBH", 0x0A000001, 0x0A000002, 0, 17, len(seg))
    assert fold(ones_sum(pseudo) + ones_sum(seg)) == 0xFFFF
    assert build(g) == data


def test_vlan_arp_fragment_and_options() -> None:
    arp = Frame(
        Ethernet(0xFFFFFFFFFFFF, 0x020000000001, 0x0806, Vlan(100, pcp=5)),
        arp=Arp(1, 0x020000000001, 0x0A000001, 0, 0x0A000002),
        trailer=b"\x00" * 18,
    )
    data = build(arp)
    g = parse(data)
    assert isinstance(g, Frame) and g.eth.vlan == Vlan(100, 5, 0) and g.arp == arp.arp
    assert build(g) == data and len(data) == 64
    frag = Frame(
        Ethernet(1, 2, 0x0800),
        ip=IPv4(1, 2, 6, flags=0, frag_offset=185, options=b"\x94\x04\x00\x00"),
        payload=b"later bytes",
    )
    g = parse(build(frag))
    assert isinstance(g, Frame) and g.ip is not None and g.l4 is None
    assert g.ip.frag_offset == 185 and g.ip.options == b"\x94\x04\x00\x00"
    assert g.payload == b"later bytes"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 10, "truncated ethernet"),
        (bytes(12) + b"\x08\x00" + b"\x45" + bytes(5), "truncated IPv4"),
        (bytes(12) + b"\x08\x00" + b"\x65" + bytes(19), "version"),
        (bytes(12) + b"\x08\x00" + b"\x44" + bytes(19), "below 20"),
        (bytes(12) + b"\x08\x06" + bytes(28), "ARP other"),
        (bytes(12) + b"\x08\x00\x45\x00\x00\x14" + bytes(16), "checksum is wrong"),
    ],
)
def test_malformed_inputs_give_parse_errors(data: bytes, reason: str) -> None:
    got = parse(data)
    assert isinstance(got, ParseError) and reason in got.reason


def test_ip_option_types() -> None:
    lsrr = b"\x83\x07\x04" + bytes(4)
    assert ip_option_types(b"\x01" + lsrr + b"\x00" * 4) == (131,)
    assert ip_option_types(b"\x00" + lsrr) == ()  # after the end of the list: padding
    assert ip_option_types(b"\x07\x03\x04\x89\x03\x04\x00\x00") == (7, 137)
    for bad in (b"\x83", b"\x83\x01\x00\x00", b"\x83\x09\x04\x00"):
        assert ip_option_types(bad) is None, bad


def test_dhcp_options_and_classless_routes() -> None:
    routes = [(0x0A000000, 8, 0x0A000001), (0, 0, 0xC0A80001), (0xAC100000, 12, 0x0A0000FE)]
    enc = opt_classless_routes(routes)
    assert enc[:5] == bytes([8, 10, 10, 0, 0])  # RFC 3442 §3: width, 1 octet, router
    assert parse_classless_routes(enc) == routes
    msg = DhcpMessage(1, 42, 0x020000000001, options=[(53, b"\x01"), (12, b"x" * 300)])
    back = parse_dhcp(build_dhcp(msg))
    assert isinstance(back, DhcpMessage) and back.get(12) == b"x" * 300  # split, RFC 3396
    assert back.msg_type == 1 and back.xid == 42
    assert isinstance(parse_dhcp(b"\x01" * 100), ParseError)


# ---- properties ------------------------------------------------------------------------------

macs = st.integers(0, (1 << 48) - 1)
ips = st.integers(0, (1 << 32) - 1)
u16 = st.integers(0, 0xFFFF)
opts4 = st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    vlan = draw(
        st.none() | st.builds(Vlan, st.integers(0, 4095), st.integers(0, 7), st.integers(0, 1))
    )
    kind = draw(st.sampled_from(["udp", "tcp", "icmp", "arp", "other-ip", "frag", "raw"]))
    if kind == "arp":
        a = Arp(draw(st.integers(1, 2)), draw(macs), draw(ips), draw(macs), draw(ips))
        return Frame(Ethernet(draw(macs), draw(macs), 0x0806, vlan), arp=a)
    if kind == "raw":
        etype = draw(st.sampled_from([0x86DD, 0x88CC, 0x9000]))
        return Frame(Ethernet(draw(macs), draw(macs), etype, vlan), payload=draw(st.binary()))
    proto = {"udp": 17, "tcp": 6, "icmp": 1}.get(kind, draw(st.sampled_from([47, 50, 132])))
    ip = IPv4(
        draw(ips),
        draw(ips),
        proto,
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        draw(u16),
        draw(st.sampled_from([0, 2])),
        0,
        draw(opts4),
    )
    payload = draw(st.binary(max_size=64))
    l4: Tcp | Udp | Icmp | None = None
    if kind == "frag":
        ip.frag_offset = draw(st.integers(1, 0x1FFF))
    elif kind == "udp":
        l4 = Udp(draw(u16), draw(u16))
    elif kind == "tcp":
        l4 = Tcp(
            draw(u16),
            draw(u16),
            draw(ips),
            draw(ips),
            draw(st.integers(0, 0xFF)),
            draw(u16),
            draw(u16),
            draw(opts4),
        )
    elif kind == "icmp":
        l4 = Icmp(draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(ips))
    return Frame(Ethernet(draw(macs), draw(macs), 0x0800, vlan), ip=ip, l4=l4, payload=payload)


def _agrees(got: Frame | ParseError, data: bytes) -> None:
    """What ``parse(data)`` answered agrees with the bytes: an error says why and where (an
    offset inside the input); a frame carries the input's two MAC addresses."""
    if isinstance(got, ParseError):
        assert got.reason and 0 <= got.offset <= len(data), got
    else:
        macs = (int.from_bytes(data[0:6], "big"), int.from_bytes(data[6:12], "big"))
        assert (got.eth.dst, got.eth.src) == macs, got


@_FAST
@given(st.binary(max_size=200))
def test_parser_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    _agrees(parse(data), data)
    dhcp = parse_dhcp(data)
    if isinstance(dhcp, ParseError):
        assert dhcp.reason and 0 <= dhcp.offset <= len(data), dhcp
    else:
        assert dhcp.xid == int.from_bytes(data[4:8], "big"), dhcp


@_FAST
@given(frames(), st.data())
def test_parser_never_raises_on_mutated_packets(f: Frame, data: st.DataObject) -> None:
    raw = bytearray(build(f))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _agrees(parse(bytes(raw[:cut])), bytes(raw[:cut]))


@_FAST
@given(frames())
def test_build_parse_round_trips(f: Frame) -> None:
    data = build(f)
    g = parse(data)
    assert isinstance(g, Frame), g
    assert build(g) == data  # build(parse(x)) == x
    assert g.eth == f.eth and g.arp == f.arp and g.payload == f.payload
    if f.ip is not None:
        assert g.ip is not None and ipv4_header_ok(data, 18 if f.eth.vlan else 14)
        assert (g.ip.src, g.ip.dst, g.ip.proto, g.ip.ttl, g.ip.options) == (
            f.ip.src,
            f.ip.dst,
            f.ip.proto,
            f.ip.ttl,
            f.ip.options,
        )
