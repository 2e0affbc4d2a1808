"""Kernel-free stand-ins for the BPF datapath's loader and maps (dicts of bytes)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from netloom.datapath.bpf.loader import MAPS, PROGS, check_sizes
from netloom.datapath.bpf.maps import BpfMap, MapInfo


class FakeMap:
    """A hash map: exact-size keys and values, insertion order kept."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def update(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def lookup(self, key: bytes, vsize: int) -> bytes | None:
        v = self.data.get(key)
        assert v is None or len(v) == vsize, (len(v), vsize)
        return v

    def delete(self, key: bytes) -> bool:
        return self.data.pop(key, None) is not None

    def items(self, ksize: int, vsize: int) -> list[tuple[bytes, bytes]]:
        assert all(len(k) == ksize and len(v) == vsize for k, v in self.data.items())
        return list(self.data.items())

    def update_batch(self, keys: list[bytes], vals: list[bytes]) -> None:
        assert len(keys) == len(vals)
        self.data.update(zip(keys, vals, strict=True))

    def delete_batch(self, keys: list[bytes]) -> list[bool]:
        return [self.delete(k) for k in keys]

    def lookup_batch(self, ksize: int, vsize: int) -> list[tuple[bytes, bytes]]:
        return self.items(ksize, vsize)

    def count(self, ksize: int, vsize: int) -> int:
        return len(self.items(ksize, vsize))


class FakeLoader:
    """Every map of the object as a :class:`FakeMap`; programs are just numbers. Sized like
    the real loader: ``max_entries`` is checked the same way and reported by :meth:`info`
    (maps not named there report ``default_entries``)."""

    def __init__(
        self,
        pin_dir: Path = Path("/nonexistent/netloom-fake"),
        *,
        max_entries: Mapping[str, int] | None = None,
        default_entries: int = 65536,
    ) -> None:
        self._pin_dir = pin_dir
        self.maps = {n: FakeMap() for n in MAPS}
        self.sizes = check_sizes(max_entries or {})
        self.default_entries = default_entries
        self.closed = False

    @property
    def pin_dir(self) -> Path:
        return self._pin_dir

    def fd(self, name: str) -> int:
        return 1000 + [*PROGS, *MAPS].index(name)

    def map(self, name: str) -> BpfMap:
        return self.maps[name]

    def info(self, name: str) -> MapInfo:
        return MapInfo(1, 0, 0, self.sizes.get(name, self.default_entries), 0)

    def close(self) -> None:
        self.closed = True
