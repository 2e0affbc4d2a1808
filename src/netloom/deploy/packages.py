"""The Debian packages a host needs, per role: the one list (``netloom doctor --packages
--role R`` prints it, the Ansible role installs what it prints, ``netloom doctor`` checks it)."""

from __future__ import annotations

ROLES = ("agent", "gateway", "cluster", "zookeeper")

_PYTHON = ("python3", "python3-venv")  # the virtualenv the wheel is installed in
# the agent: `ip` and `tc` (iproute2), `sysctl` (procps), libbpf through ctypes (libbpf1),
# `mount` and `setpriv` (util-linux)
_AGENT = (*_PYTHON, "iproute2", "procps", "libbpf1", "util-linux")

PACKAGES: dict[str, tuple[str, ...]] = {
    "agent": _AGENT,
    "gateway": (*_AGENT, "bird2"),  # an uplink's BGP/BFD sidecar
    "cluster": _PYTHON,
    # the jars (slf4j-simple: their log binding) and a JVM: deploy/ansible runs each member
    # from its own unit (zookeeperd's service would start a second server on the same port)
    "zookeeper": ("zookeeper", "libslf4j-java", "default-jre-headless"),
}


def packages(role: str) -> tuple[str, ...]:
    """The packages of ``role`` (KeyError for an unknown role)."""
    return PACKAGES[role]


__all__ = ["PACKAGES", "ROLES", "packages"]
