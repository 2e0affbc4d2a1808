"""Edge hygiene test vectors, for every datapath: each packet arrives on a port whose flow
would forward it (``in_port`` only, as a megaflow installed for a good packet of the same
5-tuple does), and the datapath must drop it, or hand it to the agent, before the lookup."""

from __future__ import annotations

import struct

from netloom.datapath.base import Fate, UpcallReason
from netloom.flows.model import Flow, FlowKey, Output

from .dpvectors import Expect, Ports, Vector, _csum, frame, m

LSRR = b"\x83\x07\x04\xc0\x00\x02\x09\x00"  # loose source route via 192.0.2.9, EOL (RFC 791)
NOPS = b"\x01\x01\x01\x00"


def _forward(p: Ports) -> list[Flow]:
    return [Flow(FlowKey(in_port=p["vm1"]), m(in_port=1), (Output(p["vm2"]),))]


def _ip_header(b: bytes, *, vihl: int | None = None, total: int | None = None) -> bytes:
    """The frame with fields of its IPv4 header changed and the checksum made right again,
    so that only the field under test is wrong."""
    ihl = (b[14] & 0xF) * 4
    h = bytearray(b[14 : 14 + ihl])
    if vihl is not None:
        h[0] = vihl
    if total is not None:
        h[2:4] = struct.pack("!H", total)
    h[10:12] = b"\0\0"
    h[10:12] = struct.pack("!H", _csum(bytes(h)))
    return b[:14] + bytes(h) + b[14 + ihl :]


def with_options(b: bytes, options: bytes) -> bytes:
    """``b`` with IPv4 options after its 20-byte header (IHL and total length follow)."""
    body = b[34:]
    vihl = 0x40 | (20 + len(options)) // 4
    h = bytearray(b[14:34])
    h[0] = vihl
    h[2:4] = struct.pack("!H", 20 + len(options) + len(body))
    return _ip_header(b[:14] + bytes(h) + options + body)


def _bad_checksum(b: bytes) -> bytes:
    return b[:24] + bytes([b[24] ^ 0x5A]) + b[25:]


def _qinq(b: bytes) -> bytes:
    return b[:12] + b"\x88\xa8" + b[14:]  # 802.1ad (S-tag)


_good = frame()
_total = len(_good) - 14


def _drop(name: str, packet: bytes) -> Vector:
    return Vector(name, packet, "vm1", _forward, [Expect(Fate.DROP)])


EDGE_VECTORS: list[Vector] = [
    _drop("tagged-8021q-dropped", frame(vlan=100)),
    _drop("tagged-8021ad-dropped", _qinq(frame(vlan=100))),
    _drop("priority-tagged-vid0-dropped", frame(vlan=0)),
    _drop("truncated-tag-dropped", _good[:12] + b"\x81\x00\x00"),
    _drop("bad-ip-checksum-dropped", _bad_checksum(_good)),
    _drop("ip-version-6-dropped", _ip_header(_good, vihl=0x65)),
    _drop("ip-ihl-4-dropped", _ip_header(_good, vihl=0x44)),
    _drop("ip-total-below-header-dropped", _ip_header(_good, total=19)),
    _drop("ip-total-beyond-frame-dropped", _ip_header(_good, total=_total + 1)),
    Vector(
        "ip-truncated-header-dropped",
        _good[:24],
        "vm1",
        _forward,
        [Expect(Fate.DROP)],
        bpf=False,
        notes="BPF_PROG_TEST_RUN refuses an IPv4 frame shorter than 34 bytes",
    ),
    _drop("ip-options-bad-checksum-dropped", _bad_checksum(with_options(_good, LSRR))),
    Vector(
        "ip-padded-frame-forwarded",  # Ethernet padding after the datagram is fine
        _good + bytes(8),
        "vm1",
        _forward,
        [Expect(Fate.OUTPUT, port="vm2")],
    ),
    Vector(
        "ip-source-route-to-agent",
        with_options(_good, LSRR),
        "vm1",
        _forward,
        [Expect(Fate.UPCALL, reason=UpcallReason.OPTIONS)],
    ),
    Vector(
        "ip-options-to-agent",
        with_options(frame(proto=17, sport=5353, dport=53), NOPS),
        "vm1",
        _forward,
        [Expect(Fate.UPCALL, reason=UpcallReason.OPTIONS)],
    ),
]
