"""Small, typed helpers over pyroute2 for the namespace lab.

Every function names the namespace it acts in (``ns``; ``None`` is the root namespace) and is
idempotent: creating what exists (``may_exist=True``) and deleting what is gone
(``if_exists=True``) are no-ops, so a lab can be built and torn down again after a crash halfway
without special cases.

Links are created *inside* their namespace (a veth is created in ``ns`` with its peer directly
in ``peer_ns``, ``IFLA_NET_NS_FD``), never in the root namespace and then moved, so a crash
never leaves a lab interface behind in the root namespace, and two labs can use the same
interface names inside their own namespaces. Processes in a namespace: :mod:`netloom.lab.nsexec`.

pyroute2 is used for everything netlink does well (namespaces, links, addresses, routes).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as _pnetns
from pyroute2.netlink.exceptions import NetlinkError

from netloom.errors import AlreadyExists, DatapathError, InvalidInput, NotFound
from netloom.netns import NETNS_DIR, entered, netns_path

IFNAMSIZ = 15  # usable bytes of a Linux interface name (IFNAMSIZ 16 including the NUL)
_NS_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_IF_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")


# -- names -----------------------------------------------------------------------------------


def check_ns_name(name: str) -> str:
    """A namespace name that is a plain file name under /run/netns (no ``/``, no ``..``)."""
    if not _NS_NAME.match(name) or name in (".", ".."):
        raise InvalidInput(f"bad network namespace name {name!r}", field="netns")
    return name


def check_ifname(name: str) -> str:
    """An interface name the kernel accepts: at most 15 bytes, no ``/`` or whitespace."""
    if not _IF_NAME.match(name):
        raise InvalidInput(
            f"bad interface name {name!r} (1..{IFNAMSIZ} of [A-Za-z0-9_.-])", field="ifname"
        )
    return name


# -- namespaces ------------------------------------------------------------------------------


def exists(name: str) -> bool:
    return netns_path(name).exists()


def list_netns(prefix: str = "") -> list[str]:
    """Named namespaces (those under /run/netns) whose name starts with ``prefix``, sorted."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def create(name: str, *, may_exist: bool = True) -> bool:
    """Create namespace ``name`` with its loopback up; True when it was created now.

    Loopback is brought up because a fresh namespace has ``lo`` down, and anything listening on
    127.0.0.1 inside (the lab's ZooKeeper, an agent's metrics) would then be unreachable."""
    if exists(name):
        if not may_exist:
            raise AlreadyExists(f"network namespace {name} exists", field="netns")
        return False
    try:
        _pnetns.create(name)
    except FileExistsError:  # created concurrently
        if not may_exist:
            raise AlreadyExists(f"network namespace {name} exists", field="netns") from None
        return False
    except OSError as exc:
        raise DatapathError(f"cannot create network namespace {name}: {exc}") from None
    set_link(name, "lo", up=True)
    return True


def delete(name: str, *, if_exists: bool = True) -> bool:
    """Delete namespace ``name`` (its veths go with it; their peers elsewhere are destroyed by
    the kernel too). True when it was deleted now."""
    if not exists(name):
        if not if_exists:
            raise NotFound(f"no network namespace {name}", field="netns")
        return False
    try:
        _pnetns.remove(name)
    except FileNotFoundError:
        if not if_exists:
            raise NotFound(f"no network namespace {name}", field="netns") from None
        return False
    except OSError as exc:
        raise DatapathError(f"cannot delete network namespace {name}: {exc}") from None
    return True


@contextmanager
def iproute(ns: str | None) -> Iterator[IPRoute]:
    """A netlink socket bound to ``ns`` (root when None). Never creates the namespace: a typo
    must be an error, not a new empty namespace."""
    if ns is not None and not exists(ns):
        raise NotFound(f"no network namespace {ns}", field="netns")
    try:
        ipr = IPRoute() if ns is None else IPRoute(netns=str(netns_path(ns)), flags=0)
    except FileNotFoundError:
        raise NotFound(f"no network namespace {ns}", field="netns") from None
    try:
        yield ipr
    finally:
        ipr.close()


# -- links -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkInfo:
    """What the lab checks about one interface."""

    name: str
    index: int
    mtu: int
    mac: str
    up: bool
    kind: str | None
    master: int | None
    addresses: list[str] = field(default_factory=list)


def where(ns: str | None) -> str:
    return f"netns {ns}" if ns else "the root namespace"


def _index(ipr: IPRoute, ns: str | None, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NotFound(f"no interface {ifname} in {where(ns)}", field="ifname")
    return int(found[0])


def link_exists(ns: str | None, ifname: str) -> bool:
    with iproute(ns) as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def link_names(ns: str | None) -> list[str]:
    with iproute(ns) as ipr:
        return sorted(str(link.get("ifname")) for link in ipr.get_links())


def link_info(ns: str | None, ifname: str) -> LinkInfo:
    with iproute(ns) as ipr:
        idx = _index(ipr, ns, ifname)
        link = ipr.get_links(idx)[0]
        info = link.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        addrs = [
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx, family=2)
        ]
        return LinkInfo(
            name=ifname,
            index=idx,
            mtu=int(link.get("IFLA_MTU")),
            mac=str(link.get("IFLA_ADDRESS")),
            up=bool(link["flags"] & 1),
            kind=kind,
            master=link.get("IFLA_MASTER"),
            addresses=addrs,
        )


def _netlink(what: str, exc: NetlinkError) -> DatapathError:
    return DatapathError(f"{what}: {os.strerror(exc.code) if exc.code else exc}")


def create_veth(
    ns: str | None,
    ifname: str,
    peer_ns: str | None,
    peer_name: str,
    *,
    mtu: int | None = None,
    may_exist: bool = True,
) -> bool:
    """A veth pair, ``ifname`` in ``ns`` and ``peer_name`` in ``peer_ns``, created in place
    (both ends appear in their namespace at once). Both ends get ``mtu`` and are brought up.
    True when created now; with ``may_exist``, an existing ``ifname`` is kept (its MTU and
    state are still applied)."""
    check_ifname(ifname)
    check_ifname(peer_name)
    if peer_ns is not None and not exists(peer_ns):
        raise NotFound(f"no network namespace {peer_ns}", field="netns")
    created = False
    with iproute(ns) as ipr:
        if ipr.link_lookup(ifname=ifname):
            if not may_exist:
                raise AlreadyExists(f"interface {ifname} exists in {where(ns)}", field="ifname")
        else:
            peer: dict[str, Any] = {"ifname": peer_name}
            if peer_ns is not None:
                peer["net_ns_fd"] = str(netns_path(peer_ns))
            try:
                ipr.link("add", ifname=ifname, kind="veth", peer=peer)
            except NetlinkError as exc:
                raise _netlink(f"cannot create veth {ifname}/{peer_name}", exc) from None
            created = True
    set_link(ns, ifname, mtu=mtu, up=True)
    if peer_ns != ns or peer_name != ifname:
        set_link(peer_ns, peer_name, mtu=mtu, up=True)
    return created


def create_bridge(
    ns: str | None, ifname: str, *, mtu: int | None = None, may_exist: bool = True
) -> bool:
    """A Linux bridge, up. STP off and forward delay 0: a lab switch must forward at once
    (a learning delay of 15 s would make the first pings of every test fail)."""
    check_ifname(ifname)
    created = False
    with iproute(ns) as ipr:
        if ipr.link_lookup(ifname=ifname):
            if not may_exist:
                raise AlreadyExists(f"interface {ifname} exists in {where(ns)}", field="ifname")
        else:
            try:
                ipr.link("add", ifname=ifname, kind="bridge", br_stp_state=0, br_forward_delay=0)
            except NetlinkError as exc:
                raise _netlink(f"cannot create bridge {ifname}", exc) from None
            created = True
    set_link(ns, ifname, mtu=mtu, up=True)
    return created


BRIDGE_NF_SYSCTLS = (
    "bridge-nf-call-iptables",
    "bridge-nf-call-ip6tables",
    "bridge-nf-call-arptables",
)


def disable_bridge_netfilter(ns: str) -> list[str]:
    """Stop bridges in ``ns`` from passing frames through iptables/ip6tables/arptables.

    Why: when the machine has ``br_netfilter`` loaded (Docker does that), every frame a Linux
    bridge forwards also runs the netfilter hooks (``br_nf_pre_routing``, ``br_nf_forward_ip``,
    ...) of its namespace. A lab switch stands for a physical switch, which never runs the
    hosts' firewall; profiled, this was ~3 % of the overlay's CPU per byte (docs/benchmarks.md).
    The sysctls are per namespace, so nothing outside ``ns`` changes. Returns the sysctls it set
    (none when ``br_netfilter`` is not loaded: bridged frames skip netfilter already)."""
    changed = []
    with entered(check_ns_name(ns)):
        for name in BRIDGE_NF_SYSCTLS:
            try:
                (Path("/proc/sys/net/bridge") / name).write_text("0\n")
            except FileNotFoundError:
                continue
            changed.append(name)
    return changed


def set_master(ns: str | None, ifname: str, master: str) -> None:
    """Enslave ``ifname`` to bridge ``master`` (no-op when it already is)."""
    with iproute(ns) as ipr:
        idx = _index(ipr, ns, ifname)
        midx = _index(ipr, ns, master)
        try:
            ipr.link("set", index=idx, master=midx)
        except NetlinkError as exc:
            raise _netlink(f"cannot attach {ifname} to {master}", exc) from None


def set_link(
    ns: str | None,
    ifname: str,
    *,
    mtu: int | None = None,
    up: bool | None = None,
    mac: str | None = None,
) -> None:
    """Set any of MTU, MAC and admin state of ``ifname``; absent arguments are left alone."""
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InvalidInput(f"MTU {mtu} is outside 68..65535 (RFC 791 minimum)", field="mtu")
    changes: dict[str, Any] = {}
    if mtu is not None:
        changes["mtu"] = mtu
    if mac is not None:
        changes["address"] = mac
    if up is not None:
        changes["state"] = "up" if up else "down"
    if not changes:
        return
    with iproute(ns) as ipr:
        idx = _index(ipr, ns, ifname)
        try:
            ipr.link("set", index=idx, **changes)
        except NetlinkError as exc:
            raise _netlink(f"cannot set {changes} on {ifname} in {where(ns)}", exc) from None


def delete_link(ns: str | None, ifname: str, *, if_exists: bool = True) -> bool:
    with iproute(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            if not if_exists:
                raise NotFound(f"no interface {ifname} in {where(ns)}", field="ifname")
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV and if_exists:
                return False
            raise _netlink(f"cannot delete {ifname}", exc) from None
    return True


# -- addresses and routes ------------------------------------------------------------------------


def add_address(ns: str | None, ifname: str, cidr: str, *, may_exist: bool = True) -> bool:
    """Add ``cidr`` (``192.0.2.11/24``: address with prefix length) to ``ifname``."""
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise InvalidInput(f"bad address {cidr!r}: {exc}", field="address") from None
    if "/" not in cidr:
        raise InvalidInput(f"address {cidr!r} needs a prefix length", field="address")
    with iproute(ns) as ipr:
        idx = _index(ipr, ns, ifname)
        try:
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                if not may_exist:
                    raise AlreadyExists(f"{cidr} is already on {ifname}", field="address") from None
                return False
            raise _netlink(f"cannot add {cidr} to {ifname}", exc) from None
    return True


def add_default_route(ns: str | None, gateway: str, *, may_exist: bool = True) -> bool:
    """A default route via ``gateway`` (which must be on a connected subnet)."""
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError as exc:
        raise InvalidInput(f"bad gateway {gateway!r}: {exc}", field="gateway") from None
    with iproute(ns) as ipr:
        try:
            ipr.route("add", dst="0.0.0.0/0", gateway=str(gw))
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                if not may_exist:
                    raise AlreadyExists("a default route exists", field="gateway") from None
                return False
            raise _netlink(f"cannot add default route via {gw}", exc) from None
    return True


__all__ = [
    "IFNAMSIZ",
    "LinkInfo",
    "add_address",
    "add_default_route",
    "check_ifname",
    "check_ns_name",
    "create",
    "create_bridge",
    "create_veth",
    "delete",
    "delete_link",
    "entered",
    "exists",
    "iproute",
    "link_exists",
    "link_info",
    "link_names",
    "list_netns",
    "set_link",
    "set_master",
    "where",
]
