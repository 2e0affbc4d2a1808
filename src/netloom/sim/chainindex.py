"""A chain's rules indexed by what they test, so that a packet meets only the rules it can match.

Each rule goes into one *family* by the first of these (non-inverted) conditions it has: its
in-ports, its out-ports (both free to test: the in-port is in every flow key and the out-port is
no packet field), then, under its IP protocol when it names one, its destination port range, its
longest source or destination prefix, or nothing more; else its ethertype. A rule that tests
another port condition (inverted ports, port groups) before any packet field, a rule whose
conditions are all inverted or absent, and an ``inv_all`` rule cannot be excluded by a lookup:
it is a candidate for every packet ("always").

A family answers the rules of the chain that the packet can match among its own, by dict
lookups: ports through sorted range boundaries (bisect), prefixes one set per prefix length.
Candidates then run in evaluation order with their compiled conditions, so the first rule that
matches decides exactly as in a rule-by-rule walk (:mod:`netloom.sim.chains`).

The megaflow mask stays minimal because a lookup reads the fields a rule's own conditions
would read, and only when the walk reaches the family: families (and the protocol's
sub-families) are opened lazily, in order of their first rule, so a chain that decides before
any rule testing ports never reads ports. A lookup that excludes a rule reads the field that
excludes it, so every packet equal on the fields read gets the same candidates.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from heapq import heapify
from typing import TYPE_CHECKING, TypeVar

from netloom.model.records import Rule
from netloom.packet.util import prefix
from netloom.sim.result import (
    F_ETH_TYPE,
    F_IP_DST,
    F_IP_FRAG,
    F_IP_PROTO,
    F_IP_SRC,
    F_TP_DST,
)

if TYPE_CHECKING:
    from netloom.sim.context import Ctx

K = TypeVar("K", str, int)

# (ordinal of a rule in evaluation order, None) or (ordinal of a family's first rule, family)
Item = tuple[int, "Family | None"]
_NONE: tuple[Item, ...] = ()


class Family:
    """Rules found by one lookup; :meth:`expand` reads what it tests and answers the items
    (rules, or sub-families opened later) the packet can match, in any order."""

    __slots__ = ("first",)

    def __init__(self, first: int) -> None:
        self.first = first

    def expand(self, c: Ctx) -> Sequence[Item]:
        raise NotImplementedError


def _items(members: list[tuple[int, Family | None]]) -> tuple[Item, ...]:
    return tuple(sorted(members, key=lambda m: m[0]))


class _ByPort(Family):
    """By in-port (``out=False``) or out-port id: the port is no field to read."""

    __slots__ = ("buckets", "out")

    def __init__(self, first: int, buckets: dict[str, tuple[Item, ...]], *, out: bool) -> None:
        super().__init__(first)
        self.buckets = buckets
        self.out = out

    def expand(self, c: Ctx) -> Sequence[Item]:
        port = c.out_port if self.out else c.in_port
        return _NONE if port is None else self.buckets.get(port.id, _NONE)


class _ByEthertype(Family):
    __slots__ = ("buckets",)

    def __init__(self, first: int, buckets: dict[int, tuple[Item, ...]]) -> None:
        super().__init__(first)
        self.buckets = buckets

    def expand(self, c: Ctx) -> Sequence[Item]:
        c.read |= F_ETH_TYPE
        return self.buckets.get(c.eth_type, _NONE)


class _ByProto(Family):
    """By IP protocol; a bucket holds rules and the protocol's port and prefix sub-families."""

    __slots__ = ("buckets",)

    def __init__(self, first: int, buckets: dict[int, tuple[Item, ...]]) -> None:
        super().__init__(first)
        self.buckets = buckets

    def expand(self, c: Ctx) -> Sequence[Item]:
        c.read |= F_ETH_TYPE
        if not c.is_ip:
            return _NONE
        c.read |= F_IP_PROTO
        return self.buckets.get(c.proto, _NONE)


class _ByDstPort(Family):
    """By destination port: the rules covering each run of ports between range boundaries.

    Overlapping ranges repeat a rule in every run it covers; past a budget (a few entries per
    rule) the widest ranges are tested one by one instead, so memory stays linear."""

    __slots__ = ("bounds", "scan", "segments")

    def __init__(self, first: int, ranges: list[tuple[int, int, int]]) -> None:
        super().__init__(first)
        ranges, self.scan = _split_wide(ranges)
        cuts = sorted({0} | {lo for lo, _, _ in ranges} | {hi + 1 for _, hi, _ in ranges})
        self.bounds = cuts
        by_start: dict[int, list[tuple[int, int]]] = {}
        for lo, hi, ordinal in ranges:
            by_start.setdefault(lo, []).append((hi, ordinal))
        live: dict[int, int] = {}  # ordinal -> last port covered
        segments: list[tuple[Item, ...]] = []
        for cut in cuts:  # sweep: who covers [cut, next cut)
            for hi, ordinal in by_start.get(cut, ()):
                live[ordinal] = hi
            live = {o: hi for o, hi in live.items() if hi >= cut}
            segments.append(tuple((o, None) for o in sorted(live)))
        self.segments = segments

    def expand(self, c: Ctx) -> Sequence[Item]:
        # as the destination-port condition reads: that port, the protocol and the fragment
        c.read |= F_ETH_TYPE
        if not c.is_ip:
            return _NONE
        c.read |= F_IP_PROTO | F_IP_FRAG | F_TP_DST
        if c.frame.l4 is None:
            return _NONE
        port = c.tp_dst
        found = self.segments[bisect_right(self.bounds, port) - 1]
        if not self.scan:
            return found
        return [*found, *((o, None) for lo, hi, o in self.scan if lo <= port <= hi)]


def _split_wide(
    ranges: list[tuple[int, int, int]],
) -> tuple[list[tuple[int, int, int]], tuple[tuple[int, int, int], ...]]:
    """(ranges for the runs, the widest ranges to test one by one): the runs hold at most
    ``32 * len(ranges) + 4096`` entries (a range counted once per run it covers)."""
    cuts = sorted({lo for lo, _, _ in ranges} | {hi + 1 for _, hi, _ in ranges})
    at = {cut: i for i, cut in enumerate(cuts)}
    runs = sorted(((at[hi + 1] - at[lo], (lo, hi, o)) for lo, hi, o in ranges), reverse=True)
    total, budget = sum(n for n, _ in runs), 32 * len(ranges) + 4096
    wide: list[tuple[int, int, int]] = []
    for n, r in runs:
        if total <= budget:
            break
        total -= n
        wide.append(r)
    keep = set(wide)
    return [r for r in ranges if r not in keep], tuple(sorted(wide))


class _ByPrefix(Family):
    """By source (``dst=False``) or destination address: one dict of networks per length."""

    __slots__ = ("dst", "masks")

    def __init__(self, first: int, nets: list[tuple[int, int, int]], *, dst: bool) -> None:
        super().__init__(first)
        by_mask: dict[int, dict[int, list[Item]]] = {}
        for net, mask, ordinal in nets:
            by_mask.setdefault(mask, {}).setdefault(net, []).append((ordinal, None))
        self.masks = tuple(
            (mask, {net: tuple(items) for net, items in by_mask[mask].items()})
            for mask in sorted(by_mask, reverse=True)
        )
        self.dst = dst

    def expand(self, c: Ctx) -> Sequence[Item]:
        c.read |= F_ETH_TYPE
        if not c.is_ip:
            return _NONE
        if self.dst:
            c.read |= F_IP_DST
            ip = c.ip_dst
        else:
            c.read |= F_IP_SRC
            ip = c.ip_src
        found: list[Item] = []
        for mask, nets in self.masks:
            hit = nets.get(ip & mask)
            if hit is not None:
                found += hit
        return found


class ChainIndex:
    """The families of one chain; ``seed`` is the heap a walk starts from (always-candidates
    and unopened families, keyed by ordinal); ``useful`` is False when nothing is indexed."""

    __slots__ = ("seed", "useful")

    def __init__(self, rules: Sequence[Rule]) -> None:
        always: list[Item] = []
        groups = _Groups()
        for ordinal, r in enumerate(rules):
            if not groups.add(ordinal, r):
                always.append((ordinal, None))
        families = groups.families()
        self.useful = bool(families)
        seed = always + families
        heapify(seed)
        self.seed = seed


class _Groups:
    """Rules sorted into families while a chain is compiled."""

    def __init__(self) -> None:
        self.in_ports: dict[str, list[Item]] = {}
        self.out_ports: dict[str, list[Item]] = {}
        self.ethertypes: dict[int, list[Item]] = {}
        self.protos: dict[int, _Sub] = {}
        self.any = _Sub()

    def add(self, ordinal: int, r: Rule) -> bool:
        """File rule ``r``; False when it must stay a candidate for every packet."""
        if r.inv_all:
            return False
        if r.in_port_ids and not r.inv_in_ports:
            for pid in r.in_port_ids:
                self.in_ports.setdefault(pid, []).append((ordinal, None))
            return True
        if r.out_port_ids and not r.inv_out_ports:
            for pid in r.out_port_ids:
                self.out_ports.setdefault(pid, []).append((ordinal, None))
            return True
        if r.in_port_ids or r.out_port_ids or r.in_port_group_id or r.out_port_group_id:
            return False  # a free test comes first: looking a field up could widen the flow
        if r.nw_proto is not None and not r.inv_nw_proto:
            self.protos.setdefault(r.nw_proto, _Sub()).add(ordinal, r, plain=True)
            return True
        if self.any.add(ordinal, r, plain=False):
            return True
        if r.ethertype is not None and not r.inv_ethertype:
            self.ethertypes.setdefault(r.ethertype, []).append((ordinal, None))
            return True
        return False

    def families(self) -> list[Item]:
        out: list[Item] = []
        if self.in_ports:
            out.append(_family(_ByPort(_first(self.in_ports), _freeze(self.in_ports), out=False)))
        if self.out_ports:
            out.append(_family(_ByPort(_first(self.out_ports), _freeze(self.out_ports), out=True)))
        if self.ethertypes:
            out.append(_family(_ByEthertype(_first(self.ethertypes), _freeze(self.ethertypes))))
        if self.protos:
            buckets = {p: _items(sub.items()) for p, sub in self.protos.items()}
            first = min(b[0][0] for b in buckets.values())
            out.append(_family(_ByProto(first, buckets)))
        out += self.any.items()
        return out


class _Sub:
    """The rules of one protocol (or of none): by destination port, by prefix, or plain."""

    def __init__(self) -> None:
        self.ports: list[tuple[int, int, int]] = []
        self.src: list[tuple[int, int, int]] = []
        self.dst: list[tuple[int, int, int]] = []
        self.plain: list[Item] = []

    def add(self, ordinal: int, r: Rule, *, plain: bool) -> bool:
        if r.tp_dst is not None and not r.inv_tp_dst:
            self.ports.append((r.tp_dst.start, r.tp_dst.end, ordinal))
            return True
        src = prefix(r.nw_src) if r.nw_src is not None and not r.inv_nw_src else (0, 0, 0)
        dst = prefix(r.nw_dst) if r.nw_dst is not None and not r.inv_nw_dst else (0, 0, 0)
        if max(src[2], dst[2]) > 0:  # a /0 excludes nothing but non-IP: not worth a lookup
            if src[2] >= dst[2]:
                self.src.append((src[0], src[1], ordinal))
            else:
                self.dst.append((dst[0], dst[1], ordinal))
            return True
        if plain:
            self.plain.append((ordinal, None))
        return plain

    def items(self) -> list[Item]:
        out = list(self.plain)
        if self.ports:
            out.append(_family(_ByDstPort(min(o for *_, o in self.ports), self.ports)))
        if self.src:
            out.append(_family(_ByPrefix(min(o for *_, o in self.src), self.src, dst=False)))
        if self.dst:
            out.append(_family(_ByPrefix(min(o for *_, o in self.dst), self.dst, dst=True)))
        return out


def _family(f: Family) -> Item:
    return (f.first, f)


def _first(buckets: dict[K, list[Item]]) -> int:
    return min(items[0][0] for items in buckets.values())


def _freeze(buckets: dict[K, list[Item]]) -> dict[K, tuple[Item, ...]]:
    return {k: tuple(v) for k, v in buckets.items()}


__all__ = ["ChainIndex", "Family", "Item"]
