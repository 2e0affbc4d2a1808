"""``netloom bench perf`` and ``netloom bench profile``: TCP workloads over bare, kernel-VXLAN and
overlay setups, compared to bare and profiled per packet-path stage."""
