"""One uplink's routing sidecar: a namespace with a veth into the datapath, bird2 in it,
supervised, configured from the port's BGP records, its learned routes and session states
reported.

bird runs in the foreground (``bird -f``) as this process's child, so a death is seen at once
(``wait``), and with a parent-death signal, so it dies with the agent (its sessions go down and
the upstream withdraws the routes through this gateway: nothing is announced by a gateway
whose agent is gone). bird is restarted after a back-off that doubles from ``backoff_min_s`` up to
``backoff_max_s`` and resets once a run has lasted ``stable_s``. When bird dies, the kernel
routes it installed are flushed (learned routes are ephemeral: gone with the session).
Session states come from bird's control socket (``show protocols``) on a low-rate timer; the
routes never do: they arrive as netlink events (:mod:`netloom.gateway.watch`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netloom.errors import GatewayError
from netloom.gateway import birdctl, plumbing
from netloom.gateway.config import (
    SIDECAR_NS_PREFIX,
    SidecarSpec,
    allocate_tables,
    names,
    protocol_name,
    render,
)
from netloom.gateway.metrics import GatewayMetrics
from netloom.gateway.report import BgpReporter
from netloom.gateway.routes import NEW, KernelRoute, LearnedTable
from netloom.gateway.watch import RouteWatch
from netloom.model.bgp import PeerStatus, SessionState

log = logging.getLogger("netloom.gateway")

REPORT_DELAY_S = 0.02  # route events this close together make one report
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), unix(7)

# (uplink port id, host-side interface or None): the sidecar is plugged / unplugged
PlugHook = Callable[[str, str | None], None]


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    run_dir: Path = Path("/run/netloom/gateway")
    bird: str = "bird"
    mtu: int = 1450  # the overlay MTU: what the datapath lets through to the sidecar
    host_ns: str | None = None  # where the host-side veth goes (None: the agent's namespace)
    ns_prefix: str = SIDECAR_NS_PREFIX  # the sidecar's namespace: this + the port id
    status_interval_s: float = 1.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 8.0
    stable_s: float = 30.0


@dataclass(slots=True)
class _Peer:
    state: SessionState = SessionState.DOWN
    since: float = 0.0
    routes: int = -1
    bfd_up: bool | None = None


@dataclass
class Sidecar:
    spec: SidecarSpec
    settings: SidecarSettings
    reporter: BgpReporter
    metrics: GatewayMetrics
    on_plug: PlugHook
    restarts: int = 0
    _tables: dict[str, int] = field(default_factory=dict)
    _learned: LearnedTable = field(default_factory=lambda: LearnedTable({}))
    _peers: dict[str, _Peer] = field(default_factory=dict)
    _proc: asyncio.subprocess.Process | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _watch: RouteWatch | None = None
    _stopping: bool = False
    _report_at: asyncio.TimerHandle | None = None
    _replay: list[tuple[str, KernelRoute]] | None = None  # events seen during a table read
    _bird_ok: bool = False  # bird's control socket answered since bird last started

    @property
    def cable(self) -> plumbing.Cable:
        ns, host_if, side_if = names(self.spec.port_id, self.settings.ns_prefix)
        return plumbing.Cable(ns, host_if, side_if, self.settings.host_ns)

    @property
    def ns(self) -> str:
        return self.cable.ns

    @property
    def host_if(self) -> str:
        return self.cable.host_if

    @property
    def dir(self) -> Path:
        return self.settings.run_dir / self.cable.host_if  # short: the socket path is bounded

    @property
    def sock(self) -> str:
        return str(self.dir / "bird.ctl")

    @property
    def pid(self) -> int | None:
        """bird's process id while it runs."""
        p = self._proc
        return p.pid if p is not None and p.returncode is None else None

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the namespace and veth, start bird and the watchers, plug the sidecar."""
        cable = self.cable
        if len(self.sock.encode()) >= _SUN_PATH_MAX:
            raise GatewayError(f"bird's socket path is too long: {self.sock}")
        self.dir.mkdir(parents=True, exist_ok=True)
        await plumbing.create(cable, self.spec.address, self.spec.mac, self.settings.mtu)
        self._write_config()
        self._watch = RouteWatch(cable.ns, self._on_route)
        self._watch.start(self._on_overrun)
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"bird {self.spec.port_id[:8]}"),
            asyncio.create_task(self._poll_status(), name=f"bgp status {self.spec.port_id[:8]}"),
        ]
        self.on_plug(self.spec.port_id, cable.host_if)
        log.info("sidecar up port=%s ns=%s", self.spec.port_id, cable.ns)

    async def stop(self) -> None:
        """Unplug, stop bird and the watchers, report nothing learned, remove everything
        (namespace, veth, run directory)."""
        self._stopping = True
        self.on_plug(self.spec.port_id, None)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._terminate()
        if self._watch is not None:
            self._watch.stop()
        if self._report_at is not None:
            self._report_at.cancel()
            self._report_at = None
        self._learned.set_tables({})
        self.reporter.learned_routes(self.spec.port_id, ())
        for pid in list(self._peers):
            self._set_peer(pid, SessionState.DOWN, 0, bfd=None)
            self.metrics.forget(pid)
        await plumbing.remove(self.cable)
        shutil.rmtree(self.dir, ignore_errors=True)
        log.info("sidecar down port=%s", self.spec.port_id)

    async def update(self, spec: SidecarSpec) -> None:
        """New BGP records for the port: rewrite the configuration and have bird reload it."""
        if spec == self.spec:
            return
        gone = {p.id for p in self.spec.peers} - {p.id for p in spec.peers}
        self.spec = spec
        self._write_config()
        if self.pid is not None:
            try:
                await birdctl.command(self.sock, f'configure "{self.dir / "bird.conf"}"')
            except GatewayError as exc:
                log.warning("bird configure failed port=%s error=%s", spec.port_id, exc)
        for pid in gone:
            self._set_peer(pid, SessionState.DOWN, 0, bfd=None)
            self._peers.pop(pid, None)
            self.metrics.forget(pid)
        self._report_routes()

    def _write_config(self) -> None:
        self._tables = allocate_tables(self.spec.peers, self._tables)
        self._learned.set_tables({t: p for p, t in self._tables.items()})
        text = render(self.spec, self._tables, names(self.spec.port_id)[2])
        tmp = self.dir / "bird.conf.tmp"
        tmp.write_text(text)
        tmp.replace(self.dir / "bird.conf")

    # ---- bird -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.settings.backoff_min_s
        while not self._stopping:
            started = time.monotonic()
            await self._spawn()
            assert self._proc is not None
            rc = await self._proc.wait()
            if self._stopping:
                return
            self._all_down()  # at once, not at the next status poll
            self._forget_routes()  # bird's routes die with it, whatever the kernel holds
            self.restarts += 1
            self.metrics.restarts.inc()
            log.warning("bird exited port=%s rc=%s restart_in=%.1fs", self.spec.port_id, rc, delay)
            await self._flush()
            if time.monotonic() - started >= self.settings.stable_s:
                delay = self.settings.backoff_min_s
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.backoff_max_s)

    async def _spawn(self) -> None:
        conf, pidfile = self.dir / "bird.conf", self.dir / "bird.pid"
        errlog = (self.dir / "bird.log").open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.ns, "setpriv", "--pdeathsig", "KILL",
                self.settings.bird, "-f",
                "-c", str(conf), "-s", self.sock, "-P", str(pidfile),
                stdin=asyncio.subprocess.DEVNULL, stdout=errlog, stderr=errlog,
            )  # fmt: skip
        finally:
            errlog.close()

    async def _terminate(self) -> None:
        p = self._proc
        if p is None or p.returncode is not None:
            return
        p.terminate()
        try:
            await asyncio.wait_for(p.wait(), 3.0)
        except TimeoutError:
            p.kill()
            await p.wait()

    async def _flush(self) -> None:
        for t in self._tables.values():
            await plumbing.flush_table(self.ns, t)

    # ---- routes ---------------------------------------------------------------------------

    def _on_route(self, event: str, route: KernelRoute) -> None:
        """A route event: reported with the others of the same burst (a full table announced
        at once is one report, not one per prefix)."""
        if self._replay is not None:
            self._replay.append((event, route))
        if self._learned.apply(event, route) and self._report_at is None:
            loop = asyncio.get_running_loop()
            self._report_at = loop.call_later(REPORT_DELAY_S, self._report_routes)

    def _forget_routes(self) -> None:
        """Report nothing learned on the port (bird is gone); the tables are read again when
        its control socket answers (:meth:`_poll_status`)."""
        self._learned = LearnedTable({t: p for p, t in self._tables.items()})
        self._bird_ok = False
        self._report_routes()

    def _on_overrun(self) -> None:
        asyncio.get_running_loop().create_task(self._resync())

    async def _resync(self) -> None:
        """Events were lost, or bird is back: read the peer tables whole (``ip -j route``) and
        start over; events that arrive during the read are applied after it."""
        fresh = LearnedTable({t: p for p, t in self._tables.items()})
        self._replay = []
        try:
            for t in self._tables.values():
                for r in await _dump(self.ns, t):
                    fresh.apply(NEW, r)
            for event, route in self._replay:
                fresh.apply(event, route)
        finally:
            self._replay = None
        self._learned = fresh
        self._report_routes()

    def _report_routes(self) -> None:
        if self._report_at is not None:
            self._report_at.cancel()
            self._report_at = None
        self.reporter.learned_routes(self.spec.port_id, self._learned.routes())
        for peer in self.spec.peers:
            n = self._learned.count(peer.id)
            self.metrics.routes_learned.labels(peer.id).set(n)
            st = self._peers.get(peer.id)
            if st is not None and st.routes != n:
                self._set_peer(peer.id, st.state, st.since, bfd=st.bfd_up)

    # ---- session states -------------------------------------------------------------------

    async def _poll_status(self) -> None:
        while True:
            try:
                await self._read_status()
            except GatewayError:  # bird down or starting: every session is down
                self._all_down()
            else:
                if not self._bird_ok:  # bird (back): the tables are the truth, read them
                    self._bird_ok = True
                    await self._resync()
            await asyncio.sleep(self.settings.status_interval_s)

    def _all_down(self) -> None:
        for peer in self.spec.peers:
            self._set_peer(peer.id, SessionState.DOWN, time.time(), bfd=None)

    async def _read_status(self) -> None:
        rows = birdctl.parse_protocols(await birdctl.command(self.sock, "show protocols"))
        bfd: dict[str, bool] = {}
        if any(p.bfd for p in self.spec.peers):
            bfd = birdctl.parse_bfd(await birdctl.command(self.sock, "show bfd sessions"))
        for peer in self.spec.peers:
            row = rows.get(protocol_name(peer.id))
            state = row.session if row is not None else SessionState.DOWN
            since = row.since if row is not None and row.since else time.time()
            bfd_up = bfd.get(peer.address, False) if peer.bfd else None
            self._set_peer(peer.id, state, since, bfd=bfd_up)

    def _set_peer(
        self, peer_id: str, state: SessionState, since: float, *, bfd: bool | None
    ) -> None:
        st = self._peers.setdefault(peer_id, _Peer())
        n = self._learned.count(peer_id)
        if (st.state, st.routes, st.bfd_up) == (state, n, bfd):
            return
        if st.state is not state:
            st.since = since
        st.state, st.routes, st.bfd_up = state, n, bfd
        up = 1 if state is SessionState.ESTABLISHED else 0
        self.metrics.session_up.labels(peer_id).set(up)
        self.reporter.peer_status(PeerStatus(peer_id, self.spec.port_id, state, st.since, n, bfd))

    def status(self) -> dict[str, PeerStatus]:
        """The last state seen of each peer of this sidecar."""
        return {
            pid: PeerStatus(pid, self.spec.port_id, st.state, st.since, st.routes, st.bfd_up)
            for pid, st in self._peers.items()
        }


async def _dump(ns: str, table: int) -> list[KernelRoute]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "-n", ns, "-j", "-4", "route", "show", "table", str(table),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:  # no such table yet (ip -j prints a lone "[" then): empty
        return []
    routes = []
    for r in json.loads(out or b"[]"):
        dst = "0.0.0.0/0" if r.get("dst") == "default" else r["dst"]
        dst = dst if "/" in dst else f"{dst}/32"
        gws = [r["gateway"]] if "gateway" in r else [h["gateway"] for h in r.get("nexthops", [])]
        routes.append(KernelRoute(table, dst, tuple(sorted(gws))))
    return routes


__all__ = ["PlugHook", "Sidecar", "SidecarSettings"]
