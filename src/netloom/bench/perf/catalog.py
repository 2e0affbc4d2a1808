"""Every setup ``netloom bench perf`` and ``netloom bench profile`` can build, by name."""

from __future__ import annotations

from collections.abc import Callable

from netloom.bench.perf.overlay_setup import OverlaySetup
from netloom.bench.perf.setups import BareSetup, KernelVxlanSetup, Setup


def _overlay(fip: bool, vxlan: str = "bpf") -> Callable[[int, str], Setup]:
    def make(mtu: int, underlay: str) -> Setup:
        return OverlaySetup(fip, mtu, vxlan=vxlan, underlay=underlay)

    return make


SETUPS: dict[str, Callable[[int, str], Setup]] = {
    "bare": BareSetup,
    "kernel-vxlan": KernelVxlanSetup,
    "overlay": _overlay(fip=False),
    "overlay-fip": _overlay(fip=True),
    # not in the default run: the overlay with the kernel VXLAN device doing all encapsulation
    "overlay-vxdev": _overlay(fip=False, vxlan="device"),
}


def make_setup(name: str, mtu: int, underlay: str = "direct") -> Setup:
    """The setup called ``name`` (``underlay``: ``direct`` or ``switch``); SetupUnavailable when
    it cannot be built here."""
    return SETUPS[name](mtu, underlay)


__all__ = ["SETUPS", "make_setup"]
