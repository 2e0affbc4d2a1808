"""Hypothesis properties of the simulation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netloom.packet import Frame, IPv4, Tcp, Udp, build, int_to_ip, ip_to_int, mac_to_int
from netloom.packet.headers import ETH_TYPE_IPV4, Ethernet
from netloom.sim import SimState, Verdict, simulate

from .conftest import (
    IP_A,
    MAC_EXT,
    MAC_R1,
    MAC_UP,
    UPLINK_IP,
    Lab,
    standard_lab,
    tcp,
    udp,
)

pytestmark = pytest.mark.unit

_S = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAB = standard_lab()
VIEW = LAB.view


@_S
@given(
    vm=st.sampled_from(["A", "B"]),
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
    remote=st.integers(ip_to_int("198.51.100.0"), ip_to_int("198.51.100.255")),
    proto=st.sampled_from(["tcp", "udp"]),
)
def test_reply_to_nated_flow_is_translated_back(
    vm: str, sport: int, dport: int, remote: int, proto: str
) -> None:
    state = SimState(arp=dict(LAB.state.arp), snat_blocks=dict(LAB.state.snat_blocks))
    mac, ip = LAB.macs[vm], LAB.ips[vm]
    mk = tcp if proto == "tcp" else udp
    fwd = mk(mac, MAC_R1, ip, int_to_ip(remote), sport=sport, dport=dport)
    r = simulate(fwd, LAB.ports[vm].id, VIEW, state, 1000.0)
    assert r.verdict is Verdict.FORWARD
    state.apply(r.changes)
    from netloom.sim import apply_actions

    [(_, out)] = apply_actions(build(fwd), r.actions)
    assert out[26:30] == ip_to_int(UPLINK_IP).to_bytes(4, "big")  # source translated
    nat_port = int.from_bytes(out[34:36], "big")
    l4: Tcp | Udp = Tcp(dport, nat_port, flags=0x12) if proto == "tcp" else Udp(dport, nat_port)
    reply = Frame(
        Ethernet(mac_to_int(MAC_UP), mac_to_int(MAC_EXT), ETH_TYPE_IPV4),
        ip=IPv4(remote, ip_to_int(UPLINK_IP), 6 if proto == "tcp" else 17),
        l4=l4,
    )
    back = simulate(reply, LAB.ports["uplink"].id, VIEW, state, 1000.0)
    assert back.verdict is Verdict.FORWARD and back.outputs == (LAB.ports[vm].id,)
    [(_, got)] = apply_actions(build(reply), back.actions)
    assert got[30:34] == ip_to_int(ip).to_bytes(4, "big")  # original address
    assert int.from_bytes(got[36:38], "big") == sport  # original port
    assert got[26:30] == remote.to_bytes(4, "big")


def _bridge_lab() -> Lab:
    lab = Lab()
    br = lab.named["br"] = lab.bridge("br")
    for i in range(4):
        lab.vm(br, f"v{i}", f"02:00:00:00:00:0{i}", f"10.0.0.{i + 1}", port_security_enabled=False)
    return lab


BLAB = _bridge_lab()
MACS = [*BLAB.macs.values(), "02:00:00:00:00:55", "02:00:00:00:00:66", "ff:ff:ff:ff:ff:ff"]


@_S
@given(
    in_vm=st.integers(0, 3),
    src=st.sampled_from(MACS[:-1]),
    dst=st.sampled_from(MACS),
    learned=st.dictionaries(st.sampled_from(MACS[4:6]), st.integers(0, 3), max_size=2),
)
def test_bridge_never_outputs_on_ingress_port(
    in_vm: int, src: str, dst: str, learned: dict[str, int]
) -> None:
    br = BLAB.named["br"]
    state = SimState()
    for mac, vm in learned.items():
        state.macs[("mac", br.id, 0, mac_to_int(mac))] = BLAB.ports[f"v{vm}"].id
    in_id = BLAB.ports[f"v{in_vm}"].id
    r = simulate(udp(src, dst, IP_A, "10.0.0.9"), in_id, BLAB.view, state, 1.0)
    assert in_id not in r.outputs
    assert all(g.port_id != in_id for g in r.generated)
    assert len(r.outputs) == len(set(r.outputs))
