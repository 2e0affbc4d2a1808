"""The lab's outside world (``lab up --gateways N``): the upstream router namespace with bird2,
the external host behind it, and one uplink cable per gateway host.

Layout of a lab ``L`` with two gateways::

    netns L-ext  eth0 198.18.0.10/24 ═══ ext0 198.18.0.1/24  netns L-up (bird2, AS 64512)
                                              gw1 198.19.1.1/24 ═══ uplink0  netns L-gw1
                                              gw2 198.19.2.1/24 ═══ uplink0  netns L-gw2

A gateway's ``uplink0`` carries no address: the provider router's uplink port bound to it owns
198.19.G.2, and the gateway's agent (datapath and BGP speaker) answers for it. bird runs in the
foreground (``-f``) under the lab's supervisor, so its recorded PID is bird itself and
``lab status`` restarts it like an agent; ``lab down`` stops it with the lab's processes.
"""

from __future__ import annotations

import time
from pathlib import Path

from netloom.errors import LabError
from netloom.lab import netns, nsexec, supervisor
from netloom.lab.addressing import EXTERNAL_GW, EXTERNAL_HOST_IP, EXTERNAL_IF, EXTERNAL_NET
from netloom.lab.cluster import tail
from netloom.lab.plan import plan_outside, upstream_config
from netloom.lab.plumbing import Plumbing
from netloom.lab.state import OutsideRecord, StateFile, UplinkRecord
from netloom.lab.upstream import render_bird_conf
from netloom.netns import entered

BIRD = "bird"
BIRDC = "birdc"
# the upstream forwards, hashes multipath routes by the 5-tuple (policy 1: L4), accepts a
# reply on any uplink (no reverse-path filter: a connection may enter and leave by different
# gateways), and stops using a path whose cable lost its carrier at once, as a router takes a
# dead link out of its forwarding table before any protocol (BGP, BFD) notices
UPSTREAM_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv4/fib_multipath_hash_policy": "1",
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    "net/ipv4/conf/all/ignore_routes_with_linkdown": "1",
}


def sysctls(ns: str, values: dict[str, str]) -> None:
    """Write ``values`` (paths under /proc/sys) inside ``ns``; they are per namespace."""
    with entered(ns):
        for path, value in values.items():
            (Path("/proc/sys") / path).write_text(value + "\n")


def build(sf: StateFile, plumbing: Plumbing, *, bfd: bool = True) -> OutsideRecord:
    """The upstream and external namespaces, the external cable and the upstream's sysctls."""
    s = sf.state
    if s.outside is None:
        s.outside = plan_outside(s.name, s.dir, bfd=bfd)
        sf.save()
    rec = s.outside
    plumbing.namespace(rec.upstream_netns)
    plumbing.namespace(rec.external_netns)
    sysctls(rec.upstream_netns, UPSTREAM_SYSCTLS)
    netns.create_veth(rec.upstream_netns, EXTERNAL_IF, rec.external_netns, "eth0", mtu=s.mtu)
    netns.add_address(rec.upstream_netns, EXTERNAL_IF, f"{EXTERNAL_GW}/{EXTERNAL_NET.prefixlen}")
    netns.add_address(rec.external_netns, "eth0", f"{EXTERNAL_HOST_IP}/{EXTERNAL_NET.prefixlen}")
    netns.add_default_route(rec.external_netns, EXTERNAL_GW)
    return rec


def cable_uplink(sf: StateFile, uplink: UplinkRecord) -> None:
    """The gateway host's uplink NIC cabled to the upstream, which gets its address on it."""
    s = sf.state
    rec = require(s.outside, s.name)
    if all(u.index != uplink.index for u in s.uplinks):
        s.uplinks.append(uplink)
        sf.save()
    netns.create_veth(
        uplink.host, uplink.host_if, rec.upstream_netns, uplink.upstream_if, mtu=s.mtu
    )
    netns.add_address(rec.upstream_netns, uplink.upstream_if, uplink.upstream_address)


def write_bird_conf(sf: StateFile, plumbing: Plumbing) -> Path:
    """Render the upstream's bird.conf for the lab's uplinks (:mod:`netloom.lab.upstream`)."""
    rec = require(sf.state.outside, sf.state.name)
    conf = Path(rec.bird_conf)
    plumbing.make_dir(conf.parent)
    conf.write_text(render_bird_conf(upstream_config(rec, sf.state.uplinks)))
    return conf


def start_bird(sf: StateFile, plumbing: Plumbing, *, timeout: float = 10.0) -> int:
    """bird in the upstream namespace, in the foreground under the supervisor (restarted by
    ``lab status`` when it died); returns its PID once its control socket answers."""
    s = sf.state
    rec = require(s.outside, s.name)
    for p in s.processes:
        if p.role == "bird" and supervisor.alive(p):
            return p.pid
    conf = write_bird_conf(sf, plumbing)
    argv = [BIRD, "-f", "-c", str(conf), "-s", rec.bird_socket, "-P", rec.bird_pid_file]
    log = Path(s.dir) / "bird-upstream.log"
    try:
        proc, prec = supervisor.spawn(
            rec.upstream_netns, argv, "bird", str(conf), log, restart=True
        )
    except OSError as exc:
        raise LabError(f"cannot start bird in {rec.upstream_netns}: {exc}") from None
    s.processes = [p for p in s.processes if p.role != "bird"] + [prec]
    sf.save()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LabError(f"bird exited ({proc.returncode}) in {rec.upstream_netns}: {tail(log)}")
        done = nsexec.run(None, [BIRDC, "-s", rec.bird_socket, "show", "status"], check=False)
        if done.returncode == 0 and "Daemon is up and running" in done.stdout:
            return proc.pid
        if time.monotonic() > deadline:
            raise LabError(f"bird did not answer on {rec.bird_socket} within {timeout:.0f} s")
        time.sleep(0.05)


def reconfigure_bird(sf: StateFile, plumbing: Plumbing) -> str:
    """Write the config again (the uplinks changed) and ``birdc configure``."""
    rec = require(sf.state.outside, sf.state.name)
    write_bird_conf(sf, plumbing)
    return birdc(rec, "configure")


def birdc(rec: OutsideRecord, *command: str) -> str:
    """A command to the upstream's bird over its control socket; its output."""
    done = nsexec.run(None, [BIRDC, "-s", rec.bird_socket, *command], check=False, timeout=10)
    if done.returncode != 0:
        raise LabError(f"birdc {' '.join(command)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def require(rec: OutsideRecord | None, lab: str) -> OutsideRecord:
    if rec is None:
        raise LabError(f"lab {lab} has no outside world (lab up --gateways N builds one)")
    return rec


__all__ = [
    "UPSTREAM_SYSCTLS",
    "birdc",
    "build",
    "cable_uplink",
    "reconfigure_bird",
    "require",
    "start_bird",
    "sysctls",
    "write_bird_conf",
]
