"""A gateway agent killed hard (SIGKILL: its bird dies with it by the parent-death signal)
leaves its sidecar's namespace behind; the lab's restart of the agent removes it first, the new
agent brings its sidecar back and the session re-establishes; ``lab down`` removes what a dead
agent left, and only its own lab's sidecars."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from netloom.api.client import ApiClient
from netloom.lab import netns, probes, supervisor
from netloom.lab.lab import Lab
from netloom.lab.plan import sidecar_ns_prefix
from netloom.lab.state import ProcessRecord
from netloom.lab.supervisor import RestartPolicy
from waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]

NewLab = Callable[..., Lab]
DEFAULT = ("0.0.0.0/0", "198.19.1.1")


def _learned(api: ApiClient) -> set[tuple[str, str]]:
    return {(r["dst"], r["next_hop_gateway"]) for r in api.list("routes") if r.get("learned_from")}


def _agent(lab: Lab, host_ns: str) -> ProcessRecord:
    return next(p for p in lab.state.processes if p.role == "agent" and p.netns == host_ns)


def _session_up(lab: Lab, api: ApiClient) -> None:
    wait_until(lambda: DEFAULT in _learned(api), 30.0, "the default route learned by gw1")
    assert lab.state.outside is not None
    up = lab.state.outside.upstream_netns
    wait_until(lambda: len(probes.route_nexthops(up, "203.0.113.0/24")) == 1, 30.0, "a path")


def test_killed_gateway_agent_restarted_and_sidecar_removed(new_lab: NewLab) -> None:
    lab = new_lab()
    lab.up(1, 1, gateways=1, datapath="bpf")
    api = lab.api()
    gw = next(h for h in lab.state.hosts if h.role == "gateway")
    prefix = sidecar_ns_prefix(gw.netns)
    _session_up(lab, api)
    [sidecar] = netns.list_netns(prefix)
    first = _agent(lab, gw.netns)
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: not supervisor.alive(first), 10.0, "the agent dead")
    wait_until(lambda: DEFAULT not in _learned(api), 30.0, "its learned routes gone (host death)")
    assert netns.list_netns(prefix) == [sidecar]  # left behind by the dead agent
    # the lab restarts the agent: the dead one's sidecar goes, the new agent's comes back
    policy = RestartPolicy(backoff_s=0.0)
    wait_until(
        lambda: bool(lab.supervise(policy)) or _agent(lab, gw.netns).pid != first.pid,
        10.0,
        "a restart",
    )
    _session_up(lab, api)
    assert netns.list_netns(prefix) == [sidecar]  # named by its port: the same name again
    # killed again, then the lab goes down: nothing of the sidecar is left
    second = _agent(lab, gw.netns)
    os.kill(second.pid, signal.SIGKILL)
    wait_until(lambda: not supervisor.alive(second), 10.0, "the agent dead again")
    other = f"{lab.name}x-gw1-sc-other"  # another lab's sidecar: never touched
    netns.create(other)
    try:
        removed = lab.down()
        assert f"netns {sidecar}" in removed
        assert netns.list_netns(prefix) == []
        assert netns.exists(other)
    finally:
        netns.delete(other)
