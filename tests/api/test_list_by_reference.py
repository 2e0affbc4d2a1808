"""A list filtered on a reference (the routes of a router, the routes learned from a peer)
reads the records the target's reverse references name, not every record of the kind, and
answers the same as a full scan would."""

from __future__ import annotations

import builtins

import pytest

from netloom.api.service import ObjectService
from netloom.store.base import Item
from netloom.store.memory import MemoryStore

pytestmark = pytest.mark.unit


class ScanCountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.scans: builtins.list[str] = []

    def list(self, kind: str) -> builtins.list[Item]:
        self.scans.append(kind)
        return super().list(kind)


def test_a_filter_on_a_reference_reads_only_what_it_names() -> None:
    store = ScanCountingStore()
    svc = ObjectService(store)
    routers = [svc.create("router", {"name": f"r{i}"})[0]["id"] for i in range(2)]
    for i, r in enumerate(routers):
        for n in range(3 + i):
            svc.create("route", {"router_id": r, "dst": f"10.{i}.{n}.0/24", "type": "blackhole"})
    store.scans.clear()
    got = svc.list("route", {"router_id": routers[1]})
    assert store.scans == []
    assert sorted(d["dst"] for d, _ in got) == [f"10.1.{n}.0/24" for n in range(4)]
    both = svc.list("route", {"router_id": routers[0], "type": "blackhole"})
    assert len(both) == 3 and store.scans == []
    assert svc.list("route", {"router_id": "00000000-0000-4000-8000-000000000000"}) == []
    assert len(svc.list("route", {"type": "blackhole"})) == 7  # no reference: a scan
    assert store.scans == ["route"]
