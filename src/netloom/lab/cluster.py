"""The lab's cluster: ``netloom cluster`` (and, for ``--store zookeeper``, a 3-member
ZooKeeper ensemble) in the switch namespace, a client of its API opened inside that namespace,
and the registration of the lab's hosts.

On ZooKeeper the lab may run several cluster processes (``clusters``): process ``i`` listens on
the API, Neutron and topology ports plus ``CLUSTER_PORT_STEP * i``; the record's ``api_url`` and
``topology`` are then comma-separated lists, which the API client and the agents take as they
are."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netloom.api.client import ApiClient
from netloom.datapath.pins import PIN_ROOT
from netloom.errors import (
    ApiUnreachable,
    InvalidInput,
    LabError,
    NetloomError,
    NotFound,
    StoreError,
)
from netloom.lab import netns, supervisor
from netloom.lab.addressing import API_PORT, CLUSTER_PORT_STEP, NEUTRON_PORT, TOPOLOGY_PORT
from netloom.lab.plumbing import Plumbing
from netloom.lab.state import ClusterRecord, StateFile


class NetnsApiClient(ApiClient):
    """An :class:`ApiClient` whose connections are opened inside network namespace ``ns``.

    A socket belongs to the namespace its creating thread was in at ``socket()`` time and stays
    there, so entering the namespace around each request (only the calling thread moves) is all
    it takes; pooled connections keep working after the thread has come back."""

    def __init__(self, ns: str, base_url: str, *, timeout: float = 10.0) -> None:
        super().__init__(base_url, timeout=timeout)
        self.netns = ns

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with netns.entered(self.netns):
            return super().request(method, path, **kwargs)


def netloom_argv() -> list[str]:
    """How to run the ``netloom`` CLI of *this* installation (the venv's script when present)."""
    script = Path(sys.executable).parent / "netloom"
    if script.exists():
        return [str(script)]
    found = shutil.which("netloom")
    if found:
        return [found]
    raise LabError(
        f"no `netloom` command next to {sys.executable} or on PATH: install the package "
        "(`make deps`, or `pip install .`)"
    )


def start_cluster(sf: StateFile, plumbing: Plumbing, api: ApiClient, timeout: float) -> None:
    """``netloom cluster`` inside the switch namespace on the underlay address (one process per
    topology endpoint of the record), with a per-lab SQLite file or a 3-node ZooKeeper
    ensemble; returns once ``api`` answers."""
    s = sf.state
    assert s.cluster is not None
    for i, topology in enumerate(s.cluster.topology.split(",")):
        api_addr = f"{s.switch_ip}:{API_PORT + CLUSTER_PORT_STEP * i}"
        # a state dir per process, as on separate machines: each keeps its own local files
        # (the flow history and the simulation log of the agents connected to it)
        state_dir = Path(s.dir) if i == 0 else Path(s.dir) / f"cluster-{i}"
        state_dir.mkdir(exist_ok=True)
        argv = [
            *netloom_argv(),
            "cluster",
            "--store",
            s.cluster.store_url,
            "--api",
            api_addr,
            "--topology",
            topology,
            "--neutron",
            f"{s.switch_ip}:{NEUTRON_PORT + CLUSTER_PORT_STEP * i}",
            "--state-dir",
            str(state_dir),
            "--host-timeout",
            "3",
        ]
        log = Path(s.dir) / ("cluster.log" if i == 0 else f"cluster-{i}.log")
        match = s.dir if i == 0 else api_addr  # in its command line (supervisor.still_ours)
        proc, rec = supervisor.spawn(s.switch_netns, argv, "cluster", match, log)
        s.processes.append(rec)
        sf.save()
        if i == 0:
            _wait_api(api, proc, log, timeout)
            continue
        with NetnsApiClient(s.switch_netns, f"http://{api_addr}") as one:
            _wait_api(one, proc, log, timeout)


def cluster_record(sf: StateFile, plumbing: Plumbing, clusters: int = 1) -> ClusterRecord:
    """Where the cluster processes listen and which store they use (starting ZooKeeper when
    that is the lab's store)."""
    s = sf.state
    lab_dir = Path(s.dir)
    if clusters != 1 and s.store != "zookeeper":
        raise InvalidInput("several cluster processes need --store zookeeper", field="clusters")
    if s.store == "sqlite":
        store_url = f"sqlite:{lab_dir / 'nsdb.sqlite'}"
    else:
        store_url = f"zookeeper:{_start_zookeeper(sf, plumbing)}/netloom"
    steps = [CLUSTER_PORT_STEP * i for i in range(clusters)]
    return ClusterRecord(
        netns=s.switch_netns,
        api_url=",".join(f"http://{s.switch_ip}:{API_PORT + d}" for d in steps),
        neutron_url=f"http://{s.switch_ip}:{NEUTRON_PORT}",  # the first process's
        topology=",".join(f"{s.switch_ip}:{TOPOLOGY_PORT + d}" for d in steps),
        store_url=store_url,
    )


def _start_zookeeper(sf: StateFile, plumbing: Plumbing) -> str:
    """A 3-member ensemble on the switch namespace's loopback. The JVMs are forked while
    this thread is inside the namespace, so they (and the readiness probes) live there."""
    from netloom.lab.zookeeper import ZooKeeperEnsemble

    s = sf.state
    zk_dir = Path(s.dir) / "zk"
    s.zookeeper_dir = str(zk_dir)
    sf.save()
    plumbing.make_dir(zk_dir)
    with netns.entered(s.switch_netns):
        # the JVMs must outlive `lab up` (the CLI exits at once): no parent-death signal;
        # `lab down` stops them from their recorded PIDs
        ens = ZooKeeperEnsemble(size=3, base_dir=zk_dir, die_with_parent=False)
        ens.start(wait=False)
        for m in ens.members:
            assert m.process is not None
            s.processes.append(
                supervisor.record(
                    m.process.pid,
                    "zookeeper",
                    str(m.directory),
                    s.switch_netns,
                    m.directory / "zookeeper.log",
                )
            )
            sf.save()
        ens.wait_serving()
        # the Popen objects die with this call; teardown works from the recorded PIDs
        return ens.connect_string


def _wait_api(api: ApiClient, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise StoreError(f"the lab cluster exited ({proc.returncode}): {tail(log)}")
        try:
            api.request("GET", "")
            return
        except ApiUnreachable:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"the lab cluster did not answer within {timeout:.0f} s: {tail(log)}"
                ) from None
            time.sleep(0.1)


def register_hosts(sf: StateFile, api: ApiClient) -> None:
    """One NSDB host per lab host and one VXLAN tunnel zone holding every tunnel address."""
    s = sf.state
    for h in s.hosts:
        if h.host_id is None:
            doc = api.create("hosts", {"name": h.name})
            h.host_id = doc["id"]
            h.bpf_pin_dir = str(PIN_ROOT / doc["id"])
            sf.save()
    members = [{"host_id": h.host_id, "ip": h.tunnel_ip or h.underlay_ip} for h in s.hosts]
    zone = s.topology.get("tunnel_zone")
    if zone is None:
        doc = api.create("tunnel_zones", {"name": s.name, "type": "vxlan", "members": members})
        s.topology["tunnel_zone"] = doc["id"]
        sf.save()
    else:
        api.update("tunnel_zones", zone, {"members": members})


def hosts_alive(cluster: ClusterRecord | None) -> dict[str, bool]:
    """host id -> ``alive`` as the cluster reports it ({} when the cluster is down)."""
    if cluster is None or not netns.exists(cluster.netns):
        return {}
    try:
        with NetnsApiClient(cluster.netns, cluster.api_url, timeout=2.0) as api:
            return {h["id"]: bool(h.get("alive")) for h in api.list("hosts")}
    except NetloomError:
        return {}


def require(cluster: ClusterRecord | None, lab: str) -> ClusterRecord:
    if cluster is None:
        raise NotFound(f"lab {lab} has no cluster", field="cluster")
    return cluster


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


__all__ = [
    "NetnsApiClient",
    "cluster_record",
    "hosts_alive",
    "netloom_argv",
    "register_hosts",
    "require",
    "start_cluster",
    "tail",
]
