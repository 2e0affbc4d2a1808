"""The gateway of one host: which uplinks need a sidecar (a pure function of the records) and
the sidecars running for them (started, reconfigured, stopped to match).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping

from netloom.errors import NetloomError
from netloom.gateway.config import SidecarSpec
from netloom.gateway.metrics import GatewayMetrics
from netloom.gateway.report import BgpReporter
from netloom.gateway.sidecar import PlugHook, Sidecar, SidecarSettings
from netloom.model.bgp import BgpNetwork, BgpPeer
from netloom.model.records import Port

log = logging.getLogger("netloom.gateway")


def desired(
    ports: Iterable[Port],
    peers: Iterable[BgpPeer],
    networks: Iterable[BgpNetwork],
    host_id: str,
) -> dict[str, SidecarSpec]:
    """Uplink port id -> its sidecar: every router port bound to ``host_id`` with an address
    and a MAC whose router has BGP peers on the port's subnet; the router's networks go to
    each of its uplinks."""
    peers_of: dict[str, list[BgpPeer]] = {}
    for p in peers:
        peers_of.setdefault(p.router_id, []).append(p)
    nets_of: dict[str, list[BgpNetwork]] = {}
    for n in networks:
        nets_of.setdefault(n.router_id, []).append(n)
    out: dict[str, SidecarSpec] = {}
    for port in ports:
        if port.type != "router" or port.host_id != host_id or not port.interface_name:
            continue
        if port.address is None or port.mac is None:
            continue
        net = ipaddress.IPv4Interface(port.address).network
        mine = [
            p for p in peers_of.get(port.device_id, ()) if ipaddress.IPv4Address(p.address) in net
        ]
        if mine:
            out[port.id] = SidecarSpec(
                port.id,
                port.address,
                port.mac,
                tuple(sorted(mine, key=lambda p: p.id)),
                tuple(sorted(nets_of.get(port.device_id, ()), key=lambda n: n.id)),
            )
    return out


class Gateway:
    """The sidecars of this host, kept equal to what :meth:`apply` was last given."""

    def __init__(
        self,
        reporter: BgpReporter,
        on_plug: PlugHook,
        metrics: GatewayMetrics | None = None,
        settings: SidecarSettings | None = None,
    ) -> None:
        self.reporter = reporter
        self.on_plug = on_plug
        self.metrics = metrics or GatewayMetrics()
        self.settings = settings or SidecarSettings()
        self.sidecars: dict[str, Sidecar] = {}

    async def apply(self, specs: Mapping[str, SidecarSpec]) -> None:
        """Start, reconfigure and stop sidecars so that exactly ``specs`` run."""
        for port_id in [p for p in self.sidecars if p not in specs]:
            await self.sidecars.pop(port_id).stop()
        for port_id, spec in specs.items():
            cur = self.sidecars.get(port_id)
            if cur is not None and (cur.spec.address, cur.spec.mac) != (spec.address, spec.mac):
                await self.sidecars.pop(port_id).stop()  # a new address: a new sidecar
                cur = None
            if cur is not None:
                await cur.update(spec)
                continue
            sc = Sidecar(spec, self.settings, self.reporter, self.metrics, self.on_plug)
            try:
                await sc.start()
            except NetloomError as exc:  # nothing half-made stays; the next change retries
                log.warning("sidecar failed port=%s error=%s", port_id, exc)
                await sc.stop()
            else:
                self.sidecars[port_id] = sc

    async def close(self) -> None:
        """Stop every sidecar (namespaces, bird processes and veths removed)."""
        await self.apply({})


__all__ = ["Gateway", "desired"]
