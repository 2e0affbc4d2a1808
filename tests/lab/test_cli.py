"""`netloom lab` from the command line: up, status, exec, down (as separate processes, the
way a person runs them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netloom.lab import netns
from netloom.lab.lab import labs

from .conftest import unique_name

pytestmark = pytest.mark.netns


def netloom(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", "from netloom.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_up_status_exec_down(lab_names: list[str]) -> None:
    name = unique_name()
    lab_names.append(name)
    up = json.loads(
        netloom(
            "lab",
            "up",
            "--name",
            name,
            "--hosts",
            "1",
            "--vms-per-host",
            "2",
            "--mtu",
            "9000",
            "--no-agents",
            "--json",
        ).stdout
    )
    assert up["phase"] == "up" and up["vm_mtu"] == 8950
    assert up["cluster"]["api_url"] == "http://192.0.2.1:8181"
    st = json.loads(netloom("lab", "status", "--name", name, "--json").stdout)
    assert [v["ip"] for v in st["vms"]] == ["10.0.0.10/24", "10.0.0.11/24"]
    assert st["cluster"]["alive"] is True
    table = netloom("lab", "status", "--name", name).stdout
    assert "h1-vm2" in table and "192.0.2.11" in table
    out = netloom(
        "lab", "exec", "--name", name, "h1-vm2", "--", "ip", "-o", "-4", "addr", "show", "eth0"
    ).stdout
    assert "10.0.0.11/24" in out
    assert (
        netloom(
            "lab", "exec", "--name", name, "10.0.0.10", "--", "sh", "-c", "exit 7", check=False
        ).returncode
        == 7
    )
    bad = netloom("lab", "exec", "--name", name, "nope", "--", "true", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: not_found")
    # the documented way to reach the API works
    reach = st["cluster"]["reach"].split()
    assert reach[:2] == ["nsenter", f"--net=/run/netns/{name}-sw"]
    hosts = subprocess.run(
        [
            *reach[:2],
            sys.executable,
            "-c",
            "from netloom.cli.main import main; main()",
            *reach[3:],
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert [h["name"] for h in json.loads(hosts)["items"]] == [f"{name}-h1"]
    down = netloom("lab", "down", "--name", name).stdout
    assert "cluster pid" in down and f"netns {name}-h1-vm1" in down
    assert netns.list_netns(f"{name}-") == []
    assert "removed 0 item(s)" in netloom("lab", "down", "--name", name).stdout


def test_bad_input_is_one_line_and_changes_nothing(lab_names: list[str]) -> None:
    name = unique_name()
    lab_names.append(name)
    for args in (["--mtu", "1400"], ["--store", "etcd"], ["--hosts", "0"]):
        done = netloom("lab", "up", "--name", name, *args, check=False)
        assert done.returncode == 1
        assert done.stderr.startswith("error: invalid_input"), done.stderr
        assert netns.list_netns(f"{name}-") == []
        assert name not in labs()  # a lab claimed and then refused is removed again
    bad = netloom("lab", "up", "--name", "UPPER", check=False)
    assert bad.returncode == 1 and "bad lab name" in bad.stderr
