"""Stateful security groups on the kernel's conntrack, real agents on the BPF datapath:

    h1: a 10.0.1.10 (net1), stateful SG shaped like Neutron's default: from a everything
        (tracked); to a return traffic and ICMP only
    h2: c 10.0.2.10 (net2, routed), stateful SG of a server: to c return traffic and tcp/5201;
        from c everything

After the first connection, connections from a to c make no upcall on either host (counted
from the agents' metrics); replies cross hosts on the receiving port's reply entry; FIN/RST
shorten entries (short lifetimes configured); a tiny table keeps new connections working.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import pytest

from netloom.datapath.bpf import abi
from netloom.datapath.sizing import MIN_ENTRIES
from netloom.lab.plan import AgentTuning
from waiting import wait_until

from .conftest import EchoServer, NetLab, VmSpec, can_connect, echoes, netlab, tcp_connect

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

SG = {
    "a_out": [{"action": "accept", "match_return_flow": True}, {"action": "accept"}],
    "a_in": [
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "nw_proto": 1},
        {"action": "drop"},
    ],
    "c_out": [{"action": "accept", "match_return_flow": True}, {"action": "accept"}],
    "c_in": [
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "nw_proto": 6, "tp_dst": {"start": 5201, "end": 5201}},
        {"action": "drop"},
    ],
}
VMS = {
    "a": VmSpec(1, 1, 10, {"inbound_filter_id": "a_out", "outbound_filter_id": "a_in"}),
    "c": VmSpec(2, 2, 10, {"inbound_filter_id": "c_out", "outbound_filter_id": "c_in"}),
}
CT_CLOSING = 2  # NL_CTF_CLOSING


def upcalls(lab: NetLab, host: int) -> float:
    return sum(
        v for k, v in lab.metrics(host).items() if k.startswith("netloom_agent_upcalls_total")
    )


def connection(lab: NetLab) -> bool:
    """One short connection from a to c: connect, one echo, close."""
    s = tcp_connect(lab.ns("a"), lab.ip("c"), 5201, timeout=3.0)
    if s is None:
        return False
    try:
        return echoes(s, 2.0)
    finally:
        s.close()


def read_ct(pin_dir: str) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The host's pinned nl_ct entries (read-only syscalls): (key fields, entry fields)."""
    from netloom.datapath.bpf import libbpf as lb

    lib = lb.lib()
    fd = lb.check(lib.bpf_obj_get(str(Path(pin_dir) / "nl_ct").encode()), "open nl_ct")
    try:
        out = []
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(abi.CT_KEY.size)
        val = ctypes.create_string_buffer(abi.CT_ENTRY.size)
        while lib.bpf_map_get_next_key(fd, cur, nxt) == 0:
            k = nxt.raw
            if lib.bpf_map_lookup_elem(fd, lb.buf(k), val) == 0:
                out.append((abi.CT_KEY.unpack(k), abi.CT_ENTRY.unpack(val.raw)))
            cur = lb.buf(k)
        return out
    finally:
        os.close(fd)


def test_crr_makes_no_upcall_after_the_first_connection_and_replies_cross_hosts() -> None:
    with netlab(2, VMS, chains=SG) as lab:
        server = EchoServer(lab.ns("c"), lab.ip("c"), 5201)
        try:
            assert connection(lab), "the first connection failed"
            lab.wait_applied()
            before = upcalls(lab, 1), upcalls(lab, 2)
            pushed = lab.metrics(1).get("netloom_agent_flow_state_pushed_total", 0.0)
            ok = sum(connection(lab) for _ in range(50))
            assert ok == 50
            after = upcalls(lab, 1), upcalls(lab, 2)
            assert after == before, f"upcalls during 50 connections: {before} -> {after}"
            assert lab.metrics(1).get("netloom_agent_flow_state_pushed_total", 0.0) == pushed
            commits = lab.metrics(1)["netloom_datapath_conntrack_commits_total"]
            assert commits >= 51  # one per connection on a's port
            # the group is stateful for real: c cannot open a connection to a
            to_a = EchoServer(lab.ns("a"), lab.ip("a"), 7000)
            try:
                assert not can_connect(lab.ns("c"), lab.ip("a"), 7000, 0.5)
            finally:
                to_a.close()
            print(f"figure: upcalls during 50 SG-protected connections {after[0] - before[0]:.0f}")
        finally:
            server.close()


def test_fin_shortens_entries_on_both_hosts() -> None:
    agents = AgentTuning(conntrack_lifetimes="30:1:5")
    with netlab(2, VMS, chains=SG, agents=agents) as lab:
        server = EchoServer(lab.ns("c"), lab.ip("c"), 5201)
        try:
            s = tcp_connect(lab.ns("a"), lab.ip("c"), 5201, timeout=3.0)
            assert s is not None and echoes(s, 2.0)
            sport = s.getsockname()[1]

            def entries(host: int) -> list[tuple[int, ...]]:
                return [e for k, e in read_ct(lab.pin_dir(host)) if sport in (k[3], k[4])]

            now = time.monotonic_ns()
            for h in (1, 2):  # established: the 30 s lifetime
                [e] = entries(h)
                assert not e[2] & CT_CLOSING and e[0] - now > 20e9
            s.close()  # FIN both ways

            def closing() -> bool:
                es = [e for h in (1, 2) for e in entries(h)]
                return len(es) == 2 and all(e[2] & CT_CLOSING for e in es)

            wait_until(closing, 5.0, "FIN to mark both entries closing", 0.05)
            limit = time.monotonic_ns() + 1.5e9
            assert all(e[0] <= limit for h in (1, 2) for e in entries(h))
        finally:
            server.close()


def test_full_table_keeps_new_connections_working() -> None:
    agents = AgentTuning(conntrack_size=MIN_ENTRIES)
    with netlab(2, VMS, chains=SG, agents=agents) as lab:
        server = EchoServer(lab.ns("c"), lab.ip("c"), 5201)
        held = []
        try:
            for _ in range(MIN_ENTRIES + 8):  # more open connections than entries
                s = tcp_connect(lab.ns("a"), lab.ip("c"), 5201, timeout=3.0)
                assert s is not None, "a new connection failed with the table full"
                held.append(s)
            lost0 = lab.metrics(1).get("netloom_datapath_conntrack_lost_total", 0.0)
            for s in held:  # the evicted ones send without SYN and find no entry
                echoes(s, 0.3)
            wait_until(
                lambda: lab.metrics(1).get("netloom_datapath_conntrack_lost_total", 0.0) > lost0,
                5.0,
                "the lost-entries metric to move",
                0.05,
            )
            assert lab.metrics(1)["netloom_datapath_conntrack_capacity"] == MIN_ENTRIES
            assert connection(lab), "a new connection failed after evictions"
            assert lab.agent_pid(1) and lab.agent_pid(2)  # nothing crashed
        finally:
            for s in held:
                s.close()
            server.close()
