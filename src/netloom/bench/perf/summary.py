"""The figures of ``netloom bench perf`` from its reps: medians, ranges, ratios to bare, the
agents' upcalls.

A rep is ``{setup: {test: {"value": ..., "upcalls": ..., ...}}}``. A setup's ratio for a test
is the median over reps of ``setup / bare`` of the *same* rep (pairing removes the drift
between reps that a ratio of medians would keep); the range beside it is the lowest and the
highest of those per-rep ratios.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from netloom.bench.stats import median

BASELINE = "bare"
Reps = Sequence[dict[str, dict[str, Any]]]


def medians(reps: Reps, names: Sequence[str], tests: Sequence[str]) -> dict[str, dict[str, float]]:
    """Median over reps of each setup's value per test."""
    return {n: {t: statistics.median(r[n][t]["value"] for r in reps) for t in tests} for n in names}


def value_ranges(
    reps: Reps, names: Sequence[str], tests: Sequence[str]
) -> dict[str, dict[str, list[float]]]:
    """Lowest and highest value of a single rep per setup and test."""
    return {n: {t: _span([r[n][t]["value"] for r in reps]) for t in tests} for n in names}


def _per_rep_ratios(reps: Reps, name: str, test: str) -> list[float]:
    return [r[name][test]["value"] / r[BASELINE][test]["value"] for r in reps]


def ratios(reps: Reps, names: Sequence[str], tests: Sequence[str]) -> dict[str, dict[str, float]]:
    """Median over reps of ``setup / bare`` of the same rep (bare itself left out)."""
    return {
        n: {t: statistics.median(_per_rep_ratios(reps, n, t)) for t in tests}
        for n in names
        if n != BASELINE
    }


def ratio_ranges(
    reps: Reps, names: Sequence[str], tests: Sequence[str]
) -> dict[str, dict[str, list[float]]]:
    """Lowest and highest same-rep ratio per setup and test: how far single reps scatter
    around the median on this machine (a reader's gauge of the noise)."""
    return {
        n: {t: _span(_per_rep_ratios(reps, n, t)) for t in tests} for n in names if n != BASELINE
    }


def _span(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def upcalls_per_setup(
    reps: Reps, names: Sequence[str], test: str = "tcp_crr"
) -> dict[str, dict[str, Any] | None]:
    """Upcalls counted during each setup's runs of ``test``: their total and one figure per
    rep; None for a setup without an upcall counter (the kernel-only ones) or whose counter
    did not answer."""
    out: dict[str, dict[str, Any] | None] = {}
    for n in names:
        per_rep = [r[n][test].get("upcalls") for r in reps if test in r[n]]
        counted = [u for u in per_rep if u is not None]
        out[n] = (
            {"test": test, "total": sum(counted), "per_rep": counted}
            if per_rep and len(counted) == len(per_rep)
            else None
        )
    return out


def rr_latency(reps: Reps, names: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """TCP_RR half round trip per setup: median over reps of sockperf's min / p50 / p99."""
    out: dict[str, dict[str, float | None]] = {}
    for n in names:
        row: dict[str, float | None] = {}
        for q in ("min", "p50", "p99"):
            vals = [r[n]["tcp_rr"].get(f"half_rtt_{q}_us") for r in reps if "tcp_rr" in r[n]]
            got = [v for v in vals if v is not None]
            row[q] = median(got)
        out[n] = row
    return out


__all__ = [
    "BASELINE",
    "medians",
    "ratio_ranges",
    "ratios",
    "rr_latency",
    "upcalls_per_setup",
    "value_ranges",
]
