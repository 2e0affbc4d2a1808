"""A whole project driven with openstacksdk only, then with the ``openstack`` CLI, against a
real lab (two hosts, the BPF datapath): an external network, a router with its gateway, two
networks and subnets, a security group allowing ssh from its own members and ICMP, ports bound
the Nova way on two hosts, a floating IP, and an "outside" VM on the external network (port
security off: the world beyond the gateway). The lab boots the VMs as Nova/os-vif does; they
take their leases from the agents, reach each other as the group allows and no further, the
floating IP reaches its VM from the external network, and the ports are ACTIVE (DOWN again
once the VM is gone)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.conftest import unique_name
from netloom.lab import lab as labmod
from netloom.lab import netns, nsexec, probes
from netloom.lab.lab import Lab
from netloom.netns import entered
from neutron.conftest import SDK_WARNINGS, connect
from waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow, SDK_WARNINGS]

PROJECT = "3c4d5e6f7a8b49c0a1b2c3d4e5f60718"
ADMIN = "8e7d6c5b4a3f42e1b0c9d8e7f6a5b4c3"
STATUS_TIMEOUT_S = 20.0
OUTWARD_CONNECTIONS = 6  # more than the first one or two, each from a new source port


@dataclass
class Cloud:
    """What a workflow made: port ids by VM role (a, b: the project's, on h1 and h2; out: the
    outside VM on the external network), the floating IP of a and the router's SNAT address."""

    ports: dict[str, str]
    floating_ip: str
    snat_ip: str


@pytest.fixture(scope="module")
def cloud_lab() -> Iterator[Lab]:
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("udhcpc"):
        pytest.skip("the lab needs root, nsenter and busybox udhcpc")
    name = unique_name()
    try:
        lab = Lab.create(name, tx_off=True)
        lab.up(2, 0, datapath="bpf")
        yield lab
    finally:
        labmod.down(name)
        for ns in netns.list_netns(f"{name}-"):
            netns.delete(ns)


def _hosts(lab: Lab) -> tuple[str, str]:
    """The NSDB names of the lab's two hosts (what ``binding:host_id`` names)."""
    h1, h2 = lab.state.hosts[:2]
    return h1.name, h2.name


def _neutron_url(lab: Lab) -> str:
    assert lab.state.cluster is not None and lab.state.cluster.neutron_url is not None
    return lab.state.cluster.neutron_url


# -- the workflows --------------------------------------------------------------------------


def _sdk_workflow(sdk: Any, hosts: tuple[str, str]) -> Cloud:
    net = sdk.network
    ext = net.create_network(name="public", project_id=ADMIN, is_router_external=True)
    net.create_subnet(network_id=ext.id, project_id=ADMIN, ip_version=4, cidr="203.0.113.0/24")
    router = net.create_router(
        name="r1", project_id=PROJECT, external_gateway_info={"network_id": ext.id}
    )
    networks = []
    for k, cidr in enumerate(("10.61.0.0/24", "10.62.0.0/24"), 1):
        n = net.create_network(name=f"net{k}", project_id=PROJECT)
        sub = net.create_subnet(network_id=n.id, project_id=PROJECT, ip_version=4, cidr=cidr)
        net.add_interface_to_router(router, subnet_id=sub.id)
        networks.append(n)
    sg = net.create_security_group(name="ssh-icmp", project_id=PROJECT)
    rule = {"security_group_id": sg.id, "direction": "ingress", "project_id": PROJECT}
    net.create_security_group_rule(
        **rule, protocol="tcp", port_range_min=22, port_range_max=22, remote_group_id=sg.id
    )
    net.create_security_group_rule(**rule, protocol="icmp", remote_ip_prefix="0.0.0.0/0")
    ports = {}
    for role, network, host in (("a", networks[0], hosts[0]), ("b", networks[1], hosts[1])):
        p = net.create_port(network_id=network.id, project_id=PROJECT, security_group_ids=[sg.id])
        net.update_port(  # what Nova asks when it schedules the VM on the host
            p, binding_host_id=host, device_id=str(uuid.uuid4()), device_owner="compute:nova"
        )
        ports[role] = p.id
    out = net.create_port(network_id=ext.id, project_id=ADMIN, port_security_enabled=False)
    net.update_port(out, binding_host_id=hosts[1], device_owner="compute:nova")
    ports["out"] = out.id
    fip = net.create_ip(floating_network_id=ext.id, project_id=PROJECT, port_id=ports["a"])
    assert fip.status == "ACTIVE"
    gw = net.get_router(router.id).external_gateway_info
    return Cloud(ports, fip.floating_ip_address, gw["external_fixed_ips"][0]["ip_address"])


def _openstack(lab: Lab, *args: str) -> Any:
    """One ``openstack`` command inside the lab's switch namespace (where the cluster
    listens); its JSON output for what prints one."""
    exe = Path(sys.executable).parent / "openstack"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONWARNINGS"] = "ignore"
    shows = bool({"create", "show"} & set(args[:4]))
    argv = [str(exe), "--os-auth-type", "none", "--os-endpoint", _neutron_url(lab), *args]
    done = nsexec.run(lab.state.switch_netns, [*argv, *(["-f", "json"] if shows else [])],
                      check=False, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if shows else None


def _cli_workflow(lab: Lab, hosts: tuple[str, str]) -> Cloud:
    def os_(*args: str) -> Any:
        return _openstack(lab, *args)

    os_("network", "create", "--external", "c-public")
    os_("subnet", "create", "--network", "c-public", "--subnet-range", "100.64.0.0/24", "c-pub")
    os_("router", "create", "c-r1")
    os_("router", "set", "--external-gateway", "c-public", "c-r1")
    for k, cidr in ((1, "10.71.0.0/24"), (2, "10.72.0.0/24")):
        os_("network", "create", f"c-net{k}")
        os_("subnet", "create", "--network", f"c-net{k}", "--subnet-range", cidr, f"c-sub{k}")
        os_("router", "add", "subnet", "c-r1", f"c-sub{k}")
    os_("security", "group", "create", "c-ssh-icmp")
    os_("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
        "--dst-port", "22", "--remote-group", "c-ssh-icmp", "c-ssh-icmp")  # fmt: skip
    os_("security", "group", "rule", "create", "--ingress", "--protocol", "icmp", "c-ssh-icmp")
    ports = {}
    for role, k, host in (("a", 1, hosts[0]), ("b", 2, hosts[1])):
        p = os_("port", "create", "--network", f"c-net{k}", "--security-group", "c-ssh-icmp",
                f"c-{role}")  # fmt: skip
        os_("port", "set", "--host", host, "--device", str(uuid.uuid4()),
            "--device-owner", "compute:nova", p["id"])  # fmt: skip
        ports[role] = p["id"]
    out = os_("port", "create", "--network", "c-public", "--disable-port-security",
              "--no-security-group", "--host", hosts[1], "c-out")  # fmt: skip
    ports["out"] = out["id"]
    fip = os_("floating", "ip", "create", "--port", "c-a", "c-public")
    router = os_("router", "show", "c-r1")
    snat = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    return Cloud(ports, fip["floating_ip_address"], snat)


# -- the data plane -------------------------------------------------------------------------

Status = Callable[[str], str]
Boot = Callable[[str, str, str], Any]  # (port id, lab host, VM name) -> the VM


def _boot(cloud: Cloud, prefix: str, status: Status, boot: Boot) -> dict[str, Any]:
    """Boot the three VMs the Nova way; each leases its port's address from the agent, and
    its port goes ACTIVE."""
    placement = {"a": "h1", "b": "h2", "out": "h2"}
    vms = {}
    for role, host in placement.items():
        port_id = cloud.ports[role]
        assert status(port_id) == "DOWN"  # bound, no tap yet
        vms[role] = boot(port_id, host, f"{prefix}{role}")

    def active() -> bool:
        return all(status(cloud.ports[role]) == "ACTIVE" for role in placement)

    wait_until(active, STATUS_TIMEOUT_S, "the ports ACTIVE")
    return vms


def _check_traffic(vms: dict[str, Any], cloud: Cloud) -> None:
    a, b, out = vms["a"], vms["b"], vms["out"]
    assert probes.ping(a.netns, b.ip, count=2, timeout=2.0), "ICMP a -> b (allowed)"
    assert probes.seen_source(a.netns, b.netns, b.ip, 22) == ("connected", a.ip)  # ssh: a member
    with probes.listening(b.netns, 8080):
        assert probes.tcp_connect(a.netns, b.ip, 8080, 1.5) == "timeout"  # not opened: dropped
    assert probes.ping(out.netns, cloud.floating_ip, count=2, timeout=2.0), "outside -> FIP"
    with probes.listening(a.netns, 22):  # ssh to the floating IP: the outside is no member
        assert probes.tcp_connect(out.netns, cloud.floating_ip, 22, 1.5) == "timeout"
    assert probes.ping(a.netns, out.ip, count=2, timeout=2.0), "a -> outside (by its FIP)"
    # connections a opens outward leave as its floating IP, each with its own ports, and every
    # reply (it meets only the static DNAT) comes back: the datapath tracked the connection
    with probes.listening(out.netns, 80):
        for _ in range(OUTWARD_CONNECTIONS):
            assert probes.tcp_connect(a.netns, out.ip, 80, 2.0) == "connected"
    assert probes.seen_source(a.netns, out.netns, out.ip, 80) == ("connected", cloud.floating_ip)
    # b has no floating IP: the outside sees the router's gateway address (SNAT)
    assert probes.seen_source(b.netns, out.netns, out.ip, 80) == ("connected", cloud.snat_ip)


def _check_unplug(lab: Lab, vms: dict[str, Any], cloud: Cloud, status: Status) -> None:
    lab.remove_vm(vms["b"].name)  # the VM goes, and its tap with it
    port_id = cloud.ports["b"]
    wait_until(lambda: status(port_id) == "DOWN", STATUS_TIMEOUT_S, "b DOWN once unplugged")


def _fixed_ip(port: Any) -> str:
    ips = port["fixed_ips"] if isinstance(port, dict) else port.fixed_ips
    return str(ips[0]["ip_address"])


def test_openstacksdk_project_in_the_lab(cloud_lab: Lab) -> None:
    with entered(cloud_lab.state.switch_netns):  # the SDK's sockets open in the cluster's netns
        sdk = connect(_neutron_url(cloud_lab))
        cloud = _sdk_workflow(sdk, _hosts(cloud_lab))

        def status(port_id: str) -> str:
            with entered(cloud_lab.state.switch_netns):
                return str(sdk.network.get_port(port_id).status)

    vms = _boot(cloud, "s", status, cloud_lab.boot_vm)
    with entered(cloud_lab.state.switch_netns):
        for role, vm in vms.items():
            assert vm.ip == _fixed_ip(sdk.network.get_port(cloud.ports[role])), role
    _check_traffic(vms, cloud)
    _check_unplug(cloud_lab, vms, cloud, status)


def _netloom(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "from netloom.cli.main import main; main()", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_openstack_cli_project_in_the_lab(cloud_lab: Lab) -> None:
    """The ``openstack`` CLI, and the VMs booted with ``netloom lab vm add``."""
    cloud = _cli_workflow(cloud_lab, _hosts(cloud_lab))

    def status(port_id: str) -> str:
        return str(_openstack(cloud_lab, "port", "show", port_id)["status"])

    def boot(port_id: str, host: str, vm: str) -> Any:
        cmd = ("lab", "vm", "add", "--name", cloud_lab.name, "--port", port_id, "--host", host)
        done = _netloom(*cmd, "--vm", vm)
        assert done.returncode == 0, done.stderr
        assert f"tap{port_id[:11]} on {cloud_lab.name}-{host}" in done.stdout
        return Lab.load(cloud_lab.name).vm(f"{host}-{vm}")

    bad = _netloom("lab", "vm", "add", "--name", cloud_lab.name, "--port", cloud.ports["a"],
                   "--host", "h9")  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("error: not_found"), bad.stderr
    vms = _boot(cloud, "c", status, boot)
    for role, vm in vms.items():
        assert vm.ip == _fixed_ip(_openstack(cloud_lab, "port", "show", cloud.ports[role]))
    _check_traffic(vms, cloud)
    lab = Lab.load(cloud_lab.name)  # the CLI wrote the lab's state
    _check_unplug(lab, vms, cloud, status)
