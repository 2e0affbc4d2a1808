"""Synthetic flow records for ``bench insights``: a day of traffic of a cloud.

Many hosts, VMs and projects; sources drawn from a Zipf law (a few VMs talk most), services on
well-known ports, a few percent dropped or rejected by a security-group rule, some NATed,
heavy-tailed packet and byte counts. Deterministic for a seed.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from netloom.model.flowrecord import FlowRecord

DAY_S = 86400.0
HOSTS = 100
PROJECTS = 50
RULES_PER_GROUP = 6
ZIPF_S = 1.1
SERVICES = ((443, 6, 30), (80, 6, 15), (22, 6, 5), (53, 17, 20), (5432, 6, 5), (6379, 6, 5))


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True)
class Vm:
    port_id: str
    ip: str
    host_id: str
    project_id: str
    bridge_id: str
    router_id: str
    group_id: str
    rules: tuple[str, ...]


@dataclass
class Cloud:
    """The VMs, hosts and projects the records speak of."""

    vms: list[Vm]
    start: float  # first_seen of the first flow

    @staticmethod
    def make(flows: int, start: float, seed: int = 1) -> Cloud:
        rng = random.Random(seed)
        hosts = [_id(rng) for _ in range(HOSTS)]
        projects = [_id(rng) for _ in range(PROJECTS)]
        routers = [_id(rng) for _ in range(PROJECTS)]
        bridges = [[_id(rng) for _ in range(4)] for _ in range(PROJECTS)]
        groups = [_id(rng) for _ in range(PROJECTS)]
        rules = [tuple(_id(rng) for _ in range(RULES_PER_GROUP)) for _ in range(PROJECTS)]
        vms = []
        for n in range(min(20_000, max(200, flows // 100))):
            p = n % PROJECTS
            ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"
            where = (hosts[n % HOSTS], projects[p], bridges[p][n % 4], routers[p])
            vms.append(Vm(_id(rng), ip, *where, groups[p], rules[p]))
        return Cloud(vms, start)


def records(cloud: Cloud, flows: int, seed: int = 2) -> Iterator[FlowRecord]:
    """``flows`` records over a day from ``cloud.start``, one per flow."""
    rng = random.Random(seed)
    vms = cloud.vms
    weights = list(itertools.accumulate(1.0 / (k + 1) ** ZIPF_S for k in range(len(vms))))
    ports = [s[0] for s in SERVICES] + [0]
    port_weights = list(itertools.accumulate([s[2] for s in SERVICES] + [20]))
    protos = {s[0]: s[1] for s in SERVICES}
    step = DAY_S / max(flows, 1)
    for i in range(flows):
        src = rng.choices(vms, cum_weights=weights)[0]
        dst = vms[rng.randrange(len(vms))]
        dport = rng.choices(ports, cum_weights=port_weights)[0] or rng.randrange(1024, 65536)
        first = cloud.start + i * step
        yield _record(rng, i, src, dst, dport, protos.get(dport, 6), first)


def _record(  # noqa: PLR0913 (one record's draws)
    rng: random.Random, i: int, src: Vm, dst: Vm, dport: int, proto: int, first: float
) -> FlowRecord:
    roll = rng.random()
    verdict = "drop" if roll < 0.04 else "reject" if roll < 0.05 else "forward"
    rule = dst.rules[rng.randrange(len(dst.rules))]
    dropped = verdict != "forward"
    nat = (f"snat {src.ip}:{40000 + i % 20000} -> 203.0.113.{i % 200 + 1}:{1024 + i % 60000}",)
    packets = int(rng.paretovariate(1.2)) + 1
    return FlowRecord(
        flow_id=f"{src.host_id}:{i}:{int(first * 1e6)}",
        host_id=src.host_id,
        first_seen=first,
        last_seen=first + rng.expovariate(1 / 30.0),
        proto=proto,
        src_ip=src.ip,
        dst_ip=dst.ip,
        src_port=rng.randrange(32768, 61000),
        dst_port=dport,
        in_port_id=src.port_id,
        out_port_id=None if dropped else dst.port_id,
        egress_host_id=None if dropped or dst.host_id == src.host_id else dst.host_id,
        project_id=src.project_id,
        devices=(src.bridge_id, src.router_id, dst.bridge_id),
        rules=(rule,),
        security_groups=(dst.group_id,),
        nat=nat if roll > 0.9 else (),
        verdict=verdict,
        packets=packets,
        bytes=packets * rng.randrange(60, 1500),
        final=True,
    )


__all__ = ["Cloud", "Vm", "records"]
