"""The two paths ``bench northsouth`` compares, as ``bench perf`` setups
(:class:`~netloom.bench.perf.setups.Setup`), both from the lab's external host:

* ``netloom``: to a VM's floating IP: the upstream router, a gateway's uplink (the BPF
  datapath, DNAT, VXLAN), the lab's underlay switch, the compute host, the VM;
* ``bare`` (the baseline every ratio is to): to a host reached by plain Linux routing: the
  same upstream, a cable like an uplink (``BENCH_ROUTED_UPLINK``) to a namespace that routes
  with the kernel (the "gateway"), a switch namespace built as the lab's underlay switch
  (:func:`netloom.bench.perf.setups.cable`), the server host. Same MTU, same cable kinds
  (veths, a bridge without netfilter hooks): what differs is netloom.
"""

from __future__ import annotations

from netloom.bench.northsouth.world import Target, World
from netloom.bench.perf.overlay_setup import agents_observe, agents_upcalls
from netloom.bench.perf.setups import Endpoints, NamespaceSetup, cable
from netloom.errors import DatapathError
from netloom.lab import netns, nsexec
from netloom.lab.addressing import BENCH_ROUTED_UPLINK
from netloom.lab.outside import sysctls

ROUTED_IF = "routed0"  # the upstream's end of the baseline's cable
WARMUP_PORT = 5201


class NetloomPath:
    """External host -> a VM's floating IP through the lab's gateways."""

    name = "netloom"

    def __init__(self, world: World, target: Target) -> None:
        self.world = world
        self.target = target

    def up(self) -> Endpoints:
        if not self.world.reachable(self.target, WARMUP_PORT):
            raise DatapathError(
                f"the external host cannot reach {self.target.floating_ip} through the gateways"
            )
        return Endpoints(self.world.external, self.target.netns, self.target.floating_ip)

    def down(self) -> None:
        """The lab goes with the benchmark (:meth:`World.down`)."""

    def agent_pids(self) -> list[int]:
        return self.world.agent_pids()

    def upcalls(self) -> int | None:
        return agents_upcalls(self.world.host_namespaces())

    def observe(self) -> dict[str, float] | None:
        return agents_observe(self.world.host_namespaces(), self.agent_pids())


class RoutedPath(NamespaceSetup):
    """External host -> a host behind a kernel-routing namespace (see the module docstring)."""

    name = "bare"

    def __init__(self, world: World) -> None:
        super().__init__(world.lab.state.mtu, "switch")
        self.world = world

    def _build(self) -> Endpoints:
        router, server = self.ns.add("rgw"), self.ns.add("rsrv")
        ips = cable(self.ns, (router, server), self.mtu, "switch", "rsw")
        up, plen = self.world.upstream, BENCH_ROUTED_UPLINK.prefixlen
        up_ip, router_ip = (str(BENCH_ROUTED_UPLINK.network_address + i) for i in (1, 2))
        netns.create_veth(up, ROUTED_IF, router, "uplink0", mtu=self.mtu, may_exist=False)
        netns.add_address(up, ROUTED_IF, f"{up_ip}/{plen}")
        netns.add_address(router, "uplink0", f"{router_ip}/{plen}")
        sysctls(router, {"net/ipv4/ip_forward": "1"})
        netns.add_default_route(router, up_ip)
        netns.add_default_route(server, ips[0])
        nsexec.run(up, ["ip", "route", "replace", f"{ips[1]}/32", "via", router_ip])
        return Endpoints(self.world.external, server, ips[1])


__all__ = ["ROUTED_IF", "NetloomPath", "RoutedPath"]
