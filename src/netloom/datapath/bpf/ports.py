"""The datapath's ports: ``nl_ports`` (ifindex -> kind, MTU), their tc attachment, and the
tunnel keys that deliver a VNI to a port (``nl_vni``)."""

from __future__ import annotations

from netloom.datapath.base import PortInfo, PortKind, check_mtu, port_kind
from netloom.datapath.bpf import abi
from netloom.datapath.bpf.attach import Plumbing
from netloom.datapath.bpf.loader import PORT_PROG, PROG
from netloom.datapath.bpf.maps import BpfMap
from netloom.errors import InvalidInput, NotFound

PORT_INJECT = 5  # the injection veth's receiving end (nl_port_kind)
PORT_UNDERLAY = 6  # the NIC holding the tunnel's local IP: VXLAN decap in BPF (nl_port_kind)


def _key(n: int) -> bytes:
    return n.to_bytes(4, "little")


class PortTable:
    """Ports by ifindex, mirrored in ``nl_ports``; internal ports (injection, underlay) are
    in the map but not in :meth:`list`."""

    def __init__(self, ports: BpfMap, vni: BpfMap, net: Plumbing) -> None:
        self._map, self._vni, self._net = ports, vni, net
        self._ports: dict[int, PortInfo] = {}

    def adopt(self) -> str | None:
        """Rebuild the table from ``nl_ports``; the name of the underlay NIC, if any."""
        underlay = None
        for k, v in self._map.items(4, abi.PORT.size):
            ifindex = int.from_bytes(k, "little")
            kind, mtu = abi.PORT.unpack(v)
            if kind == PORT_UNDERLAY:
                underlay = self._net.ifname(ifindex)
            elif kind != PORT_INJECT:
                name = self._net.ifname(ifindex) or f"if{ifindex}"
                self._ports[ifindex] = PortInfo(ifindex, name, PortKind(kind), mtu)
        return underlay

    def add(self, ifname: str, kind: PortKind, *, mtu: int | None = None) -> int:
        kind = port_kind(kind)
        check_mtu(mtu)
        ifindex = self._net.ifindex(ifname)
        if mtu is None:
            mtu = self._net.mtu(ifname)
        self._map.update(_key(ifindex), abi.PORT.pack(int(kind), mtu))
        self._net.attach(ifname, PROG if kind == PortKind.TUNNEL else PORT_PROG)
        self._ports[ifindex] = PortInfo(ifindex, ifname, PortKind(kind), mtu)
        return ifindex

    def remove(self, port: int) -> None:
        info = self._ports.pop(port, None)
        if info is None:
            raise NotFound(f"no port {port}", field="port")
        self._net.detach(info.ifname)
        self._map.delete(_key(port))

    def present(self, port: int) -> bool:
        """The port's interface still exists under its name (ifindexes are not reused soon)."""
        info = self._ports.get(port)
        return info is not None and self._net.ifname(port) == info.ifname

    def detach_all(self) -> None:
        """Remove every port's attachment (the table and the map stay)."""
        for info in self._ports.values():
            self._net.detach(info.ifname)

    def list(self) -> list[PortInfo]:
        return list(self._ports.values())

    def set_internal(self, ifindex: int, kind: int) -> None:
        """Enter an internal port (``PORT_INJECT``, ``PORT_UNDERLAY``) in ``nl_ports``."""
        self._map.update(_key(ifindex), abi.PORT.pack(kind, 0))

    def forget(self, ifindex: int) -> None:
        self._map.delete(_key(ifindex))

    def bind_tunnel_key(self, vni: int, port: int) -> None:
        if not 0 < vni < 1 << 24:
            raise InvalidInput(f"VNI {vni} out of range (24 bits, RFC 7348)", field="vni")
        if port not in self._ports:
            raise NotFound(f"no port {port}", field="port")
        self._vni.update(_key(vni), abi.VNI_DST.pack(port, int(self._ports[port].kind)))

    def unbind_tunnel_key(self, vni: int) -> None:
        self._vni.delete(_key(vni))


__all__ = ["PORT_INJECT", "PORT_UNDERLAY", "PortTable"]
