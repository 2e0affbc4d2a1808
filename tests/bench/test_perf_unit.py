"""Pure parts of ``netloom bench perf``: parsing, pairing of ratios, validation, the setups."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from netloom.bench import procs
from netloom.bench.perf import compare as perf
from netloom.bench.perf import summary
from netloom.bench.perf.catalog import SETUPS, make_setup
from netloom.bench.perf.overlay_setup import OverlaySetup
from netloom.bench.perf.workloads import TESTS, Pin, parse_sockperf
from netloom.errors import DatapathError, InvalidInput

pytestmark = pytest.mark.unit

SOCKPERF_OUT = """\
sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec; SentMessages=37451
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=26693; ReceivedMessages=26693
sockperf: ====> avg-latency=29.008 (std-dev=10.161)
sockperf: Summary: Latency is 29.008 usec
sockperf: Total 26693 observations; each percentile contains 266.93 observations
sockperf: ---> <MAX> observation =  120.417
sockperf: ---> percentile 99.000 =   46.188
sockperf: ---> percentile 50.000 =   25.733
sockperf: ---> <MIN> observation =   18.922
"""


def test_sockperf_rate_is_received_over_valid_runtime() -> None:
    m = parse_sockperf(SOCKPERF_OUT)
    assert m.value == pytest.approx(26693 / 1.550)
    assert m.detail["half_rtt_avg_us"] == pytest.approx(29.008)
    assert (
        m.detail["half_rtt_min_us"],
        m.detail["half_rtt_p50_us"],
        m.detail["half_rtt_p99_us"],
    ) == (18.922, 25.733, 46.188)


def test_sockperf_without_summary_is_an_error() -> None:
    with pytest.raises(DatapathError):
        parse_sockperf("sockperf: ERROR: connection refused\n")


def test_cpu_seconds_counts_this_process_and_grows() -> None:
    before = procs.cpu_seconds([os.getpid()])
    x = 0
    for i in range(3_000_000):
        x += i
    after = procs.cpu_seconds([os.getpid()])
    assert after > before >= 0
    assert procs.cpu_seconds([2**22 + 12345]) == 0  # no such pid: counts nothing


def _rep(values: dict[str, float]) -> dict[str, dict[str, Any]]:
    return {s: {t: {"value": v} for t in TESTS} for s, v in values.items()}


def test_ratio_is_median_of_same_rep_ratios_not_ratio_of_medians() -> None:
    # the machine got twice as fast in rep 2: paired ratios stay 0.5, the unpaired one not
    reps = [
        _rep({"bare": 100, "kernel-vxlan": 50}),
        _rep({"bare": 200, "kernel-vxlan": 100}),
        _rep({"bare": 400, "kernel-vxlan": 60}),
    ]
    names = ["bare", "kernel-vxlan"]
    medians = summary.medians(reps, names, TESTS)
    ratios = summary.ratios(reps, names, TESTS)
    assert medians["bare"]["tcp_rr"] == 200
    assert medians["kernel-vxlan"]["tcp_rr"] == 60
    assert ratios["kernel-vxlan"]["tcp_rr"] == pytest.approx(0.5)  # 60/200 would be 0.3
    assert "bare" not in ratios
    spread = summary.ratio_ranges(reps, names, TESTS)
    assert spread == {"kernel-vxlan": {t: [pytest.approx(0.15), pytest.approx(0.5)] for t in TESTS}}
    assert summary.value_ranges(reps, names, TESTS)["bare"]["tcp_crr"] == [100, 400]


def test_upcalls_per_setup_are_those_of_the_crr_runs_per_rep() -> None:
    reps = [_rep({"bare": 100, "overlay": 90}), _rep({"bare": 100, "overlay": 80})]
    for i, r in enumerate(reps):
        r["bare"]["tcp_crr"]["upcalls"] = None
        r["overlay"]["tcp_crr"]["upcalls"] = 10 * (i + 1)
        r["overlay"]["tcp_rr"]["upcalls"] = 1000  # not a CRR run: not counted
    got = summary.upcalls_per_setup(reps, ["bare", "overlay"])
    assert got == {"bare": None, "overlay": {"test": "tcp_crr", "total": 30, "per_rep": [10, 20]}}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"setups": ("kernel-vxlan",)}, "setups"),
        ({"setups": ("bare", "nope")}, "setups"),
        ({"setups": ("bare", "bare")}, "setups"),
        ({"mtu": 600}, "mtu"),
        ({"duration": 0}, "duration"),
        ({"reps": 0}, "reps"),
        ({"tests": ("tcp_rr", "udp_rr")}, "tests"),
        ({"tests": ()}, "tests"),
        ({"tests": ("tcp_rr", "tcp_rr")}, "tests"),
        ({"setups": ("overlay",), "series": False}, "setups"),
    ],
)
def test_bad_options_are_refused_before_anything_is_built(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        perf.run(perf.Options(**kwargs))
    assert err.value.field == field


def test_every_default_setup_is_in_the_catalog_and_overlays_are_built_as_named() -> None:
    assert set(perf.DEFAULT_SETUPS) <= set(SETUPS)
    fip = make_setup("overlay-fip", 9000)
    assert isinstance(fip, OverlaySetup) and fip.name == "overlay-fip"
    vxdev = make_setup("overlay-vxdev", 1500, "switch")
    assert isinstance(vxdev, OverlaySetup)
    assert (vxdev.name, vxdev.underlay) == ("overlay-vxdev", "switch")


def test_render_marks_skipped_setups_pending_and_shows_ranges_and_series() -> None:
    res: dict[str, Any] = {
        "params": {
            "reps": 1,
            "duration_s": 1,
            "mtu": 1500,
            "underlay": "switch",
            "setups": ["bare", "kernel-vxlan", "overlay"],
            "tests": list(TESTS),
            "sg": True,
            "series": False,
        },
        "machine": {"kernel": "k", "cpus": 2, "cpu_model": "m"},
        "medians": {
            "bare": dict.fromkeys(TESTS, 100.0),
            "kernel-vxlan": dict.fromkeys(TESTS, 80.0),
        },
        "ranges": {"bare": {t: [90.0, 110.0] for t in TESTS}},
        "ratios": {"kernel-vxlan": dict.fromkeys(TESTS, 0.8), "overlay": None},
        "agent_cpu_s": {"bare": None, "kernel-vxlan": None},
        "upcalls_during_run": None,
        "crr_tool_check": None,
        "skipped": {"overlay": "no BPF here"},
    }
    text = perf.render(res)
    assert "lowest - highest" not in text  # one rep, no scatter to show
    assert "| TCP_STREAM Mbit/s |  100 |           80 | pending |" in text
    assert re.search(r"\| TCP_CRR +\| +0\.80 +\| pending \|", text)
    assert "skipped overlay: no BPF here" in text
    assert "stateful security groups" in text and "lab switch" in text
    res["params"]["reps"] = 3
    res["ratio_range"] = {"kernel-vxlan": {t: [0.7, 0.9] for t in TESTS}}
    text = perf.render(res)
    assert re.search(r"\| TCP_RR +\| +0\.80 \(0\.70 - 0\.90\) \|", text)
    assert "| TCP_STREAM Mbit/s | 100 (90 - 110) |" in text
    res["params"]["series"] = True
    res["series"] = {"bare": {"tcp_crr": {"values": [10, 8, 9], "last_over_first": 0.9}}}
    res["reps"] = [{"bare": {"tcp_crr": {"value": v, "agents": None}}} for v in (10, 8, 9)]
    text = perf.render(res)
    assert "bare TCP_CRR, run by run: last / first 0.90" in text
    assert re.search(r"\| 3 +\| +9 \| +n/a \|", text)


def test_pinning_puts_clients_and_servers_on_different_cpus() -> None:
    pin = Pin.two_machines()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        assert pin == Pin() and pin.client(["x"]) == ["x"]
        return
    assert pin.client_cpu == cpus[0] != pin.server_cpu == cpus[-1]
    assert pin.server(["iperf3", "-s"]) == ["taskset", "-c", str(cpus[-1]), "iperf3", "-s"]
    assert Pin().client(["sockperf"]) == ["sockperf"]
