"""The config file: every kind of error names the file, the line and the key, exits 2 and starts
nothing; a flag on the command line wins over the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netloom.agent.options import DatapathKind, parse_argv
from netloom.deploy.config import ConfigTable, Option, load_table
from netloom.errors import ConfigError

pytestmark = pytest.mark.unit

GOOD_AGENT = """# the agent of host h1
[agent]
topology = "192.0.2.1:8182"
host-name = "h1"
datapath = "bpf"
mtu = 9000
idle-timeout = 30
verbose = true
no-kernel-conntrack = true

[cluster]
host-timeout = 5.0
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netloom.toml"
    path.write_text(text)
    return path


def _agent_error(tmp_path: Path, text: str, *flags: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(SystemExit) as exit_:
        parse_argv(["--config", str(path), *flags])
    assert exit_.value.code == 2
    return str(path)


def test_agent_reads_its_table(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_AGENT)
    o = parse_argv(["--config", str(path)])
    assert (o.topology, o.host_name, o.datapath, o.mtu) == ("192.0.2.1:8182", "h1", "bpf", 9000)
    assert o.datapath is DatapathKind.bpf
    assert (o.idle_timeout, o.verbose, o.kernel_conntrack) == (30.0, True, False)


def test_a_flag_wins_over_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_AGENT)
    o = parse_argv(["--mtu", "1500", "--config", str(path), "--datapath", "memory"])
    assert (o.mtu, o.datapath, o.host_name) == (1500, DatapathKind.memory, "h1")


def test_a_flag_replaces_a_bad_file_value(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_AGENT.replace("mtu = 9000", "mtu = 100"))
    assert parse_argv(["--config", str(path), "--mtu", "1400"]).mtu == 1400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[agent]\ntopology = 'a:1'\n\n[agnet]\nmtu = 1\n", ":4: unknown table [agnet]"),
        ("mtu = 1500\n", ":1: unknown table [mtu]"),
        ("[agent]\ntopology = 'a:1'\nmtus = 1500\n", ":3: [agent] unknown key 'mtus'"),
        ("[agent]\nmtu = '1500'\n", ":2: [agent] mtu: expected an integer, got str '1500'"),
        ("[agent]\nverbose = 1\n", ":2: [agent] verbose: expected true or false"),
        ("[agent]\nidle-timeout = true\n", ":2: [agent] idle-timeout: expected a number"),
        ("[agent]\ndatapath = 'ovs'\n", ":2: [agent] datapath: 'ovs' is not one of memory, bpf"),
        (
            "[agent]\ntopology = 'a:1'\nhost-id = 'x'\n\nmtu = 100\n",
            ":5: [agent] mtu: --mtu must be in [626, 65535]",
        ),
        ("[agent]\nhost-id = 'x'\ntopology = 'nope'\n", ":3: [agent] topology: --topology must"),
        ("[agent]\nmtu = = 3\n", ":2:7: not TOML: Invalid value"),
    ],
)
def test_agent_config_errors_name_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = _agent_error(tmp_path, text)
    err = capsys.readouterr().err
    assert f"netloom agent: error: {path}{expected}" in err, err


def test_bad_value_from_the_file_is_located_even_with_other_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _agent_error(
        tmp_path, "[agent]\nconntrack-lifetimes = '1:2'\n", "--host-id", "h", "--topology", "a:1"
    )
    assert f"{path}:2: [agent] conntrack-lifetimes: --conntrack-lifetimes must be" in (
        capsys.readouterr().err
    )


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_argv(["--config", str(tmp_path / "none.toml")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'none.toml'}: cannot read the config file: No such file" in err


def test_load_table_types() -> None:
    options = [Option("n", "n", int), Option("x", "x", float), Option("s", "s", str)]
    with pytest.raises(ConfigError, match="expected an integer, got bool True"):
        _load("[agent]\nn = true\n", options)
    assert _load("[agent]\nx = 2\n", options).values == {"x": 2.0}
    table = _load("agent.s = 'v'\n", options)
    assert (table.values, table.lines) == ({"s": "v"}, {"s": 1})


def _load(text: str, options: list[Option]) -> ConfigTable:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(text)
        f.flush()
        return load_table(Path(f.name), "agent", options)


def _cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netloom.cli.main", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[cluster]\nhost-timeout = -1\n",
            ":2: [cluster] host-timeout: --host-timeout must be > 0",
        ),
        ("[cluster]\n\napi = 'nowhere'\n", ":3: [cluster] api: 'nowhere' is not HOST:PORT"),
        ("[cluster]\nauth = 'magic'\n", ":2: [cluster] auth: --auth must be noauth or keystone"),
        ("[cluster]\nstores = 'memory:'\n", ":2: [cluster] unknown key 'stores'"),
        ("[cluster]\naccess-log = 'yes'\n", ":2: [cluster] access-log: expected true or false"),
        ("[clusters]\n", ":1: unknown table [clusters]"),
        ("[cluster\n", ":1:9: not TOML"),
    ],
)
def test_cluster_config_errors_start_nothing(tmp_path: Path, text: str, expected: str) -> None:
    state = tmp_path / "state"
    path = _write(tmp_path, text + f"\n[agent]\nmtu = 1500\n# {state}\n")
    r = _cluster("--config", str(path), "--state-dir", str(state), "--store", "memory:")
    assert r.returncode == 2, r.stderr
    assert f"error: bad_config: {path}{expected}" in r.stderr
    assert "listening" not in r.stderr and not state.exists()


def test_cluster_flag_wins_over_a_bad_file_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cluster]\nhost-timeout = -1\n")
    r = _cluster("--config", str(path), "--host-timeout", "0")
    assert r.returncode == 1 and "error: invalid_input: --host-timeout must be > 0" in r.stderr
    path.write_text("[cluster]\nhost-timeout = -1\nlog-level = 'loud'\n")
    r = _cluster("--config", str(path), "--host-timeout", "3")
    assert r.returncode == 2 and f"{path}:3: [cluster] log-level: unknown log level" in r.stderr


def test_cluster_missing_config(tmp_path: Path) -> None:
    r = _cluster("--config", str(tmp_path / "none.toml"))
    assert r.returncode == 2
    assert f"{tmp_path / 'none.toml'}: cannot read the config file" in r.stderr
