"""Where the kernel datapath pins its programs and maps: ``<PIN_ROOT>/<host id>/``.

A module of its own, outside ``datapath/bpf``, so that the lab and the tests can name the pin
directory without importing the loader (which opens libbpf).
"""

from __future__ import annotations

from pathlib import Path

PIN_ROOT = Path("/sys/fs/bpf/netloom")


def host_pin_dir(host: str) -> Path:
    """The pin directory of one host's datapath."""
    return PIN_ROOT / host
