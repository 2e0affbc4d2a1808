"""Small load generators run inside the benchmark namespaces.

Run as ``python -m netloom.bench.tools.NAME`` through ``nsenter``."""
