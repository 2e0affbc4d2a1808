"""What ``netloom bench agent100`` builds: the VMs, their bridges and addresses, and which
pairs the ping mesh and the iperf3 streams take (pure: no I/O)."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from netloom.errors import InvalidInput
from netloom.lab.addressing import MAX_VMS_PER_HOST

BLOCKED_PORT = 22  # the security group drops it
MIN_VMS = 8  # four disjoint iperf3 pairs
MAX_BRIDGES = 8


@dataclass(frozen=True)
class Options:
    vms: int = 100  # on h1, the measured agent
    remote_vms: int = 4  # on h2, so some pings and one stream cross the tunnel
    bridges: int = 4
    pings: int = 300
    streams: int = 4
    seconds: int = 3  # per iperf3 stream
    seed: int | None = None
    name: str | None = None

    def check(self) -> Options:
        """Reject sizes the lab cannot build before anything is created."""
        if not MIN_VMS <= self.vms <= MAX_VMS_PER_HOST:
            raise InvalidInput(
                f"--vms must be {MIN_VMS}..{MAX_VMS_PER_HOST}, not {self.vms}", field="vms"
            )
        if not 0 <= self.remote_vms <= MAX_VMS_PER_HOST:
            raise InvalidInput(f"--remote-vms must be 0..{MAX_VMS_PER_HOST}", field="remote_vms")
        if not 1 <= self.bridges <= MAX_BRIDGES:
            raise InvalidInput(f"--bridges must be 1..{MAX_BRIDGES}", field="bridges")
        per_bridge = -(-(self.vms + self.remote_vms) // self.bridges)
        if per_bridge > 240:  # .10 .. .250 of a /24
            raise InvalidInput(f"{per_bridge} VMs per bridge do not fit a /24", field="vms")
        if not 1 <= self.streams <= self.vms // 2:
            raise InvalidInput(f"--streams must be 1..{self.vms // 2}", field="streams")
        if self.pings < 0 or self.seconds < 1:
            raise InvalidInput("--pings must be >= 0 and --seconds >= 1", field="pings")
        return self


@dataclass(frozen=True)
class VmSpec:
    name: str  # the lab's VM name: h1-vm7
    host: int  # 1 or 2
    bridge: int  # 0-based
    ip: str  # without prefix


def bridge_cidr(b: int) -> ipaddress.IPv4Network:
    """Bridge ``b`` (0-based) owns 10.0.(b+1).0/24; its router port is .1."""
    return ipaddress.IPv4Network(f"10.0.{b + 1}.0/24")


def bridge_gateway(b: int) -> str:
    return str(bridge_cidr(b).network_address + 1)


def plan_vms(opts: Options) -> list[VmSpec]:
    """``vms`` VMs on h1 and ``remote_vms`` on h2, round-robin over the bridges, addresses from
    .10 upwards in each bridge's /24."""
    used = [0] * opts.bridges
    specs: list[VmSpec] = []
    for host, count in ((1, opts.vms), (2, opts.remote_vms)):
        for k in range(1, count + 1):
            b = (len(specs)) % opts.bridges
            ip = str(bridge_cidr(b).network_address + 10 + used[b])
            used[b] += 1
            specs.append(VmSpec(f"h{host}-vm{k}", host, b, ip))
    return specs


def path_of(src: VmSpec, dst: VmSpec) -> str:
    if src.host != dst.host:
        return "cross-host"
    return "bridged" if src.bridge == dst.bridge else "routed"


def plan_pings(specs: list[VmSpec], count: int, rng: random.Random) -> list[tuple[VmSpec, VmSpec]]:
    """``count`` random ordered pairs, taken in turn from each path kind the lab has (bridged
    and routed on h1; h1 <-> h2 when h2 has VMs), so no kind is left to chance."""
    local = [s for s in specs if s.host == 1]
    remote = [s for s in specs if s.host == 2]
    kinds = ["bridged", "routed"] + (["cross-host"] if remote else [])
    pairs: list[tuple[VmSpec, VmSpec]] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        for _ in range(1000):
            if kind == "cross-host":
                a, b = rng.choice(local), rng.choice(remote)
                src, dst = (a, b) if rng.random() < 0.5 else (b, a)
            else:
                src, dst = rng.sample(local, 2)
            if path_of(src, dst) == kind:
                pairs.append((src, dst))
                break
        else:  # a single bridge has no routed pairs: take any pair instead
            pairs.append(tuple(rng.sample(local, 2)))  # type: ignore[arg-type]
    return pairs


def plan_streams(specs: list[VmSpec], n: int, rng: random.Random) -> list[tuple[VmSpec, VmSpec]]:
    """``n`` disjoint (client, server) pairs: one h1 -> h2 when h2 has VMs, the others on h1,
    alternating same-bridge and routed."""
    local = [s for s in specs if s.host == 1]
    remote = [s for s in specs if s.host == 2]
    rng.shuffle(local)
    pairs: list[tuple[VmSpec, VmSpec]] = []
    if remote:
        pairs.append((local.pop(), rng.choice(remote)))
    want = "bridged"
    while len(pairs) < n and len(local) >= 2:
        src = local.pop()
        match = [d for d in local if path_of(src, d) == want] or local
        dst = match[0]
        local.remove(dst)
        pairs.append((src, dst))
        want = "routed" if want == "bridged" else "bridged"
    return pairs


__all__ = [
    "BLOCKED_PORT",
    "Options",
    "VmSpec",
    "bridge_cidr",
    "bridge_gateway",
    "path_of",
    "plan_pings",
    "plan_streams",
    "plan_vms",
]
