"""Flow state crosses hosts: the return traffic of a connection whose forward path was simulated
on host 1 is accepted on host 2 by a stateful security group, because host 1 pushed the
conntrack key there before the packet, also after the reply's flow has expired once (agents run
with a 1 s flow idle timeout).

    h1: a 10.0.1.10 (net1), stateful SG: from a everything (tracked); to a only return
        traffic and ICMP
    h2: c 10.0.2.10 (net2, routed), no SG
"""

from __future__ import annotations

import time

import pytest

from netloom.lab.plan import AgentTuning
from waiting import wait_until

from .conftest import EchoServer, VmSpec, can_connect, echoes, netlab, tcp_connect

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

IDLE_S = 1.0
CHAINS = {
    "a_out": [{"action": "accept", "match_return_flow": True}, {"action": "accept"}],
    "a_in": [
        {"action": "accept", "match_return_flow": True},
        {"action": "accept", "nw_proto": 1},
        {"action": "drop"},
    ],
}


def test_return_traffic_accepted_on_other_host_by_pushed_state() -> None:
    vms = {
        "a": VmSpec(1, 1, 10, {"inbound_filter_id": "a_out", "outbound_filter_id": "a_in"}),
        "c": VmSpec(2, 2, 10),
    }
    # the agent's conntrack and its pushes
    agents = AgentTuning(idle_timeout=IDLE_S, kernel_conntrack=False)
    with netlab(2, vms, chains=CHAINS, agents=agents) as lab:
        a_ns, c_ns, a_ip, c_ip = lab.ns("a"), lab.ns("c"), lab.ip("a"), lab.ip("c")
        to_c = EchoServer(c_ns, c_ip, 5201)
        to_a = EchoServer(a_ns, a_ip, 7000)
        try:
            # The SG is stateful for real: c cannot open a connection to a ...
            assert not can_connect(c_ns, a_ip, 7000, 0.5), "a's SG let a new connection in"
            pushed0 = lab.metrics(1).get("netloom_agent_flow_state_pushed_total", 0.0)
            # ... but a's connection to c works: c's SYN-ACK is simulated on h2 and passes
            # a's to-VM chain as return traffic only because h1 pushed the conntrack key.
            t0 = time.monotonic()
            s = tcp_connect(a_ns, c_ip, 5201, timeout=3.0)
            setup = time.monotonic() - t0
            assert s is not None, "the reply was not accepted on h2"
            try:
                assert echoes(s)
                pushed = lab.metrics(1).get("netloom_agent_flow_state_pushed_total", 0.0)
                assert pushed > pushed0, "h1 pushed no flow state"
                # the handshake never waited for a SYN retransmission (1 s, RFC 6298 2.1):
                # the key was on h2 before the SYN-ACK needed it
                assert setup < 0.9, f"connection setup took {setup:.2f} s"
                # Let every flow of the connection expire (no traffic for > idle timeout).
                assert lab.from_vm(lab.flows(2), "c"), "c's reply flow is not on h2"
                expired0 = lab.metrics(2).get("netloom_agent_flows_expired_total", 0.0)
                wait_until(
                    lambda: not lab.from_vm(lab.flows(2), "c"),
                    IDLE_S + 3,
                    "c's reply flow to expire on h2",
                    0.05,
                )
                assert lab.metrics(2)["netloom_agent_flows_expired_total"] > expired0
                # The reply is simulated again on h2 from the state pushed earlier.
                assert echoes(s, 1.0), "return traffic refused after its flow expired"
                assert lab.from_vm(lab.flows(2), "c"), "no new reply flow on h2"
            finally:
                s.close()
            assert not can_connect(c_ns, a_ip, 7000, 0.5), "a's SG let a new connection in"
            print(f"figure: cross-host stateful handshake {setup * 1000:.1f} ms")
        finally:
            to_c.close()
            to_a.close()
