"""The agent's port bindings: virtual ports bound to this host, plugged into the datapath."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from netloom.agent.logs import kv, log
from netloom.datapath.base import Datapath, PortKind
from netloom.errors import NetloomError
from netloom.ratelimit import PortLimiter


@dataclass(slots=True)
class Binding:
    port_id: str
    ifname: str
    tunnel_key: int | None
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

    def bind(self, port_id: str, ifname: str, tunnel_key: int | None) -> None:
        b = Binding(port_id, ifname, tunnel_key)
        self._by_port[port_id] = b
        self.plug(b)

    def plug(self, b: Binding) -> None:
        try:
            b.dp_port = self._dp.add_port(b.ifname, PortKind.VM, mtu=self._mtu)
            if b.tunnel_key:
                self._dp.bind_tunnel_key(b.tunnel_key, b.dp_port)
        except NetloomError as exc:
            b.dp_port = 0
            log.warning("bind failed %s", kv(port=b.port_id, ifname=b.ifname, error=exc))
            return
        self._by_dp[b.dp_port] = b.port_id
        log.info(
            "bound %s", kv(port=b.port_id, ifname=b.ifname, dp_port=b.dp_port, vni=b.tunnel_key)
        )

    def unbind(self, b: Binding) -> None:
        del self._by_port[b.port_id]
        if not b.dp_port:
            return
        self._by_dp.pop(b.dp_port, None)
        self._limiter.forget(b.dp_port)
        try:
            if b.tunnel_key:
                self._dp.unbind_tunnel_key(b.tunnel_key)
            self._dp.remove_port(b.dp_port)
        except NetloomError as exc:
            log.warning("unbind failed %s", kv(port=b.port_id, error=exc))
        log.info("unbound %s", kv(port=b.port_id, ifname=b.ifname))

    def replug(self) -> None:
        """Retry plugging the bindings whose interface was missing."""
        for b in list(self._by_port.values()):
            if not b.dp_port:
                self.plug(b)


__all__ = ["Binding", "PortBindings"]
