"""Fixtures for the NSDB conformance suite: one ``backend`` fixture parametrized over memory,
SQLite and ZooKeeper, and a real 3-member ZooKeeper ensemble started once per session."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netloom.lab.zookeeper import CLASSPATH, ZooKeeperEnsemble
from netloom.store.base import Store

from .storetest import Backend, Collector, memory_opener, sqlite_opener, zk_opener


@pytest.fixture(scope="session")
def zk_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    if shutil.which("java") is None or not all(j.exists() for j in CLASSPATH):
        pytest.skip("java or Debian's zookeeper package is not installed")
    with ZooKeeperEnsemble(size=3, base_dir=tmp_path_factory.mktemp("zk")) as ens:
        yield ens


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("zookeeper", marks=pytest.mark.zookeeper),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name = request.param
    if name == "memory":
        b = Backend(name, memory_opener())
    elif name == "sqlite":
        b = Backend(name, sqlite_opener(tmp_path / "nsdb.sqlite"))
    else:
        ens: ZooKeeperEnsemble = request.getfixturevalue("zk_ensemble")
        b = Backend(name, zk_opener(f"{ens.connect_string}/t-{uuid.uuid4().hex[:10]}"))
    try:
        yield b
    finally:
        b.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


@pytest.fixture
def collector() -> Collector:
    return Collector()
