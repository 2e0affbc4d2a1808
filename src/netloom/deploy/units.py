"""The systemd units (``deploy/systemd/*.service`` in the source tree) as an installer writes
them: the unit files name the virtualenv ``/opt/netloom`` and the configuration directory
``/etc/netloom``; :func:`render` puts the installation's own in their place, every occurrence
(as ``sed s,/opt/netloom,PREFIX,g``: the Ansible role and the tests apply this one rule)."""

from __future__ import annotations

UNITS = ("netloom-cluster.service", "netloom-agent.service")
UNIT_PREFIX = "/opt/netloom"  # the virtualenv holding the wheel, as written in the units
UNIT_CONFIG_DIR = "/etc/netloom"  # where netloom.toml is, as written in the units


def render(text: str, prefix: str = UNIT_PREFIX, config_dir: str = UNIT_CONFIG_DIR) -> str:
    """``text`` with the virtualenv ``prefix`` and the ``config_dir`` of this installation."""
    text = text.replace(UNIT_PREFIX, prefix.rstrip("/"))
    return text.replace(UNIT_CONFIG_DIR, config_dir.rstrip("/"))


__all__ = ["UNITS", "UNIT_CONFIG_DIR", "UNIT_PREFIX", "render"]
