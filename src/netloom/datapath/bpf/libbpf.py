"""libbpf (Debian's 1.1) through ctypes: object loading, pinning, map and ringbuf access,
BPF_PROG_TEST_RUN. No bcc.

Every pointer is declared ``c_void_p`` (ctypes' default int restype would truncate 64-bit
pointers). libbpf 1.x returns ``-errno`` from its low-level calls; :func:`check` turns that
into a :class:`DatapathError` naming the operation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable
from typing import Any

from netloom.errors import DatapathError

_lib: ctypes.CDLL | None = None

c_int, c_uint, c_void_p, c_char_p, c_size_t = (
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_size_t,
)

RINGBUF_CB = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)
PRINT_CB = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)


class BatchOpts(ctypes.Structure):
    _fields_ = (("sz", c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64))


class TestRunOpts(ctypes.Structure):
    _fields_ = (
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


_SIGS: dict[str, tuple[Any, list[Any]]] = {
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, ctypes.c_uint32]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_obj_pin": (c_int, [c_int, c_char_p]),
    "bpf_obj_get": (c_int, [c_char_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_update_batch": (c_int, [c_int, c_void_p, c_void_p, c_void_p, c_void_p]),
    "bpf_map_delete_batch": (c_int, [c_int, c_void_p, c_void_p, c_void_p]),
    "bpf_map_lookup_batch": (
        c_int,
        [c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p],
    ),
    "bpf_prog_test_run_opts": (c_int, [c_int, c_void_p]),
    "ring_buffer__new": (c_void_p, [c_int, RINGBUF_CB, c_void_p, c_void_p]),
    "ring_buffer__poll": (c_int, [c_void_p, c_int]),
    "ring_buffer__consume": (c_int, [c_void_p]),
    "ring_buffer__free": (None, [c_void_p]),
    "ring_buffer__epoll_fd": (c_int, [c_void_p]),
    "libbpf_set_print": (c_void_p, [c_void_p]),
    "libbpf_get_error": (ctypes.c_long, [c_void_p]),
}

_log: list[str] = []


def _print_py(level: int, fmt: bytes, args: int) -> int:  # pragma: no cover - C callback
    # libbpf's messages are printf formats with a va_list we cannot expand portably; keep the
    # format so an error can at least name what failed (the verifier log is fetched separately).
    _log.append(fmt.decode(errors="replace").strip())
    del _log[:-50]
    return 0


_print = PRINT_CB(_print_py)


def recent_log(n: int = 8) -> list[str]:
    """The last libbpf messages (format strings only: a va_list cannot be expanded here)."""
    return _log[-n:]


def lib() -> ctypes.CDLL:
    """Load libbpf once and declare the signatures we use."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            cdll = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise DatapathError(f"cannot load libbpf ({name}): {exc}") from exc
        for fn, (res, args) in _SIGS.items():
            f = getattr(cdll, fn)
            f.restype = res
            f.argtypes = args
        cdll.libbpf_set_print(ctypes.cast(_print, c_void_p))
        _lib = cdll
    return _lib


def check(rc: int, what: str) -> int:
    """Raise DatapathError for a negative libbpf return code."""
    if rc < 0:
        code = -rc
        raise DatapathError(f"{what}: {os.strerror(code)} ({errno.errorcode.get(code, code)})")
    return rc


def buf(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, len(data))


def addr(b: ctypes.Array[ctypes.c_char] | None) -> int | None:
    return ctypes.addressof(b) if b is not None else None


def make_ringbuf_cb(fn: Callable[[bytes], None]) -> Any:
    """Wrap ``fn(record_bytes)`` as a ring_buffer sample callback (keep the result alive)."""

    def cb(ctx: int | None, data: int | None, size: int) -> int:
        fn(ctypes.string_at(data, size) if data else b"")
        return 0

    return RINGBUF_CB(cb)


__all__ = ["RINGBUF_CB", "BatchOpts", "TestRunOpts", "addr", "buf", "check", "lib"]
