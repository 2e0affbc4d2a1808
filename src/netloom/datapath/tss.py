"""Tuple-space search bookkeeping shared by both datapaths: which masks are in use, their
stable ids and their search order.

Order (see ``base``): most bits first, then the mask first seen first. Ids are never reused
while a mask is in use, so a kernel flow keyed by (mask id, masked key) stays valid while the
order of the mask array changes around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netloom.datapath.base import mask_bits
from netloom.errors import DatapathError
from netloom.flows.model import FlowMask


@dataclass
class MaskTable:
    limit: int
    _ids: dict[FlowMask, int] = field(default_factory=dict)
    _refs: dict[int, int] = field(default_factory=dict)
    _masks: dict[int, FlowMask] = field(default_factory=dict)
    _next: int = 1

    def acquire(self, mask: FlowMask, count: int = 1) -> tuple[int, bool]:
        """Reference ``mask`` ``count`` times; returns (id, whether it is new, i.e. the order
        changed)."""
        mid = self._ids.get(mask)
        if mid is not None:
            self._refs[mid] += count
            return mid, False
        if len(self._ids) >= self.limit:
            raise DatapathError(
                f"{self.limit} distinct masks already in use; the simulation's masks should "
                "collapse to a few shapes"
            )
        mid = self._next
        self._next += 1
        self._ids[mask] = mid
        self._masks[mid] = mask
        self._refs[mid] = count
        return mid, True

    def release(self, mid: int, count: int = 1) -> bool:
        """Drop references; returns True when the mask went away (the order changed)."""
        if mid not in self._refs:
            return False
        self._refs[mid] -= count
        if self._refs[mid] > 0:
            return False
        del self._refs[mid]
        del self._ids[self._masks.pop(mid)]
        return True

    def id_of(self, mask: FlowMask) -> int | None:
        return self._ids.get(mask)

    def mask_of(self, mid: int) -> FlowMask | None:
        return self._masks.get(mid)

    def restore(self, mid: int, mask: FlowMask, refs: int) -> None:
        """Adopt a mask found in the kernel (after a restart)."""
        self._ids[mask] = mid
        self._masks[mid] = mask
        self._refs[mid] = refs
        self._next = max(self._next, mid + 1)

    def set_refs(self, refs: dict[int, int]) -> list[int]:
        """Reset reference counts from a full dump; drop masks nothing uses. Returns dropped."""
        dropped = [m for m in self._masks if refs.get(m, 0) == 0]
        for m in dropped:
            del self._ids[self._masks.pop(m)]
            self._refs.pop(m, None)
        for m in self._masks:
            self._refs[m] = refs[m]
        return dropped

    def ordered(self) -> list[tuple[int, FlowMask]]:
        """Masks in search order: most bits first, then oldest (lowest id) first."""
        return sorted(
            ((m, k) for m, k in self._masks.items()), key=lambda e: (-mask_bits(e[1]), e[0])
        )

    def __len__(self) -> int:
        return len(self._masks)
