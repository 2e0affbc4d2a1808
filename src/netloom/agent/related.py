"""The ct_state an upcall is simulated with: the datapath's answer, plus ``CT_REL`` for an
ICMP error (RFC 792) quoting a connection the datapath tracks at the error's in_port: the
reply direction of the quoted packet was committed there when that packet was delivered
(Linux conntrack calls such an error *related*)."""

from __future__ import annotations

from netloom.datapath.base import Datapath, Upcall, UpcallReason
from netloom.flows.model import CT_REL
from netloom.packet import Frame, Icmp, ParseError
from netloom.sim.context import ICMP_ERROR_TYPES, quoted


def upcall_ct_state(up: Upcall, f: Frame | ParseError, dp: Datapath) -> int:
    """``up.ct_state``, with ``CT_REL`` when the packet (``f``: the upcall's packet, parsed
    once by the caller for the simulation too) is a related ICMP error."""
    if up.reason is not UpcallReason.MISS or not up.ct_state:
        return up.ct_state
    if not isinstance(f, Frame) or not isinstance(f.l4, Icmp) or f.l4.type not in ICMP_ERROR_TYPES:
        return up.ct_state
    inner = quoted(f.payload)
    if inner is None:
        return up.ct_state
    proto, src, sport, dst, dport = inner
    if proto not in (6, 17):
        sport = dport = 0
    # the quoted packet went *to* this port's VM: its reply direction is tracked here
    if dp.conntrack_entry((up.in_port, proto, dst, src, dport, sport)) is not None:
        return up.ct_state | CT_REL
    return up.ct_state


__all__ = ["upcall_ct_state"]
