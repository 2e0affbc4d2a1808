"""The tc-eBPF kernel datapath (C source ``netloom.bpf.c``; :class:`BpfDatapath` in
``datapath.py`` is the facade over one module per concern)."""

from netloom.datapath.bpf.datapath import BpfDatapath
from netloom.datapath.bpf.loader import Loader, PinnedObject, ensure_bpffs, object_path

__all__ = ["BpfDatapath", "Loader", "PinnedObject", "ensure_bpffs", "object_path"]
