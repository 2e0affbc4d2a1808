"""A plan's bgp_peer is created after its router's ports: its address is checked against the
router's uplinks, which must exist (and be bound) by then."""

from __future__ import annotations

import pytest

from netloom.plan.document import creation_levels, parse_documents

pytestmark = pytest.mark.unit


def test_peer_comes_after_the_uplinks_of_its_router() -> None:
    docs = parse_documents(
        [
            {"kind": "router", "name": "provider"},
            {"kind": "bgp_peer", "router_id": "@provider", "address": "198.19.1.1",
             "asn": 64512, "local_as": 64513},
            {"kind": "port", "ref": "up1", "device_id": "@provider", "type": "router",
             "address": "198.19.1.2/24", "host_id": "gw1", "interface_name": "uplink1"},
        ]
    )  # fmt: skip
    levels = [[d.kind.name for d in level] for level in creation_levels(docs)]
    assert levels == [["router"], ["port"], ["bgp_peer"]]
