"""The program's settings: the one entry of ``nl_config`` (``struct nl_config``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from netloom.datapath.base import UpcallLimit
from netloom.datapath.bpf import abi
from netloom.datapath.bpf.maps import BpfMap
from netloom.datapath.conntrack import ConntrackSettings

_KEY = bytes(4)


@dataclass
class Config:
    """``struct nl_config`` without its ABI version (always this code's when written)."""

    tunnel_ifindex: int = 0
    local_ip: int = 0  # host order
    trace: bool = False  # record the last verdict in nl_verdict (tests)
    underlay_ifindex: int = 0  # non-zero: VXLAN encap/decap in BPF on this device
    udp_port: int = 0
    underlay_mask: int = 0  # netmask of the underlay's subnet
    upcall_cost_ns: int = 0  # ns of credit one upcall costs (1e9/rate); 0 = unlimited
    upcall_burst: int = 0
    tunnel_mtu: int = 0  # 0 = unchecked
    ct_tcp_ms: int = 21_600_000  # conntrack lifetimes (ConntrackSettings, in ms)
    ct_closing_ms: int = 10_000
    ct_other_ms: int = 60_000

    def pack(self) -> bytes:
        return abi.CONFIG.pack(
            abi.ABI_VERSION,
            self.tunnel_ifindex,
            self.local_ip,
            int(self.trace),
            self.underlay_ifindex,
            self.udp_port,
            self.underlay_mask,
            self.upcall_cost_ns,
            self.upcall_burst,
            self.tunnel_mtu,
            self.ct_tcp_ms,
            self.ct_closing_ms,
            self.ct_other_ms,
            0,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Config:
        _abi, tun, ip, trace, ul, port, mask, cost, burst, mtu, *ct, _ = abi.CONFIG.unpack(raw)
        c = cls(tun, ip, bool(trace), ul, port, mask, cost, burst, mtu)
        if all(ct):
            c.ct_tcp_ms, c.ct_closing_ms, c.ct_other_ms = ct
        return c


def prefix_mask(prefixlen: int) -> int:
    """The IPv4 netmask of a prefix length (0: none)."""
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF if prefixlen else 0


class ConfigMap:
    """Keeps ``nl_config`` and a copy of it; every change is written through."""

    def __init__(self, m: BpfMap) -> None:
        self._map = m
        self.config = Config()

    def start(self, *, trace: bool) -> None:
        """Adopt what the pinned map holds (the tunnel survives a restart), set ``trace``."""
        raw = self._map.lookup(_KEY, abi.CONFIG.size)
        current = Config.unpack(raw) if raw else Config()
        self._write(dataclasses.replace(current, trace=trace))

    def set_tunnel(
        self,
        *,
        tunnel_ifindex: int,
        local_ip: int,
        udp_port: int,
        tunnel_mtu: int,
        underlay_ifindex: int = 0,
        underlay_prefixlen: int = 0,
    ) -> None:
        """The tunnel port and address; the underlay NIC and its subnet (0: none)."""
        self._write(
            dataclasses.replace(
                self.config,
                tunnel_ifindex=tunnel_ifindex,
                local_ip=local_ip,
                underlay_ifindex=underlay_ifindex,
                udp_port=udp_port,
                underlay_mask=prefix_mask(underlay_prefixlen),
                tunnel_mtu=tunnel_mtu,
            )
        )

    def set_upcall_limit(self, limit: UpcallLimit | None) -> None:
        """The per-port token bucket (``upcall_admit`` in netloom.bpf.c)."""
        cost = max(1, round(1e9 / limit.rate)) if limit else 0
        burst = limit.burst if limit else 0
        self._write(dataclasses.replace(self.config, upcall_cost_ns=cost, upcall_burst=burst))

    def set_conntrack(self, settings: ConntrackSettings) -> None:
        """The conntrack lifetimes (the table's size is fixed when the object is loaded)."""
        ms = (
            round(settings.tcp_established_s * 1000),
            round(settings.tcp_closing_s * 1000),
            round(settings.other_s * 1000),
        )
        c = dataclasses.replace(self.config)
        c.ct_tcp_ms, c.ct_closing_ms, c.ct_other_ms = ms
        self._write(c)

    def _write(self, config: Config) -> None:
        self._map.update(_KEY, config.pack())
        self.config = config


__all__ = ["Config", "ConfigMap", "prefix_mask"]
