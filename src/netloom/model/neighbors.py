"""A router's ARP entries for next hops behind its uplinks, shared through the NSDB.

MidoNet kept each router's ARP table in the NSDB: the agent that learns an entry on an exterior
port writes it, every agent that simulates the router reads it. A reply from a VM to the
internet is simulated on the VM's host, which must know the MAC of the upstream router behind
an uplink of another host. Entries are internal documents (``_arp/<router>:<ip>``), written by
the cluster from the gateway agent's reports and watched by agents like topology objects.
``expires`` is wall-clock time (seconds since the epoch): agents on other hosts compare it
with their own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ARP_KIND = "_arp"

__all__ = ["ARP_KIND", "ArpEntry", "arp_entry_id"]


def arp_entry_id(router_id: str, ip: str) -> str:
    return f"{router_id}:{ip}"


@dataclass(frozen=True, slots=True)
class ArpEntry:
    """``ip`` on the subnet of uplink ``port_id`` of ``router_id`` has ``mac`` until
    ``expires`` (wall clock)."""

    router_id: str
    ip: str
    mac: str
    port_id: str
    expires: float

    @property
    def id(self) -> str:
        return arp_entry_id(self.router_id, self.ip)

    def doc(self, host_id: str) -> dict[str, Any]:
        return {
            "router_id": self.router_id,
            "ip": self.ip,
            "mac": self.mac,
            "port_id": self.port_id,
            "host_id": host_id,
            "expires": self.expires,
        }

    @classmethod
    def from_doc(cls, data: dict[str, Any]) -> ArpEntry:
        return cls(
            str(data["router_id"]),
            str(data["ip"]),
            str(data["mac"]),
            str(data["port_id"]),
            float(data["expires"]),
        )
