"""The asyncio driver of the agent core: the only place that does I/O.

It wires the sans-IO :class:`~netloom.agent.core.Agent` to the world:

* the :class:`~netloom.topology.client.TopologyClient` (its listener feeds
  :meth:`Agent.on_topology`; the core's Subscribe/Unsubscribe requests become ``get`` /
  ``watch_field`` / ``unsubscribe`` calls, and each completed snapshot is reported back with
  :meth:`Agent.on_loaded`);
* the datapath's upcalls: fd-driven (``loop.add_reader`` on the BPF ring buffer's epoll fd)
  when the datapath has one, else polled every ``poll_s``;
* timers (:meth:`Agent.tick`);
* flow-state pushes to peer agents over UDP (:mod:`netloom.agent.flowstate`), or through a
  ``push_state`` hook (the unit tests' fake underlay);
* the routing sidecars of this host's uplinks (:mod:`netloom.agent.gateway`), stopped first
  on exit so their learned routes are withdrawn;
* the Prometheus endpoint and SIGTERM/SIGINT (clean exit: the topology client says goodbye,
  the datapath handles are released; kernel flows stay so traffic keeps flowing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netloom.agent import flowstate
from netloom.agent.arpshare import ReportArp
from netloom.agent.core import Agent, PushState, Subscribe, Unsubscribe
from netloom.agent.gateway import GatewayLink
from netloom.agent.simlog import SimLogFile, SimLogOutlet
from netloom.agent.snat import LeaseSnat
from netloom.agent.view import Interest
from netloom.agent.wiring import WiredPorts
from netloom.datapath.base import Datapath
from netloom.deploy import sdnotify
from netloom.errors import InvalidInput, NetloomError
from netloom.model.neighbors import ARP_KIND
from netloom.packet.util import int_to_ip
from netloom.topology.client import TopologyClient

READY_SETTLE_S = 30.0  # at most this long between connecting and telling systemd it is ready
log = logging.getLogger("netloom.agent")

PushHook = Callable[[PushState], None]


class AgentDriver:
    """Runs one :class:`Agent` (see the module docstring)."""

    def __init__(
        self,
        agent: Agent,
        client: TopologyClient,
        *,
        poll_s: float = 0.002,
        tick_s: float = 0.5,
        metrics_port: int | None = None,
        state_port: int | None = flowstate.STATE_PORT,
        push_state: PushHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        gateway: GatewayLink | None = None,
        simlog_dir: Path | None = None,
    ) -> None:
        self.agent = agent
        self.dp: Datapath = agent.dp
        self.client = client
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.metrics_port = metrics_port
        self.state_port = state_port
        self._push_hook = push_state
        self.clock = clock
        self.gateway = gateway
        # the simulation log: a file under the agent's state dir (if given), and the cluster
        self.simlog = SimLogOutlet(SimLogFile(simlog_dir) if simlog_dir is not None else None)
        self._subs: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._state_sock: socket.socket | None = None
        self._http: Any = None
        self._stopped = asyncio.Event()
        self._wired = WiredPorts()
        self._wake = asyncio.Event()
        self.state_rejected = 0
        self._state_failed = 0  # the address the channel could not bind (not retried)
        client.add_listener(self._on_change)
        agent.metrics.watch_revision(lambda: client.revision)
        waits = client.timings.reconnect_waits
        agent.metrics.watch_connects(lambda: client.connects, lambda: waits[-1] if waits else 0.0)
        agent.metrics.watch_learned(agent.view.learned_routes)
        agent.push_now = self._push  # flow state leaves before the packet it belongs to

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()
        self.agent.simlog.wall_offset = time.time() - self.clock()
        self.agent.start(self.clock())
        self._flush()
        if self.metrics_port is not None:
            from prometheus_client import start_http_server

            self._http, _thread = start_http_server(
                self.metrics_port, addr="127.0.0.1", registry=self.agent.metrics.registry
            )
            log.info("metrics on 127.0.0.1:%d", self.metrics_port)
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="agent-timers"))
        if self.gateway is not None:
            self.gateway.start()
        fd = self._upcall_fd()
        if fd is not None:
            asyncio.get_running_loop().add_reader(fd, self._wake.set)
        self._tasks.append(
            asyncio.create_task(self._upcall_loop(fd is not None), name="agent-upcalls")
        )

    async def stop(self) -> None:
        self._stopped.set()
        fd = self._upcall_fd()
        if fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fd)
        for t in [*self._tasks, *self._subs]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._subs, return_exceptions=True)
        self._tasks.clear()
        self._subs.clear()
        if self._state_sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._state_sock.fileno())
            self._state_sock.close()
            self._state_sock = None
        if self._http is not None:
            self._http.shutdown()
            self._http = None
        if self.gateway is not None:  # before the client: the withdrawals go out through it
            await self.gateway.stop()
        self.drain_simlog()
        self.simlog.close()
        await self.client.stop()

    async def run_until_signalled(self) -> None:
        """Start, run until SIGTERM/SIGINT, stop cleanly."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await self.start()
        log.info("agent running host=%s", self.agent.host_id)
        self._tasks.append(asyncio.create_task(self._announce_ready(), name="agent-ready"))
        watchdog = sdnotify.start_watchdog()
        if watchdog is not None:
            self._tasks.append(watchdog)
        await done.wait()
        log.info("agent stopping host=%s", self.agent.host_id)
        sdnotify.notify(sdnotify.STOPPING)
        await self.stop()
        self.dp.close()

    async def _announce_ready(self) -> None:
        """Tell systemd (``Type=notify``) the agent serves: connected to the topology service
        and what it subscribed to loaded, so its ports are plugged."""
        await self.client.wait_connected()
        with contextlib.suppress(TimeoutError):
            await self.settle(READY_SETTLE_S)
        sdnotify.notify(sdnotify.READY)
        log.info("agent ready host=%s", self.agent.host_id)

    async def open_state_channel(self) -> None:
        """Listen for flow-state pushes on this host's underlay address (once it is known:
        it comes with the tunnel zone; retried from the timer until it works)."""
        if self.state_port is None or self._push_hook is not None or self._state_sock:
            return
        ip = self.agent.local_ip
        if not ip or self._state_failed == ip:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((int_to_ip(ip), self.state_port))
        except OSError as exc:
            sock.close()
            self._state_failed = ip
            log.warning(
                "flow-state channel not opened addr=%s:%d error=%s",
                int_to_ip(ip),
                self.state_port,
                exc,
            )
            return
        self._state_sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self.drain_state)
        log.info("flow-state channel on %s:%d", int_to_ip(ip), self.state_port)

    # ---- topology -----------------------------------------------------------------------------

    def _on_change(self, kind: str, id: str, data: dict[str, Any] | None, rev: int) -> None:
        now = self.clock()
        if kind == ARP_KIND and data is not None:  # wall clock -> the agent's
            data = {**data, "expires": float(data["expires"]) - time.time() + now}
        self.agent.on_topology(kind, id, data, now)
        if self.gateway is not None:
            self.gateway.changed(kind)
        if kind == "port":
            self._report_wiring()
        self._flush()

    def _report_wiring(self) -> None:
        """Tell the cluster which bound ports' interfaces came or went."""
        for port_id, up in self._wired.changes(self.agent.bound, self.agent.view.peek):
            self.client.report_wired(port_id, up=up)

    def _flush(self) -> None:
        """Carry out what the core asked for."""
        for req in self.agent.take_requests():
            if isinstance(req, Subscribe):
                t = asyncio.get_running_loop().create_task(self._subscribe(req.interest))
                self._subs.add(t)
                t.add_done_callback(self._subs.discard)
            elif isinstance(req, Unsubscribe):
                self._unsubscribe(req.interest)
            elif isinstance(req, ReportArp):  # the agent's clock -> wall clock
                wall = req.entry.expires - self.clock() + time.time()
                self.client.report_arp(dataclasses.replace(req.entry, expires=wall))
            elif isinstance(req, LeaseSnat):
                t = asyncio.get_running_loop().create_task(self._lease(req))
                self._subs.add(t)
                t.add_done_callback(self._subs.discard)
            else:
                self._push(req)

    async def _subscribe(self, i: Interest) -> None:
        try:
            if i.id is not None:
                await self.client.get(i.kind, i.id)
            else:
                assert i.field is not None
                await self.client.watch_field(i.kind, i.field, i.value)
        except NetloomError as exc:
            log.warning("subscribe failed interest=%s error=%s", i, exc)
        self.agent.on_loaded(i, self.clock())
        self._flush()

    async def _lease(self, req: LeaseSnat) -> None:
        block: tuple[int, int] | None = None
        try:
            block = await self.client.lease_snat_block(req.device_id, req.ip)
        except NetloomError as exc:
            log.warning("snat lease failed device=%s ip=%s error=%s", req.device_id, req.ip, exc)
        self.agent.on_leased(req.device_id, req.ip, block, self.clock())
        self._flush()

    def _unsubscribe(self, i: Interest) -> None:
        if i.id is not None:
            self.client.unsubscribe(i.kind, i.id)
        else:
            assert i.field is not None
            self.client.unwatch_field(i.kind, i.field, i.value)

    # ---- flow state ---------------------------------------------------------------------------

    def _push(self, req: PushState) -> None:
        if self._push_hook is not None:
            self._push_hook(req)
            return
        if self._state_sock is None or self.state_port is None:
            return
        for dgram in flowstate.encode(req.changes, self.clock()):
            try:
                self._state_sock.sendto(dgram, (int_to_ip(req.ip), self.state_port))
            except OSError as exc:  # full buffer, no route: a lost push (see flowstate)
                log.warning("flow-state push lost dst=%s error=%s", int_to_ip(req.ip), exc)

    def drain_state(self) -> int:
        """Apply every flow-state datagram waiting on the channel; returns how many.

        Called when the socket is readable *and* before each batch of upcalls (:meth:`poll`):
        a peer pushes a connection's NAT/conntrack keys before it sends the connection's
        first packet (flow state between hosts), so by the time the reply reaches this host's
        datapath the
        push is already in the socket buffer. Were the upcall handled first, the reply would
        be simulated without the keys: through a floating IP it would take the SNAT rule
        instead of the reverse DNAT, create and push state of its own, and invalidate the
        peer's fresh flow: two to three upcalls per connection instead of one, enough to
        trip the per-port upcall limit and lose SYNs to a 1 s retransmission."""
        n = 0
        while self._state_sock is not None:
            try:
                data, addr = self._state_sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                log.warning("flow-state channel error=%s", exc)
                break
            self.on_state_datagram(data, str(addr[0]))
            n += 1
        return n

    def on_state_datagram(self, data: bytes, src: str) -> None:
        if src not in {int_to_ip(ip) for ip in self.agent.peers.values()}:
            self.state_rejected += 1
            return
        try:
            changes = flowstate.decode(data, self.clock())
        except InvalidInput as exc:
            self.state_rejected += 1
            log.warning("bad flow-state datagram src=%s error=%s", src, exc)
            return
        self.agent.apply_state(changes, self.clock())
        self._flush()

    def receive_state(self, req: PushState, now: float | None = None) -> None:
        """Apply a push addressed to this agent (the in-process fake underlay of tests)."""
        self.agent.apply_state(req.changes, self.clock() if now is None else now)
        self._flush()

    # ---- upcalls and timers -------------------------------------------------------------------

    def _upcall_fd(self) -> int | None:
        get = getattr(self.dp, "upcall_fd", None)
        if get is None:
            return None
        try:
            return int(get())
        except NetloomError:
            return None

    def poll(self) -> int:
        """Handle the upcalls waiting now, after the flow state that arrived before them
        (:meth:`drain_state`); returns how many."""
        self.drain_state()
        ups = self.dp.poll_upcalls(0.0, 256)
        if ups:
            self.agent.handle_upcalls(ups, self.clock())
            self._flush()
        return len(ups)

    async def _upcall_loop(self, fd_driven: bool) -> None:
        while not self._stopped.is_set():
            if fd_driven:
                await self._wake.wait()
                self._wake.clear()
            else:
                await asyncio.sleep(self.poll_s)
            try:
                while self.poll() == 256:
                    await asyncio.sleep(0)  # let the topology client breathe
            except NetloomError as exc:
                log.error("upcall handling failed error=%s", exc)
            except OSError as exc:  # the loop must outlive one bad batch: it is the datapath's
                log.error("upcall handling failed error=%r", exc)

    async def _timer_loop(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(self.tick_s)
            try:
                self.agent.tick(self.clock())
                self.drain_simlog()
            except NetloomError as exc:
                log.error("tick failed error=%s", exc)
            self._report_wiring()
            self._flush()
            await self.open_state_channel()

    def drain_simlog(self) -> None:
        """Write and ship what the agent logged since the last drain."""
        simlog = self.agent.simlog
        simlog.wall_offset = time.time() - self.clock()  # for what it records next
        taken = simlog.take()
        if taken[0] or self.simlog.pending:
            try:
                self.simlog.drain(taken, self.client.send_frame)
            except OSError as exc:  # e.g. a full disk: the log is lost, the agent goes on
                log.error("simulation log write failed error=%r", exc)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until no subscription is in flight and no upcall is waiting (tests)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self.poll() > 0
            if self._subs:
                await asyncio.wait(set(self._subs), timeout=max(0.0, deadline - time.monotonic()))
                busy = True
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("agent did not settle")
            await asyncio.sleep(0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (structured logs for collectors)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


__all__ = ["AgentDriver", "JsonFormatter", "PushHook"]
