"""The tunnel: the collect_md VXLAN device (a port of kind TUNNEL) and, when the tunnel's
local address is on an interface here, the underlay NIC where the program decapsulates VXLAN
itself (the fast path; else the kernel device does it)."""

from __future__ import annotations

import socket

from netloom.datapath.base import PortKind, TunnelSettings
from netloom.datapath.bpf.attach import Plumbing
from netloom.datapath.bpf.config import ConfigMap
from netloom.datapath.bpf.loader import UNDERLAY_PROG
from netloom.datapath.bpf.ports import PORT_UNDERLAY, PortTable
from netloom.errors import InvalidInput, NotFound

DEVICE_PREFIX = "nlvx"  # tunnel devices the datapath creates (and deletes on destroy)


class Tunnel:
    """Tunnel device, underlay NIC and the tunnel fields of ``nl_config``."""

    def __init__(self, net: Plumbing, ports: PortTable, config: ConfigMap) -> None:
        self._net, self._ports, self._config = net, ports, config
        self.underlay: str | None = None

    def set(self, settings: TunnelSettings) -> int:
        """Create (or reuse) the VXLAN device, make it a port, find the underlay; the port."""
        if not 0 < settings.udp_port < 65536:
            raise InvalidInput("bad VXLAN UDP port", field="udp_port")
        dev = settings.ifname
        try:
            self._net.ifindex(dev)
        except NotFound:
            dstport = str(settings.udp_port)
            self._net.run(
                "ip",
                "link",
                "add",
                dev,
                "type",
                "vxlan",
                "external",
                "dstport",
                dstport,
                "nolearning",
            )
        self._net.run("ip", "link", "set", dev, "mtu", str(settings.mtu), "up")
        port = self._ports.add(dev, PortKind.TUNNEL, mtu=settings.mtu)
        found = self.find_underlay(settings.local_ip) if settings.bpf_encap else None
        underlay, prefixlen = found if found else (None, 0)
        self._set_underlay(underlay)
        self._config.set_tunnel(
            tunnel_ifindex=port,
            local_ip=settings.local_ip,
            udp_port=settings.udp_port,
            tunnel_mtu=settings.mtu,
            underlay_ifindex=self._net.ifindex(underlay) if underlay else 0,
            underlay_prefixlen=prefixlen,
        )
        return port

    def find_underlay(self, local_ip: int) -> tuple[str, int] | None:
        """The interface holding the tunnel's local address and the address's prefix length
        (None: no such interface here, so VXLAN goes through the kernel device only)."""
        addr = socket.inet_ntoa(local_ip.to_bytes(4, "big"))
        out = self._net.run("ip", "-o", "-4", "addr", "show", check=False).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[2] == "inet" and fields[3].split("/")[0] == addr:
                plen = fields[3].split("/")[1] if "/" in fields[3] else "32"
                return fields[1].split("@")[0], int(plen)
        return None

    def _set_underlay(self, ifname: str | None) -> None:
        if ifname == self.underlay:
            if ifname is not None:
                self._net.attach(ifname, UNDERLAY_PROG)
            return
        if self.underlay is not None:
            self.detach_underlay()
        if ifname is not None:
            self._ports.set_internal(self._net.ifindex(ifname), PORT_UNDERLAY)
            self._net.attach(ifname, UNDERLAY_PROG)
        self.underlay = ifname

    def detach_underlay(self) -> None:
        """Remove only our filter: the underlay NIC is not ours (other filters stay)."""
        if self.underlay is None:
            return
        self._net.detach_filter(self.underlay)
        try:
            ifindex: int | None = self._net.ifindex(self.underlay)
        except NotFound:
            ifindex = None
        if ifindex is not None:
            self._ports.forget(ifindex)
        self.underlay = None

    def destroy(self) -> None:
        """Detach the underlay, delete the tunnel devices this datapath created."""
        self.detach_underlay()
        for info in self._ports.list():
            if info.kind == PortKind.TUNNEL and info.ifname.startswith(DEVICE_PREFIX):
                self._net.run("ip", "link", "del", info.ifname, check=False)


__all__ = ["DEVICE_PREFIX", "Tunnel"]
