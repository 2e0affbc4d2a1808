"""The agent's tunnel peers: this host's underlay address, the other hosts of its tunnel
zones and the datapath's tunnel port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from netloom.agent.logs import kv, log
from netloom.datapath.base import Datapath, TunnelSettings
from netloom.errors import NetloomError
from netloom.model.records import TunnelZone
from netloom.packet.util import int_to_ip, ip_to_int

if TYPE_CHECKING:  # the core imports this module
    from netloom.agent.core import AgentConfig


class TunnelPeers:
    """Tunnel zone membership -> peer addresses; sets up the tunnel once the local address is
    known (given, or this host's address in a zone)."""

    def __init__(self, dp: Datapath, cfg: AgentConfig) -> None:
        self._dp = dp
        self._host_id = cfg.host_id
        self._fixed_ip = bool(cfg.underlay_ip)
        self._udp_port = cfg.tunnel_udp_port
        self._mtu = cfg.sim.overlay_mtu
        self._bpf_encap = cfg.vxlan_in_datapath
        underlay_ip = cfg.underlay_ip
        self._zones: dict[str, dict[str, str]] = {}  # zone id -> {host id: ip}
        self.host_ip: dict[str, int] = {}  # peer host -> underlay ip (host order)
        self.local_ip = ip_to_int(underlay_ip) if underlay_ip else 0
        self.port = 0  # the datapath's tunnel port (0: not set up yet)

    def update_zone(self, zone_id: str, zone: TunnelZone | None) -> set[object]:
        """Recompute the peer set; returns the host tags whose address changed."""
        if zone is None:
            self._zones.pop(zone_id, None)
        else:
            self._zones[zone_id] = {m.host_id: m.ip for m in zone.members}
        peers: dict[str, int] = {}
        for members in self._zones.values():
            if self._host_id not in members:
                continue
            if not self._fixed_ip:
                self.local_ip = ip_to_int(members[self._host_id])
            for h, ip in members.items():
                if h != self._host_id:
                    peers.setdefault(h, ip_to_int(ip))
        changed: set[object] = {
            ("host", h)
            for h in set(peers) | set(self.host_ip)
            if peers.get(h) != self.host_ip.get(h)
        }
        if changed:
            log.info("tunnel peers %s", kv(peers=len(peers), changed=len(changed)))
        self.host_ip = peers
        self.ensure()
        return changed

    def ensure(self) -> None:
        """Set up the tunnel if the local address is known and it is not set up yet."""
        if self.port or not self.local_ip:
            return
        settings = TunnelSettings(
            self.local_ip, self._udp_port, self._mtu, bpf_encap=self._bpf_encap
        )
        try:
            self.port = self._dp.set_tunnel(settings)
        except NetloomError as exc:
            log.error("tunnel setup failed %s", kv(error=exc))
            return
        log.info("tunnel %s", kv(local=int_to_ip(self.local_ip), dp_port=self.port))


__all__ = ["TunnelPeers"]
