"""One conformance suite for every NSDB backend (memory, SQLite, ZooKeeper): the semantics of
:class:`netloom.store.base.Store` that the rest of netloom relies on."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from netloom.errors import AlreadyExists, Compacted, NetloomError, NotFound, VersionConflict
from netloom.store.base import Change, Check, Delete, Op, Put, Store

from .storetest import Backend, Collector, key_of


def _assert_in_order_once(changes: list[Change]) -> None:
    """Revision order, and no change twice."""
    revs = [c.revision for c in changes]
    assert revs == sorted(revs)
    dupes = [k for k, n in Counter(key_of(c) for c in changes).items() if n > 1]
    assert not dupes, f"delivered more than once: {dupes[:5]}"


# -- objects ---------------------------------------------------------------------------------


def test_create_get_list_update_delete(store: Store) -> None:
    assert store.get("bridge", "b1") is None
    assert store.list("bridge") == []
    store.commit([Put("bridge", "b1", {"name": "one"}, expect_version=0)])
    store.commit([Put("bridge", "b2", {"name": "two"}), Put("router", "r1", {"x": [1, 2]})])
    b1 = store.get("bridge", "b1")
    assert b1 is not None and (b1.kind, b1.id, b1.version, b1.data) == (
        "bridge",
        "b1",
        1,
        {"name": "one"},
    )
    assert sorted((i.id, i.data["name"]) for i in store.list("bridge")) == [
        ("b1", "one"),
        ("b2", "two"),
    ]
    assert [i.id for i in store.list("router")] == ["r1"]
    store.commit([Put("bridge", "b1", {"name": "uno"}, expect_version=1)])
    b1 = store.get("bridge", "b1")
    assert b1 is not None and b1.version == 2 and b1.data == {"name": "uno"}
    store.commit([Delete("bridge", "b1", expect_version=2)])
    assert store.get("bridge", "b1") is None
    assert [i.id for i in store.list("bridge")] == ["b2"]
    assert store.list("nothing-here") == []


def test_get_many_answers_each_key_in_order(store: Store) -> None:
    store.commit([Put("bridge", "b1", {"n": 1}), Put("router", "r1", {"n": 2})])
    store.commit([Put("bridge", "b1", {"n": 3})])
    got = store.get_many([("router", "r1"), ("bridge", "nope"), ("bridge", "b1")])
    assert [None if it is None else (it.kind, it.id, it.version, it.data) for it in got] == [
        ("router", "r1", 1, {"n": 2}),
        None,
        ("bridge", "b1", 2, {"n": 3}),
    ]
    assert store.get_many([]) == []


def test_versions_count_writes_and_restart_after_delete(store: Store) -> None:
    for n in range(1, 5):
        store.commit([Put("port", "p", {"n": n})])  # unconditional put: create, then update
        item = store.get("port", "p")
        assert item is not None and item.version == n and item.data == {"n": n}
    store.commit([Delete("port", "p")])
    store.commit([Put("port", "p", {"n": 0}, expect_version=0)])
    item = store.get("port", "p")
    assert item is not None and item.version == 1


def test_stored_document_is_a_copy(store: Store) -> None:
    doc: dict[str, Any] = {"tags": ["a"], "nested": {"k": 1}}
    store.commit([Put("chain", "c", doc)])
    doc["tags"].append("b")
    doc["nested"]["k"] = 2
    item = store.get("chain", "c")
    assert item is not None and item.data == {"tags": ["a"], "nested": {"k": 1}}


def test_several_ops_on_one_key_in_one_commit(store: Store) -> None:
    rev = store.commit(
        [
            Put("rule", "r", {"v": 1}, expect_version=0),
            Put("rule", "r", {"v": 2}, expect_version=1),
            Check("rule", "r", 2),
        ]
    )
    item = store.get("rule", "r")
    assert item is not None and (item.version, item.data) == (2, {"v": 2})
    assert [(c.op, c.version, c.data) for c in store.changes(rev - 1) if c.revision == rev] == [
        ("put", 1, {"v": 1}),
        ("put", 2, {"v": 2}),
    ]
    rev = store.commit([Delete("rule", "r", expect_version=2), Put("rule", "r", {"v": 3})])
    item = store.get("rule", "r")
    assert item is not None and (item.version, item.data) == (1, {"v": 3})
    assert [(c.op, c.version) for c in store.changes(rev - 1) if c.revision == rev] == [
        ("delete", 2),
        ("put", 1),
    ]


# -- compare-and-set -------------------------------------------------------------------------

FAILING: list[tuple[str, Op, type[NetloomError]]] = [
    ("stale put", Put("host", "old", {"x": 1}, expect_version=1), VersionConflict),
    ("create existing", Put("host", "old", {"x": 1}, expect_version=0), AlreadyExists),
    ("update missing", Put("host", "ghost", {"x": 1}, expect_version=3), NotFound),
    ("delete missing", Delete("host", "ghost"), NotFound),
    ("stale delete", Delete("host", "old", expect_version=1), VersionConflict),
    ("check absent on existing", Check("host", "old", 0), VersionConflict),
    ("check missing", Check("host", "ghost", 1), NotFound),
    ("stale check", Check("host", "old", 1), VersionConflict),
]


@pytest.mark.parametrize(("case", "bad", "error"), FAILING, ids=[f[0] for f in FAILING])
def test_failed_condition_applies_nothing(
    store: Store, case: str, bad: Op, error: type[NetloomError]
) -> None:
    store.commit([Put("host", "old", {"v": 1})])
    store.commit([Put("host", "old", {"v": 2})])  # now at version 2
    before = store.revision()
    with pytest.raises(error):
        store.commit(
            [
                Put("host", "new", {"v": 1}, expect_version=0),  # would succeed alone
                Put("host", "old", {"v": 3}, expect_version=2),  # would succeed alone
                bad,
            ]
        )
    assert store.get("host", "new") is None
    old = store.get("host", "old")
    assert old is not None and (old.version, old.data) == (2, {"v": 2})
    assert store.revision() == before
    assert store.changes(before) == []


def test_passing_checks_guard_a_write(store: Store) -> None:
    store.commit([Put("tunnel_zone", "tz", {}), Put("host", "h", {})])
    store.commit(
        [
            Check("tunnel_zone", "tz", 1),
            Check("host", "none", 0),
            Put("host", "h", {"zone": "tz"}, expect_version=1),
        ]
    )
    h = store.get("host", "h")
    assert h is not None and h.data == {"zone": "tz"}


def test_cas_counter_under_contention(backend: Backend) -> None:
    """Read-modify-write with CAS retries from several threads (and, where the backend has
    them, several store instances): no increment is lost, none applied twice."""
    stores = [backend.open(), backend.open()]
    stores[0].commit([Put("counter", "c", {"n": 0}, expect_version=0)])
    per_thread, threads = 15, 4
    conflicts = Counter[str]()

    def bump(s: Store) -> None:
        for _ in range(per_thread):
            while True:
                item = s.get("counter", "c")
                assert item is not None
                try:
                    s.commit(
                        [
                            Put(
                                "counter",
                                "c",
                                {"n": item.data["n"] + 1},
                                expect_version=item.version,
                            )
                        ]
                    )
                    break
                except VersionConflict:
                    conflicts["n"] += 1

    workers = [threading.Thread(target=bump, args=(stores[i % 2],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    final = stores[1].get("counter", "c")
    assert final is not None
    assert final.data["n"] == per_thread * threads
    assert final.version == per_thread * threads + 1


# -- revisions and the change log ----------------------------------------------------------


def test_revisions_strictly_increase_and_changes_describe_commits(store: Store) -> None:
    start = store.revision()
    revs = [store.commit([Put("port", f"p{i}", {"i": i})]) for i in range(5)]
    revs.append(store.commit([Delete("port", "p0"), Put("port", "p1", {"i": 10})]))
    assert revs == sorted(set(revs)) and revs[0] > start
    assert store.revision() == revs[-1]
    changes = store.changes(start)
    assert [(c.revision, c.op, c.id, c.version, c.data) for c in changes] == [
        *[(revs[i], "put", f"p{i}", 1, {"i": i}) for i in range(5)],
        (revs[5], "delete", "p0", 1, None),
        (revs[5], "put", "p1", 2, {"i": 10}),
    ]
    # resuming from any revision returns exactly the later commits
    for k in range(len(revs)):
        assert [c.revision for c in store.changes(revs[k])] == [
            c.revision for c in changes if c.revision > revs[k]
        ]
    assert store.changes(revs[-1]) == []


def test_revisions_from_concurrent_writers_are_unique(store: Store) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def write(t: int) -> None:
        for i in range(20):
            rev = store.commit([Put("mac", f"{t}-{i}", {})])
            with lock:
                got.append(rev)

    workers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert len(got) == len(set(got)) == 80
    assert store.revision() == max(got)
    assert sorted(c.revision for c in store.changes(min(got) - 1)) == sorted(got)


def test_changes_limit_never_splits_a_commit(store: Store) -> None:
    start = store.revision()
    for n in range(3):
        store.commit([Put("route", f"{n}-{i}", {}) for i in range(3)])
    first = store.changes(start, limit=4)
    assert len(first) == 6  # two whole commits, not four changes
    assert len({c.revision for c in first}) == 2
    rest = store.changes(first[-1].revision, limit=4)
    assert len(rest) == 3 and rest[0].revision > first[-1].revision
    assert len(store.changes(start, limit=1)) == 3


def test_compacted(backend: Backend) -> None:
    store = backend.open(keep=3)
    revs = [store.commit([Put("ipag", str(i), {})]) for i in range(12)]
    with pytest.raises(Compacted):
        store.changes(0)
    with pytest.raises(Compacted):
        store.watch(0, lambda batch: None)
    recent = store.changes(revs[-3])
    assert [c.revision for c in recent] == revs[-2:]
    assert store.revision() == revs[-1]
    assert len(store.list("ipag")) == 12  # compaction trims the log, never the objects


def test_check_only_commits_keep_the_log_resumable(backend: Backend) -> None:
    store = backend.open(keep=4)
    store.commit([Put("host", "h", {})])
    revs = [store.commit([Check("host", "h", 1)]) for _ in range(3)]
    revs += [store.commit([Put("host", "h", {"n": i})]) for i in range(5)]
    # every revision within the kept window resumes, empty commits included
    assert [c.revision for c in store.changes(revs[-3])] == revs[-2:]


# -- watches ---------------------------------------------------------------------------------


def test_watch_delivers_in_order_exactly_once_under_concurrent_writers(
    store: Store, collector: Collector
) -> None:
    start = store.revision()
    w = store.watch(start, collector)
    writers, commits = 4, 25
    returned: list[int] = []
    lock = threading.Lock()

    def write(t: int) -> None:
        for i in range(commits):
            ops: list[Op] = [Put("port", f"w{t}-{i}", {"t": t, "i": i}, expect_version=0)]
            if i % 5 == 4:  # some multi-op commits: update + delete of earlier objects
                ops += [
                    Put("port", f"w{t}-{i - 1}", {"t": t, "i": -1}, expect_version=1),
                    Delete("port", f"w{t}-{i - 2}"),
                ]
            rev = store.commit(ops)
            with lock:
                returned.append(rev)

    workers = [threading.Thread(target=write, args=(t,)) for t in range(writers)]
    for th in workers:
        th.start()
    for th in workers:
        th.join(timeout=60)
    expected = store.changes(start)
    got = collector.wait_count(len(expected))
    w.cancel()
    _assert_in_order_once(got)
    assert got == expected
    assert len(got) == writers * commits + 2 * writers * (commits // 5)
    assert sorted({c.revision for c in got}) == sorted(returned)
    # each commit's changes arrive together, in the order of its ops
    by_rev: dict[int, list[Change]] = {}
    for c in got:
        by_rev.setdefault(c.revision, []).append(c)
    multi = [cs for cs in by_rev.values() if len(cs) > 1]
    assert len(multi) == writers * (commits // 5)
    for cs in multi:
        assert [(c.op, c.version) for c in cs] == [("put", 1), ("put", 2), ("delete", 1)]
    assert len(collector.threads) == 1  # one delivery thread: callbacks never overlap


def test_watch_resumes_from_a_revision(store: Store) -> None:
    revs = [store.commit([Put("bridge", str(i), {"i": i})]) for i in range(6)]
    mid = revs[2]
    first = Collector()
    w = store.watch(mid, first)
    got = first.wait_count(3)
    assert [c.revision for c in got] == revs[3:]
    w.cancel()
    more = [store.commit([Put("bridge", str(i), {"i": i})]) for i in range(6, 9)]
    second = Collector()
    w2 = store.watch(got[-1].revision, second)  # resume where the first one stopped
    assert [c.revision for c in second.wait_count(3)] == more
    more.append(store.commit([Delete("bridge", "0")]))
    got2 = second.wait_count(4)
    w2.cancel()
    assert [c.revision for c in got2] == more
    assert got2[-1].op == "delete" and got2[-1].data is None and got2[-1].version == 1
    assert first.changes == got  # cancelled: nothing after


def test_cancelled_watch_gets_nothing_more(store: Store, collector: Collector) -> None:
    w = store.watch(store.revision(), collector)
    store.commit([Put("x", "1", {})])
    collector.wait_count(1)
    w.cancel()
    store.commit([Put("x", "2", {})])
    assert not collector.wait_for(lambda c: len(c) > 1, timeout=0.3)


def test_watch_from_a_future_revision_waits(store: Store, collector: Collector) -> None:
    store.commit([Put("x", "a", {})])
    now = store.revision()
    w = store.watch(now, collector)
    assert not collector.wait_for(lambda c: bool(c), timeout=0.2)
    rev = store.commit([Put("x", "b", {})])
    assert [c.revision for c in collector.wait_count(1)] == [rev]
    w.cancel()


# -- several store instances on one backend ------------------------------------------------


def test_two_instances_see_each_others_commits(backend: Backend, collector: Collector) -> None:
    if not backend.shared:
        pytest.skip("the memory store has no second instance to share with")
    a, b = backend.open(), backend.open()
    w = b.watch(b.revision(), collector)
    rev_a = a.commit([Put("tenant", "t", {"by": "a"}, expect_version=0)])
    assert [c.revision for c in collector.wait_count(1)] == [rev_a]
    item = b.get("tenant", "t")
    assert item is not None and item.data == {"by": "a"}
    rev_b = b.commit([Put("tenant", "t", {"by": "b"}, expect_version=1)])
    assert rev_b > rev_a
    assert [c.revision for c in collector.wait_count(2)] == [rev_a, rev_b]
    with pytest.raises(VersionConflict):
        a.commit([Put("tenant", "t", {"by": "a"}, expect_version=1)])
    item = a.get("tenant", "t")
    assert item is not None and item.data == {"by": "b"} and item.version == 2
    assert a.revision() == b.revision() == rev_b
    w.cancel()


def test_interleaved_writers_on_two_instances_one_watch(
    backend: Backend, collector: Collector
) -> None:
    a, b = backend.open(), backend.open()
    w = a.watch(a.revision(), collector)
    returned: list[int] = []
    lock = threading.Lock()

    def write(s: Store, tag: str) -> None:
        for i in range(20):
            rev = s.commit([Put("port", f"{tag}{i}", {})])
            with lock:
                returned.append(rev)

    workers = [threading.Thread(target=write, args=(s, tag)) for s, tag in ((a, "a"), (b, "b"))]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    got = collector.wait_count(40)
    w.cancel()
    _assert_in_order_once(got)
    assert [c.revision for c in got] == sorted(returned)
