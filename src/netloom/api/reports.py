"""The cluster's side of agent reports (:class:`~netloom.topology.reports.ReportSink`): routes
learned on an uplink become routes of its router, a session's state is kept for the API, a dead
host's learned routes go, and SNAT port blocks are leased (:mod:`netloom.api.snat`).

Every write goes through :class:`~netloom.api.service.ObjectService` plans, so learned routes
keep the store's integrity documents like any route, and every plan re-reads the uplink: a
report from a host the port is no longer bound to fails, whatever raced with it. A report is
a full set: it is compared with the store by route id (derived from uplink, peer and prefix)
and only the difference is written, :data:`CHUNK` routes per commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from pydantic import TypeAdapter, ValidationError

from netloom.api import snat
from netloom.api.neutron import port_status
from netloom.api.service import ObjectService
from netloom.api.tx import BGP_STATUS, REFS, Doc, Tx, check_id, ref_id, split_ref
from netloom.errors import InvalidInput, NotFound
from netloom.model import addressing
from netloom.model.bgp import LearnedRoute, PeerStatus, SessionState
from netloom.model.neighbors import ARP_KIND, ArpEntry
from netloom.model.types import UnicastMac

_MAC = TypeAdapter(UnicastMac)

# routes per store commit: with their index documents a commit stays far below ZooKeeper's
# 1 MiB request limit, and a report of 1000 prefixes is four commits
CHUNK = 250

__all__ = ["CHUNK", "ClusterReports"]


class ClusterReports:
    """Writes what agents report into the store through ``service``."""

    def __init__(self, service: ObjectService, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.store = service.store
        self._clock = clock

    # -- learned routes ----------------------------------------------------------------------

    def learned_routes(self, host_id: str, port_id: str, routes: Sequence[LearnedRoute]) -> int:
        item = self.store.get("port", _id(port_id, "port_id"))
        port = _uplink(item.data if item is not None else None, host_id, port_id)
        want = self._docs(port, routes)
        return self._write(host_id, port_id, want, self._learned_on(port))

    def _docs(self, port: Doc, routes: Sequence[LearnedRoute]) -> dict[str, Doc]:
        """The route documents of a report, normalised and checked (nothing is written if one
        is bad): a prefix (host bits zero), a next hop on the uplink's subnet, a peer of the
        uplink's router."""
        net = IPv4Interface(port["address"]).network
        addresses: dict[str, str] = {}
        out: dict[str, Doc] = {}
        for r in routes:
            if r.peer_id not in addresses:
                addresses[r.peer_id] = self._peer_address(port, r.peer_id)
            route = LearnedRoute(_prefix(r.dst), _next_hop(r.next_hop, net, port), r.peer_id)
            doc = addressing.learned_route(
                port["device_id"], port["id"], addresses[r.peer_id], route
            )
            out[doc["id"]] = doc
        return out

    def _peer_address(self, port: Doc, peer_id: str) -> str:
        item = self.store.get("bgp_peer", _id(peer_id, "peer_id"))
        if item is None or item.data.get("router_id") != port["device_id"]:
            raise InvalidInput(
                f"peer_id: no bgp_peer {peer_id} on router {port['device_id']}", field="peer_id"
            )
        return str(item.data["address"])

    def _learned_on(self, port: Doc, peer_id: str | None = None) -> set[str]:
        """The ids of the routes learned on uplink ``port`` (from one peer, if given): the
        routes out of the port that a peer of its router owns, from their reverse-reference
        documents (no route is read)."""
        router = port["device_id"]
        peers = [peer_id] if peer_id else self._referrers("router", router, "bgp_peer", "router_id")
        owned: set[str] = set()
        for p in peers:
            owned |= set(self._referrers("bgp_peer", p, "route", "learned_from"))
        return owned & set(self._referrers("port", port["id"], "route", "next_hop_port_id"))

    def _referrers(self, kind: str, id: str, of_kind: str, field: str) -> list[str]:
        """The ids of the ``of_kind`` records whose ``field`` names ``kind`` ``id``."""
        item = self.store.get(REFS, ref_id(kind, id))
        out = []
        for ref, fields in (item.data["referrers"] if item is not None else {}).items():
            k, rid = split_ref(ref)
            if k == of_kind and field in fields:
                out.append(rid)
        return out

    def _write(self, host_id: str, port_id: str, want: dict[str, Doc], have: set[str]) -> int:
        """Make the learned routes of the uplink ``want`` (ids ``have`` now): the difference,
        in commits of :data:`CHUNK` routes, each checking that the uplink is still the host's."""
        diff = sorted(want.keys() - have) + sorted(have - want.keys())
        for n in range(0, len(diff), CHUNK):
            chunk = diff[n : n + CHUNK]

            def plan(tx: Tx, chunk: list[str] = chunk) -> None:
                _uplink(tx.get("port", port_id), host_id, port_id)
                tx.prefetch(("route", rid) for rid in chunk)
                for rid in chunk:
                    old, new = tx.get("route", rid), want.get(rid)
                    if old != new:
                        self.service.save(tx, "route", rid, old, new)

            self.service.run(plan)
        return len(diff)

    # -- sessions ----------------------------------------------------------------------------

    def peer_status(self, host_id: str, status: PeerStatus) -> None:
        """Keep the session's state for the API. A session that leaves ``established`` drops
        the routes learned from it (RFC 4271 §9.2); routes reported while the agent has not
        seen the session established yet (a status lags the routes) are kept."""
        up = SessionState.ESTABLISHED.value
        doc = {
            "state": SessionState(status.state).value,
            "since": status.since,
            "routes": status.routes,
            "port_id": status.port_id,
            "host_id": host_id,
            "bfd_up": status.bfd_up,
        }
        _id(status.peer_id, "peer_id")

        def plan(tx: Tx) -> bool:
            port = _uplink(tx.get("port", _id(status.port_id, "port_id")), host_id, status.port_id)
            peer = tx.get("bgp_peer", status.peer_id)
            if peer is None or peer["router_id"] != port["device_id"]:
                raise InvalidInput(
                    f"peer_id: no bgp_peer {status.peer_id} on router {port['device_id']}",
                    field="peer_id",
                )
            old = tx.get(BGP_STATUS, status.peer_id)
            if old != doc:
                tx.put(BGP_STATUS, status.peer_id, doc)
            return old is not None and old.get("state") == up

        was_up = self.service.run(plan)
        if was_up and doc["state"] != up:
            port = self.store.get("port", status.port_id)
            if port is not None:
                have = self._learned_on(port.data, status.peer_id)
                self._write(host_id, status.port_id, {}, have)

    # -- ARP entries of uplinks --------------------------------------------------------------

    def arp_entry(self, host_id: str, entry: ArpEntry) -> None:
        """Keep ``entry`` for every agent simulating its router: learned on an uplink of
        ``host_id``, for an address on the uplink's subnet."""
        _id(entry.router_id, "router_id")
        try:
            ip, mac = IPv4Address(entry.ip), _MAC.validate_python(entry.mac)
        except (ValueError, ValidationError) as exc:
            raise InvalidInput(f"arp: {entry.ip} {entry.mac}: {exc}", field="ip") from None

        def plan(tx: Tx) -> None:
            port = _uplink(tx.get("port", _id(entry.port_id, "port_id")), host_id, entry.port_id)
            if port["device_id"] != entry.router_id:
                raise InvalidInput(
                    f"router_id: not the router of {entry.port_id}", field="router_id"
                )
            if ip not in IPv4Interface(port["address"]).network:
                raise InvalidInput(f"ip: {ip} is not on {port['address']}", field="ip")
            doc = {**entry.doc(host_id), "ip": str(ip), "mac": mac}
            if tx.get(ARP_KIND, entry.id) != doc:
                tx.put(ARP_KIND, entry.id, doc)

        self.service.run(plan)

    def hosts_down(self, host_ids: set[str], uplinks: set[str]) -> None:
        """As :meth:`hosts_gone`, and the dead hosts' SNAT port blocks are free again, their
        ports' interfaces no longer reported plugged (a reconnecting agent reports again)."""
        self.hosts_gone(host_ids, uplinks)
        snat.release(self.service, host_ids)
        port_status.drop_host(self.service, host_ids)

    def hosts_gone(self, host_ids: set[str], uplinks: set[str]) -> None:
        """The routes learned on the hosts' ``uplinks`` go, their sessions are down, the ARP
        entries they learned are forgotten; their SNAT port blocks stay leased to them."""
        for port_id, item in zip(
            sorted(uplinks),
            self.store.get_many([("port", u) for u in sorted(uplinks)]),
            strict=True,
        ):
            host = item.data.get("host_id") if item is not None else None
            if item is not None and host in host_ids:
                have = self._learned_on(item.data)
                if have:
                    self._write(str(host), port_id, {}, have)
        now = self._clock()
        for item in self.store.list(BGP_STATUS):
            data = item.data
            if data.get("host_id") in host_ids and data.get("state") != SessionState.DOWN.value:
                down = {**data, "state": SessionState.DOWN.value, "since": now, "routes": 0}
                self.service.run(_put_status(item.id, data, {**down, "bfd_up": None}))
        for item in self.store.list(ARP_KIND):
            if item.data.get("host_id") in host_ids:
                self.service.run(_drop_arp(item.id, item.data))

    # -- ports' interfaces --------------------------------------------------------------------

    def port_wired(self, host_id: str, port_id: str, *, up: bool) -> None:
        port_status.report(self.service, host_id, port_id, up=up)

    # -- SNAT --------------------------------------------------------------------------------

    def lease_snat_block(self, host_id: str, device_id: str, ip: str) -> tuple[int, int]:
        return snat.lease(self.service, host_id, device_id, ip)


def _drop_arp(entry_id: str, seen: Doc) -> Callable[[Tx], None]:
    def plan(tx: Tx) -> None:
        if tx.get(ARP_KIND, entry_id) == seen:  # else it was learned again since: keep it
            tx.delete(ARP_KIND, entry_id)

    return plan


def _put_status(peer_id: str, seen: Doc, doc: Doc) -> Callable[[Tx], None]:
    def plan(tx: Tx) -> None:
        if tx.get(BGP_STATUS, peer_id) == seen:  # else a newer report won: keep it
            tx.put(BGP_STATUS, peer_id, doc)

    return plan


def _uplink(port: Any, host_id: str, port_id: str) -> Doc:
    """``port`` if it is an uplink bound to ``host_id``; else the report is refused."""
    if (
        isinstance(port, dict)
        and port.get("type") == "router"
        and port.get("host_id") == host_id
        and port.get("address")
    ):
        return port
    raise InvalidInput(
        f"port_id: {port_id} is not an uplink of host {host_id} (a bound router port with an"
        " address); a host reports on its own uplinks only",
        field="port_id",
    )


def _id(value: str, field: str) -> str:
    """A canonical UUID, else the report is refused (and nothing reaches a path-keyed store)."""
    try:
        check_id(field.removesuffix("_id"), value)
    except NotFound:
        raise InvalidInput(f"{field}: {value!r} is not an id", field=field) from None
    return value


def _prefix(dst: str) -> str:
    try:
        return str(IPv4Network(dst, strict=True))
    except ValueError as exc:
        raise InvalidInput(f"dst: {dst!r} is not an IPv4 prefix ({exc})", field="dst") from None


def _next_hop(ip: str, net: IPv4Network, port: Doc) -> str:
    try:
        addr = IPv4Address(ip)
    except ValueError:
        raise InvalidInput(f"next_hop: {ip!r} is not an IPv4 address", field="next_hop") from None
    if addr not in net:
        raise InvalidInput(
            f"next_hop: {ip} is not on uplink {port['id']}'s subnet ({port['address']})",
            field="next_hop",
        )
    return str(addr)
