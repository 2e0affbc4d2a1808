"""BPF map operations, one element or a whole batch at a time.

:class:`BpfMap` is what the rest of the datapath needs of a map; :class:`KernelMap` implements
it on a map's file descriptor with libbpf (tests implement it with a dict).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from netloom.datapath.bpf import libbpf as lb

BATCH = 4096  # keys per BPF_MAP_*_BATCH call
_ENOENT = -2


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What the kernel reports of a map in ``/proc/<pid>/fdinfo/<fd>``; ``memlock`` is its
    memory as the kernel accounts it (``map_mem_usage``: the preallocated elements of a hash
    map included)."""

    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    memlock: int


def map_info(fd: int) -> MapInfo:
    """The :class:`MapInfo` of the map behind ``fd`` (this process's descriptor)."""
    fields: dict[str, int] = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            name, _, value = line.partition(":")
            if value.strip().isdigit():
                fields[name.strip()] = int(value)
    return MapInfo(
        fields["map_type"],
        fields["key_size"],
        fields["value_size"],
        fields["max_entries"],
        fields.get("memlock", 0),
    )


class BpfMap(Protocol):
    """One map: keys and values are the raw bytes of their C structs."""

    def update(self, key: bytes, value: bytes) -> None: ...

    def lookup(self, key: bytes, vsize: int) -> bytes | None:
        """The value of ``key`` (``vsize`` bytes), None if absent."""
        ...

    def delete(self, key: bytes) -> bool:
        """Whether ``key`` existed."""
        ...

    def items(self, ksize: int, vsize: int) -> list[tuple[bytes, bytes]]:
        """Every entry, one lookup each (small maps)."""
        ...

    def update_batch(self, keys: list[bytes], vals: list[bytes]) -> None: ...

    def delete_batch(self, keys: list[bytes]) -> list[bool]:
        """Which of ``keys`` existed (and are now gone)."""
        ...

    def lookup_batch(self, ksize: int, vsize: int) -> list[tuple[bytes, bytes]]:
        """Every entry, in chunks (large maps)."""
        ...

    def count(self, ksize: int, vsize: int) -> int:
        """How many entries (a batched walk that keeps nothing)."""
        ...


class KernelMap:
    """A map of the kernel, by file descriptor (not owned: the loader closes it)."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd, self.name = fd, name

    def update(self, key: bytes, value: bytes) -> None:
        kb, vb = lb.buf(key), lb.buf(value)
        lb.check(lb.lib().bpf_map_update_elem(self.fd, kb, vb, 0), f"update {self.name}")

    def lookup(self, key: bytes, vsize: int) -> bytes | None:
        kb, vb = lb.buf(key), ctypes.create_string_buffer(vsize)
        rc = lb.lib().bpf_map_lookup_elem(self.fd, kb, vb)
        if rc == _ENOENT:
            return None
        lb.check(rc, f"lookup {self.name}")
        return vb.raw

    def delete(self, key: bytes) -> bool:
        rc = lb.lib().bpf_map_delete_elem(self.fd, lb.buf(key))
        if rc == _ENOENT:
            return False
        lb.check(rc, f"delete {self.name}")
        return True

    def items(self, ksize: int, vsize: int) -> list[tuple[bytes, bytes]]:
        out = []
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(ksize)
        while lb.lib().bpf_map_get_next_key(self.fd, cur, nxt) == 0:
            k = nxt.raw
            v = self.lookup(k, vsize)
            if v is not None:
                out.append((k, v))
            cur = lb.buf(k)
        return out

    def update_batch(self, keys: list[bytes], vals: list[bytes]) -> None:
        for i in range(0, len(keys), BATCH):
            kb, vb = lb.buf(b"".join(keys[i : i + BATCH])), lb.buf(b"".join(vals[i : i + BATCH]))
            count = ctypes.c_uint32(len(keys[i : i + BATCH]))
            opts = lb.BatchOpts(sz=ctypes.sizeof(lb.BatchOpts))
            rc = lb.lib().bpf_map_update_batch(
                self.fd, kb, vb, ctypes.byref(count), ctypes.byref(opts)
            )
            lb.check(rc, f"batch update {self.name}")

    def delete_batch(self, keys: list[bytes]) -> list[bool]:
        """BPF_MAP_DELETE_BATCH. The kernel stops at the first missing key and reports how
        many it deleted, so we skip that key and go on."""
        existed: list[bool] = []
        i = 0
        while i < len(keys):
            chunk = keys[i : i + BATCH]
            count = ctypes.c_uint32(len(chunk))
            opts = lb.BatchOpts(sz=ctypes.sizeof(lb.BatchOpts))
            rc = lb.lib().bpf_map_delete_batch(
                self.fd, lb.buf(b"".join(chunk)), ctypes.byref(count), ctypes.byref(opts)
            )
            if rc < 0 and rc != _ENOENT:
                lb.check(rc, f"batch delete {self.name}")
            done = min(count.value, len(chunk))
            existed += [True] * done
            i += done
            if rc == _ENOENT and done < len(chunk):
                existed.append(False)
                i += 1
        return existed

    def lookup_batch(self, ksize: int, vsize: int) -> list[tuple[bytes, bytes]]:
        """BPF_MAP_LOOKUP_BATCH over the whole map (one syscall per chunk)."""
        out: list[tuple[bytes, bytes]] = []
        for kr, vr, n in self._walk(ksize, vsize):
            out.extend(
                (kr[i * ksize : (i + 1) * ksize], vr[i * vsize : (i + 1) * vsize]) for i in range(n)
            )
        return out

    def count(self, ksize: int, vsize: int) -> int:
        return sum(n for _k, _v, n in self._walk(ksize, vsize))

    def _walk(self, ksize: int, vsize: int) -> Iterator[tuple[bytes, bytes, int]]:
        """The map in chunks: (keys, values, how many) per BPF_MAP_LOOKUP_BATCH."""
        chunk = 1024
        keys = ctypes.create_string_buffer(ksize * chunk)
        vals = ctypes.create_string_buffer(vsize * chunk)
        token_in = ctypes.create_string_buffer(max(ksize, 8))
        token_out = ctypes.create_string_buffer(max(ksize, 8))
        first = True
        while True:
            count = ctypes.c_uint32(chunk)
            opts = lb.BatchOpts(sz=ctypes.sizeof(lb.BatchOpts))
            rc = lb.lib().bpf_map_lookup_batch(
                self.fd,
                None if first else token_in,
                token_out,
                keys,
                vals,
                ctypes.byref(count),
                ctypes.byref(opts),
            )
            if rc < 0 and rc != _ENOENT:
                lb.check(rc, f"batch lookup {self.name}")
            yield keys.raw, vals.raw, count.value
            if rc == _ENOENT:
                return
            ctypes.memmove(token_in, token_out, len(token_out))
            first = False


__all__ = ["BpfMap", "KernelMap", "MapInfo", "map_info"]
