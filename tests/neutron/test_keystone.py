"""``--auth keystone``: tokens from a real Keystone (SQLite), validated by keystonemiddleware;
Neutron's default policy (admin, member, reader; project scoping; external networks visible to
all) and the native API closed to all but admins."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openstack.exceptions import ForbiddenException, NotFoundException

from cli.conftest import stop_cluster
from neutron import keystone_server
from neutron.conftest import SDK_WARNINGS, NeutronCluster, start_neutron_cluster

pytestmark = [
    pytest.mark.unit,
    pytest.mark.slow,
    SDK_WARNINGS,
    pytest.mark.skipif(not keystone_server.available(), reason="no Keystone: run make keystone"),
]

PASSWORD = "user-secret"


@dataclass
class World:
    keystone: keystone_server.Keystone
    cluster: NeutronCluster
    projects: dict[str, str]


def _connect(url: str, neutron: str | None, user: str, password: str, project: str) -> Any:
    import openstack

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Support for InfluxDB")
        extra: dict[str, Any] = {"network_endpoint_override": neutron + "/"} if neutron else {}
        return openstack.connect(
            auth_url=url,
            username=user,
            password=password,
            project_name=project,
            user_domain_id="default",
            project_domain_id="default",
            **extra,
        )


def _users(admin: Any) -> dict[str, str]:
    """Projects A and B; member-a, reader-a, member-b."""
    roles = {r.name: r for r in admin.identity.roles()}
    projects = {}
    for name in ("proj-a", "proj-b"):
        projects[name] = admin.identity.create_project(name=name, domain_id="default").id
    for user, project, role in (
        ("member-a", "proj-a", "member"),
        ("reader-a", "proj-a", "reader"),
        ("member-b", "proj-b", "member"),
    ):
        u = admin.identity.create_user(name=user, password=PASSWORD, domain_id="default")
        admin.identity.assign_project_role_to_user(projects[project], u, roles[role])
    return projects


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    ks = keystone_server.start(tmp_path_factory.mktemp("keystone"))
    try:
        admin = _connect(ks.url, None, "admin", keystone_server.ADMIN_PASSWORD, "admin")
        projects = _users(admin)
        tmp = tmp_path_factory.mktemp("cluster")
        conf = tmp / "neutron.conf"
        conf.write_text(
            "[keystone_authtoken]\n"
            f"www_authenticate_uri = {ks.url}\nauth_url = {ks.url}\nauth_type = password\n"
            f"username = admin\npassword = {keystone_server.ADMIN_PASSWORD}\n"
            "project_name = admin\nuser_domain_id = default\nproject_domain_id = default\n"
        )
        cluster = start_neutron_cluster(tmp, "--auth", "keystone", "--keystone-config", str(conf))
        try:
            yield World(ks, cluster, projects)
        finally:
            stop_cluster(cluster.proc)
    finally:
        keystone_server.stop(ks)


def _as(world: World, user: str, project: str) -> Any:
    password = keystone_server.ADMIN_PASSWORD if user == "admin" else PASSWORD
    return _connect(world.keystone.url, world.cluster.neutron, user, password, project)


def test_project_isolation_and_roles(world: World) -> None:
    admin = _as(world, "admin", "admin")
    a = _as(world, "member-a", "proj-a")
    b = _as(world, "member-b", "proj-b")
    reader = _as(world, "reader-a", "proj-a")
    public = admin.network.create_network(name="public", is_router_external=True)
    net = a.network.create_network(name="a-net")
    assert net.project_id == world.projects["proj-a"]
    a.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.80.0.0/24")
    port = a.network.create_port(network_id=net.id)
    group = a.network.create_security_group(name="a-sg")
    # B sees neither A's objects nor their ids; the external network is everyone's
    for lookup, id in (
        (b.network.get_network, net.id),
        (b.network.get_port, port.id),
        (b.network.get_security_group, group.id),
    ):
        with pytest.raises(NotFoundException):
            lookup(id)
    b_nets = {n.id for n in b.network.networks()}
    assert public.id in b_nets and net.id not in b_nets
    assert port.id not in {p.id for p in b.network.ports()}
    with pytest.raises(NotFoundException):
        b.network.create_port(network_id=net.id)
    # a reader reads its project and writes nothing
    assert net.id in {n.id for n in reader.network.networks()}
    with pytest.raises(ForbiddenException):
        reader.network.create_network(name="nope")
    with pytest.raises(ForbiddenException):
        a.network.create_network(name="mine", is_shared=True)
    # the admin sees everything
    assert {net.id, public.id} <= {n.id for n in admin.network.networks()}


def test_tokens_are_required_and_the_native_api_is_for_admins(world: World) -> None:
    neutron = world.cluster.neutron + "/v2.0/networks"
    assert httpx.get(neutron, timeout=10).status_code == 401
    bad = httpx.get(neutron, headers={"X-Auth-Token": "not-a-token"}, timeout=30)
    assert bad.status_code == 401
    assert bad.json()["NeutronError"]["type"] == "HTTPUnauthorized"
    native = world.cluster.api + "/api/v1/bridges"
    assert httpx.get(native, timeout=10).status_code == 401
    member = _as(world, "member-a", "proj-a").auth_token
    admin = _as(world, "admin", "admin").auth_token
    assert httpx.get(native, headers={"X-Auth-Token": member}, timeout=30).status_code == 403
    assert httpx.get(native, headers={"X-Auth-Token": admin}, timeout=30).status_code == 200


def test_keystone_config_file_errors(tmp_path: Path) -> None:
    from netloom.cluster.config import keystone_authtoken
    from netloom.errors import InvalidInput

    missing = tmp_path / "none.conf"
    with pytest.raises(InvalidInput, match="cannot read"):
        keystone_authtoken(missing)
    empty = tmp_path / "empty.conf"
    empty.write_text("[DEFAULT]\n")
    with pytest.raises(InvalidInput, match="keystone_authtoken"):
        keystone_authtoken(empty)
