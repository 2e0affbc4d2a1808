"""ONE set of conntrack test vectors for every datapath: flows, then a sequence of packets, each
with its expected outcome, then the conntrack table expected at the end.

The ports are those of ``dpvectors.PORTS``; "tun" means the packet arrives from the tunnel
(VXLAN from ``REMOTE_UL`` with the step's VNI). ``age`` ages every conntrack entry by that many
seconds before the step (the memory datapath moves its clock; the kernel's entries are
rewritten to expire earlier).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netloom.datapath.base import Fate
from netloom.datapath.conntrack import CtEntry, CtTuple
from netloom.flows.model import (
    CT_ALL,
    CT_EST,
    CT_NEW,
    CT_RPL,
    VNI_CT,
    VNI_CT_CLOSE,
    CtCommit,
    Drop,
    Flow,
    FlowKey,
    Output,
    SetIpDst,
    SetIpSrc,
    Tunnel,
)

from .dpvectors import TUNNEL_REMOTE, Ports, frame, ip

A, B, FIP = ip("10.1.0.1"), ip("10.1.0.2"), ip("10.9.9.9")
VNI = 5001
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04

# (tuple with the port's name as zone, reply, closing)
Row = tuple[tuple[str, int, int, int, int, int], bool, bool]


@dataclass(frozen=True)
class Step:
    packet: bytes
    in_port: str  # a port name, or "tun"
    fate: Fate
    port: str = ""  # OUTPUT: where
    vni: int = 0  # TUNNEL: the wire VNI; "tun" arrivals: the VNI received
    out: bytes | None = None  # OUTPUT: the packet delivered (None: the input)
    age: float = 0.0


@dataclass(frozen=True)
class CtVector:
    name: str
    flows: Callable[[Ports], list[Flow]]
    steps: list[Step]
    table: set[Row]
    lost: int = 0
    commits: int = 0
    notes: str = field(default="")


def ct(in_port: int, state: int) -> FlowKey:
    return FlowKey(in_port=in_port, ct_state=state)


CT_MASK = FlowKey(in_port=0xFFFFFFFF, ct_state=CT_ALL)


def sg(p: Ports) -> list[Flow]:
    """vm1 may open connections to vm2; vm2 may only answer."""
    return [
        Flow(ct(p["vm1"], CT_NEW), CT_MASK, (CtCommit(), Output(p["vm2"], ct=True))),
        Flow(ct(p["vm1"], CT_EST), CT_MASK, (Output(p["vm2"]),)),
        Flow(ct(p["vm2"], CT_EST | CT_RPL), CT_MASK, (Output(p["vm1"]),)),
        Flow(ct(p["vm2"], CT_NEW), CT_MASK, (Drop(),)),
    ]


def tunnel_sg(p: Ports) -> list[Flow]:
    return [
        Flow(ct(p["vm1"], CT_NEW), CT_MASK, (CtCommit(), Tunnel(VNI, TUNNEL_REMOTE, ct=True))),
        Flow(ct(p["vm1"], CT_EST), CT_MASK, (Tunnel(VNI, TUNNEL_REMOTE),)),
        Flow(ct(p["vm1"], CT_EST | CT_RPL), CT_MASK, (Tunnel(VNI, TUNNEL_REMOTE),)),
    ]


def fip(p: Ports) -> list[Flow]:
    """vm1 reaches vm2 through a static DNAT (floating IP); replies are un-NATed."""
    return [
        Flow(
            ct(p["vm1"], CT_NEW),
            CT_MASK,
            (CtCommit(), SetIpDst(B), Output(p["vm2"], ct=True)),
        ),
        Flow(ct(p["vm1"], CT_EST), CT_MASK, (SetIpDst(B), Output(p["vm2"]))),
        Flow(ct(p["vm2"], CT_EST | CT_RPL), CT_MASK, (SetIpSrc(FIP), Output(p["vm1"]))),
        Flow(ct(p["vm2"], CT_NEW), CT_MASK, (Drop(),)),
    ]


def udp_any(p: Ports) -> list[Flow]:
    """New: commit and deliver; established: drop (so the state is visible in the fate)."""
    return [
        Flow(ct(p["vm1"], CT_NEW), CT_MASK, (CtCommit(), Output(p["vm2"], ct=True))),
        Flow(ct(p["vm1"], CT_EST), CT_MASK, (Drop(),)),
    ]


def tcp(flags: int, *, back: bool = False, sport: int = 40000) -> bytes:
    if back:
        return frame(src="10.1.0.2", dst="10.1.0.1", sport=80, dport=sport, tcp_flags=flags)
    return frame(sport=sport, tcp_flags=flags)


FWD = ("vm1", 6, A, B, 40000, 80)
REV = ("vm2", 6, B, A, 80, 40000)

CT_VECTORS: list[CtVector] = [
    CtVector(
        "commit-then-established-and-reply",
        sg,
        [
            Step(tcp(SYN), "vm1", Fate.OUTPUT, "vm2"),
            Step(tcp(SYN | ACK, back=True), "vm2", Fate.OUTPUT, "vm1"),
            Step(tcp(ACK), "vm1", Fate.OUTPUT, "vm2"),
            Step(tcp(SYN, back=True, sport=41000), "vm2", Fate.DROP),
        ],
        {(FWD, False, False), (REV, True, False)},
        commits=2,
    ),
    CtVector(
        "tcp-without-syn-and-no-entry-is-lost",
        sg,
        [Step(tcp(ACK), "vm1", Fate.OUTPUT, "vm2")],
        {(FWD, False, False), (REV, True, False)},
        lost=1,
        commits=2,
    ),
    CtVector(
        "fin-shortens-both-sides",
        sg,
        [
            Step(tcp(SYN), "vm1", Fate.OUTPUT, "vm2"),
            Step(tcp(FIN | ACK), "vm1", Fate.OUTPUT, "vm2"),
        ],
        {(FWD, False, True), (REV, True, True)},
        commits=2,
    ),
    CtVector(
        "rst-from-the-replier-shortens-its-side",
        sg,
        [
            Step(tcp(SYN), "vm1", Fate.OUTPUT, "vm2"),
            Step(tcp(RST | ACK, back=True), "vm2", Fate.OUTPUT, "vm1"),
        ],
        {(FWD, False, True), (REV, True, True)},
        commits=2,
    ),
    CtVector(
        "udp-ports-icmp-zero-and-expiry",
        udp_any,
        [
            Step(frame(proto=17, sport=5353, dport=53), "vm1", Fate.OUTPUT, "vm2"),
            Step(frame(proto=17, sport=5353, dport=53), "vm1", Fate.DROP),
            Step(frame(proto=1), "vm1", Fate.OUTPUT, "vm2"),
            Step(frame(proto=1), "vm1", Fate.DROP),
            Step(frame(proto=17, sport=5353, dport=53), "vm1", Fate.OUTPUT, "vm2", age=61),
        ],
        {
            (("vm1", 17, A, B, 5353, 53), False, False),
            (("vm2", 17, B, A, 53, 5353), True, False),
        },
        commits=6,
        notes="the ICMP entries expire with the first UDP ones; the UDP is committed again",
    ),
    CtVector(
        "tunnel-ct-sets-the-vni-bit-close-too",
        tunnel_sg,
        [
            Step(tcp(SYN), "vm1", Fate.TUNNEL, vni=VNI | VNI_CT),
            Step(tcp(ACK), "vm1", Fate.TUNNEL, vni=VNI),
            Step(tcp(FIN | ACK), "vm1", Fate.TUNNEL, vni=VNI | VNI_CT_CLOSE),
        ],
        {(FWD, False, True)},
        commits=1,
    ),
    CtVector(
        "tunnel-receiver-commits-the-reversed-tuple",
        tunnel_sg,
        [
            Step(tcp(SYN, back=True), "tun", Fate.OUTPUT, "vm1", vni=VNI | VNI_CT),
            Step(tcp(ACK, back=True), "tun", Fate.OUTPUT, "vm1", vni=VNI),
            Step(tcp(SYN | ACK), "vm1", Fate.TUNNEL, vni=VNI),
            Step(tcp(FIN | ACK, back=True), "tun", Fate.OUTPUT, "vm1", vni=VNI | VNI_CT_CLOSE),
        ],
        {(FWD, True, True)},
        commits=1,
        notes="vm1 is the server here: its reply is established (not new), so no commit",
    ),
    CtVector(
        "static-nat-receiver-commits-the-translated-tuple",
        fip,
        [
            Step(frame(dst="10.9.9.9"), "vm1", Fate.OUTPUT, "vm2", out=frame(dst="10.1.0.2")),
            Step(
                frame(src="10.1.0.2", dst="10.1.0.1", sport=80, dport=40000, tcp_flags=SYN | ACK),
                "vm2",
                Fate.OUTPUT,
                "vm1",
                out=frame(src="10.9.9.9", dst="10.1.0.1", sport=80, dport=40000, tcp_flags=18),
            ),
        ],
        {(("vm1", 6, A, FIP, 40000, 80), False, False), (REV, True, False)},
        commits=2,
    ),
]


def named(table: dict[CtTuple, CtEntry], ports: Ports, now: float) -> set[Row]:
    """A datapath's live entries in the vectors' terms (zone by port name)."""
    names = {n: name for name, n in ports.items()}
    out: set[Row] = set()
    for (zone, proto, src, dst, sp, dp), e in table.items():
        if e.expires > now:
            out.add(((names.get(zone, str(zone)), proto, src, dst, sp, dp), e.reply, e.closing))
    return out


__all__ = ["CT_VECTORS", "CtVector", "Row", "Step", "named"]
