"""The facts ``netloom doctor`` judges, gathered from this host (each probe answers None when it
cannot tell, never raises): read-only, except libbpf's feature probes, which load and free a
throwaway program or map."""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import json
import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netloom.agent.options import parser
from netloom.deploy.config import Option, argparse_options, load_table
from netloom.deploy.doctor import BPF_FEATURES, KERNEL_CONFIG, Facts
from netloom.errors import InvalidInput
from netloom.store.zk_conn import parse_hosts

# the kernel's UAPI numbers of what BPF_FEATURES names (linux/bpf.h)
_PROG_SCHED_CLS = 3
_MAP_TYPES = {"ringbuf": 27, "lru_hash": 9}
_HELPERS = {"redirect_neigh": 152, "redirect_peer": 155, "ktime_get_coarse_ns": 160}
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronized


def _run(*cmd: str) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def installed_packages() -> frozenset[str] | None:
    out = _run("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n")
    if out is None:
        return None
    return frozenset(line.split()[0] for line in out.splitlines() if line.endswith(" installed"))


def bpffs_mounted() -> bool | None:
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1:3] == ["/sys/fs/bpf", "bpf"] for line in f if line.strip())
    except OSError:
        return None


def bpf_features() -> dict[str, bool]:
    """libbpf's probes of the program type, map types and helpers the datapath uses; empty
    when libbpf cannot be loaded."""
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
        prog, map_, helper = (
            lib.libbpf_probe_bpf_prog_type,
            lib.libbpf_probe_bpf_map_type,
            lib.libbpf_probe_bpf_helper,
        )
    except (OSError, AttributeError):
        return {}
    out = {}
    for feature in BPF_FEATURES:
        kind, what = feature.split()
        if kind == "prog":
            ok = prog(_PROG_SCHED_CLS, None)
        elif kind == "map":
            ok = map_(_MAP_TYPES[what], None)
        else:
            ok = helper(_PROG_SCHED_CLS, _HELPERS[what], None)
        out[feature] = ok == 1
    return out


def kernel_config(release: str) -> dict[str, bool]:
    """Each of KERNEL_CONFIG built in or a module, from /proc/config.gz or
    /boot/config-<release>; empty when neither is readable."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        try:
            text = Path("/boot", f"config-{release}").read_text()
        except OSError:
            return {}
    values = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("CONFIG_"))
    return {option: values.get(option) in ("y", "m") for option in KERNEL_CONFIG}


def ntp_synchronized() -> bool | None:
    """timedatectl's NTPSynchronized, else the kernel's own flag (adjtimex(2) answers
    TIME_ERROR while unsynchronized); None when neither answers."""
    out = _run("timedatectl", "show", "-p", "NTPSynchronized", "--value")
    if out is not None and out.strip() in ("yes", "no"):
        return out.strip() == "yes"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(256)  # struct timex, modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def underlay_nic(underlay_ip: str | None) -> tuple[str, int] | None:
    """The NIC holding ``underlay_ip``, else the one of the default route, and its MTU."""
    target = underlay_ip or "192.0.2.1"  # TEST-NET-1 (RFC 5737): where the default route goes
    out = _run("ip", "-j", "route", "get", target)
    try:
        routes = json.loads(out) if out else []
        dev = routes[0]["dev"] if underlay_ip is None else _dev_of(underlay_ip)
        # from `ip`, not /sys/class/net: /sys shows the namespace it was mounted in, which is not
        # the caller's when the caller entered a network namespace by setns (sshd in a netns)
        mtu = int(json.loads(_run("ip", "-j", "link", "show", "dev", dev) or "[]")[0]["mtu"])
    except (ValueError, LookupError, OSError, TypeError):
        return None
    return dev, mtu


def _dev_of(address: str) -> str:
    out = _run("ip", "-j", "-4", "addr", "show") or "[]"
    for link in json.loads(out):
        if any(a.get("local") == address for a in link.get("addr_info", [])):
            return str(link["ifname"])
    raise LookupError(address)


def reachable(servers: list[tuple[str, int]], timeout: float = 2.0) -> dict[str, bool]:
    """Whether a TCP connection to each server opens."""
    out = {}
    for host, port in servers:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                out[f"{host}:{port}"] = True
        except OSError:
            out[f"{host}:{port}"] = False
    return out


@dataclass(frozen=True)
class Planned:
    """What the config file plans for this host (the defaults without one)."""

    agent_mtu: int = 1500
    underlay_ip: str | None = None
    zookeeper: list[tuple[str, int]] | None = None  # the cluster's store, when ZooKeeper


def planned(path: Path | None, cluster_options: Sequence[Option]) -> Planned:
    """Read ``path``'s tables (ConfigError as ``netloom cluster``/``agent`` would raise it):
    the agent's MTU and underlay address, the cluster's ZooKeeper servers."""
    if path is None:
        return Planned()
    agent = load_table(path, "agent", argparse_options(parser(), skip=("config",)))
    cluster = load_table(path, "cluster", cluster_options)
    store = str(cluster.values.get("store") or "")
    servers = None
    if store.startswith("zookeeper:"):
        try:
            hosts, _chroot = parse_hosts(store.removeprefix("zookeeper:"))
        except InvalidInput as exc:
            raise cluster.error("store", exc.message) from None
        servers = [(h, int(p)) for h, _, p in (x.rpartition(":") for x in hosts.split(","))]
    return Planned(
        agent_mtu=int(agent.values.get("mtu", 1500)),
        underlay_ip=agent.values.get("underlay_ip"),
        zookeeper=servers,
    )


def gather(role: str, plan: Planned) -> Facts:
    """Every fact ``role`` is checked on, for what ``plan`` says."""
    release = os.uname().release
    agent = role in ("agent", "gateway")
    nic = underlay_nic(plan.underlay_ip) if agent else None
    return Facts(
        role=role,
        kernel=release,
        bpffs=bpffs_mounted() if agent else None,
        bpf_features=bpf_features() if agent else {},
        kernel_config=kernel_config(release) if agent else {},
        installed=installed_packages(),
        ntp_synchronized=ntp_synchronized(),
        underlay_nic=nic[0] if nic else None,
        underlay_mtu=nic[1] if nic else None,
        agent_mtu=plan.agent_mtu,
        zookeeper=reachable(plan.zookeeper) if plan.zookeeper else None,
    )


__all__ = ["Planned", "gather", "planned", "reachable"]
