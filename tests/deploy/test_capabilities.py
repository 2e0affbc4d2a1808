"""The agent unit's capabilities are enough to load the datapath, and none of the BPF ones is
spare: the program is loaded under exactly the unit's bounding set (without CAP_SYS_ADMIN, which
only gateways need), then without CAP_PERFMON too, which the verifier then refuses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from netloom.datapath.bpf.loader import object_path

pytestmark = pytest.mark.bpf

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "netloom-agent.service"
LOAD = """
import shutil, sys
from pathlib import Path
from netloom.datapath.bpf.loader import PinnedObject
pins = Path(sys.argv[1])
try:
    PinnedObject(pins).close()
finally:
    shutil.rmtree(pins, ignore_errors=True)
"""


def _unit_caps() -> set[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("CapabilityBoundingSet="))
    return {c.lower() for c in line.split("=", 1)[1].split()}


def _load_with(caps: set[str]) -> subprocess.CompletedProcess[str]:
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.fail("capsh is missing (Debian package libcap2-bin)")
    out = subprocess.run([capsh, "--print"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("Bounding set ="))
    drop = sorted(set(line.split("=", 1)[1].split(",")) - caps)
    pins = f"/sys/fs/bpf/nl-capstest-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "NETLOOM_BPF_OBJ": str(object_path())}
    cmd = [capsh, f"--drop={','.join(drop)}", "--", "-c", f'exec "$0" -c "$1" {pins}']
    try:
        return subprocess.run(
            [*cmd, sys.executable, LOAD], capture_output=True, text=True, timeout=120, env=env
        )
    finally:
        shutil.rmtree(pins, ignore_errors=True)


def test_the_unit_capabilities_load_the_datapath() -> None:
    r = _load_with(_unit_caps() - {"cap_sys_admin"})
    assert r.returncode == 0, r.stderr[-2000:]


def test_without_cap_perfmon_the_verifier_refuses_it() -> None:
    r = _load_with(_unit_caps() - {"cap_sys_admin", "cap_perfmon"})
    assert r.returncode != 0 and "Permission denied" in r.stderr
