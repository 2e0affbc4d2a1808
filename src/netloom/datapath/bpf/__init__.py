"""The tc-eBPF kernel datapath (C source ``netloom.bpf.c``, loader ``datapath.py``)."""

from netloom.datapath.bpf.datapath import PIN_ROOT, BpfDatapath, ensure_bpffs, object_path

__all__ = ["PIN_ROOT", "BpfDatapath", "ensure_bpffs", "object_path"]
