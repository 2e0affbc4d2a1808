"""Small, typed helpers over pyroute2 for the namespace lab.

Every function names the namespace it acts in (``ns``; ``None`` is the root namespace) and is
idempotent: creating what exists (``may_exist=True``) and deleting what is gone
(``if_exists=True``) are no-ops, so a lab can be built and torn down again after a crash halfway
without special cases.

Two deliberate choices:

* links are created *inside* their namespace (a veth is created in ``ns`` with its peer
  directly in ``peer_ns``, ``IFLA_NET_NS_FD``), never in the root namespace and then moved, so
  a crash never leaves a lab interface behind in the root namespace, and two labs can use the
  same interface names inside their own namespaces;
* commands run through ``nsenter --net=/run/netns/NAME``, not ``ip netns exec``: the latter
  remounts /sys, which hides the bpffs pins the datapath relies on (see ARCHITECTURE.md,
  pitfalls).

pyroute2 is used for everything netlink does well (namespaces, links, addresses, routes);
``ethtool`` (offloads) is the one command-line tool, because its netlink family is awkward from
pyroute2 and the ioctl path is what every distribution's ethtool speaks.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as _pnetns
from pyroute2.netlink.exceptions import NetlinkError

from netloom.errors import AlreadyExists, DatapathError, InvalidInput, NotFound
from netloom.netns import NETNS_DIR, entered, netns_path
from netloom.packet.checksum import checksum

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


def pids_in(name: str) -> list[int]:
    """PIDs of the processes whose network namespace is ``name`` (by device and inode of the
    namespace file, the only reliable identity of a namespace)."""
    try:
        target = os.stat(netns_path(name))
    except FileNotFoundError:
        return []
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry))
    return sorted(found)


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


def _where(ns: str | None) -> str:
    return f"netns {ns}" if ns else "the root namespace"


def _index(ipr: IPRoute, ns: str | None, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NotFound(f"no interface {ifname} in {_where(ns)}", field="ifname")
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
                raise AlreadyExists(f"interface {ifname} exists in {_where(ns)}", field="ifname")
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
                raise AlreadyExists(f"interface {ifname} exists in {_where(ns)}", field="ifname")
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
            raise _netlink(f"cannot set {changes} on {ifname} in {_where(ns)}", exc) from None


def delete_link(ns: str | None, ifname: str, *, if_exists: bool = True) -> bool:
    with iproute(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            if not if_exists:
                raise NotFound(f"no interface {ifname} in {_where(ns)}", field="ifname")
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


# -- commands ----------------------------------------------------------------------------------


def nsenter_argv(ns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed to run inside ``ns`` (unchanged for the root namespace)."""
    if not argv:
        raise InvalidInput("empty command", field="command")
    if ns is None:
        return list(argv)
    return ["nsenter", f"--net={netns_path(ns)}", "--", *argv]


def run(
    ns: str | None,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 30.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` and capture its output; with ``check``, a non-zero exit is a
    DatapathError quoting stderr."""
    if ns is not None and not exists(ns):
        raise NotFound(f"no network namespace {ns}", field="netns")
    full = nsenter_argv(ns, argv)
    try:
        done = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError:
        raise NotFound(f"command not found: {argv[0]}", field="command") from None
    except subprocess.TimeoutExpired:
        raise DatapathError(f"{' '.join(argv)} in {_where(ns)} timed out") from None
    if check and done.returncode != 0:
        raise DatapathError(
            f"{' '.join(argv)} in {_where(ns)} exited {done.returncode}: "
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
    return done


def popen(ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside ``ns`` in its own session (so a terminal's Ctrl-C aimed at the
    CLI does not kill the lab's daemons) and return it without waiting."""
    if ns is not None and not exists(ns):
        raise NotFound(f"no network namespace {ns}", field="netns")
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(nsenter_argv(ns, argv), **kwargs)


def set_offload(ns: str | None, ifname: str, feature: str = "tx", on: bool = False) -> None:
    """``ethtool -K IFNAME FEATURE on|off`` inside ``ns``. ``tx off`` makes the kernel finish
    L4 checksums before a packet leaves the VM, which exposes datapath checksum bugs that
    partial checksums would hide (ARCHITECTURE.md pitfalls)."""
    check_ifname(ifname)
    if not re.match(r"^[a-z0-9\-]+$", feature):
        raise InvalidInput(f"bad ethtool feature {feature!r}", field="feature")
    if shutil.which("ethtool") is None:
        raise NotFound("ethtool is not installed", field="command")
    run(ns, ["ethtool", "-K", ifname, feature, "on" if on else "off"])


def offload(ns: str | None, ifname: str, feature: str) -> bool | None:
    """Current state of an ethtool feature by its long name (``tx-checksumming``)."""
    out = run(ns, ["ethtool", "-k", ifname]).stdout
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == feature:
            return value.strip().startswith("on")
    return None


def ping(
    ns: str | None,
    dst: str,
    *,
    count: int = 1,
    timeout: float = 1.0,
    size: int = 56,
    dont_fragment: bool = False,
) -> list[float]:
    """ICMP echo (RFC 792) from inside ``ns`` to ``dst``: the round-trip times in seconds of
    the replies that came back within ``timeout`` each (an empty list: unreachable).

    Done in-process with a raw socket opened inside the namespace, because the lab machines
    have no ``ping`` binary (iputils is not installed) and a socket created after setns stays
    in that namespace. ``size`` payload bytes with ``dont_fragment`` probe the path MTU (a
    probe larger than the link MTU gets no reply)."""
    try:
        target = str(ipaddress.IPv4Address(dst))
    except ValueError as exc:
        raise InvalidInput(f"bad address {dst!r}: {exc}", field="address") from None
    with entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    rtts: list[float] = []
    ident = os.getpid() & 0xFFFF
    try:
        # IP_MTU_DISCOVER: PROBE sets DF without consulting the PMTU cache; DONT fragments
        sock.setsockopt(socket.IPPROTO_IP, 10, 3 if dont_fragment else 0)
        for seq in range(1, count + 1):
            payload = os.urandom(size)
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq)
            start = time.monotonic()
            try:
                sock.sendto(packet + payload, (target, 0))
            except OSError as exc:
                if exc.errno in (errno.EMSGSIZE, errno.ENETUNREACH, errno.EHOSTUNREACH):
                    continue
                raise
            rtt = _await_echo(sock, target, ident, seq, payload, start + timeout)
            if rtt is not None:
                rtts.append(rtt - start)
    finally:
        sock.close()
    return rtts


def _await_echo(
    sock: socket.socket, src: str, ident: int, seq: int, payload: bytes, deadline: float
) -> float | None:
    """Wait for the echo reply matching (ident, seq) from ``src``; its arrival time."""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return None
        data, (addr, _) = sock.recvfrom(65535)
        ihl = (data[0] & 0x0F) * 4
        icmp = data[ihl:]
        if addr != src or len(icmp) < 8:
            continue
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if kind == 0 and rid == ident and rseq == seq and icmp[8:] == payload:
            return time.monotonic()
    return None


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
    "nsenter_argv",
    "offload",
    "pids_in",
    "ping",
    "popen",
    "run",
    "set_link",
    "set_master",
    "set_offload",
]
