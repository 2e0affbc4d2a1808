"""``netloom bench profile``'s pure half: perf script parsing, stage attribution, units."""

from __future__ import annotations

import pytest

from netloom.bench.perf import stages
from netloom.bench.perf.profile import ProfileOptions, per_unit, work_done
from netloom.bench.perf.workloads import Measurement
from netloom.errors import InvalidInput

pytestmark = pytest.mark.unit

K = "([kernel.kallsyms])"
SCRIPT = f"""python     250000
\tffffffff81e2ce4f __pi_memcpy {K}
\tffffffff81e2ce4f bpf_skb_load_bytes {K}
\tffffffffc0025cef bpf_prog_a5c5fda8ecd00e08_nl_ingress+0x57 (bpf_prog_a5c5fda8ecd00e08_nl_ingress)
\tffffffff81ef8e7a cls_bpf_classify+0x11a {K}
\tffffffff81e575df tc_run+0xbf {K}
\tffffffff81e64adb __netif_receive_skb_core.constprop.0+0x47b {K}
\tffffffff81e66003 process_backlog+0x83 {K}
\tffffffff82025860 __tcp_transmit_skb+0xa10 {K}

python     250000
\tffffffff81e2ce4f veth_xmit+0x10 {K}
\tffffffff81e2ce4f __dev_queue_xmit+0x34c {K}
\tffffffff81e2ce4f skb_do_redirect+0x20 {K}
\tffffffff81e64adb __netif_receive_skb_core.constprop.0+0x47b {K}

swapper     250000
\tffffffff81e2ce4f pv_native_safe_halt+0x5 {K}
\tffffffff81e2ce4f default_idle_call {K}

python     500000
\t          165259 method_vectorcall_O+0x99 (/usr/lib/libpython3.11.so.1.0)
\t          10a787 __GI___bind (/usr/lib/x86_64-linux-gnu/libc.so.6)

iperf3     250000
\tffffffff81e2ce4f core_sys_select {K}
\tffffffff81e2ce4f do_syscall_64 {K}
perf: some warning on the same stream
python     250000
\tffffffff81e2ce4f _raw_spin_unlock_irqrestore {K}
\tffffffff81e2ce4f sock_def_readable {K}
\tffffffff81e2ce4f tcp_v4_rcv {K}
"""


def test_each_sample_is_charged_to_the_innermost_stage_on_its_stack() -> None:
    samples = list(stages.parse(SCRIPT.splitlines(keepends=True)))
    assert [s.period for s in samples] == [250000, 250000, 250000, 500000, 250000, 250000]
    got = [stages.classify(s) for s in samples]
    names = {s.name.split(" ")[0]: s.name for s in stages.STAGES}
    assert got == [
        names["netloom"],  # a helper's memcpy under the program is the program's
        names["veth"],  # the veth the program redirected to is the veth's, not the redirect's
        stages.IDLE,
        stages.USER,
        stages.OTHER,
        names["wakeups"],  # the wakeup's IPI (unlock_irqrestore) under TCP receive
    ]


def test_breakdown_sums_periods_and_lists_every_stage() -> None:
    out = stages.breakdown(stages.parse(SCRIPT.splitlines()))
    assert set(out) == {
        *stages.STAGE_NAMES,
        stages.OTHER,
        stages.USER,
        stages.IDLE,
    }
    assert sum(out.values()) == 1_750_000
    assert out[stages.USER] == 500_000
    assert out["TCP/IP receive"] == 0
    us = per_unit(out, 10)  # 10 transactions
    assert us[stages.USER] == 50.0
    assert us["busy"] == pytest.approx((1_750_000 - 250_000) / 1e3 / 10)


def test_work_is_transactions_or_megabytes() -> None:
    assert work_done("tcp_crr", Measurement(1000.0, {"seconds": 2.0}), 3) == (2000.0, "transaction")
    assert work_done("tcp_rr", Measurement(500.0, {"messages": 1234}), 3) == (1234.0, "transaction")
    assert work_done("tcp_stream", Measurement(8000.0), 2) == (2000.0, "MB")


@pytest.mark.parametrize(
    "opts, field",
    [
        (ProfileOptions(test="tcp_nope"), "test"),
        (ProfileOptions(duration=0), "duration"),
        (ProfileOptions(reps=0), "reps"),
        (ProfileOptions(setups=("overlay",)), "setups"),
        (ProfileOptions(underlay="wifi"), "underlay"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(opts: ProfileOptions, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        opts.validate()
    assert err.value.field == field
