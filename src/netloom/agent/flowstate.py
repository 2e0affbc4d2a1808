"""Flow-state messages between agents (MidoNet's flow state): conntrack and NAT keys over UDP.

When a simulation on host 1 creates a connection-tracking or NAT entry and sends the packet
to host 2, the reply will be simulated on host 2, which must find the entry. The core asks for
a push (:class:`~netloom.agent.core.PushState`) *before* the packet is sent; the driver sends
one datagram per batch to the peer's underlay address on :data:`STATE_PORT`.

Expiry times are sent as remaining seconds, not absolute times: each host's monotonic clock
has its own origin. Datagrams are msgpack arrays (msgspec), small enough for one underlay
packet each (:func:`encode` splits larger batches). Loss is tolerable in the way MidoNet's
was: the reply then misses the entry and is treated as a new flow by the stateful chain.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from netloom.errors import InvalidInput
from netloom.sim.state import ConntrackAdded, NatAdded, StateChange

STATE_PORT = 7790
MAX_PER_DATAGRAM = 16  # ~60 bytes each: well under a 1450-byte overlay MTU

# each entry: ["ct", key, ttl] | ["nat", key, ip, port, ttl], the key as a list
_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(list[list[object]])


def encode(changes: Iterable[StateChange], now: float) -> list[bytes]:
    """Datagrams carrying the conntrack/NAT entries of ``changes`` (others are skipped)."""
    items: list[list[object]] = []
    for ch in changes:
        if isinstance(ch, ConntrackAdded):
            items.append(["ct", list(ch.key), max(0.0, ch.expires - now)])
        elif isinstance(ch, NatAdded):
            items.append(["nat", list(ch.key), ch.ip, ch.port, max(0.0, ch.expires - now)])
    return [
        _ENC.encode(items[i : i + MAX_PER_DATAGRAM]) for i in range(0, len(items), MAX_PER_DATAGRAM)
    ]


def _key(raw: object) -> tuple[str, str, int, int, int, int, int]:
    if not (
        isinstance(raw, list)
        and len(raw) == 7
        and all(isinstance(x, str) for x in raw[:2])
        and all(isinstance(x, int) for x in raw[2:])
    ):
        raise InvalidInput("bad flow-state key", field="key")
    return (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6])


def decode(data: bytes, now: float) -> list[StateChange]:
    """Parse one datagram; raises :class:`InvalidInput` on anything malformed."""
    try:
        items = _DEC.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"bad flow-state datagram: {exc}") from None
    out: list[StateChange] = []
    for it in items:
        if len(it) == 3 and it[0] == "ct" and isinstance(it[2], (int, float)):
            out.append(ConntrackAdded(_key(it[1]), now + float(it[2])))
        elif (
            len(it) == 5
            and it[0] == "nat"
            and isinstance(it[2], int)
            and isinstance(it[3], int)
            and isinstance(it[4], (int, float))
        ):
            out.append(NatAdded(_key(it[1]), it[2], it[3], now + float(it[4])))
        else:
            raise InvalidInput("bad flow-state entry", field="entry")
    return out


__all__ = ["MAX_PER_DATAGRAM", "STATE_PORT", "decode", "encode"]
