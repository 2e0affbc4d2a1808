"""The agent's port bindings: virtual ports bound to this host, plugged into the datapath."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from netloom.agent.logs import kv, log
from netloom.datapath.base import Datapath, PortKind
from netloom.errors import NetloomError
from netloom.ratelimit import PortLimiter
from netloom.sim.uplink import sidecar_id


@dataclass(slots=True)
class Binding:
    port_id: str
    ifname: str
    tunnel_key: int | None
    kind: PortKind = PortKind.VM  # UPLINK: a router port on a NIC (delivered by plain redirect)
    dp_port: int = 0  # 0: not plugged yet (interface missing: retried on tick)


class PortBindings:
    """Port id -> binding, datapath port -> port id; iterates over the bound port ids."""

    def __init__(self, dp: Datapath, mtu: int, limiter: PortLimiter) -> None:
        self._dp = dp
        self._mtu = mtu
        self._limiter = limiter
        self._by_port: dict[str, Binding] = {}
        self._by_dp: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_port)

    def __contains__(self, port_id: object) -> bool:
        return port_id in self._by_port

    def get(self, port_id: str) -> Binding | None:
        return self._by_port.get(port_id)

    def port_of(self, dp_port: int) -> str | None:
        """The port bound to datapath port ``dp_port``, if any."""
        return self._by_dp.get(dp_port)

    def dp_ports(self) -> dict[str, int]:
        return {p: b.dp_port for p, b in self._by_port.items()}

    def bind(
        self, port_id: str, ifname: str, tunnel_key: int | None, kind: PortKind = PortKind.VM
    ) -> None:
        """Plug ``ifname`` as ``port_id``: a VM's veth (delivery into the peer namespace) or an
        uplink NIC (delivery out of the NIC)."""
        b = Binding(port_id, ifname, tunnel_key, kind)
        self._by_port[port_id] = b
        self.plug(b)

    def plug(self, b: Binding) -> None:
        try:
            b.dp_port = self._dp.add_port(b.ifname, b.kind, mtu=self._mtu)
            if b.tunnel_key:
                self._dp.bind_tunnel_key(b.tunnel_key, b.dp_port)
        except NetloomError as exc:
            b.dp_port = 0
            log.warning("bind failed %s", kv(port=b.port_id, ifname=b.ifname, error=exc))
            return
        self._by_dp[b.dp_port] = b.port_id
        log.info(
            "bound %s",
            kv(
                port=b.port_id,
                ifname=b.ifname,
                kind=b.kind.name.lower(),
                dp_port=b.dp_port,
                vni=b.tunnel_key,
            ),
        )

    def unbind(self, b: Binding) -> None:
        del self._by_port[b.port_id]
        if b.dp_port:
            self._unplug(b)
            log.info("unbound %s", kv(port=b.port_id, ifname=b.ifname))

    def _unplug(self, b: Binding) -> None:
        self._by_dp.pop(b.dp_port, None)
        self._limiter.forget(b.dp_port)
        try:
            if b.tunnel_key:
                self._dp.unbind_tunnel_key(b.tunnel_key)
            self._dp.remove_port(b.dp_port)
        except NetloomError as exc:
            log.warning("unbind failed %s", kv(port=b.port_id, error=exc))
        b.dp_port = 0

    def set_sidecar(self, uplink_id: str, ifname: str | None) -> bool:
        """Plug an uplink's routing sidecar veth (``ifname``) as its pseudo port, or unplug it
        (None); True when something changed."""
        sid = sidecar_id(uplink_id)
        cur = self._by_port.get(sid)
        if cur is not None and cur.ifname == ifname:
            return False
        if cur is not None:
            self.unbind(cur)
        if ifname is not None:
            self.bind(sid, ifname, None, PortKind.VM)
        return cur is not None or ifname is not None

    def replug(self) -> set[str]:
        """Unplug the bindings whose interface is gone (a VM's tap goes with the VM), retry
        plugging those whose interface was missing; the ports whose datapath port changed."""
        changed = set()
        for b in list(self._by_port.values()):
            if b.dp_port and not self._dp.port_present(b.dp_port):
                log.info("interface gone %s", kv(port=b.port_id, ifname=b.ifname))
                self._unplug(b)
                changed.add(b.port_id)
            if not b.dp_port:
                self.plug(b)
                if b.dp_port:
                    changed.add(b.port_id)
        return changed


__all__ = ["Binding", "PortBindings"]
