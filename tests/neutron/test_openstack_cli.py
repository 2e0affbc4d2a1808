"""The ``openstack`` command (python-openstackclient), unmodified, against the cluster's
Neutron API without Keystone: the commands the README shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neutron.conftest import NeutronCluster

pytestmark = [pytest.mark.unit, pytest.mark.slow]


def _openstack(cluster: NeutronCluster, *args: str) -> object:
    """Run one command; its JSON output (``-f json``) unless it is a delete."""
    exe = Path(sys.executable).parent / "openstack"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["PYTHONWARNINGS"] = "ignore"
    done = subprocess.run(
        [
            str(exe),
            "--os-auth-type",
            "none",
            "--os-endpoint",
            cluster.neutron,
            *args,
            *([] if "delete" in args else ["-f", "json"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_openstack_cli_network_subnet_port(neutron_cluster: NeutronCluster) -> None:
    net = _openstack(neutron_cluster, "network", "create", "cli-net")
    assert isinstance(net, dict) and net["status"] == "ACTIVE"
    sub = _openstack(
        neutron_cluster,
        "subnet",
        "create",
        "--network",
        "cli-net",
        "--subnet-range",
        "10.90.0.0/24",
        "cli-sub",
    )
    assert isinstance(sub, dict) and sub["gateway_ip"] == "10.90.0.1"
    port = _openstack(neutron_cluster, "port", "create", "--network", "cli-net", "cli-port")
    assert isinstance(port, dict) and port["mac_address"].startswith("fa:16:3e:")
    ports = _openstack(neutron_cluster, "port", "list", "--network", "cli-net")
    assert isinstance(ports, list) and [p["Name"] for p in ports] == ["cli-port"]
    groups = _openstack(neutron_cluster, "security", "group", "list")
    assert isinstance(groups, list) and "default" in {g["Name"] for g in groups}
    _openstack(neutron_cluster, "port", "delete", "cli-port")
    _openstack(neutron_cluster, "network", "delete", "cli-net")
