import pytest
from pydantic import ValidationError

from netloom.model.records import DhcpSubnet, Port, Route, Rule

pytestmark = pytest.mark.unit

BR = "00000000-0000-0000-0000-000000000001"
CH = "00000000-0000-0000-0000-000000000002"


def test_router_port_needs_address_and_mac() -> None:
    with pytest.raises(ValidationError, match="address"):
        Port(device_id=BR, type="router", mac="02:00:00:00:00:01")


def test_mac_and_cidr_are_normalised_and_checked() -> None:
    p = Port(device_id=BR, type="router", mac="02-AA-00-00-00-01", address="10.0.0.1/24")
    assert p.mac == "02:aa:00:00:00:01"
    with pytest.raises(ValidationError, match="malformed MAC"):
        Port(device_id=BR, type="bridge", mac="02:zz:00:00:00:01")
    with pytest.raises(ValidationError, match="CIDR"):
        Route(router_id=BR, dst="10.0.0.1/24", next_hop_port_id=BR)


@pytest.mark.parametrize(
    ("dst", "want"),
    [
        ("10.0.0.0/24", "10.0.0.0/24"),
        (" 10.0.0.0/24", "10.0.0.0/24"),
        ("10.0.0.0/024", "10.0.0.0/24"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("198.18.3.7/32", "198.18.3.7/32"),
        ("10.0.0.0/33", None),
        ("10.0.0.1/24", None),
        ("010.0.0.0/24", None),
        ("256.0.0.0/8", None),
    ],
)
def test_prefixes_canonical_or_normalised_or_refused(dst: str, want: str | None) -> None:
    if want is None:
        with pytest.raises(ValidationError, match="CIDR"):
            Route(router_id=BR, dst=dst, next_hop_port_id=BR)
    else:
        assert Route(router_id=BR, dst=dst, next_hop_port_id=BR).dst == want


def test_ids_and_addresses_canonical_or_normalised_or_refused() -> None:
    upper = "A0000000-0000-4000-8000-00000000000B"
    r = Route(router_id=upper, dst="10.0.0.0/8", next_hop_port_id=BR, next_hop_gateway="1.2.3.4")
    assert r.router_id == upper.lower() and r.next_hop_port_id == BR
    assert Route(router_id=BR, dst="0.0.0.0/0", next_hop_port_id=BR, next_hop_gateway=" 1.2.3.4")
    with pytest.raises(ValidationError, match="IPv4"):
        Route(router_id=BR, dst="0.0.0.0/0", next_hop_port_id=BR, next_hop_gateway="1.2.3.256")
    with pytest.raises(ValidationError, match="UUID"):
        Route(router_id="not-an-id", dst="0.0.0.0/0", next_hop_port_id=BR)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        Port(device_id=BR, type="bridge", colour="red")  # type: ignore[call-arg]


def test_rule_shapes() -> None:
    with pytest.raises(ValidationError, match="jump_chain_id"):
        Rule(chain_id=CH, action="jump")
    with pytest.raises(ValidationError, match="nat_targets"):
        Rule(chain_id=CH, action="snat")


def test_dhcp_gateway_inside_subnet() -> None:
    with pytest.raises(ValidationError, match="outside"):
        DhcpSubnet(bridge_id=BR, cidr="10.0.0.0/24", gateway="10.0.1.1")
