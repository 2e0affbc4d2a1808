"""Every setup ``netloom bench perf`` and ``netloom bench profile`` can build, by name."""

from __future__ import annotations

from collections.abc import Callable

from netloom.bench.perf.overlay_setup import OverlaySetup
from netloom.bench.perf.setups import BareSetup, KernelVxlanSetup, Setup

# (mtu, underlay, sg) -> the setup; ``sg``: security groups on the VMs' ports (overlays only)
Maker = Callable[[int, str, bool], Setup]


def _overlay(fip: bool, vxlan: str = "bpf") -> Maker:
    def make(mtu: int, underlay: str, sg: bool) -> Setup:
        return OverlaySetup(fip, mtu, vxlan=vxlan, underlay=underlay, sg=sg)

    return make


def _kernel(cls: type[BareSetup] | type[KernelVxlanSetup]) -> Maker:
    def make(mtu: int, underlay: str, _sg: bool) -> Setup:
        return cls(mtu, underlay)

    return make


SETUPS: dict[str, Maker] = {
    "bare": _kernel(BareSetup),
    "kernel-vxlan": _kernel(KernelVxlanSetup),
    "overlay": _overlay(fip=False),
    "overlay-fip": _overlay(fip=True),
    # not in the default run: the overlay with the kernel VXLAN device doing all encapsulation
    "overlay-vxdev": _overlay(fip=False, vxlan="device"),
}


def make_setup(name: str, mtu: int, underlay: str = "direct", *, sg: bool = True) -> Setup:
    """The setup called ``name`` (``underlay``: ``direct`` or ``switch``; ``sg``: the overlay
    VMs' ports carry stateful security groups); SetupUnavailable when it cannot be built here."""
    return SETUPS[name](mtu, underlay, sg)


__all__ = ["SETUPS", "make_setup"]
