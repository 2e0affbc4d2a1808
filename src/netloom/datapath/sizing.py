"""Table sizes shared by both datapaths and the agent's config (``--flow-table-size``,
``--conntrack-size``).

A module of its own, importing only the error tree, so the agent's command line can check a
size without importing a datapath. A full table evicts its least recently used entry, in the
kernel (``BPF_MAP_TYPE_LRU_HASH``) and in the memory datapath alike: an install never fails
for want of room.
"""

from __future__ import annotations

from netloom.errors import InvalidInput

DEFAULT_FLOWS = 65536  # flows per host unless the config says otherwise
DEFAULT_CONNTRACK = 262144  # conntrack entries per host (--conntrack-size)
MIN_ENTRIES = 16
MAX_ENTRIES = 1 << 24  # 16 M entries: several GB of locked kernel memory per table


def check_entries(what: str, n: int) -> int:
    """``n`` if it is a usable table size, else :class:`InvalidInput` naming ``what``."""
    if not MIN_ENTRIES <= n <= MAX_ENTRIES:
        raise InvalidInput(f"{what} must be in [{MIN_ENTRIES}, {MAX_ENTRIES}], got {n}", field=what)
    return n


__all__ = ["DEFAULT_CONNTRACK", "DEFAULT_FLOWS", "MAX_ENTRIES", "MIN_ENTRIES", "check_entries"]
