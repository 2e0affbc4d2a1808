"""``netloom doctor``: what a host lacks for its role, as pure checks. A probe
(:mod:`netloom.deploy.probe`) gathers :class:`Facts`; :func:`diagnose` turns them into
:class:`Finding` records (OK, WARN or MISSING, each with its fix) and does no I/O, so the tests
feed it facts. ``None`` in a fact means the probe could not tell: the finding says "unknown"
(WARN) rather than failing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from netloom.deploy.packages import packages
from netloom.sim import SimConfig

# bpf_redirect_neigh with a next hop (5.13), bpf_ktime_get_coarse_ns (5.11), bpf_redirect_peer
# (5.10), the BPF ring buffer (5.8): the datapath's program loads from 5.13 on
MIN_KERNEL = (5, 13)
# the kernel objects the datapath uses: kernel features probed through libbpf
BPF_FEATURES = (
    "prog sched_cls",
    "map ringbuf",
    "map lru_hash",
    "helper redirect_neigh",
    "helper redirect_peer",
    "helper ktime_get_coarse_ns",
)
# tc actions, the clsact qdisc, the tc BPF filter, the VXLAN device (built in or modules)
KERNEL_CONFIG = (
    "CONFIG_NET_CLS_ACT",
    "CONFIG_NET_SCH_INGRESS",
    "CONFIG_NET_CLS_BPF",
    "CONFIG_VXLAN",
)


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    MISSING = "MISSING"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Facts:
    """What a probe found on the host (None: could not tell)."""

    role: str
    kernel: str | None = None  # uname -r
    bpffs: bool | None = None  # /sys/fs/bpf is a bpf file system
    bpf_features: dict[str, bool] = field(default_factory=dict)  # BPF_FEATURES probed
    kernel_config: dict[str, bool] = field(default_factory=dict)  # KERNEL_CONFIG: y or m
    installed: frozenset[str] | None = None  # Debian packages installed
    ntp_synchronized: bool | None = None
    underlay_nic: str | None = None  # the NIC carrying the tunnels
    underlay_mtu: int | None = None
    agent_mtu: int = 1500  # the agent's --mtu: the underlay MTU it plans with
    zookeeper: dict[str, bool] | None = None  # HOST:PORT -> reachable, when the store is ZK


def diagnose(facts: Facts) -> list[Finding]:
    """Every check of ``facts.role``, in order."""
    checks: list[Callable[[Facts], list[Finding]]] = [check_packages, check_clock]
    if facts.role in ("agent", "gateway"):
        checks += [check_kernel, check_bpffs, check_bpf_features, check_tc, check_mtu]
    if facts.role == "cluster":
        checks.append(check_zookeeper)
    return [finding for check in checks for finding in check(facts)]


def failed(findings: list[Finding]) -> bool:
    """Something required is missing."""
    return any(f.status is Status.MISSING for f in findings)


def check_packages(facts: Facts) -> list[Finding]:
    wanted = packages(facts.role)
    if facts.installed is None:
        return [Finding("packages", Status.WARN, "unknown (no dpkg-query)", _apt(wanted))]
    missing = [p for p in wanted if p not in facts.installed]
    if missing:
        return [
            Finding("packages", Status.MISSING, " ".join(missing) + " not installed", _apt(missing))
        ]
    return [Finding("packages", Status.OK, " ".join(wanted))]


def _apt(names: tuple[str, ...] | list[str]) -> str:
    return "apt-get install -y " + " ".join(names)


def check_kernel(facts: Facts) -> list[Finding]:
    want = ".".join(map(str, MIN_KERNEL))
    version = _kernel_version(facts.kernel)
    if version is None:
        return [Finding("kernel", Status.WARN, f"unknown version {facts.kernel!r}")]
    if version < MIN_KERNEL:
        return [
            Finding(
                "kernel", Status.MISSING, f"{facts.kernel} < {want}", f"boot a kernel >= {want}"
            )
        ]
    return [Finding("kernel", Status.OK, f"{facts.kernel} >= {want}")]


def _kernel_version(release: str | None) -> tuple[int, int] | None:
    parts = (release or "").split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    minor = "".join(c for c in parts[1] if c.isdigit()) or "0"
    return int(parts[0]), int(minor)


def check_bpffs(facts: Facts) -> list[Finding]:
    fix = "mount -t bpf bpf /sys/fs/bpf (systemd: systemctl start sys-fs-bpf.mount)"
    if facts.bpffs is None:
        return [Finding("bpffs", Status.WARN, "unknown", fix)]
    if not facts.bpffs:
        return [Finding("bpffs", Status.MISSING, "/sys/fs/bpf is not a bpf file system", fix)]
    return [Finding("bpffs", Status.OK, "/sys/fs/bpf mounted")]


def check_bpf_features(facts: Facts) -> list[Finding]:
    if not facts.bpf_features:
        return [
            Finding(
                "bpf",
                Status.WARN,
                "unknown (libbpf probes unavailable)",
                "apt-get install -y libbpf1",
            )
        ]
    missing = [f for f in BPF_FEATURES if not facts.bpf_features.get(f, False)]
    if missing:
        fix = f"a kernel >= {'.'.join(map(str, MIN_KERNEL))} with CONFIG_BPF_SYSCALL, run as root"
        return [Finding("bpf", Status.MISSING, "kernel lacks " + ", ".join(missing), fix)]
    return [Finding("bpf", Status.OK, ", ".join(BPF_FEATURES))]


def check_tc(facts: Facts) -> list[Finding]:
    if not facts.kernel_config:
        return [Finding("tc", Status.WARN, "unknown (no kernel config in /proc or /boot)")]
    missing = [m for m in KERNEL_CONFIG if not facts.kernel_config.get(m, False)]
    if missing:
        fix = "a kernel built with " + ", ".join(f"{m}=y or m" for m in missing)
        return [Finding("tc", Status.MISSING, "kernel without " + ", ".join(missing), fix)]
    return [Finding("tc", Status.OK, "clsact, cls_bpf, vxlan in the kernel")]


def check_clock(facts: Facts) -> list[Finding]:
    fix = "apt-get install -y chrony (or enable systemd-timesyncd)"
    if facts.ntp_synchronized is None:
        return [Finding("clock", Status.WARN, "unknown whether the clock is synchronized", fix)]
    if not facts.ntp_synchronized:
        # liveness, flow expiry and ZooKeeper sessions compare times across hosts
        return [Finding("clock", Status.WARN, "not synchronized", fix)]
    return [Finding("clock", Status.OK, "synchronized")]


def check_mtu(facts: Facts) -> list[Finding]:
    sim = SimConfig(underlay_mtu=facts.agent_mtu)  # the simulation's own MTU rule
    if facts.underlay_mtu is None:
        return [Finding("mtu", Status.WARN, "unknown underlay NIC")]
    detail = (
        f"underlay {facts.underlay_nic} MTU {facts.underlay_mtu}, agent --mtu {facts.agent_mtu}"
        f" (VM MTU {sim.overlay_mtu} + {sim.vxlan_overhead} of VXLAN, RFC 7348)"
    )
    if facts.underlay_mtu < facts.agent_mtu:
        fix = (
            f"ip link set {facts.underlay_nic} mtu {facts.agent_mtu}, or mtu = {facts.underlay_mtu}"
        )
        return [Finding("mtu", Status.MISSING, detail, fix + " in [agent]")]
    return [Finding("mtu", Status.OK, detail)]


def check_zookeeper(facts: Facts) -> list[Finding]:
    if facts.zookeeper is None:
        return []
    down = [s for s, up in facts.zookeeper.items() if not up]
    servers = ", ".join(facts.zookeeper)
    fix = "start ZooKeeper (systemctl start zookeeper) or fix [cluster] store"
    if len(down) == len(facts.zookeeper):
        return [Finding("zookeeper", Status.MISSING, f"none of {servers} reachable", fix)]
    if down:
        return [Finding("zookeeper", Status.WARN, f"{', '.join(down)} unreachable", fix)]
    return [Finding("zookeeper", Status.OK, f"{servers} reachable")]


__all__ = [
    "BPF_FEATURES",
    "KERNEL_CONFIG",
    "MIN_KERNEL",
    "Facts",
    "Finding",
    "Status",
    "diagnose",
    "failed",
]
