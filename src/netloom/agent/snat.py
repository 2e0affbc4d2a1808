"""SNAT port blocks for this host: a simulation that needs a block of (router, NAT address)
parks its packet under ``("snat-block", device, ip)``; the agent asks the cluster for a block
(:class:`LeaseSnat`, once per key while it is asked), records it in the simulation state and
simulates the parked packets again (MidoNet's model: blocks leased through the NSDB, so every
host translates without asking anyone per connection)."""

from __future__ import annotations

from dataclasses import dataclass

from netloom.packet.util import ip_to_int
from netloom.sim.state import SimState

__all__ = ["LeaseSnat", "SnatLeases", "snat_key"]

SnatKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class LeaseSnat:
    """Ask the cluster for a SNAT port block of router ``device_id``'s address ``ip``."""

    device_id: str
    ip: str


def snat_key(device_id: str, ip: str) -> SnatKey:
    """The parking key of packets waiting for a block of (``device_id``, ``ip``)."""
    return ("snat-block", device_id, ip)


class SnatLeases:
    """The leases asked for and not answered yet."""

    def __init__(self) -> None:
        self._asked: set[object] = set()

    def ask(self, key: object) -> tuple[LeaseSnat, ...]:
        """The request for parking key ``key`` if it is a block not asked for yet."""
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] == "snat-block"):
            return ()
        if key in self._asked:
            return ()
        self._asked.add(key)
        return (LeaseSnat(str(key[1]), str(key[2])),)

    def answered(
        self, device_id: str, ip: str, block: tuple[int, int] | None, state: SimState
    ) -> SnatKey | None:
        """Record the block the cluster leased; the key of the packets to simulate again (None:
        refused, they stay parked until they time out, and the next packet asks again)."""
        key = snat_key(device_id, ip)
        self._asked.discard(key)
        if block is None:
            return None
        state.lease_snat_block(device_id, ip_to_int(ip), *block)
        return key
