"""Plan documents: parsing, references and the creation order."""

from __future__ import annotations

from typing import Any

import pytest

from netloom.errors import InvalidInput
from netloom.plan import creation_order, parse_documents

pytestmark = pytest.mark.unit


def test_creation_order_follows_references() -> None:
    docs = parse_documents(
        [
            {"kind": "port", "name": "p", "device_id": "@b", "peer_id": "@q"},
            {"kind": "bridge", "name": "b", "tenant_id": "@t"},
            {"kind": "port", "name": "q", "device_id": "@b", "peer_id": "@p"},
            {"kind": "tenant", "name": "t"},
        ]
    )
    assert [d.handle for d in creation_order(docs)] == ["t", "b", "p", "q"]
    assert docs[0].link_to == "@q" and "peer_id" not in docs[0].data  # linked afterwards


def test_independent_documents_keep_plan_order() -> None:
    docs = parse_documents([{"kind": "host", "name": n} for n in ("c", "a", "b")])
    assert [d.handle for d in creation_order(docs)] == ["c", "a", "b"]


def test_kinds_by_name_collection_or_dashes_and_the_objects_envelope() -> None:
    docs = parse_documents(
        {
            "objects": [
                {"kind": "tunnel-zone", "name": "z"},
                {"kind": "ip_addr_groups", "ref": "g", "name": "shown"},
            ]
        }
    )
    assert [d.kind.name for d in docs] == ["tunnel_zone", "ip_addr_group"]
    assert docs[1].handle == "g" and docs[1].data == {"name": "shown"}


def test_binding_is_taken_out_of_the_port() -> None:
    (doc,) = parse_documents(
        [{"kind": "port", "name": "vm", "host_id": "@h", "interface_name": "tap0"}]
    )
    assert doc.bind == ("@h", "tap0") and "host_id" not in doc.data


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"kind": "bridge"}, "file", "JSON list"),
        (["bridge"], "file", "document #1 is not a JSON object"),
        ([{"kind": "switch"}], "kind", "unknown kind 'switch'"),
        ([{"name": "x"}], "kind", "unknown kind None"),
        (
            [{"kind": "host", "name": "h"}, {"kind": "tenant", "ref": "h"}],
            "ref",
            "document #2: handle 'h' used twice",
        ),
    ],
)
def test_parse_errors_name_the_document(body: Any, field: str, text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_documents(body)
    assert err.value.field == field and text in err.value.message


def test_unknown_reference() -> None:
    docs = parse_documents([{"kind": "bridge", "name": "b", "tenant_id": "@nobody"}])
    with pytest.raises(InvalidInput, match=r"document #1: unknown reference @nobody"):
        creation_order(docs)
    docs = parse_documents([{"kind": "port", "name": "p", "device_id": "x", "peer_id": "@q"}])
    with pytest.raises(InvalidInput, match=r"unknown reference @q"):
        creation_order(docs)


def test_a_reference_cycle_is_refused_and_named() -> None:
    docs = parse_documents(
        [
            {"kind": "tenant", "name": "t"},
            {"kind": "chain", "name": "a", "tenant_id": "@t"},
            {"kind": "rule", "ref": "r1", "chain_id": "@r2", "action": "accept"},
            {"kind": "rule", "ref": "r2", "chain_id": "@r1", "action": "accept"},
        ]
    )
    with pytest.raises(InvalidInput) as err:
        creation_order(docs)
    assert err.value.message == "reference cycle among: r1, r2" and err.value.field == "ref"


def test_two_ports_naming_each_other_are_not_a_cycle() -> None:
    docs = parse_documents(
        [
            {"kind": "port", "name": "p", "device_id": "b", "peer_id": "@q"},
            {"kind": "port", "name": "q", "device_id": "b", "peer_id": "@p"},
        ]
    )
    assert [d.handle for d in creation_order(docs)] == ["p", "q"]


def test_rules_take_the_cli_value_forms() -> None:
    (doc,) = parse_documents(
        [{"kind": "rule", "chain_id": "c", "nw_proto": "TCP", "tp_dst": 22, "tp_src": "10-20"}]
    )
    assert doc.data["nw_proto"] == 6
    assert doc.data["tp_dst"] == {"start": 22, "end": 22}
    assert doc.data["tp_src"] == {"start": 10, "end": 20}
    with pytest.raises(InvalidInput) as err:
        parse_documents([{"kind": "rule", "chain_id": "c", "nw_proto": "pigeon"}])
    assert err.value.message.startswith("document #1 (rule): 'pigeon' is not a protocol")
