"""Three cluster processes' topology servers, each on its own connection to one real 3-member
ZooKeeper ensemble: a write through one reaches an agent of another, the agent moves when its
server goes and resumes from its revision, and its host is never marked down meanwhile."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netloom.lab.zookeeper import CLASSPATH, ZooKeeperEnsemble
from netloom.store.base import Put
from netloom.store.zookeeper import ZooKeeperStore
from netloom.topology import TopologyClient
from netloom.topology.server import TopologyServer
from waiting import eventually

from .conftest import run

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    if shutil.which("java") is None or not all(j.exists() for j in CLASSPATH):
        pytest.skip("java or Debian's zookeeper package is not installed")
    with ZooKeeperEnsemble(size=3, base_dir=Path(tmp_path_factory.mktemp("zk"))) as ens:
        yield ens


def test_three_cluster_processes_on_one_ensemble(ensemble: ZooKeeperEnsemble) -> None:
    url = f"{ensemble.connect_string}/t-{uuid.uuid4().hex[:10]}"
    stores = [ZooKeeperStore(url) for _ in range(3)]

    async def scenario() -> None:
        stores[0].commit([Put("host", "h1", {"id": "h1", "name": "compute-1", "alive": False})])
        servers = [
            TopologyServer(s, host_timeout_s=2.0, member_id=f"m{i}") for i, s in enumerate(stores)
        ]
        ports = [await s.start("127.0.0.1", 0) for s in servers]
        try:
            client = TopologyClient("h1", [("127.0.0.1", p) for p in ports])
            await client.start()
            await client.wait_connected(10)
            first = ports.index(client.address[1])
            await eventually(lambda: all(s.host_alive("h1") for s in servers), what="up")
            assert await client.get("router", "r1") is None
            writer = stores[(first + 1) % 3]  # through another process's store connection
            rev = writer.commit([Put("router", "r1", {"id": "r1", "name": "edge"})])
            await eventually(lambda: client.revision is not None and client.revision >= rev)
            assert client.cached("router", "r1") == {"id": "r1", "name": "edge"}
            applied = client.applied
            await servers[first].stop()
            await eventually(lambda: client.connects == 2 and client.connected, what="moved")
            assert client.resume_modes[-1] == "history" and client.applied == applied
            rev = writer.commit([Put("router", "r1", {"id": "r1", "name": "core"})])
            await eventually(lambda: client.cached("router", "r1") == {"id": "r1", "name": "core"})
            item = stores[(first + 2) % 3].get("host", "h1")
            assert item is not None and item.data["alive"] is True
            await client.stop()
        finally:
            for s in servers:
                await s.stop()

    try:
        run(scenario())
    finally:
        for s in stores:
            s.close()
