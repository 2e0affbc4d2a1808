"""Pure parts of ``netloom bench perf``: parsing, pairing of ratios, validation, plug-in."""

from __future__ import annotations

import os
import re
import sys
import types
from typing import Any

import pytest

from netloom.bench import perf, perf_setups
from netloom.bench.perf_setups import Endpoints, Setup, SetupUnavailable, make_setup
from netloom.bench.perf_tests import TESTS, Pin, parse_sockperf
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
    before = perf.cpu_seconds([os.getpid()])
    x = 0
    for i in range(3_000_000):
        x += i
    after = perf.cpu_seconds([os.getpid()])
    assert after > before >= 0
    assert perf.cpu_seconds([2**22 + 12345]) == 0  # no such pid: counts nothing


def _rep(values: dict[str, float]) -> dict[str, dict[str, Any]]:
    return {s: {t: {"value": v} for t in TESTS} for s, v in values.items()}


def test_ratio_is_median_of_same_rep_ratios_not_ratio_of_medians() -> None:
    # the machine got twice as fast in rep 2: paired ratios stay 0.5, the unpaired one not
    reps = [
        _rep({"bare": 100, "kernel-vxlan": 50}),
        _rep({"bare": 200, "kernel-vxlan": 100}),
        _rep({"bare": 400, "kernel-vxlan": 60}),
    ]
    medians, ratios = perf._summarize(reps, ["bare", "kernel-vxlan"])
    assert medians["bare"]["tcp_rr"] == 200
    assert medians["kernel-vxlan"]["tcp_rr"] == 60
    assert ratios["kernel-vxlan"]["tcp_rr"] == pytest.approx(0.5)  # 60/200 would be 0.3
    assert "bare" not in ratios
    spread = perf._ratio_range(reps, ["bare", "kernel-vxlan"])
    assert spread == {"kernel-vxlan": {t: [pytest.approx(0.15), pytest.approx(0.5)] for t in TESTS}}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"setups": ("kernel-vxlan",)}, "setups"),
        ({"setups": ("bare", "nope")}, "setups"),
        ({"setups": ("bare", "bare")}, "setups"),
        ({"mtu": 600}, "mtu"),
        ({"duration": 0}, "duration"),
        ({"reps": 0}, "reps"),
    ],
)
def test_bad_options_are_refused_before_anything_is_built(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        perf.run(perf.Options(**kwargs))
    assert err.value.field == field


def test_overlay_is_unavailable_until_its_factory_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, perf_setups.OVERLAY_MODULE, raising=False)
    real_import = __import__("importlib").import_module

    def no_overlay(name: str, *a: Any) -> Any:
        if name == perf_setups.OVERLAY_MODULE:
            raise ModuleNotFoundError(name=name)
        return real_import(name, *a)

    monkeypatch.setattr("importlib.import_module", no_overlay)
    with pytest.raises(SetupUnavailable, match="not available yet"):
        make_setup("overlay", 1500)


class FakeOverlay:
    """What the lead's factory returns; records how it was made."""

    def __init__(self, fip: bool, mtu: int, vxlan: str = "bpf", underlay: str = "direct") -> None:
        self.name = "overlay-fip" if fip else "overlay"
        self.fip, self.mtu, self.vxlan, self.underlay = fip, mtu, vxlan, underlay

    def up(self) -> Endpoints:
        return Endpoints("c", "s", "203.0.113.5" if self.fip else "10.0.0.11")

    def down(self) -> None:
        pass

    def agent_pids(self) -> list[int]:
        return []

    def upcalls(self) -> int | None:
        return 0


def test_overlay_factory_is_plugged_in(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType(perf_setups.OVERLAY_MODULE)
    mod.make_overlay = FakeOverlay  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, perf_setups.OVERLAY_MODULE, mod)
    s = make_setup("overlay-fip", 9000)
    assert isinstance(s, Setup) and isinstance(s, FakeOverlay)
    assert (s.fip, s.mtu, s.vxlan, s.underlay) == (True, 9000, "bpf", "direct")
    d = make_setup("overlay-vxdev", 1500, "switch")
    assert isinstance(d, FakeOverlay)
    assert (d.fip, d.vxlan, d.underlay) == (False, "device", "switch")
    mod.make_overlay = lambda fip, mtu, vxlan, underlay: object()  # type: ignore[attr-defined]
    with pytest.raises(SetupUnavailable, match="not a Setup"):
        make_setup("overlay", 1500)


def test_render_marks_skipped_setups_pending() -> None:
    res: dict[str, Any] = {
        "params": {
            "reps": 1,
            "duration_s": 1,
            "mtu": 1500,
            "setups": ["bare", "kernel-vxlan", "overlay"],
        },
        "machine": {"kernel": "k", "cpus": 2, "cpu_model": "m"},
        "medians": {
            "bare": dict.fromkeys(TESTS, 100.0),
            "kernel-vxlan": dict.fromkeys(TESTS, 80.0),
        },
        "ratios": {"kernel-vxlan": dict.fromkeys(TESTS, 0.8), "overlay": None},
        "agent_cpu_s": {"bare": None, "kernel-vxlan": None},
        "upcalls_during_run": None,
        "crr_tool_check": None,
        "skipped": {"overlay": "not available yet"},
    }
    text = perf.render(res)
    assert "lowest - highest" not in text  # one rep, no scatter to show
    res["params"]["reps"] = 3
    res["ratio_range"] = {"kernel-vxlan": {t: [0.7, 0.9] for t in TESTS}}
    assert re.search(r"\| TCP_RR +\| +0\.70 - 0\.90 \|", perf.render(res))
    assert "| TCP_STREAM Mbit/s |  100 |           80 | pending |" in text
    assert re.search(r"\| TCP_CRR +\| +0\.80 \| pending \|", text)
    assert "skipped overlay: not available yet" in text


def test_pinning_puts_clients_and_servers_on_different_cpus() -> None:
    pin = Pin.two_machines()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        assert pin == Pin() and pin.client(["x"]) == ["x"]
        return
    assert pin.client_cpu == cpus[0] != pin.server_cpu == cpus[-1]
    assert pin.server(["iperf3", "-s"]) == ["taskset", "-c", str(cpus[-1]), "iperf3", "-s"]
    assert Pin().client(["sockperf"]) == ["sockperf"]
