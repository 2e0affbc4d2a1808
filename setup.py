"""The wheel carries the compiled BPF datapath (``$NETLOOM_BPF_OBJ``, else
``build/netloom.bpf.o`` made by ``make bpf``) as package data, so hosts need no clang: BPF bytecode is the same on every architecture of one
byte order. Everything else is declared in pyproject.toml."""

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BPF_OBJ = Path(
    os.environ.get("NETLOOM_BPF_OBJ") or Path(__file__).resolve().parent / "build" / "netloom.bpf.o"
)
PACKAGED = Path("netloom") / "datapath" / "bpf" / "netloom.bpf.o"


class BuildPyWithBpf(build_py):
    """build_py, then the BPF object into the package (not for editable installs: a source
    tree uses build/netloom.bpf.o directly)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not BPF_OBJ.is_file() or BPF_OBJ.stat().st_size == 0:
            raise SystemExit(f"{BPF_OBJ} is missing: run `make bpf` first (or `make dist`)")
        self.copy_file(str(BPF_OBJ), str(Path(self.build_lib) / PACKAGED))


setup(cmdclass={"build_py": BuildPyWithBpf})
