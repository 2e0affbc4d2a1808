"""Fixtures of the Neutron API tests: a real ``netloom cluster --neutron`` process on the SQLite
store (ephemeral ports, read from its ready line), openstacksdk connected to it the way an
operator without Keystone does, and plain HTTP clients for what the SDK hides."""

from __future__ import annotations

import re
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.conftest import netloom_exe, stop_cluster

READY_TIMEOUT_S = 30.0
# openstacksdk warns about its own internals on every call (methods it deprecated for its next
# major release): not a defect of the code under test
SDK_WARNINGS = pytest.mark.filterwarnings(
    "ignore::openstack.warnings._RemovedInSDKWarning",
    "ignore::openstack.warnings.OpenStackDeprecationWarning",
)
PROJECT_A = "6f1c2b1e7a5d4c3b9a8e7f6d5c4b3a29"
PROJECT_B = "0a9b8c7d6e5f40312a1b2c3d4e5f6a7b"


@dataclass
class NeutronCluster:
    proc: subprocess.Popen[bytes]
    api: str  # native API base URL
    neutron: str  # Neutron API base URL
    log: Path

    def revision(self) -> int:
        """The store's revision: unchanged means nothing was stored."""
        return int(httpx.get(f"{self.api}/healthz", timeout=10).json()["revision"])


def start_neutron_cluster(tmp: Path, *extra: str) -> NeutronCluster:
    log = tmp / "cluster.log"
    cmd = [
        netloom_exe(),
        "cluster",
        "--api",
        "127.0.0.1:0",
        "--topology",
        "127.0.0.1:0",
        "--neutron",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp / "state"),
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        m = re.search(r"event=cluster\.ready .*api_port=(\d+) .*neutron_port=(\d+)", text)
        if m:
            return NeutronCluster(proc, f"http://127.0.0.1:{m[1]}", f"http://127.0.0.1:{m[2]}", log)
        if proc.poll() is not None:
            pytest.fail(f"netloom cluster exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    stop_cluster(proc)
    pytest.fail(f"netloom cluster not ready after {READY_TIMEOUT_S}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def neutron_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NeutronCluster]:
    c = start_neutron_cluster(tmp_path_factory.mktemp("neutron"))
    try:
        yield c
    finally:
        stop_cluster(c.proc)


def connect(url: str) -> Any:
    """openstacksdk against a Keystone-less Neutron endpoint."""
    import openstack

    with warnings.catch_warnings():
        # openstacksdk warns about an InfluxDB configuration nobody gave (its loader returns a
        # dict of None values, which is truthy)
        warnings.filterwarnings("ignore", message="Support for InfluxDB")
        return openstack.connect(
            auth_type="none", auth={"endpoint": url}, network_endpoint_override=url + "/"
        )


@pytest.fixture(scope="module")
def sdk(neutron_cluster: NeutronCluster) -> Any:
    return connect(neutron_cluster.neutron)


@pytest.fixture()
def neutron_http(neutron_cluster: NeutronCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=neutron_cluster.neutron + "/v2.0", timeout=10) as client:
        yield client


@pytest.fixture()
def native_http(neutron_cluster: NeutronCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=neutron_cluster.api + "/api/v1", timeout=10) as client:
        yield client
