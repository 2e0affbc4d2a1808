"""Mutable network state the simulation reads but never writes.

MAC tables, ARP caches, connection tracking and NAT bindings change as packets flow. The
simulation only reads :class:`SimState`; what it would change comes back as
:data:`StateChange` values in the result, and the caller (the agent, a test) applies them with
:meth:`SimState.apply`, after pushing conntrack/NAT keys to the hosts that need them
(flow state between hosts, docs/design.md). That keeps ``simulate`` pure and replayable.

Keys are plain tuples so they double as flow tags (a flow that looked a key up is invalidated
when the key changes):

* conntrack: ``("ct", zone, proto, src, sport, dst, dport)`` = a forward flow seen at ``zone``
  (the device whose chain checked connection state);
* NAT: ``(kind, zone, proto, src, sport, dst, dport) -> (ip, port)``, ``kind`` one of
  :data:`SNAT_FWD`, :data:`SNAT_REV`, :data:`DNAT_FWD`, :data:`DNAT_REV`;
* MAC: ``("mac", bridge_id, vlan, mac) -> port_id``; ARP: ``("arp", router_id, ip) -> mac``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

# NAT binding kinds: forward (original tuple -> new address) and reverse (translated reply
# tuple -> original address) for source and destination NAT.
SNAT_FWD = "snat"
SNAT_REV = "snat-rev"
DNAT_FWD = "dnat"
DNAT_REV = "dnat-rev"

_CT, _NAT, _ARP = 0, 1, 2

CtKey = tuple[str, str, int, int, int, int, int]
NatKey = tuple[str, str, int, int, int, int, int]
MacKey = tuple[str, str, int, int]
ArpKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class MacLearned:
    key: MacKey
    port_id: str


@dataclass(frozen=True, slots=True)
class ArpLearned:
    key: ArpKey
    mac: int
    expires: float


@dataclass(frozen=True, slots=True)
class ConntrackAdded:
    key: CtKey
    expires: float


@dataclass(frozen=True, slots=True)
class NatAdded:
    key: NatKey
    ip: int
    port: int
    expires: float


StateChange = MacLearned | ArpLearned | ConntrackAdded | NatAdded


@dataclass(slots=True)
class SimState:
    """The state one host's simulations read.

    ``snat_blocks`` maps (device id, NAT address) to the port ranges this host has leased for
    SNAT on that device (MidoNet leases blocks of ports per host so hosts never hand out the
    same port; leasing is the agent's job, the simulation only picks free ports inside them).
    """

    macs: dict[MacKey, str] = field(default_factory=dict)
    arp: dict[ArpKey, tuple[int, float]] = field(default_factory=dict)
    conntrack: dict[CtKey, float] = field(default_factory=dict)
    nat: dict[NatKey, tuple[int, int, float]] = field(default_factory=dict)
    snat_blocks: dict[tuple[str, int], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # uplink port ids whose routing sidecar is plugged on this host (sim/uplink.py)
    sidecars: set[str] = field(default_factory=set)
    # (expires, tie-breaker, table, key) of every entry apply() wrote: expire() pops what is
    # due instead of scanning the tables, so its cost follows the entries that expire, not
    # the entries held. A refreshed entry leaves its old deadline behind, skipped when due.
    _due: list[tuple[float, int, int, object]] = field(
        default_factory=list, repr=False, compare=False
    )
    _seq: int = field(default=0, repr=False, compare=False)

    def apply(self, changes: tuple[StateChange, ...] | list[StateChange]) -> None:
        """Apply the state changes of a simulation result."""
        for ch in changes:
            if isinstance(ch, ConntrackAdded):
                self.conntrack[ch.key] = ch.expires
                self._schedule(ch.expires, _CT, ch.key)
            elif isinstance(ch, NatAdded):
                self.nat[ch.key] = (ch.ip, ch.port, ch.expires)
                self._schedule(ch.expires, _NAT, ch.key)
            elif isinstance(ch, MacLearned):
                self.macs[ch.key] = ch.port_id
            else:
                self.arp[ch.key] = (ch.mac, ch.expires)
                self._schedule(ch.expires, _ARP, ch.key)

    def _schedule(self, expires: float, table: int, key: object) -> None:
        self._seq += 1
        heapq.heappush(self._due, (expires, self._seq, table, key))

    def expire(self, now: float) -> list[object]:
        """Forget the conntrack, NAT and ARP entries (written by :meth:`apply`) whose expiry
        is past; returns their keys. O(entries due x log n), never a scan of the tables."""
        dead: list[object] = []
        due = self._due
        while due and due[0][0] <= now:
            _exp, _, table, key = heapq.heappop(due)
            if table == _CT:
                exp = self.conntrack.get(key)  # type: ignore[call-overload]
                if exp is not None and exp <= now:
                    del self.conntrack[key]  # type: ignore[arg-type]
                    dead.append(key)
            else:
                d: dict[Any, Any] = self.nat if table == _NAT else self.arp
                v = d.get(key)
                if v is not None and v[-1] <= now:
                    del d[key]
                    dead.append(key)
        return dead

    def lease_snat_block(self, device_id: str, ip: int, start: int, end: int) -> None:
        """Record that this host owns ports ``start..end`` of ``ip`` on ``device_id``."""
        key = (device_id, ip)
        self.snat_blocks[key] = (*self.snat_blocks.get(key, ()), (start, end))


__all__ = [
    "DNAT_FWD",
    "DNAT_REV",
    "SNAT_FWD",
    "SNAT_REV",
    "ArpKey",
    "ArpLearned",
    "ConntrackAdded",
    "CtKey",
    "MacKey",
    "MacLearned",
    "NatAdded",
    "NatKey",
    "SimState",
    "StateChange",
]
