"""The lab ``netloom bench northsouth`` measures: ``lab up --datapath bpf --gateways N`` with
compute hosts whose first VM has a floating IP, every BGP session established and every agent
heartbeating before anything is measured.

The lab is called ``nlb<5 hex>`` (unique: another lab may run on the machine), and all of it is
in its write-ahead state file, so :meth:`World.down` (or, after a crash, ``netloom lab down
--name nlb...``) removes everything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass

from netloom.agent.options import DEFAULT_METRICS_PORT as METRICS_PORT
from netloom.bench.procs import AGENT_ALIVE_TIMEOUT_S, Progress
from netloom.errors import DatapathError, LabError
from netloom.lab import nsexec, outside, probes
from netloom.lab.addressing import PUBLIC_NET, UPLINK_IF
from netloom.lab.lab import Lab

BGP_TIMEOUT_S = 30.0
WARMUP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Gateway:
    """One gateway host as the bench sees it."""

    index: int
    netns: str  # the gateway host's namespace
    upstream_if: str  # its uplink cable's end in the upstream router (gwG)
    port_ip: str  # the uplink port's address (the upstream's next hop to it)
    peer_id: str  # the bgp_peer of its uplink


@dataclass(frozen=True)
class Target:
    """A VM reachable from outside: its floating IP and its namespace."""

    floating_ip: str
    netns: str


class World:
    """The lab of the benchmark (see the module docstring)."""

    def __init__(self, gateways: int, hosts: int, *, bfd: bool = True) -> None:
        self.n_gateways = gateways
        self.n_hosts = hosts
        self.bfd = bfd
        self.lab = Lab.create(f"nlb{secrets.token_hex(3)[:5]}")
        self.gateways: list[Gateway] = []
        self.targets: list[Target] = []
        self.dead: set[int] = set()  # gateways killed (failover)

    def up(self, progress: Progress) -> None:
        """Build the lab; wait for sessions and agents; a handshake to every floating IP."""
        lab = self.lab
        progress(f"lab {lab.name}: {self.n_hosts} hosts, {self.n_gateways} gateways")
        lab.up(self.n_hosts, 1, datapath="bpf", gateways=self.n_gateways, bfd=self.bfd)
        peers = {p["name"]: p["id"] for p in lab.api().list("bgp_peers")}
        hosts = {h.name: h.netns for h in lab.state.hosts}
        self.gateways = [
            Gateway(
                u.index,
                hosts[u.host],
                u.upstream_if,
                u.port_address.split("/")[0],
                peers[f"gw{u.index}"],
            )
            for u in lab.state.uplinks
        ]
        self.targets = [Target(v.floating_ip, v.netns) for v in lab.state.vms if v.floating_ip]
        self._wait_alive()
        self.settle()

    def down(self) -> None:
        self.lab.down()

    # -- names -------------------------------------------------------------------------------

    @property
    def external(self) -> str:
        return outside.require(self.lab.state.outside, self.lab.name).external_netns

    @property
    def upstream(self) -> str:
        return outside.require(self.lab.state.outside, self.lab.name).upstream_netns

    @property
    def namespaces(self) -> list[str]:
        return list(self.lab.state.netns)

    def agent_pids(self) -> list[int]:
        return [p.pid for p in self.lab.state.processes if p.role == "agent"]

    def agent_pid(self, netns: str) -> int:
        for p in self.lab.state.processes:
            if p.role == "agent" and p.netns == netns:
                return p.pid
        raise LabError(f"no agent recorded in {netns}")

    @property
    def alive(self) -> list[Gateway]:
        """The gateways not killed."""
        return [g for g in self.gateways if g.index not in self.dead]

    def host_namespaces(self) -> list[str]:
        return [h.netns for h in self.lab.state.hosts]

    def metrics(self, netns: str) -> str:
        """The Prometheus text of the agent in ``netns``."""
        return probes.fetch_metrics(netns, METRICS_PORT)

    # -- failures ----------------------------------------------------------------------------

    def kill_gateway(self, gw: Gateway) -> None:
        """The gateway dies: its agent SIGKILLed (its bird goes with it: parent-death signal)
        and its uplink NIC down."""
        self.dead.add(gw.index)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.agent_pid(gw.netns), signal.SIGKILL)
        nsexec.run(gw.netns, ["ip", "link", "set", UPLINK_IF, "down"])

    # -- waiting -----------------------------------------------------------------------------

    def _wait_alive(self) -> None:
        api = self.lab.api()
        deadline = time.monotonic() + AGENT_ALIVE_TIMEOUT_S
        while True:
            alive = {h["name"]: bool(h.get("alive")) for h in api.list("hosts")}
            if alive and all(alive.values()):
                return
            if time.monotonic() > deadline:
                dead = ", ".join(n for n, a in alive.items() if not a)
                raise DatapathError(f"agents of {dead} not alive after {AGENT_ALIVE_TIMEOUT_S} s")
            time.sleep(0.2)

    def settle(self) -> float:
        """Until every live uplink's session is established as the upstream's bird sees it, and
        its route to the public range has one next hop per gateway (a loaded machine can miss
        BFD's 500 ms and drop a session for a few seconds); the seconds it took."""
        start = time.monotonic()
        rec = outside.require(self.lab.state.outside, self.lab.name)
        want = sorted(g.port_ip for g in self.alive)
        deadline = time.monotonic() + BGP_TIMEOUT_S
        while True:
            seen = probes.bird_protocols(rec.bird_socket)
            up = all(
                seen.get(f"gw{g.index}", ("", "", ""))[2].startswith("Established")
                for g in self.alive
            )
            if up and sorted(self.public_nexthops()) == want:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise DatapathError(
                    f"BGP not up with every gateway after {BGP_TIMEOUT_S:.0f} s: {seen}"
                )
            time.sleep(0.2)

    def public_nexthops(self) -> list[str]:
        return probes.route_nexthops(self.upstream, str(PUBLIC_NET))

    def reachable(self, target: Target, port: int, timeout: float = WARMUP_TIMEOUT_S) -> bool:
        """TCP handshakes from the external host to ``target`` until one is answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probes.tcp_connect(self.external, target.floating_ip, port, 0.5) in (
                "connected",
                "refused",
            ):
                return True
        return False


__all__ = ["Gateway", "Target", "World"]
