"""A port's fixed IPs and MAC: what a request asks for (an address, a subnet, or both) made
into allocations of the network's subnets (neutron ``ipam_pluggable_backend``)."""

from __future__ import annotations

import random
from typing import Any

from netloom.api.neutron import attrs, docs, faults, ipam
from netloom.api.tx import UNIQUE, Doc, Tx

BASE_MAC = (0xFA, 0x16, 0x3E)  # neutron's default base_mac
_MAC_TRIES = 16

REQUEST = attrs.dict_of({"subnet_id": attrs.to_uuid, "ip_address": attrs.to_ip})


def new_mac(tx: Tx) -> str:
    """A free MAC under neutron's base (fa:16:3e), unique among all ports."""
    for _ in range(_MAC_TRIES):
        mac = ":".join(f"{b:02x}" for b in (*BASE_MAC, *random.randbytes(3)))
        if tx.get(UNIQUE, f"mac:{mac}") is None:
            return mac
    raise faults.conflict("MacAddressGenerationFailure", "Unable to generate unique mac.")


def _subnets(tx: Tx, network: Doc) -> list[Doc]:
    out = []
    for sid in network["subnets"]:
        subnet = tx.get(docs.kind("subnet"), sid)
        if subnet is not None:
            out.append(subnet)
    return out


def _subnet_of(subnets: list[Doc], network: Doc, want: dict[str, Any]) -> Doc:
    """The subnet a request entry names, or the one holding its address."""
    ip = want.get("ip_address")
    if "subnet_id" in want:
        found = [s for s in subnets if s["id"] == want["subnet_id"]]
        if not found:
            raise faults.invalid_input(
                f"Failed to create port on network {network['id']}, because fixed_ips included"
                f" invalid subnet {want['subnet_id']}"
            )
        subnet = found[0]
        if ip is not None and not _inside(subnet, ip):
            raise faults.bad_request(
                f"IP address {ip} is not a valid IP for the specified subnet.",
                "InvalidIpForSubnet",
            )
        return subnet
    if ip is None:
        raise faults.bad_request("Exactly one of subnet_id or ip_address is needed per entry.")
    for subnet in subnets:
        if _inside(subnet, ip):
            return subnet
    raise faults.bad_request(
        f"IP address {ip} is not a valid IP for any of the subnets on the specified network.",
        "InvalidIpForNetwork",
    )


def _inside(subnet: Doc, ip: str) -> bool:
    return ipam.inside(subnet["cidr"], ip)


def assign(
    tx: Tx,
    network: Doc,
    port_id: str,
    requested: list[dict[str, Any]] | None,
    current: list[dict[str, str]],
) -> list[dict[str, str]]:
    """The port's new fixed IPs: addresses kept, claimed or allocated, the rest released.
    ``requested`` None: one address of the first subnet of each IP version."""
    subnets = _subnets(tx, network)
    if requested is None:
        requested = []
        for version in (4, 6):
            first = [s for s in subnets if s["ip_version"] == version]
            if first:
                requested.append({"subnet_id": first[0]["id"]})
    kept = {(c["subnet_id"], c["ip_address"]) for c in current}
    out: list[dict[str, str]] = []
    taken: set[str] = set()
    for want in requested:
        subnet = _subnet_of(subnets, network, want)
        ip = want.get("ip_address")
        if ip is None:
            ip = ipam.allocate(tx, subnet, port_id, taken)
        elif (subnet["id"], ip) not in kept:
            if ip in taken:
                raise faults.bad_request(f"Duplicate IP address {ip} in fixed_ips.")
            ipam.claim(tx, subnet["id"], ip, port_id)
        taken.add(ip)
        out.append({"subnet_id": subnet["id"], "ip_address": ip})
    for c in current:
        if (c["subnet_id"], c["ip_address"]) not in {
            (o["subnet_id"], o["ip_address"]) for o in out
        }:
            ipam.release(tx, c["subnet_id"], c["ip_address"])
    return out


def release_all(tx: Tx, current: list[dict[str, str]]) -> None:
    for c in current:
        ipam.release(tx, c["subnet_id"], c["ip_address"])


__all__ = ["BASE_MAC", "REQUEST", "assign", "new_mac", "release_all"]
