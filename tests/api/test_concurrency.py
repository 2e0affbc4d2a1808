"""Concurrent writers: integrity holds whatever the interleaving. Each race runs under every
schedule that matters (:mod:`interleave`): serially in each order, and overlapped with the first
commits in each order; the first writer always wins."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from netloom.api.service import ObjectService
from netloom.errors import VersionConflict
from netloom.store.base import Store

from .conftest import assert_integrity, mac
from .interleave import ScheduledStore, check_conflicts, race, schedules, winners

pytestmark = pytest.mark.unit


@pytest.fixture
def sched(store: Store) -> ScheduledStore:
    return ScheduledStore(store)


def test_create_referrer_vs_delete_target_never_dangles(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(2)):
        bridge, _ = svc.create("bridge", {"name": f"b{i}"})
        lost = sched.lost
        port = {"device_id": bridge["id"], "type": "bridge", "mac": mac(i + 1)}
        results = race(
            sched,
            schedule,
            partial(svc.create, "port", port),
            partial(svc.delete, "bridge", bridge["id"]),
        )
        # the first one wins: a port on a live bridge, or a deleted bridge and no port
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
        if schedule.order[0] == 1:
            assert svc.list("port", {"device_id": bridge["id"]}) == []
        else:
            assert svc.get("bridge", bridge["id"])[1] == 1
        assert_integrity(sched.inner)


def test_create_referrer_vs_cascade_delete(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(2)):
        chain, _ = svc.create("chain", {"name": f"c{i}"})
        svc.create("rule", {"chain_id": chain["id"], "action": "accept"})
        lost = sched.lost
        results = race(
            sched,
            schedule,
            partial(svc.create, "rule", {"chain_id": chain["id"], "action": "drop"}),
            partial(svc.delete, "chain", chain["id"], cascade=True),
        )
        # the cascade always succeeds; a rule created first goes with the chain
        expected = [0, 1] if schedule.order[0] == 0 else [1]
        assert winners(results) == expected, (str(schedule), results)
        check_conflicts(sched, lost, schedule)
        assert svc.list("rule", {"chain_id": chain["id"]}) == []
        assert_integrity(sched.inner)


def test_concurrent_jumps_cannot_close_a_cycle(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(2)):
        a, _ = svc.create("chain", {"name": f"a{i}"})
        b, _ = svc.create("chain", {"name": f"b{i}"})
        lost = sched.lost
        results = race(
            sched,
            schedule,
            partial(
                svc.create,
                "rule",
                {"chain_id": a["id"], "action": "jump", "jump_chain_id": b["id"]},
            ),
            partial(
                svc.create,
                "rule",
                {"chain_id": b["id"], "action": "jump", "jump_chain_id": a["id"]},
            ),
        )
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
    assert_integrity(sched.inner)


def test_concurrent_duplicate_mac(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    for i, schedule in enumerate(schedules(3)):
        bridge, _ = svc.create("bridge", {})
        same_mac = {"device_id": bridge["id"], "type": "bridge", "mac": mac(0x500 + i)}
        lost = sched.lost
        results = race(sched, schedule, *(partial(svc.create, "port", same_mac) for _ in range(3)))
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
    assert_integrity(sched.inner)


def test_concurrent_links_to_one_port(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    router, _ = svc.create("router", {})
    for i, schedule in enumerate(schedules(2)):
        bridge, _ = svc.create("bridge", {})
        rport, _ = svc.create(
            "port",
            {
                "device_id": router["id"],
                "type": "router",
                "mac": mac(0x600 + i),
                "address": f"10.{i}.0.1/24",
            },
        )
        b1, _ = svc.create("port", {"device_id": bridge["id"], "type": "bridge"})
        b2, _ = svc.create("port", {"device_id": bridge["id"], "type": "bridge"})
        lost = sched.lost
        results = race(
            sched,
            schedule,
            partial(svc.link_ports, b1["id"], rport["id"]),
            partial(svc.link_ports, b2["id"], rport["id"]),
        )
        assert winners(results) == [schedule.order[0]], (str(schedule), results)
        check_conflicts(sched, lost, schedule)
        peer = (b1, b2)[schedule.order[0]]["id"]
        assert svc.get("port", rport["id"])[0]["peer_id"] == peer
    assert_integrity(sched.inner)


def test_concurrent_creates_get_unique_tunnel_keys(sched: ScheduledStore) -> None:
    svc = ObjectService(sched)
    bridge, _ = svc.create("bridge", {})
    made: list[int] = []
    for schedule in schedules(3):
        lost = sched.lost
        results = race(
            sched,
            schedule,
            *(partial(svc.create, "port", {"device_id": bridge["id"], "type": "bridge"}),) * 3,
        )
        assert winners(results) == [0, 1, 2], (str(schedule), results)
        check_conflicts(sched, lost, schedule, exact=False)
        made += [port["tunnel_key"] for port, _ in results]
    assert len(made) == len(set(made)) == 36
    assert_integrity(sched.inner)


def test_stale_version_is_a_conflict(service: ObjectService, client: Any) -> None:
    tenant, version = service.create("tenant", {"name": "a"})
    _, v2 = service.update("tenant", tenant["id"], {"name": "b"}, expect_version=version)
    assert v2 == version + 1
    with pytest.raises(VersionConflict):
        service.update("tenant", tenant["id"], {"name": "c"}, expect_version=version)
    with pytest.raises(VersionConflict):
        service.delete("tenant", tenant["id"], expect_version=version)
    # over HTTP: a stale ETag is a 412, the current one succeeds
    stale = client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"name": "d"}, headers={"If-Match": f'"{version}"'}
    )
    assert stale.status_code == 412 and stale.json()["code"] == "precondition_failed"
    fresh = client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"name": "d"}, headers={"If-Match": f'"{v2}"'}
    )
    assert fresh.status_code == 200 and fresh.headers["etag"] == f'"{v2 + 1}"'
    gone = client.delete(f"/api/v1/tenants/{tenant['id']}", headers={"If-Match": f'"{v2 + 1}"'})
    assert gone.status_code == 204
    assert service.list("tenant") == []
