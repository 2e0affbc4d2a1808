"""The netns helpers: idempotent create/delete, links created in place, clear errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netloom.errors import AlreadyExists, InvalidInput, NotFound
from netloom.lab import netns, nsexec, probes

from .conftest import unique_name

pytestmark = pytest.mark.netns


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    prefix = unique_name()
    a, b = f"{prefix}-a", f"{prefix}-b"
    try:
        yield a, b
    finally:
        netns.delete(a)
        netns.delete(b)
    assert netns.list_netns(prefix) == []


def test_create_delete_idempotent(pair: tuple[str, str]) -> None:
    a, _ = pair
    assert netns.create(a) is True
    assert netns.create(a) is False
    with pytest.raises(AlreadyExists):
        netns.create(a, may_exist=False)
    assert netns.link_info(a, "lo").up  # loopback is up in a lab namespace
    assert netns.list_netns(a) == [a]
    assert netns.delete(a) is True
    assert netns.delete(a) is False
    with pytest.raises(NotFound):
        netns.delete(a, if_exists=False)


def test_missing_namespace_is_an_error_not_a_new_namespace(pair: tuple[str, str]) -> None:
    a, _ = pair
    with pytest.raises(NotFound):
        netns.link_names(a)
    with pytest.raises(NotFound):
        nsexec.run(a, ["true"])
    assert not netns.exists(a)


def test_veth_in_place_mtu_address_ping(pair: tuple[str, str]) -> None:
    a, b = pair
    netns.create(a)
    netns.create(b)
    assert netns.create_veth(a, "va", b, "vb", mtu=9000) is True
    assert netns.create_veth(a, "va", b, "vb", mtu=9000) is False
    with pytest.raises(AlreadyExists):
        netns.create_veth(a, "va", b, "vb", may_exist=False)
    assert "va" not in netns.link_names(None)  # never passed through the root namespace
    assert netns.add_address(a, "va", "192.0.2.1/24") is True
    assert netns.add_address(a, "va", "192.0.2.1/24") is False
    netns.add_address(b, "vb", "192.0.2.2/24")
    ia, ib = netns.link_info(a, "va"), netns.link_info(b, "vb")
    assert (ia.mtu, ib.mtu, ia.up, ib.up, ia.kind) == (9000, 9000, True, True, "veth")
    assert ia.addresses == ["192.0.2.1/24"]
    assert len(probes.ping(b, "192.0.2.1", count=2)) == 2
    assert probes.ping(b, "192.0.2.3", timeout=0.2) == []
    # a DF probe one byte over the MTU is refused, one that fits goes through
    assert probes.ping(b, "192.0.2.1", df_size=9000 - 28)
    assert probes.ping(b, "192.0.2.1", df_size=9000 - 27, timeout=0.2) == []
    assert nsexec.run(b, ["cat", "/proc/net/dev"]).stdout.count("vb:") == 1
    nsexec.set_offload(b, "vb", "tx", on=False)
    assert nsexec.offload(b, "vb", "tx-checksumming") is False
    assert netns.delete_link(a, "va") is True
    assert netns.delete_link(a, "va") is False
    assert "vb" not in netns.link_names(b)  # the peer went with it


def test_bridge_and_master(pair: tuple[str, str]) -> None:
    a, b = pair
    netns.create(a)
    netns.create(b)
    netns.create_bridge(a, "br0", mtu=1500)
    netns.create_veth(a, "p1", b, "eth0")
    netns.set_master(a, "p1", "br0")
    assert netns.link_info(a, "p1").master == netns.link_info(a, "br0").index
    assert netns.link_info(a, "br0").kind == "bridge"


@pytest.mark.parametrize("bad", ["this-name-is-too-long", "", "a/b", "a b"])
def test_bad_interface_names(pair: tuple[str, str], bad: str) -> None:
    a, b = pair
    netns.create(a)
    netns.create(b)
    with pytest.raises(InvalidInput):
        netns.create_veth(a, bad, b, "x")
    assert netns.link_names(a) == ["lo"]


def test_bad_inputs_change_nothing(pair: tuple[str, str]) -> None:
    a, _ = pair
    netns.create(a)
    with pytest.raises(InvalidInput):
        netns.add_address(a, "lo", "192.0.2.300/24")
    with pytest.raises(InvalidInput):
        netns.set_link(a, "lo", mtu=20)
    with pytest.raises(InvalidInput):
        netns.check_ns_name("../etc")
    assert netns.link_info(a, "lo").addresses == ["127.0.0.1/8"]


def test_disable_bridge_netfilter_is_per_namespace(pair: tuple[str, str]) -> None:
    """The lab switch skips br_netfilter; the root namespace and other namespaces keep theirs."""
    a, b = pair
    netns.create(a)
    netns.create(b)
    sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"

    def value(ns: str | None) -> str | None:
        out = nsexec.run(ns, ["cat", sysctl], check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    root_before = value(None)
    changed = netns.disable_bridge_netfilter(a)
    if root_before is None:  # br_netfilter not loaded here: nothing to turn off
        assert changed == []
        return
    assert "bridge-nf-call-iptables" in changed
    assert value(a) == "0"
    assert value(None) == root_before
    assert value(b) == "1"  # a new namespace starts with the kernel default
    with pytest.raises(InvalidInput):
        netns.disable_bridge_netfilter("../x")
