"""BGP on a router's uplinks: the peers a router speaks to, the prefixes it advertises, and the
value types a gateway agent reports back (routes it learned, a session's state).

A peer belongs to a router; the gateway agent runs it on the router's exterior port whose
subnet holds the peer address (checked by the API, which needs the store). Session timers
follow RFC 4271 §4.2 and §10 (hold time 0 or at least 3 s; keepalive at most a third of it);
the password is the TCP MD5 signature key of RFC 2385.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from netloom.model.records import Record
from netloom.model.types import Cidr, Id, IPv4, Name

# RFC 6793: four-octet AS numbers; 0 is reserved (RFC 7607) and never valid on a session.
AS_MIN = 1
AS_MAX = 4294967295

AsNumber = Field(ge=AS_MIN, le=AS_MAX, description="an AS number, 1..4294967295 (RFC 6793)")


class BgpPeer(Record):
    """One BGP session of a router, run by the gateway agent of the uplink that reaches it."""

    router_id: Id
    name: Name = ""
    address: IPv4 = Field(description="the peer's address, on the subnet of one of the uplinks")
    asn: int = AsNumber
    local_as: int = AsNumber
    hold_time: int = Field(default=90, ge=0, le=65535, description="seconds; 0 or >= 3")
    keepalive: int = Field(default=30, ge=0, le=21845, description="seconds; <= hold_time / 3")
    password: str | None = Field(default=None, min_length=1, max_length=80)
    bfd: bool = Field(default=False, description="a BFD session (RFC 5880) for fast failover")

    @field_validator("hold_time")
    @classmethod
    def _hold(cls, value: int) -> int:
        if 0 < value < 3:  # RFC 4271 §4.2
            raise ValueError("must be 0 or at least 3 seconds (RFC 4271 §4.2)")
        return value

    @model_validator(mode="after")
    def _timers(self) -> BgpPeer:
        if self.hold_time and self.keepalive * 3 > self.hold_time:
            raise ValueError("keepalive must be at most a third of hold_time (RFC 4271 §10)")
        return self


class BgpNetwork(Record):
    """A prefix the router advertises to all its peers (a floating-IP range, a provider net)."""

    router_id: Id
    name: Name = ""
    prefix: Cidr


class SessionState(StrEnum):
    """RFC 4271 §8.2.2 finite-state-machine states, as bird names them (lower-cased)."""

    IDLE = "idle"
    CONNECT = "connect"
    ACTIVE = "active"
    OPENSENT = "opensent"
    OPENCONFIRM = "openconfirm"
    ESTABLISHED = "established"
    DOWN = "down"  # the agent or bird is not running the session at all


@dataclass(frozen=True, slots=True)
class LearnedRoute:
    """A route a gateway learned from a peer: ``dst`` via ``next_hop`` (on the uplink)."""

    dst: str  # normalised prefix "a.b.c.d/n"
    next_hop: str  # IPv4 address on the uplink's subnet
    peer_id: str  # the bgp_peer it came from


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A session's state as the gateway agent last saw it."""

    peer_id: str
    port_id: str  # the uplink port the session runs on
    state: SessionState
    since: float  # wall-clock seconds of the last state change
    routes: int  # prefixes learned and installed
    bfd_up: bool | None = None  # None: no BFD on this session


__all__ = [
    "AS_MAX",
    "AS_MIN",
    "BgpNetwork",
    "BgpPeer",
    "LearnedRoute",
    "PeerStatus",
    "SessionState",
]
