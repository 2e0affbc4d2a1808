"""Where sampled CPU time goes, by stage of the packet path: pure parsing and classification of
``perf script`` output (no I/O here; :mod:`netloom.bench.perf.profile` runs perf).

A sample is one call stack (leaf first) with a period in nanoseconds of CPU time (``perf record
-e cpu-clock``: this VM has no hardware counters). It is charged to one :data:`STAGES` entry:
walking from the leaf towards the root, the first frame that belongs to a stage decides. So
``memcpy`` under ``bpf_skb_load_bytes`` under ``bpf_prog_..._nl_ingress`` is the tc program's,
and ``veth_xmit`` reached from the program's redirect is the veth's, not the program's: the
innermost stage a sample sits in is what it costs.

Samples in an idle loop are ``idle``; samples whose leaf is in user space (the test tools) are
``user``; kernel samples under no stage entry are ``other kernel`` (syscall entry, epoll,
timers, memory management outside the packet path).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

IDLE = "idle"
USER = "user space (test tools)"
OTHER = "other kernel (syscalls, epoll, timers, memory)"


@dataclass(frozen=True)
class Stage:
    """A stage of the path: the kernel functions that mark it (exact names or prefixes)."""

    name: str
    functions: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def owns(self, function: str) -> bool:
        return function in self.functions or function.startswith(self.prefixes)


# In the order a packet meets them on the overlay; a frame matches at most one stage.
STAGES: tuple[Stage, ...] = (
    Stage(
        "TCP/IP send (connect, send, ACK, close)",
        frozenset(
            {
                "tcp_sendmsg",
                "tcp_sendmsg_locked",
                "tcp_v4_connect",
                "tcp_connect",
                "tcp_close",
                "__tcp_close",
                "tcp_send_ack",
                "__tcp_send_ack",
                "tcp_send_fin",
                "tcp_write_xmit",
                "__tcp_transmit_skb",
                "__tcp_push_pending_frames",
                "tcp_push",
                "__ip_queue_xmit",
                "ip_queue_xmit",
                "ip_output",
                "ip_finish_output",
                "ip_finish_output2",
                "tcp_v4_send_synack",
                "tcp_v4_send_reset",
            }
        ),
    ),
    Stage(
        "veth transmit (device queue, forward, backlog enqueue)",
        frozenset(
            {
                "__dev_queue_xmit",
                "dev_hard_start_xmit",
                "veth_xmit",
                "veth_forward_skb",
                "__dev_forward_skb",
                "__dev_forward_skb2",
                "netif_rx",
                "__netif_rx",
                "netif_rx_internal",
                "enqueue_to_backlog",
            }
        ),
    ),
    Stage(
        "receive core (backlog, softirq, __netif_receive_skb)",
        frozenset(
            {
                "net_rx_action",
                "__napi_poll",
                "process_backlog",
                "__netif_receive_skb",
                "__netif_receive_skb_one_core",
                "__netif_receive_skb_core.constprop.0",
                "__netif_receive_skb_core",
                "handle_softirqs",
                "do_softirq",
                "do_softirq.part.0",
                "__local_bh_enable_ip",
                "br_handle_frame",
                "br_forward",
                "br_dev_queue_push_xmit",
            }
        ),
    ),
    Stage(
        "netloom tc program (BPF code, maps, helpers)",
        frozenset(
            {
                "tc_run",
                "tcx_run",
                "tcf_classify",
                "__tcf_classify.constprop.0",
                "__tcf_classify",
                "cls_bpf_classify",
                "sch_handle_ingress",
            }
        ),
        ("bpf_prog_",),
    ),
    Stage(
        "neighbour output and BPF redirects",
        frozenset(
            {
                "skb_do_redirect",
                "__bpf_redirect_neigh",
                "bpf_out_neigh_v4",
                "neigh_output",
                "neigh_resolve_output",
                "neigh_hh_output",
                "eth_header",
                "__bpf_redirect_common",
                "__bpf_redirect_no_mac",
            }
        ),
    ),
    Stage(
        "TCP/IP receive",
        frozenset(
            {
                "ip_rcv",
                "ip_rcv_core",
                "ip_rcv_finish",
                "ip_rcv_finish_core",
                "ip_local_deliver",
                "ip_local_deliver_finish",
                "ip_protocol_deliver_rcu",
                "tcp_v4_rcv",
                "tcp_v4_do_rcv",
                "tcp_rcv_state_process",
                "tcp_rcv_established",
                "tcp_child_process",
                "tcp_ack",
                "tcp_data_queue",
                "ip_route_input_noref",
                "ip_route_input_slow",
                "tcp_conn_request",
                "tcp_rcv_synsent_state_process",
            }
        ),
    ),
    Stage(
        "wakeups and scheduling",
        frozenset(
            {
                "sock_def_readable",
                "sock_def_wakeup",
                "sk_stream_write_space",
                "try_to_wake_up",
                "__wake_up_sync_key",
                "__wake_up_common",
                "ep_poll_callback",
                "schedule",
                "__schedule",
                "schedule_timeout",
                "finish_task_switch.isra.0",
                "finish_task_switch",
                "schedule_idle",
            }
        ),
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
IDLE_LEAVES = frozenset(
    {
        "pv_native_safe_halt",
        "default_idle",
        "acpi_safe_halt",
        "poll_idle",
        "mwait_idle",
        "intel_idle",
        "cpu_idle_poll",
        "native_safe_halt",
    }
)


@dataclass
class Sample:
    """One ``perf script`` record: period (ns of CPU) and frames, leaf first."""

    period: int
    frames: list[str] = field(default_factory=list)  # function names
    user_leaf: bool = False


def parse(lines: Iterable[str]) -> Iterator[Sample]:
    """Samples from ``perf script -F comm,period,ip,sym,dso`` text: a header line (comm, period)
    then one indented line per frame, ``<address> <symbol>[+off] (<dso>)``; a blank line ends
    a sample. Lines that fit nothing are skipped (perf prints warnings on the same stream)."""
    cur: Sample | None = None
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            if cur is not None:
                yield cur
            cur = None
            continue
        if not line[0].isspace():
            if cur is not None:
                yield cur
            words = line.split()
            cur = Sample(int(words[-1])) if words and words[-1].isdigit() else None
            continue
        if cur is None:
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        sym, _, dso = rest.rpartition(" (")
        name = sym.split("+", 1)[0].strip() or "[unknown]"
        if not cur.frames:
            cur.user_leaf = not (dso.startswith("[kernel") or dso.startswith("bpf_prog_"))
        cur.frames.append(name)
    if cur is not None:
        yield cur


def classify(sample: Sample) -> str:
    """The stage (one of :data:`STAGE_NAMES`, :data:`IDLE`, :data:`USER`, :data:`OTHER`) a
    sample is charged to."""
    if not sample.frames:
        return OTHER
    if sample.user_leaf:
        return USER
    if sample.frames[0] in IDLE_LEAVES:
        return IDLE
    for fn in sample.frames:
        for stage in STAGES:
            if stage.owns(fn):
                return stage.name
    return OTHER


def breakdown(samples: Iterable[Sample]) -> dict[str, int]:
    """Nanoseconds of CPU per stage (every stage present, zeros included)."""
    out = dict.fromkeys((*STAGE_NAMES, OTHER, USER, IDLE), 0)
    for s in samples:
        out[classify(s)] += s.period
    return out


__all__ = [
    "IDLE",
    "OTHER",
    "STAGES",
    "STAGE_NAMES",
    "USER",
    "Sample",
    "Stage",
    "breakdown",
    "classify",
    "parse",
]
