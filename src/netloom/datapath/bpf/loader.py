"""Loading the object and pinning it: ``<PIN_ROOT>/<host>/`` holds the programs and maps.

The first :class:`PinnedObject` of a host opens ``netloom.bpf.o`` with libbpf, loads it, pins
every program and map and closes its libbpf object; every one (the first included) then opens
the pins, so a restarted agent adopts the kernel state with exactly the code path that built
it. Pins of an older datapath (missing entry points, another ABI version) are refused, never
overwritten. :class:`Loader` is what the datapath needs of it (tests substitute fakes).

The tables in :data:`SIZABLE` take their number of entries from the caller (the agent's
config) before the object is loaded. A pinned map keeps the size it was created with: an
agent restarted with another size adopts it (its flows keep forwarding) and logs that the new
size applies once the pins are removed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from netloom.datapath.bpf import abi
from netloom.datapath.bpf import libbpf as lb
from netloom.datapath.bpf.maps import BpfMap, KernelMap, MapInfo, map_info
from netloom.datapath.sizing import check_entries
from netloom.errors import DatapathError, InvalidInput

BPF_FS_MAGIC = 0xCAFE4A11
PROG = "nl_ingress"  # finds the port's kind in nl_ports (tunnel device, injection, test runs)
PORT_PROG = "nl_port_ingress"  # VM / uplink / internal ports: the kind is known at attach
UNDERLAY_PROG = "nl_underlay_ingress"  # the underlay NIC: VXLAN decap
PROGS = (PROG, PORT_PROG, UNDERLAY_PROG)
MAPS = (
    "nl_flows",
    "nl_masks",
    "nl_ports",
    "nl_vni",
    "nl_config",
    "nl_exec",
    "nl_verdict",
    "nl_upcalls",
    "nl_upcall_tb",
    "nl_stats",
    "nl_ct",
)
FLOWS = "nl_flows"
CONNTRACK = "nl_ct"
SIZABLE = (
    FLOWS,
    CONNTRACK,
)  # hash tables sized from the config; the others' sizes are the program's
_SRC_DIR = Path(__file__).resolve().parent
# the compiled program inside an installed wheel (setup.py puts it there; never in a source tree)
PACKAGED_OBJ = _SRC_DIR / "netloom.bpf.o"
_log = logging.getLogger(__name__)


class Loader(Protocol):
    """A loaded datapath object: its programs and maps, by name."""

    @property
    def pin_dir(self) -> Path:
        """Where the programs and maps are pinned (``tc`` attaches programs from there)."""
        ...

    def fd(self, name: str) -> int:
        """The file descriptor of a program or map."""
        ...

    def map(self, name: str) -> BpfMap: ...

    def info(self, name: str) -> MapInfo:
        """A map's type, sizes and locked memory, as the kernel reports them."""
        ...

    def close(self) -> None:
        """Release this process's descriptors (the pins stay)."""
        ...


class PinnedObject:
    """The object of one host, loaded and pinned under ``pin_dir`` if nothing is there yet,
    then opened from its pins. ``max_entries`` sizes the :data:`SIZABLE` maps by name (the
    object's own sizes otherwise)."""

    def __init__(self, pin_dir: Path, *, max_entries: Mapping[str, int] | None = None) -> None:
        sizes = check_sizes(max_entries or {})
        self._pin_dir = pin_dir
        self._fd: dict[str, int] = {}
        ensure_bpffs()
        if not (pin_dir / PROG).exists():
            load_and_pin(pin_dir, sizes)
        missing = [n for n in PROGS if not (pin_dir / n).exists()]
        if missing:
            raise DatapathError(
                f"the pins under {pin_dir} are an older datapath's (no {', '.join(missing)})"
                "; remove them (`netloom lab down`, or delete the directory) to load this one"
            )
        try:
            for n in (*PROGS, *MAPS):
                self._fd[n] = lb.check(lb.lib().bpf_obj_get(str(pin_dir / n).encode()), n)
            check_abi(self.map("nl_config"), pin_dir)
        except BaseException:
            self.close()
            raise
        self._warn_pinned_sizes(sizes)

    def _warn_pinned_sizes(self, sizes: Mapping[str, int]) -> None:
        for name, want in sizes.items():
            have = self.info(name).max_entries
            if have != want:
                _log.warning(
                    "%s under %s was pinned with %d entries; keeping it (%d asked) until the "
                    "pins are removed",
                    name,
                    self._pin_dir,
                    have,
                    want,
                )

    @property
    def pin_dir(self) -> Path:
        return self._pin_dir

    def fd(self, name: str) -> int:
        if name not in self._fd:
            raise DatapathError("datapath closed")
        return self._fd[name]

    def map(self, name: str) -> BpfMap:
        return KernelMap(self.fd(name), name)

    def info(self, name: str) -> MapInfo:
        return map_info(self.fd(name))

    def close(self) -> None:
        for fd in self._fd.values():
            os.close(fd)
        self._fd = {}


def check_abi(config: BpfMap, pin_dir: Path) -> None:
    """Refuse maps pinned by a datapath of another ABI version (0: never configured)."""
    raw = config.lookup(bytes(4), abi.CONFIG.size) or bytes(abi.CONFIG.size)
    ver = int.from_bytes(raw[:4], "little")
    if ver not in (0, abi.ABI_VERSION) or len(raw) != abi.CONFIG.size:
        raise DatapathError(
            f"pinned maps under {pin_dir} use ABI {ver}, this code {abi.ABI_VERSION}"
        )


def check_sizes(max_entries: Mapping[str, int]) -> dict[str, int]:
    """``max_entries`` checked: only :data:`SIZABLE` maps, each of a usable size."""
    for name, n in max_entries.items():
        if name not in SIZABLE:
            raise InvalidInput(
                f"map {name!r} cannot be sized (only {', '.join(SIZABLE)})", field="max_entries"
            )
        check_entries(name, n)
    return dict(max_entries)


def load_and_pin(pin_dir: Path, max_entries: Mapping[str, int]) -> None:
    """Load the object (the maps named in ``max_entries`` sized so) and pin its programs and
    maps."""
    L = lb.lib()
    path = object_path()
    obj = L.bpf_object__open_file(str(path).encode(), None)
    if not obj or L.libbpf_get_error(obj):
        raise DatapathError(f"cannot open {path}")
    try:
        for name, n in max_entries.items():
            m = L.bpf_object__find_map_by_name(obj, name.encode())
            if not m:
                raise DatapathError(f"{path} has no map {name}")
            lb.check(L.bpf_map__set_max_entries(m, n), f"size {name}")
        rc = L.bpf_object__load(obj)
        if rc < 0:
            raise DatapathError(
                f"loading {path} failed ({os.strerror(-rc)}); libbpf said: "
                + " | ".join(lb.recent_log())
            )
        pin_dir.mkdir(parents=True, exist_ok=True)
        for name in PROGS:
            prog = L.bpf_object__find_program_by_name(obj, name.encode())
            pin = str(pin_dir / name).encode()
            lb.check(L.bpf_obj_pin(L.bpf_program__fd(prog), pin), f"pin {name}")
        for name in MAPS:
            m = L.bpf_object__find_map_by_name(obj, name.encode())
            lb.check(L.bpf_obj_pin(L.bpf_map__fd(m), str(pin_dir / name).encode()), f"pin {name}")
    except BaseException:
        shutil.rmtree(pin_dir, ignore_errors=True)
        raise
    finally:
        L.bpf_object__close(obj)


def object_path() -> Path:
    """The compiled program: $NETLOOM_BPF_OBJ; else the one an installed wheel ships beside its
    source (:data:`PACKAGED_OBJ`); else, in a source tree, build/netloom.bpf.o (``make bpf``),
    compiled here with clang if missing or older than its source; else one compiled once into
    the user's cache."""
    env = os.environ.get("NETLOOM_BPF_OBJ")
    if env:
        return Path(env)
    if PACKAGED_OBJ.is_file() and PACKAGED_OBJ.stat().st_size > 0:
        return PACKAGED_OBJ
    src = _SRC_DIR / "netloom.bpf.c"
    root = _SRC_DIR.parents[3]
    if (root / "pyproject.toml").exists():  # a source tree: where `make bpf` puts it
        obj = root / "build" / "netloom.bpf.o"
    else:  # an installed package without its object: compile once into the user's cache
        obj = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netloom.bpf.o"
    newest = max(p.stat().st_mtime for p in _SRC_DIR.glob("*.[ch]"))
    if obj.exists() and obj.stat().st_size > 0 and obj.stat().st_mtime >= newest:
        return obj
    obj.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu"]
    r = subprocess.run([*cmd, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
    if r.returncode != 0:
        raise DatapathError(f"clang failed: {r.stderr.strip()[-2000:]}")
    return obj


def ensure_bpffs() -> None:
    """Mount bpffs on /sys/fs/bpf if nothing is mounted there (pins need it)."""
    if _fs_magic("/sys/fs/bpf") == BPF_FS_MAGIC:
        return
    r = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True, text=True)
    if r.returncode != 0 and _fs_magic("/sys/fs/bpf") != BPF_FS_MAGIC:
        raise DatapathError(f"cannot mount bpffs: {r.stderr.strip()}")


def _fs_magic(path: str) -> int:
    class StatFs(ctypes.Structure):
        _fields_ = (("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120))

    libc = ctypes.CDLL(None, use_errno=True)
    st = StatFs()
    if libc.statfs(path.encode(), ctypes.byref(st)) != 0:
        return 0
    return int(st.f_type) & 0xFFFFFFFF


__all__ = [
    "CONNTRACK",
    "FLOWS",
    "MAPS",
    "PACKAGED_OBJ",
    "PORT_PROG",
    "PROG",
    "PROGS",
    "SIZABLE",
    "UNDERLAY_PROG",
    "Loader",
    "PinnedObject",
    "check_abi",
    "check_sizes",
    "ensure_bpffs",
    "load_and_pin",
    "object_path",
]
