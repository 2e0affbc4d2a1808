"""The wheel: built from a copy of the source tree, it carries the compiled BPF object, and an
installed copy finds that object without clang, ``$NETLOOM_BPF_OBJ`` or a build/ directory.

The default run installs the wheel with ``--no-deps`` into a fresh virtualenv that borrows the
test run's dependencies (a ``.pth`` line: no download). With ``NETLOOM_TEST_PIP_INSTALL=1`` it
also does what an operator does: ``pip install`` of the wheel into a clean virtualenv (every
dependency from the package index), then ``netloom --version``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from netloom import __version__
from netloom.datapath.bpf.loader import object_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = "netloom/datapath/bpf/netloom.bpf.o"
CHECK = (
    "import netloom, sys; from netloom.datapath.bpf.loader import object_path; "
    "print(netloom.__file__); print(object_path())"
)


def _env() -> dict[str, str]:
    """The environment of an installed netloom: no source tree on the path, no object named."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NETLOOM_BPF_OBJ")}


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)
    assert r.returncode == 0, f"{cmd}: {r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of a copy of the tree (``make dist`` runs the same on the tree itself)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    env = {**_env(), "NETLOOM_BPF_OBJ": str(object_path())}
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / f"netloom-{__version__}-py3-none-any.whl"


def test_the_wheel_carries_the_bpf_object(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        assert z.read(PACKAGED) == object_path().read_bytes()
        names = z.namelist()
    assert "netloom/plan/plans/stateful-sg.yaml" in names and "netloom/py.typed" in names


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_installed_wheel_finds_its_bpf_object(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], 120)
    _run([str(venv / "bin/pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)], 300)
    site = _site_packages(venv)
    # the dependencies of this test run, behind the installed wheel on the path
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    module, obj = _run([str(venv / "bin/python"), "-c", CHECK], 60, cwd=tmp_path).split()
    assert Path(module) == site / "netloom" / "__init__.py"
    assert Path(obj) == site / PACKAGED
    version = _run([str(venv / "bin/netloom"), "--version"], 60, cwd=tmp_path)
    assert version == f"netloom {__version__}\n"


@pytest.mark.skipif(
    os.environ.get("NETLOOM_TEST_PIP_INSTALL") != "1",
    reason="downloads every dependency: NETLOOM_TEST_PIP_INSTALL=1 runs it",
)
def test_pip_install_on_a_clean_virtualenv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "clean"
    _run([sys.executable, "-m", "venv", str(venv)], 120)
    _run([str(venv / "bin/pip"), "install", "-q", str(wheel)], 1200)
    assert _run([str(venv / "bin/netloom"), "--version"], 60) == f"netloom {__version__}\n"
    _module, obj = _run([str(venv / "bin/python"), "-c", CHECK], 60, cwd=tmp_path).split()
    assert Path(obj) == _site_packages(venv) / PACKAGED
