"""The flow table: ``nl_flows`` (mask id + masked key -> actions, timeouts, counters) and the
mask array ``nl_masks`` the program searches in order (tuple space search, ``tss.MaskTable``).

Installs, deletes and dumps are batched (BPF_MAP_*_BATCH). Python keeps which masks exist and
how many flows use each; a mask goes when its last flow does, and the array is rewritten only
when the set of masks changed.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence

from netloom.datapath.base import flow_id
from netloom.datapath.bpf import abi
from netloom.datapath.bpf.maps import BpfMap
from netloom.datapath.tss import MaskTable
from netloom.errors import InvalidInput, NotFound
from netloom.flows.model import Action, Flow, FlowKey, FlowMask, FlowStats

_ACTIONS_SIZE = abi.ACTION.size * abi.MAX_ACTIONS


def _ms(seconds: float) -> int:
    return min(round(seconds * 1000), 0xFFFFFFFF)


def pack_value(f: Flow, now_ns: int) -> bytes:
    """A new flow's ``nl_flows`` value (created now, no packets yet)."""
    return pack_values([f], now_ns)[0]


def pack_values(flows: Sequence[Flow], now_ns: int) -> list[bytes]:
    """:func:`pack_value` of each flow; flows of a batch often share their actions and
    timeouts, which are encoded once per batch."""
    actions: dict[tuple[Action, ...], bytes] = {}
    timeouts: dict[tuple[float, float], tuple[int, int]] = {}
    out = []
    for f in flows:
        acts = actions.get(f.actions)
        if acts is None:
            acts = actions[f.actions] = abi.pack_actions(f.actions)
        ms = timeouts.get((f.idle_timeout_s, f.hard_timeout_s))
        if ms is None:
            if f.idle_timeout_s < 0 or f.hard_timeout_s < 0:
                raise InvalidInput("timeouts must be >= 0", field="timeout")
            ms = timeouts[f.idle_timeout_s, f.hard_timeout_s] = (
                _ms(f.idle_timeout_s),
                _ms(f.hard_timeout_s),
            )
        out.append(acts + abi.FLOW_TAIL.pack(f.cookie, now_ns, ms[0], ms[1], 0, 0, 0))
    return out


class FlowTable:
    """Flows and masks of one datapath."""

    def __init__(self, flows: BpfMap, masks: BpfMap) -> None:
        self._flows, self._masks_map = flows, masks
        self._masks = MaskTable(abi.MAX_MASKS)

    def adopt(self) -> None:
        """Rebuild the masks and their use counts from the pinned maps."""
        masks: dict[int, FlowMask] = {}
        for _i, v in self._masks_map.items(4, abi.MASK.size + abi.KEY.size):
            mid, valid = abi.MASK.unpack_from(v)
            if valid:
                masks[mid] = abi.unpack_key(v[abi.MASK.size :])
        refs = collections.Counter(mid for mid, _k, _v in self._dump_raw())
        for mid, m in masks.items():
            self._masks.restore(mid, m, refs.get(mid, 0))
        if self._masks.set_refs(dict(refs)):
            self._write_masks()

    def install(self, flows: Sequence[Flow]) -> None:
        """One batched update for all flows, then the mask array if it changed."""
        if not flows:
            return
        now_ns = time.monotonic_ns()
        vals = pack_values(flows, now_ns)  # validates before any change
        mids, changed = self._acquire(flows)
        keys = [abi.pack_masked_flow_key(mids[id(f.mask)], f.key, f.mask) for f in flows]
        self._flows.update_batch(keys, vals)
        if changed:
            self._write_masks()

    def _acquire(self, flows: Sequence[Flow]) -> tuple[dict[int, int], bool]:
        """Reference the flows' masks (once per mask object and batch): mask ids by ``id()``
        of the mask objects, and whether the set of masks changed."""
        uses = collections.Counter(id(f.mask) for f in flows)
        objs = {id(f.mask): f.mask for f in flows}
        mids: dict[int, int] = {}
        changed = False
        try:
            for oid, n in uses.items():
                mids[oid], new = self._masks.acquire(objs[oid], n)
                changed |= new
        except BaseException:
            for oid, mid in mids.items():
                self._masks.release(mid, uses[oid])
            raise
        return mids, changed

    def modify(self, flows: Sequence[Flow]) -> None:
        """New actions and timeouts; creation time and counters stay."""
        keys, vals = [], []
        for f in flows:
            mask, key = flow_id(f)
            mid = self._masks.id_of(mask)
            k = abi.pack_flow_key(mid, key) if mid is not None else b""
            old = self._flows.lookup(k, abi.FLOW_VALUE_SIZE) if k else None
            if old is None:
                raise NotFound("no such flow to modify", field="flows")
            tail = abi.FLOW_TAIL.unpack_from(old, _ACTIONS_SIZE)
            v = abi.pack_actions(f.actions) + abi.FLOW_TAIL.pack(
                f.cookie, tail[1], _ms(f.idle_timeout_s), _ms(f.hard_timeout_s), *tail[4:]
            )
            keys.append(k)
            vals.append(v)
        self._flows.update_batch(keys, vals)

    def delete(self, matches: Sequence[tuple[FlowKey, FlowMask]]) -> int:
        keys: list[bytes] = []
        mids: list[int] = []
        for key, mask in matches:
            mid = self._masks.id_of(mask)
            if mid is not None:
                keys.append(abi.pack_flow_key(mid, key.masked(mask)))
                mids.append(mid)
        n = 0
        changed = False
        for existed, mid in zip(self._flows.delete_batch(keys), mids, strict=True):
            if existed:
                n += 1
                changed |= self._masks.release(mid)
        if changed:
            self._write_masks()
        return n

    def dump(self) -> list[tuple[Flow, FlowStats]]:
        now = time.monotonic_ns()
        out = []
        for mid, key, v in self._dump_raw():
            r = self._decode(mid, key, v, now)
            if r is not None:
                out.append(r[:2])
        return out

    def expire(self, now: float | None = None) -> list[Flow]:
        """One batched dump; delete idle/hard timed-out flows; recount mask use."""
        now_ns = time.monotonic_ns() if now is None else int(now * 1e9)
        dead: list[Flow] = []
        dead_keys: list[bytes] = []
        refs: collections.Counter[int] = collections.Counter()
        for k, v in self._flows.lookup_batch(abi.FLOW_KEY_SIZE, abi.FLOW_VALUE_SIZE):
            mid, _ = abi.FLOW_KEY.unpack_from(k)
            # the timestamps first: only a flow that goes is decoded whole
            _c, created, idle_ms, hard_ms, _p, _b, last = abi.FLOW_TAIL.unpack_from(
                v, _ACTIONS_SIZE
            )
            used = last or created
            hard = hard_ms and now_ns - created >= hard_ms * 1_000_000
            idle = idle_ms and now_ns - used >= idle_ms * 1_000_000
            if not (hard or idle):
                refs[mid] += 1
                continue
            r = self._decode(mid, abi.unpack_key(k[abi.FLOW_KEY.size :]), v, now_ns)
            if r is not None:
                dead.append(r[0])
                dead_keys.append(k)
        gone = self._flows.delete_batch(dead_keys)
        dead = [f for f, g in zip(dead, gone, strict=True) if g]  # else LRU-evicted meanwhile
        if self._masks.set_refs(dict(refs)):
            self._write_masks()
        return dead

    def count(self) -> int:
        return self._flows.count(abi.FLOW_KEY_SIZE, abi.FLOW_VALUE_SIZE)

    def _write_masks(self) -> None:
        """Rewrite the mask array in search order, terminated by an invalid entry."""
        order = self._masks.ordered()
        for i in range(abi.MAX_MASKS):
            if i < len(order):
                mid, mask = order[i]
                v = abi.MASK.pack(mid, 1) + abi.pack_key(mask)
            else:
                v = bytes(abi.MASK.size + abi.KEY.size)
            self._masks_map.update(i.to_bytes(4, "little"), v)

    def _dump_raw(self) -> list[tuple[int, FlowKey, bytes]]:
        out = []
        for k, v in self._flows.lookup_batch(abi.FLOW_KEY_SIZE, abi.FLOW_VALUE_SIZE):
            mid, _ = abi.FLOW_KEY.unpack_from(k)
            out.append((mid, abi.unpack_key(k[abi.FLOW_KEY.size :]), v))
        return out

    def _decode(
        self, mid: int, key: FlowKey, v: bytes, now: int
    ) -> tuple[Flow, FlowStats, int, int] | None:
        mask = self._masks.mask_of(mid)
        if mask is None:
            return None
        cookie, created, idle, hard, pk, by, last = abi.FLOW_TAIL.unpack_from(v, _ACTIONS_SIZE)
        flow = Flow(key, mask, abi.unpack_actions(v), idle / 1000, hard / 1000, cookie)
        used = last or created
        return flow, FlowStats(pk, by, max(0.0, (now - used) / 1e9)), created, used


__all__ = ["FlowTable", "pack_value", "pack_values"]
