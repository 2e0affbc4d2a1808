"""Connection tracking in the datapath: the reference table (the kernel's is ``nl_ct`` in
``netloom.bpf.c``, with the same rules).

An entry is keyed by the *zone* (the local datapath port the connection is seen at, like OVS's
per-port zones) and the packet's tuple ``(proto, src, dst, sport, dport)``; ICMP and anything
that is not TCP/UDP use ports 0/0. Its value: the direction (original or reply), whether a TCP
FIN/RST was seen, the expiry and when it was last refreshed.

* Lookup (every IPv4 packet entering from a local port, before the flow lookup): an expired
  entry counts as absent and is deleted; a hit refreshes the expiry, but writes at most once a
  second per entry; a TCP FIN or RST (RFC 793 3.5, 3.4) shortens the entry to the closing
  lifetime, which is never extended again. A TCP packet without SYN that finds nothing is
  counted as *lost* (its entry was evicted or expired).
* Commit (``CtCommit``, and a delivery with ``ct``): insert if absent. A full table evicts the
  least recently used entry; it never refuses.

Lifetimes default to Linux's/Cilium's: TCP established 6 h, TCP after FIN/RST 10 s, other 60 s.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from netloom.datapath import frames
from netloom.datapath.sizing import DEFAULT_CONNTRACK, MAX_ENTRIES
from netloom.errors import InvalidInput
from netloom.flows.model import CT_EST, CT_NEW, CT_RPL, FlowKey, Output

IPPROTO_TCP, IPPROTO_UDP = 6, 17
TCP_FIN, TCP_SYN, TCP_RST = 0x01, 0x02, 0x04
REFRESH_S = 1.0  # an entry's expiry is written at most this often

# (zone, proto, src, dst, sport, dport)
CtTuple = tuple[int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class ConntrackSettings:
    """Lifetimes (seconds) and the table's bound (entries)."""

    tcp_established_s: float = 21600.0
    tcp_closing_s: float = 10.0
    other_s: float = 60.0
    max_entries: int = DEFAULT_CONNTRACK

    def __post_init__(self) -> None:
        for name in ("tcp_established_s", "tcp_closing_s", "other_s"):
            v = getattr(self, name)
            if not 0.001 <= v <= 4_000_000:
                raise InvalidInput(f"conntrack {name} {v} out of range", field=name)
        if not 1 <= self.max_entries <= MAX_ENTRIES:
            raise InvalidInput(
                f"conntrack size {self.max_entries} out of range (1..{MAX_ENTRIES})",
                field="max_entries",
            )

    def lifetime(self, proto: int, *, closing: bool) -> float:
        if proto != IPPROTO_TCP:
            return self.other_s
        return self.tcp_closing_s if closing else self.tcp_established_s


@dataclass(slots=True)
class CtEntry:
    reply: bool
    closing: bool
    expires: float
    refreshed: float


def ct_tuple(key: FlowKey, zone: int, *, reverse: bool = False) -> CtTuple:
    """The conntrack tuple of a packet's flow key at ``zone`` (reversed: its reply's)."""
    sp, dp = (key.tp_src, key.tp_dst) if key.ip_proto in (IPPROTO_TCP, IPPROTO_UDP) else (0, 0)
    if reverse:
        return (zone, key.ip_proto, key.ip_dst, key.ip_src, dp, sp)
    return (zone, key.ip_proto, key.ip_src, key.ip_dst, sp, dp)


def closes(key: FlowKey, tcp_flags: int) -> bool:
    """A TCP packet with FIN or RST: its connection is closing."""
    return key.ip_proto == IPPROTO_TCP and bool(tcp_flags & (TCP_FIN | TCP_RST))


class Conntrack:
    """The reference conntrack table (see module docstring); explicit ``now`` everywhere."""

    def __init__(self, settings: ConntrackSettings | None = None) -> None:
        self.settings = settings or ConntrackSettings()
        self._t: OrderedDict[CtTuple, CtEntry] = OrderedDict()
        self.commits = 0
        self.lost = 0

    def __len__(self) -> int:
        return len(self._t)

    def get(self, t: CtTuple, now: float) -> CtEntry | None:
        """The live entry of ``t`` (an expired one is deleted), marked recently used."""
        e = self._t.get(t)
        if e is None:
            return None
        if e.expires <= now:
            del self._t[t]
            return None
        self._t.move_to_end(t)
        return e

    def lookup(self, key: FlowKey, zone: int, tcp_flags: int, now: float) -> int:
        """The ct_state of a packet entering at ``zone``; refreshes or shortens its entry."""
        e = self.get(ct_tuple(key, zone), now)
        if e is None:
            if key.ip_proto == IPPROTO_TCP and not tcp_flags & TCP_SYN:
                self.lost += 1
            return CT_NEW
        self._touch(e, key.ip_proto, now, closing=closes(key, tcp_flags))
        return CT_EST | (CT_RPL if e.reply else 0)

    def commit(self, t: CtTuple, *, reply: bool, closing: bool, now: float) -> None:
        """Insert ``t`` unless a live entry exists (which a FIN/RST then shortens)."""
        e = self.get(t, now)
        if e is not None:
            if closing:
                self._touch(e, t[1], now, closing=True)
            return
        if len(self._t) >= self.settings.max_entries:
            self._t.popitem(last=False)
        life = self.settings.lifetime(t[1], closing=closing)
        self._t[t] = CtEntry(reply, closing, now + life, now)
        self.commits += 1

    def shorten(self, t: CtTuple, now: float) -> None:
        """A FIN/RST delivered to the zone of ``t``: its entry (if any) starts closing."""
        e = self.get(t, now)
        if e is not None:
            self._touch(e, t[1], now, closing=True)

    def _touch(self, e: CtEntry, proto: int, now: float, *, closing: bool) -> None:
        if closing:
            e.closing = True
            e.expires = min(e.expires, now + self.settings.lifetime(proto, closing=True))
            e.refreshed = now
        elif not e.closing and now - e.refreshed >= REFRESH_S:
            e.expires = now + self.settings.lifetime(proto, closing=False)
            e.refreshed = now

    def entries(self) -> dict[CtTuple, CtEntry]:
        """A copy of the table (tests, dumps)."""
        return dict(self._t)


# ---- the packet rules, as the kernel applies them (the memory datapath's) --------------------


def commit_sent(ct: Conntrack, packet: bytes, in_port: int, tcp_flags: int, now: float) -> None:
    """``CtCommit``: the packet's tuple at ``in_port``, direction orig."""
    pr = frames.parse(packet)
    if pr.l4_off and pr.key.eth_type == frames.ETH_P_IP:
        t = ct_tuple(pr.key, in_port)
        ct.commit(t, reply=False, closing=closes(pr.key, tcp_flags), now=now)


def commit_delivered(ct: Conntrack, packet: bytes, out: Output, now: float, *, close: bool) -> None:
    """The receiver's side: commit the reversed delivered tuple at the destination port
    (``out.ct``), or shorten its entry for a FIN/RST (``close``)."""
    commit, port = out.ct, out.port
    if not (commit or close):
        return
    pr = frames.parse(packet)
    if not pr.l4_off or pr.key.eth_type != frames.ETH_P_IP:
        return
    rev = ct_tuple(pr.key, port, reverse=True)
    if commit:
        ct.commit(rev, reply=True, closing=close, now=now)
    else:
        ct.shorten(rev, now)


__all__ = [
    "REFRESH_S",
    "TCP_FIN",
    "TCP_RST",
    "TCP_SYN",
    "Conntrack",
    "ConntrackSettings",
    "CtEntry",
    "CtTuple",
    "closes",
    "commit_delivered",
    "commit_sent",
    "ct_tuple",
]
