"""SQLite-specific behaviour: several processes on one file, durability across reopen."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from netloom.errors import Compacted, InvalidInput
from netloom.store import open_store
from netloom.store.base import Put
from netloom.store.sqlite import SqliteStore

from .storetest import Collector

pytestmark = pytest.mark.unit

WRITER = """
import sys
from netloom.store.sqlite import SqliteStore
from netloom.store.base import Put
store = SqliteStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.commit([Put("port", f"{sys.argv[2]}{i}", {"i": i}, expect_version=0)])
store.close()
"""


def test_processes_and_threads_share_one_file(tmp_path: Path) -> None:
    """Two writer processes and a writer thread commit to one file while a watcher in this
    process (its own store object, so it must poll the file) sees every change once, in
    order, with contiguous revisions."""
    path = tmp_path / "nsdb.sqlite"
    mine, watcher = SqliteStore(path), SqliteStore(path)
    collector = Collector()
    w = watcher.watch(0, collector)
    n = 40
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n)])
        for tag in ("a", "b")
    ]
    local = threading.Thread(
        target=lambda: [
            mine.commit([Put("port", f"c{i}", {"i": i}, expect_version=0)]) for i in range(n)
        ]
    )
    local.start()
    try:
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    local.join(timeout=60)
    got = collector.wait_count(3 * n)
    w.cancel()
    assert [c.revision for c in got] == list(range(1, 3 * n + 1))
    for tag in "abc":
        assert [c.data["i"] for c in got if c.id.startswith(tag) and c.data] == list(range(n))
    assert len(mine.list("port")) == 3 * n
    mine.close()
    watcher.close()


def test_reopen_keeps_objects_revision_and_log(tmp_path: Path) -> None:
    path = tmp_path / "nsdb.sqlite"
    store = open_store(f"sqlite:{path}")
    revs = [store.commit([Put("bridge", str(i), {"i": i})]) for i in range(3)]
    store.close()
    again = SqliteStore(path)
    assert again.revision() == revs[-1]
    item = again.get("bridge", "2")
    assert item is not None and item.data == {"i": 2}
    assert [c.revision for c in again.changes(revs[0])] == revs[1:]
    assert again.commit([Put("bridge", "3", {})]) == revs[-1] + 1
    assert again.compact(keep_revisions=1) == revs[-1]
    with pytest.raises(Compacted):
        again.changes(revs[-1] - 1)
    again.close()


def test_needs_a_file_path() -> None:
    with pytest.raises(InvalidInput):
        SqliteStore(":memory:")
    with pytest.raises(InvalidInput):
        open_store("sqlite:")
