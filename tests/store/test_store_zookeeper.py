"""ZooKeeper-specific behaviour: address parsing, bad input, and the point of the backend:
writes and watches that carry on while an ensemble member dies."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from netloom.errors import InvalidInput, PayloadTooLarge, StoreError
from netloom.lab.zookeeper import ZooKeeperEnsemble, four_letter_word, free_ports
from netloom.store import open_store
from netloom.store.base import Put
from netloom.store.zk_conn import parse_hosts
from netloom.store.zookeeper import ZooKeeperStore
from waiting import wait_until

from .storetest import Collector


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "hosts", "chroot"),
    [
        ("127.0.0.1:2181", "127.0.0.1:2181", "/netloom"),
        ("a:1, b.example:2/", "a:1,b.example:2", "/netloom"),
        ("zk1:2181,zk2:2181/cloud/nsdb", "zk1:2181,zk2:2181", "/cloud/nsdb"),
        ("[::1]:2181/x", "[::1]:2181", "/x"),
    ],
)
def test_parse_hosts(spec: str, hosts: str, chroot: str) -> None:
    assert parse_hosts(spec) == (hosts, chroot)


@pytest.mark.unit
@pytest.mark.parametrize(
    "spec",
    [
        "",
        "/chroot",
        "host",
        "host:",
        "h:0",
        "h:70000",
        "h:1,,h:2",
        "h:1/a/../b",
        "h:1/zookeeper",
        "h:1/a b",
    ],
)
def test_parse_hosts_refuses(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_hosts(spec)
    with pytest.raises(InvalidInput):
        open_store(f"zookeeper:{spec}")  # refused before any connection attempt


@pytest.mark.unit
def test_unreachable_ensemble_is_a_store_error() -> None:
    (port,) = free_ports(1)
    t0 = time.monotonic()
    with pytest.raises(StoreError):
        ZooKeeperStore(f"127.0.0.1:{port}", timeout=1.0)
    assert time.monotonic() - t0 < 5


@pytest.fixture
def zk_hosts(zk_ensemble: ZooKeeperEnsemble) -> str:
    return f"{zk_ensemble.connect_string}/t-{uuid.uuid4().hex[:10]}"


@pytest.mark.zookeeper
def test_open_store_url_and_layout(zk_hosts: str) -> None:
    store = open_store(f"zookeeper:{zk_hosts}")
    try:
        assert isinstance(store, ZooKeeperStore)
        rev = store.commit([Put("bridge", "b1", {"name": "x"})])
        # the documented layout: objects/<kind>/<id> (version = znode version + 1), log/
        client = store._zk.client
        data, stat = client.get(f"{store.chroot}/objects/bridge/b1")
        assert data == b'{"name":"x"}' and stat.version == 0
        [entry] = client.get_children(f"{store.chroot}/log")
        assert int(entry.rsplit("-", 1)[1]) + 1 == rev
    finally:
        store.close()
    with pytest.raises(StoreError):
        store.get("bridge", "b1")


@pytest.mark.zookeeper
def test_bad_names_and_oversized_commits_change_nothing(zk_hosts: str) -> None:
    store = ZooKeeperStore(zk_hosts)
    try:
        rev = store.commit([Put("port", "ok", {})])
        for kind, id_ in [("port", "a/b"), ("", "x"), ("port", ".."), ("port", "a\nb")]:
            with pytest.raises(InvalidInput):
                store.commit([Put("port", "fine", {}), Put(kind, id_, {})])
        with pytest.raises(PayloadTooLarge):
            store.commit([Put("port", "fine", {}), Put("port", "big", {"blob": "x" * 600_000})])
        assert store.revision() == rev and store.get("port", "fine") is None
        assert store.commit([Put("port", "after", {})]) > rev  # the session is still fine
    finally:
        store.close()


@pytest.mark.zookeeper
def test_ensemble_helper(zk_ensemble: ZooKeeperEnsemble) -> None:
    modes = sorted(str(zk_ensemble.mode(m)) for m in zk_ensemble.members)
    assert modes == ["follower", "follower", "leader"]
    m = zk_ensemble.members[0]
    assert four_letter_word(zk_ensemble.host, m.client_port, "ruok") == "imok"


@pytest.mark.zookeeper
@pytest.mark.slow
@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_writes_and_watch_survive_losing_a_member(
    zk_ensemble: ZooKeeperEnsemble, victim: str
) -> None:
    """A writer keeps committing and a watcher (another client) keeps watching while one member
    is SIGKILLed: writes resume, and the watcher sees every commit once, in order. Each write
    is a create (expect_version=0), so a commit applied twice would fail with AlreadyExists.

    Killing the leader drops every client (followers stop serving until a new leader is
    elected); for the follower case both clients are pinned to the victim first, so they lose
    their connection mid-stream and must move to another member."""
    ens = zk_ensemble
    member = ens.leader()
    if victim == "follower":
        member = next(m for m in ens.members if m is not member)
    others = [m for m in ens.members if m is not member]
    hosts = ",".join(f"{ens.host}:{m.client_port}" for m in [member, *others])
    hosts += f"/t-{uuid.uuid4().hex[:10]}"
    writer = ZooKeeperStore(hosts, randomize_hosts=False)
    reader = ZooKeeperStore(hosts, randomize_hosts=False)
    assert writer.server == reader.server == f"{ens.host}:{member.client_port}"
    collector = Collector()
    watch = reader.watch(0, collector)
    returned: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    progress = threading.Condition()

    def write() -> None:
        i = 0
        try:
            while not stop.is_set():
                rev = writer.commit([Put("port", f"p{i}", {"i": i}, expect_version=0)])
                with progress:
                    returned.append(rev)
                    progress.notify_all()
                i += 1
        except BaseException as exc:
            errors.append(exc)

    def wait_commits(n: int, timeout: float) -> None:
        with progress:
            assert progress.wait_for(lambda: len(returned) >= n or bool(errors), timeout), (
                f"writer stuck at {len(returned)} commits"
            )
        assert not errors, errors

    thread = threading.Thread(target=write, name="zk-writer")
    thread.start()
    try:
        wait_commits(30, 10)
        before = len(returned)
        t0 = time.monotonic()
        ens.kill(member)
        wait_commits(before + 1, 20)
        stall = time.monotonic() - t0
        wait_commits(before + 50, 20)
        print(f"killed {victim} {member.myid}: next commit after {stall:.2f}s")
    finally:
        stop.set()
        thread.join(timeout=30)
        ens.start(member)  # back to three members for the following tests
    assert not errors, errors
    assert writer.server != f"{ens.host}:{member.client_port}"
    got = collector.wait_count(len(returned), timeout=20)
    watch.cancel()
    writer.close()
    reader.close()
    assert [c.revision for c in got] == returned  # every commit, in commit order
    assert [c.id for c in got] == [f"p{i}" for i in range(len(returned))]
    assert not [k for k, n in Counter(c.revision for c in got).items() if n > 1]
    assert returned == sorted(returned)


@pytest.mark.zookeeper
def test_watch_and_writes_survive_session_expiry(
    zk_ensemble: ZooKeeperEnsemble, zk_hosts: str
) -> None:
    """Expire both clients' sessions mid-stream (the classic trick: a second connection with the
    same session id and password closes it). kazoo opens new sessions; the watch re-arms
    from its last delivered revision and the writer's next commits go through."""
    from kazoo.client import KazooClient

    writer, reader = ZooKeeperStore(zk_hosts), ZooKeeperStore(zk_hosts)
    collector = Collector()
    watch = reader.watch(0, collector)
    revs = [writer.commit([Put("port", f"p{i}", {}, expect_version=0)]) for i in range(10)]
    collector.wait_revision(revs[-1])
    old_sessions = {}
    for store in (reader, writer):
        old_session = old_sessions[id(store)] = store._zk.client.client_id
        twin = KazooClient(zk_ensemble.connect_string, client_id=old_session)
        twin.start(timeout=10)
        twin.stop()
        twin.close()
    revs += [writer.commit([Put("port", f"p{i}", {}, expect_version=0)]) for i in range(10, 30)]
    got = collector.wait_count(30, timeout=15)
    watch.cancel()
    for store in (reader, writer):  # both really got a new session (expiry is asynchronous)
        old_id = old_sessions[id(store)][0]

        def renewed(s: Any = store, old: Any = old_id) -> bool:
            return bool(s._zk.client.client_id[0] != old)

        wait_until(
            renewed,
            15,
            "a new ZooKeeper session",
            0.1,
        )
    assert [c.revision for c in got] == revs
    writer.close()
    reader.close()
