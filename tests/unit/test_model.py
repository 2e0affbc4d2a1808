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
