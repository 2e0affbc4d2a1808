"""``netloom bench scale``'s verdict (the checks a run must pass) and its table."""

from __future__ import annotations

from typing import Any

from netloom.bench.report import print_figures


def failed_checks(r: dict[str, Any]) -> list[str]:
    bad = []
    if r.get("sim_failures"):
        bad.append(f"{r['sim_failures']} first-packet checks failed")
    if r.get("warmup_failures"):
        bad.append(f"{r['warmup_failures']} warm-up checks failed")
    for k in ("sg", "route"):
        p = r.get("propagation", {}).get(k, {})
        if p.get("missing"):
            bad.append(f"{k} change missing on {p['missing']} agents")
        if p.get("unwanted"):
            bad.append(f"{k} change sent to {p['unwanted']} agents that do not need it")
    lr = r.get("learned_routes")
    if lr and lr["routes"] != lr["want"]:
        bad.append(f"{lr['routes']} of {lr['want']} learned routes reached the NSDB")
    if r.get("store_watches") != 1:
        bad.append(f"store watches = {r.get('store_watches')} (want 1)")
    if r.get("agents_connected") != r.get("hosts"):
        bad.append(f"{r.get('agents_connected')} of {r.get('hosts')} agents connected")
    return bad


def _learned_and_propagated(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if "learned_routes" in r:
        lr = r["learned_routes"]
        rows.append(
            ("learned routes", f"{lr['routes']} of {lr['want']} in the NSDB after {lr['ms']} ms")
        )
    p = r.get("propagation", {})
    for k, name in (("sg", "SG rule propagation"), ("route", "route propagation")):
        if k in p:
            q = p[k]
            rows.append(
                (
                    name,
                    f"p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms, max {q['max_ms']} ms"
                    f" over {q['agents_needing']} agents; missing {q['missing']}, "
                    f"unwanted {q['unwanted']}",
                )
            )
    return rows


def print_table(r: dict[str, Any]) -> None:
    rows = [
        (
            "cloud",
            f"{r['hosts']} hosts, {r['vms']} VMs, {r['tenants']} tenants, "
            f"{r['gateways']} gateways, store {r['store']}",
        ),
        (
            "provisioning",
            f"{r['provision_s']} s, {r['api_requests']} requests "
            f"({r['requests_per_s']}/s), VM ports {r['ports_per_s']}/s",
        ),
        ("all bindings active", f"{r['all_active_s']} s"),
        (
            "warm-up first packets",
            f"{r['warmup_checks']} in {r['warmup_s']} s, {r['warmup_failures']} failed",
        ),
    ]
    rows += _learned_and_propagated(r)
    rows += [
        (
            "first-packet checks",
            f"{r.get('sim_checks')} in {r.get('sim_s')} s, {r.get('sim_failures')} failed",
        ),
        (
            "100-VM agent RSS",
            f"{r['agent100_rss_mb']} MB after warm-up (small cloud "
            f"{r.get('agent100_rss_small_mb')} MB, "
            f"{r.get('agent100_rss_growth_pct')}%), "
            f"{r.get('agent100_rss_end_mb')} MB at the end",
        ),
        (
            "cluster",
            f"RSS {r['cluster_rss_mb']} MB (peak {r.get('cluster_peak_rss_mb')}), "
            f"CPU {r['cluster_cpu_s']} s",
        ),
        (
            "store",
            f"{r.get('store_mb', r.get('zk_data_mb'))} MB"
            + (f", {r['zk_znodes']} znodes" if "zk_znodes" in r else "")
            + f", watches {r['store_watches']}",
        ),
        ("agent workers", f"{r['worker_processes']} processes, RSS {r['worker_rss_mb']} MB"),
        ("checks", "all passed" if not r["checks_failed"] else "; ".join(r["checks_failed"])),
    ]
    print_figures("netloom bench scale", rows)


__all__ = ["failed_checks", "print_table"]
