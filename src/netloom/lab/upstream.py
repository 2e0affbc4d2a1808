"""The upstream router's bird2 configuration, as a pure function of the lab's plan.

The upstream stands for the provider's edge router that a cloud's gateways peer with: its own
AS, one eBGP session per gateway uplink, the routes it announces to the gateways (a default
route and the external network, originated as blackholes in bird's own table, so nothing but
the BGP routes ever reaches the kernel) and an import filter that accepts only the cloud's
public range (prefix filtering on customer sessions, RFC 7454 §6.2). ``merge paths yes`` in the
kernel protocol installs the equal routes learned from several gateways as one multipath
route (ECMP); the namespace's ``fib_multipath_hash_policy=1`` hashes it by the 5-tuple. BFD
(RFC 5880) runs on the sessions that ask for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netloom.errors import InvalidInput


@dataclass(frozen=True)
class UpstreamPeer:
    """One eBGP session of the upstream: to ``address`` (a gateway's uplink port) from
    ``local_address``, the gateway side in AS ``asn``."""

    name: str  # bird's protocol name: gw1, gw2 ...
    address: str
    local_address: str
    asn: int
    bfd: bool = False


@dataclass(frozen=True)
class UpstreamConfig:
    router_id: str
    local_as: int
    peers: tuple[UpstreamPeer, ...]
    announce: tuple[str, ...]  # prefixes announced to every gateway
    accept: tuple[str, ...]  # prefixes (and their subnets) accepted from the gateways
    hold_time: int = 3
    keepalive: int = 1
    bfd_interval_ms: int = 100
    bfd_multiplier: int = 5


def _prefix(p: str) -> str:
    try:
        return str(ipaddress.IPv4Network(p))
    except ValueError as exc:
        raise InvalidInput(f"bad prefix {p!r}: {exc}", field="prefix") from None


def _check(cfg: UpstreamConfig) -> None:
    ipaddress.IPv4Address(cfg.router_id)
    names = [p.name for p in cfg.peers]
    if len(set(names)) != len(names):
        raise InvalidInput(f"upstream peers named twice: {names}", field="peers")
    for p in cfg.peers:
        if not p.name.isidentifier():
            raise InvalidInput(f"bad bird protocol name {p.name!r}", field="peers")
        ipaddress.IPv4Address(p.address)
        ipaddress.IPv4Address(p.local_address)
    if 0 < cfg.hold_time < 3 or (cfg.hold_time and cfg.keepalive * 3 > cfg.hold_time):
        raise InvalidInput("hold time 0 or >= 3 s, keepalive <= a third of it (RFC 4271)")


def render_bird_conf(cfg: UpstreamConfig) -> str:
    """bird.conf (bird 2.x) of the upstream router."""
    _check(cfg)
    announce = "\n".join(f"  route {_prefix(p)} blackhole;" for p in cfg.announce)
    accept = ", ".join(f"{_prefix(p)}+" for p in cfg.accept)
    lines = [
        "# the lab's upstream router (netloom lab: lab/upstream.py renders this file)",
        "log stderr all;",
        f"router id {cfg.router_id};",
        "",
        "protocol device {",
        "}",
        "",
        "# only BGP routes reach the kernel; equal ones from several gateways as one ECMP route",
        "protocol kernel {",
        "  ipv4 {",
        "    import none;",
        "    export where source = RTS_BGP;",
        "  };",
        "  merge paths yes;",
        "}",
        "",
        "protocol static announce {",
        "  ipv4;",
        announce,
        "}",
        "",
        "filter from_gateways {",
        f"  if net ~ [ {accept} ] then accept;" if accept else "",
        "  reject;",
        "}",
        "",
        "filter to_gateways {",
        '  if proto = "announce" then accept;',
        "  reject;",
        "}",
        "",
        *_bfd(cfg),
        "template bgp uplink {",
        f"  local as {cfg.local_as};",
        f"  hold time {cfg.hold_time};",
        f"  keepalive time {cfg.keepalive};",
        "  connect delay time 1;",
        "  connect retry time 1;",
        "  error wait time 1, 4;",
        "  ipv4 {",
        "    import filter from_gateways;",
        "    export filter to_gateways;",
        "  };",
        "}",
        "",
        *(_peer(p) for p in cfg.peers),
    ]
    return "\n".join(lines) + "\n"


def _bfd(cfg: UpstreamConfig) -> list[str]:
    if not any(p.bfd for p in cfg.peers):
        return []
    return [
        "protocol bfd {",
        '  interface "*" {',
        f"    min rx interval {cfg.bfd_interval_ms} ms;",
        f"    min tx interval {cfg.bfd_interval_ms} ms;",
        f"    multiplier {cfg.bfd_multiplier};",
        "  };",
        "}",
        "",
    ]


def _peer(p: UpstreamPeer) -> str:
    return (
        f"protocol bgp {p.name} from uplink {{\n"
        f"  neighbor {p.address} as {p.asn};\n"
        f"  source address {p.local_address};\n"
        f"  bfd {'on' if p.bfd else 'off'};\n"
        "}\n"
    )


__all__ = ["UpstreamConfig", "UpstreamPeer", "render_bird_conf"]
