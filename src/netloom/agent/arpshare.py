"""A router's next-hop ARP entries shared between agents through the NSDB (MidoNet's ARP
table per router; :mod:`netloom.model.neighbors`).

The agent of a gateway host reports every entry its simulations learn on an uplink bound
here (:class:`ReportArp`, through the topology connection; the cluster writes it). A
simulation that misses an entry sends the ARP request out of the uplink, wherever that is,
and parks its packet under the entry; the agent then watches the router's shared entries
(``_arp`` filtered by router), so the entry reaches it when the gateway learns it (or at once,
if it is known), and the parked packet is simulated again. Expiry times travel as wall-clock
time; the driver converts them to and from the agent's clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from netloom.agent.view import AgentView, Interest
from netloom.model.neighbors import ARP_KIND, ArpEntry
from netloom.model.records import Port
from netloom.packet.util import int_to_ip, int_to_mac, ip_to_int, mac_to_int
from netloom.sim.state import ArpLearned, SimState, StateChange

__all__ = ["ReportArp", "SharedArp"]


@dataclass(frozen=True, slots=True)
class ReportArp:
    """Report an entry learned on an uplink of this host (``entry.expires``: agent clock)."""

    entry: ArpEntry


class SharedArp:
    """Which entries to report, which routers' entries to watch, and what a shared entry
    changes in the simulation state."""

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self._watched: set[str] = set()

    def reports(
        self, view: AgentView, bound: Iterable[str], changes: Iterable[StateChange]
    ) -> list[ReportArp]:
        """The entries of ``changes`` learned for a next hop on an uplink bound here."""
        out: list[ReportArp] = []
        learned = [c for c in changes if isinstance(c, ArpLearned)]
        if not learned:
            return out
        uplinks = [
            p
            for p in (view.peek("port", pid) for pid in bound)
            if isinstance(p, Port) and p.type == "router" and p.address and p.host_id
        ]
        for ch in learned:
            _, router, ip = ch.key
            addr = ipaddress.IPv4Address(ip)
            for p in uplinks:
                assert p.address is not None
                if p.device_id == router and addr in ipaddress.IPv4Interface(p.address).network:
                    entry = ArpEntry(router, int_to_ip(ip), int_to_mac(ch.mac), p.id, ch.expires)
                    out.append(ReportArp(entry))
                    break
        return out

    def watch(self, key: object) -> Interest | None:
        """For a packet parked under ARP key ``key``: the router's shared entries, the first
        time it is asked for that router."""
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] == "arp"):
            return None
        router = str(key[1])
        if router in self._watched:
            return None
        self._watched.add(router)
        return Interest.where(ARP_KIND, "router_id", router)

    @staticmethod
    def learned(data: dict[str, Any] | None, state: SimState, now: float) -> ArpLearned | None:
        """The state change a shared entry makes (``expires`` already in the agent's clock):
        None if it is gone, expired, or no newer than what this host holds."""
        if data is None:
            return None  # expiry forgets it: a removed entry is not a withdrawn address
        e = ArpEntry.from_doc(data)
        if e.expires <= now:
            return None
        key = ("arp", e.router_id, ip_to_int(e.ip))
        mac = mac_to_int(e.mac)
        have = state.arp.get(key)
        if have is not None and have[0] == mac and have[1] >= e.expires:
            return None
        return ArpLearned(key, mac, e.expires)
