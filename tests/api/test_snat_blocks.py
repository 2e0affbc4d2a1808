"""SNAT port-block leases in the store: concurrent leases by several hosts never share a block
(compare-and-set, on every backend the fixture runs), a dead host's blocks are free again."""

from __future__ import annotations

import threading

import pytest

from netloom.api import snat
from netloom.api.reports import ClusterReports
from netloom.api.service import ObjectService
from netloom.errors import InvalidInput
from netloom.store.base import Store

pytestmark = pytest.mark.unit


def test_concurrent_leases_are_disjoint_and_a_dead_hosts_blocks_are_released(
    store: Store,
) -> None:
    router = ObjectService(store).create("router", {"name": "provider"})[0]["id"]
    got: dict[str, list[tuple[int, int]]] = {f"h{i}": [] for i in range(4)}

    def lease(host: str) -> None:
        service = ObjectService(store)  # one per thread, as cluster processes would be
        for _ in range(10):
            got[host].append(snat.lease(service, host, router, "203.0.113.7"))

    threads = [threading.Thread(target=lease, args=(h,)) for h in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blocks = [b for bs in got.values() for b in bs]
    assert len(set(blocks)) == 40
    assert all(hi - lo + 1 == snat.SNAT_BLOCK_SIZE for lo, hi in blocks)
    ClusterReports(ObjectService(store)).hosts_down({"h0", "h1"}, set())
    again = snat.lease(ObjectService(store), "h9", router, "203.0.113.7")
    assert again in got["h0"] + got["h1"]  # freed: the lowest free block is one of theirs
    assert snat.release(ObjectService(store), {"h2", "h3", "h9"}) == 21


@pytest.mark.parametrize(
    ("device", "ip"),
    [("not-an-id", "203.0.113.7"), ("00000000-0000-4000-8000-000000000000", "203.0.113.7")],
)
def test_a_lease_for_no_router_is_refused(store: Store, device: str, ip: str) -> None:
    with pytest.raises(InvalidInput):
        snat.lease(ObjectService(store), "h1", device, ip)
    router = ObjectService(store).create("router", {})[0]["id"]
    with pytest.raises(InvalidInput):
        snat.lease(ObjectService(store), "h1", router, "not-an-address")
