"""The agent's record of the flows it installed, with the tags each depends on.

Why: flows are invalidated by tags. A topology change must remove exactly the flows whose
simulation read the changed object, no more (flushing everything makes every VM pay an upcall
after any change) and no fewer (a stale flow keeps forwarding around a removed route or a
tightened security group). Each installed flow carries the tags of its
:class:`~netloom.sim.result.Result`; a tag -> flows index makes :meth:`FlowTable.invalidate`
proportional to the flows affected, not to the table.

A flow's identity is the datapath's: ``(mask, key & mask)`` (:func:`netloom.datapath.base.
flow_id`). Installing the same identity again replaces the entry and its tags. The datapath
may drop flows on its own (idle/hard expiry, LRU eviction); :meth:`FlowTable.forget` and
:meth:`FlowTable.reconcile` bring this record back in line with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from netloom.datapath.base import flow_id
from netloom.flows.model import Flow, FlowKey, FlowMask

FlowId = tuple[FlowMask, FlowKey]


@dataclass(slots=True)
class Installed:
    flow: Flow
    tags: frozenset[object]
    in_port_id: str  # the virtual port the flow's packets enter on
    installed_at: float


class FlowTable:
    """Installed flows by identity and by tag (see the module docstring)."""

    def __init__(self) -> None:
        self._flows: dict[FlowId, Installed] = {}
        self._by_tag: dict[object, set[FlowId]] = {}
        self._next_cookie = 1
        self.invalidated = 0  # flows removed by invalidate(), lifetime total

    def __len__(self) -> int:
        return len(self._flows)

    def __contains__(self, flow: Flow) -> bool:
        return flow_id(flow) in self._flows

    def next_cookie(self) -> int:
        """A fresh cookie (the datapath hands it back in ttl/mtu upcalls)."""
        c = self._next_cookie
        self._next_cookie = c + 1 if c < 0xFFFFFFFF else 1
        return c

    def add(self, flow: Flow, tags: frozenset[object], in_port_id: str, now: float) -> None:
        """Record ``flow`` (replacing any flow with the same identity)."""
        fid = flow_id(flow)
        self._drop(fid)
        self._flows[fid] = Installed(flow, tags, in_port_id, now)
        for t in tags:
            self._by_tag.setdefault(t, set()).add(fid)

    def get(self, flow: Flow) -> Installed | None:
        return self._flows.get(flow_id(flow))

    def tagged(self, tag: object) -> int:
        """How many installed flows carry ``tag``."""
        return len(self._by_tag.get(tag, ()))

    def has_tag(self, tag: object) -> bool:
        return tag in self._by_tag

    def invalidate(self, tags: Iterable[object]) -> list[Installed]:
        """Remove and return exactly the flows carrying any of ``tags`` (for the caller to
        delete from the datapath)."""
        doomed: set[FlowId] = set()
        for t in tags:
            doomed |= self._by_tag.get(t, set())
        out = [self._flows[f] for f in doomed]
        for f in doomed:
            self._drop(f)
        self.invalidated += len(out)
        return out

    def forget(self, flows: Iterable[Flow]) -> list[Installed]:
        """The datapath removed ``flows`` itself (expiry, eviction): drop their records and
        return them."""
        out = []
        for fl in flows:
            old = self._flows.get(flow_id(fl))
            if old is not None and self._drop(flow_id(fl)):
                out.append(old)
        return out

    def reconcile(self, present: Iterable[Flow]) -> int:
        """Keep only the flows the datapath still has (after a dump); returns how many
        records were dropped."""
        keep = {flow_id(f) for f in present}
        gone = [f for f in self._flows if f not in keep]
        for f in gone:
            self._drop(f)
        return len(gone)

    def flows(self) -> list[Installed]:
        return list(self._flows.values())

    def _drop(self, fid: FlowId) -> int:
        old = self._flows.pop(fid, None)
        if old is None:
            return 0
        for t in old.tags:
            s = self._by_tag.get(t)
            if s is not None:
                s.discard(fid)
                if not s:
                    del self._by_tag[t]
        return 1


__all__ = ["FlowTable", "Installed"]
