"""The bridge DHCP server: DISCOVER/OFFER/REQUEST/ACK with the options VMs need."""

from __future__ import annotations

import pytest

from netloom.model.records import DhcpHost, Opt121Route
from netloom.packet import ETH_BROADCAST, Frame, IPv4, Udp, build, ip_to_int, mac_to_int
from netloom.packet.dhcp import (
    ACK,
    BOOTREQUEST,
    DISCOVER,
    FLAG_BROADCAST,
    NAK,
    OFFER,
    OPT_CLASSLESS_ROUTES,
    OPT_DNS,
    OPT_DOMAIN_NAME,
    OPT_HOSTNAME,
    OPT_LEASE_TIME,
    OPT_MSG_TYPE,
    OPT_MTU,
    OPT_REQUESTED_IP,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    REQUEST,
    DhcpMessage,
    build_dhcp,
    opt_u8,
    opt_u32,
    parse_classless_routes,
    parse_dhcp,
)
from netloom.packet.headers import ETH_TYPE_IPV4, IPPROTO_UDP, Ethernet
from netloom.sim import SimConfig, Verdict

from .conftest import GW1, IP_A, MAC_A, MAC_R1, Lab, dhcp_subnet

pytestmark = pytest.mark.unit


def _client(
    mac: str,
    mtype: int,
    xid: int = 0x1234,
    extra: list[tuple[int, bytes]] | None = None,
    broadcast: bool = True,
) -> Frame:
    msg = DhcpMessage(
        BOOTREQUEST,
        xid,
        mac_to_int(mac),
        flags=FLAG_BROADCAST if broadcast else 0,
        options=[(OPT_MSG_TYPE, opt_u8(mtype)), *(extra or [])],
    )
    return Frame(
        Ethernet(ETH_BROADCAST, mac_to_int(mac), ETH_TYPE_IPV4),
        ip=IPv4(0, 0xFFFFFFFF, IPPROTO_UDP, ttl=64),
        l4=Udp(68, 67),
        payload=build_dhcp(msg),
    )


def _reply(out: list[tuple[str, Frame]]) -> tuple[str, Frame, DhcpMessage]:
    [(name, f)] = out
    msg = parse_dhcp(f.payload)
    assert isinstance(msg, DhcpMessage)
    return name, f, msg


@pytest.fixture
def dlab(lab: Lab) -> Lab:
    net1 = lab.named["net1"]
    lab.add(
        dhcp_subnet(
            net1,
            cidr="10.0.1.0/24",
            gateway=GW1,
            dns_servers=["192.0.2.53"],
            hosts=[DhcpHost(mac="02:00:00:00:01:77", ip="10.0.1.77", name="web1")],
            opt121_routes=[Opt121Route(dst="172.16.0.0/12", gateway="10.0.1.254")],
        )
    )
    lab.config = SimConfig(underlay_mtu=1500, dhcp_domain="lab.example")
    return lab


def test_dhcp_handshake(dlab: Lab) -> None:
    r, out = dlab.run("A", _client(MAC_A, DISCOVER))
    assert r.verdict is Verdict.CONSUMED and not r.cacheable
    name, f, offer = _reply(out)
    assert name == "A" and offer.msg_type == OFFER and offer.xid == 0x1234
    assert offer.yiaddr == ip_to_int(IP_A)  # the port's fixed IP
    assert f.eth.dst == ETH_BROADCAST and f.eth.src == mac_to_int(MAC_R1)  # gateway's MAC
    assert f.ip is not None and f.ip.src == ip_to_int(GW1)
    opts = dict(offer.options)
    assert opts[OPT_SUBNET_MASK] == opt_u32(0xFFFFFF00)
    assert opts[OPT_ROUTER] == opt_u32(ip_to_int(GW1))
    assert opts[OPT_DNS] == opt_u32(ip_to_int("192.0.2.53"))
    assert opts[OPT_DOMAIN_NAME] == b"lab.example"
    assert int.from_bytes(opts[OPT_MTU], "big") == 1450  # underlay 1500 - 50
    assert int.from_bytes(opts[OPT_LEASE_TIME], "big") == 86400
    assert opts[OPT_SERVER_ID] == opt_u32(ip_to_int(GW1))
    routes = parse_classless_routes(opts[OPT_CLASSLESS_ROUTES])
    assert routes == [
        (ip_to_int("172.16.0.0"), 12, ip_to_int("10.0.1.254")),
        (0, 0, ip_to_int(GW1)),
    ]
    req = _client(
        MAC_A,
        REQUEST,
        extra=[
            (OPT_REQUESTED_IP, opt_u32(ip_to_int(IP_A))),
            (OPT_SERVER_ID, opt_u32(ip_to_int(GW1))),
        ],
    )
    _, _, ack = _reply(dlab.run("A", req)[1])
    assert ack.msg_type == ACK and ack.yiaddr == ip_to_int(IP_A)


def test_dhcp_static_host_hostname_and_unicast_reply(dlab: Lab) -> None:
    mac = "02:00:00:00:01:77"
    net1 = dlab.named["net1"]
    dlab.vm(net1, "W", mac, "10.0.1.77")
    _, f, offer = _reply(dlab.run("W", _client(mac, DISCOVER, broadcast=False))[1])
    assert offer.yiaddr == ip_to_int("10.0.1.77")
    assert dict(offer.options)[OPT_HOSTNAME] == b"web1"
    assert f.eth.dst == mac_to_int(mac) and f.ip is not None
    assert f.ip.dst == ip_to_int("10.0.1.77")  # RFC 2131 §4.1: unicast to yiaddr


def test_dhcp_request_for_wrong_address_is_naked(dlab: Lab) -> None:
    req = _client(MAC_A, REQUEST, extra=[(OPT_REQUESTED_IP, opt_u32(ip_to_int("10.0.1.200")))])
    _, f, nak = _reply(dlab.run("A", req)[1])
    assert nak.msg_type == NAK and f.eth.dst == ETH_BROADCAST


def test_dhcp_request_for_another_server_is_ignored(dlab: Lab) -> None:
    req = _client(MAC_A, REQUEST, extra=[(OPT_SERVER_ID, opt_u32(ip_to_int("10.0.1.250")))])
    r, out = dlab.run("A", req)
    assert r.verdict is Verdict.CONSUMED and out == []


@pytest.mark.parametrize("other", ["W", "B"], ids=["static-host", "fixed-ip"])
def test_dhcp_client_naming_another_ports_mac_gets_silence(dlab: Lab, other: str) -> None:
    """A VM that puts another VM's MAC in chaddr is offered nothing (as Neutron's dnsmasq and
    OVN do: silence, no NAK), not that VM's address."""
    dlab.vm(dlab.named["net1"], "W", "02:00:00:00:01:77", "10.0.1.77")
    foreign = dlab.macs[other]
    for mtype in (DISCOVER, REQUEST):
        f = _client(foreign, mtype)
        f.eth.src = mac_to_int(MAC_A)  # from A's own MAC: anti-spoofing lets it in
        r, out = dlab.run("A", f)
        assert r.verdict is Verdict.CONSUMED and out == [] and not r.cacheable
        assert "chaddr" in r.trace.steps[-1].detail and r.trace.steps[-1].decision == "drop"
    # with port security off the frame may come from the foreign MAC too: still nothing
    a = dlab.ports["A"].model_copy(update={"port_security_enabled": False})
    dlab.update(a)
    r, out = dlab.run("A", _client(foreign, DISCOVER))
    assert r.verdict is Verdict.CONSUMED and out == []
    _, _, offer = _reply(dlab.run("A", _client(MAC_A, DISCOVER))[1])
    assert offer.yiaddr == ip_to_int(IP_A)


def test_dhcp_static_host_of_the_port_mac_must_be_one_of_its_addresses(dlab: Lab) -> None:
    dlab.vm(dlab.named["net1"], "W", "02:00:00:00:01:77", "10.0.1.78")
    _, _, offer = _reply(dlab.run("W", _client("02:00:00:00:01:77", DISCOVER))[1])
    assert offer.yiaddr == ip_to_int("10.0.1.78") and OPT_HOSTNAME not in dict(offer.options)


def test_dhcp_subnet_mtu_overrides_underlay(dlab: Lab) -> None:
    from netloom.model.records import DhcpSubnet

    [s] = [x for x in dlab.view.dhcp_subnets(dlab.named["net1"].id) or ()]
    assert isinstance(s, DhcpSubnet)
    dlab.update(s.model_copy(update={"mtu": 1400}))
    _, _, offer = _reply(dlab.run("A", _client(MAC_A, DISCOVER))[1])
    assert int.from_bytes(dict(offer.options)[OPT_MTU], "big") == 1400


def test_no_dhcp_subnet_bridges_the_request(lab: Lab) -> None:
    r, out = lab.run("A", _client(MAC_A, DISCOVER))
    # flooded like any broadcast (B's security group then drops it), nothing answered
    assert "bridge:flood" in r.trace.decisions()
    assert r.generated == () and out == []
    assert build(_client(MAC_A, DISCOVER))
