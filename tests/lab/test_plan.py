"""The lab's plan without namespaces: names, addresses, MACs, VM placement, agent command
lines."""

from __future__ import annotations

import pytest

from netloom.agent.options import DEFAULT_METRICS_PORT, AgentOptions, VxlanEncap, parse_argv
from netloom.errors import InvalidInput
from netloom.lab.plan import AgentTuning, LabPlan, agent_options, plan_host, tenant_ip, vm_mac
from netloom.lab.state import ClusterRecord, LabState

pytestmark = pytest.mark.unit


def test_plan_places_vms_on_hosts_with_names_addresses_macs() -> None:
    plan = LabPlan.build("t1", 2, 2)
    assert [h.name for h in plan.hosts] == ["t1-h1", "t1-h2"]
    assert [h.underlay_ip for h in plan.hosts] == ["192.0.2.11", "192.0.2.12"]
    assert [h.switch_port for h in plan.hosts] == ["h1", "h2"]
    assert [(v.name, v.host, v.host_if) for v in plan.vms] == [
        ("h1-vm1", "t1-h1", "t1h1v1"),
        ("h1-vm2", "t1-h1", "t1h1v2"),
        ("h2-vm1", "t1-h2", "t1h2v1"),
        ("h2-vm2", "t1-h2", "t1h2v2"),
    ]
    assert plan.vms[0].netns == "t1-h1-vm1"
    macs = [v.mac for v in plan.vms]
    assert len(set(macs)) == 4 and all(m.startswith("02:") for m in macs)
    assert vm_mac("t1", 1, 1) != vm_mac("t2", 1, 1)  # distinct between labs
    assert tenant_ip(0) == "10.0.0.10/24"


def test_plan_rejects_sizes_that_do_not_fit() -> None:
    with pytest.raises(InvalidInput, match="do not fit"):
        LabPlan.build("t1", 20, 20)
    with pytest.raises(InvalidInput, match="--hosts"):
        LabPlan.build("t1", 0, 1)
    with pytest.raises(InvalidInput, match="outside"):
        plan_host("t1", 100)


def _state() -> LabState:
    state = LabState(name="t1", dir="/tmp/t1.d", switch_netns="t1-sw", mtu=9000, datapath="bpf")
    state.cluster = ClusterRecord(
        netns="t1-sw",
        api_url="http://192.0.2.1:8181",
        topology="192.0.2.1:8182",
        store_url="sqlite:x",
    )
    return state


def test_agent_options_of_a_host() -> None:
    state = _state()
    host = plan_host("t1", 2)
    with pytest.raises(InvalidInput, match="not registered"):
        agent_options(state, host, AgentTuning())
    host.host_id = "hid-2"
    opts = agent_options(state, host, AgentTuning())
    assert opts == AgentOptions(
        topology="192.0.2.1:8182",
        host_id="hid-2",
        datapath=opts.datapath,
        underlay_ip="192.0.2.12",
        metrics_port=DEFAULT_METRICS_PORT,  # lab agents serve metrics by default
        mtu=9000,
        sidecar_ns_prefix="t1-h2-sc-",  # the lab finds its own sidecars by their host
        state_dir="/tmp/t1.d/agents/t1-h2",  # its simulation log, under the lab's directory
    )
    assert opts.datapath.value == "bpf"
    host.tunnel_ip = "198.51.100.12"
    tuned = agent_options(state, host, AgentTuning(None, 5.0, VxlanEncap.device))
    assert tuned.underlay_ip == "198.51.100.12" and tuned.metrics_port is None
    argv = tuned.to_argv()
    assert "--metrics-port" not in argv and argv[argv.index("--idle-timeout") + 1] == "5.0"
    assert parse_argv(argv) == tuned
