"""Sizing the kernel tables from the config, without a kernel: which maps may be sized, the
sizes libbpf is asked for before the load, and an adopted pin that keeps its own size."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from netloom.agent.options import AgentOptions, parse_argv
from netloom.datapath.bpf import libbpf, loader
from netloom.datapath.bpf.maps import MapInfo
from netloom.datapath.sizing import DEFAULT_FLOWS, MAX_ENTRIES, MIN_ENTRIES
from netloom.errors import InvalidInput

from .fakebpf import FakeLoader

pytestmark = pytest.mark.unit


class FakeLib:
    """The libbpf calls of ``load_and_pin`` and ``PinnedObject``, recorded."""

    def __init__(self) -> None:
        self.sized: dict[str, int] = {}
        self.pinned: list[str] = []
        self.loaded = False
        self._maps: dict[int, str] = {}
        self.fds: list[int] = []

    def bpf_object__open_file(self, path: bytes, opts: None) -> int:
        return 1

    def libbpf_get_error(self, obj: int) -> int:
        return 0

    def bpf_object__find_map_by_name(self, obj: int, name: bytes) -> int:
        self._maps[100 + len(self._maps)] = name.decode()
        return 99 + len(self._maps)

    def bpf_map__set_max_entries(self, m: int, n: int) -> int:
        assert not self.loaded, "sized after the load"
        self.sized[self._maps[m]] = n
        return 0

    def bpf_object__load(self, obj: int) -> int:
        self.loaded = True
        return 0

    def bpf_object__find_program_by_name(self, obj: int, name: bytes) -> int:
        return 1

    def bpf_program__fd(self, prog: int) -> int:
        return 3

    def bpf_map__fd(self, m: int) -> int:
        return 4

    def bpf_obj_pin(self, fd: int, path: bytes) -> int:
        self.pinned.append(Path(path.decode()).name)
        Path(path.decode()).touch()
        return 0

    def bpf_object__close(self, obj: int) -> None:
        pass

    def bpf_obj_get(self, path: bytes) -> int:
        fd = os.open("/dev/null", os.O_RDONLY)
        self.fds.append(fd)
        return fd

    def bpf_map_lookup_elem(self, fd: int, key: object, value: object) -> int:
        return -2  # nl_config never written: ABI 0


@pytest.fixture
def fake_lib(monkeypatch: pytest.MonkeyPatch) -> FakeLib:
    lib = FakeLib()
    monkeypatch.setattr(libbpf, "lib", lambda: lib)
    monkeypatch.setattr(loader, "ensure_bpffs", lambda: None)
    monkeypatch.setenv("NETLOOM_BPF_OBJ", "/nonexistent/netloom.bpf.o")
    monkeypatch.setattr(  # every map as big as the flow table was made
        loader, "map_info", lambda fd: MapInfo(9, 56, 176, lib.sized.get(loader.FLOWS, 0), 0)
    )
    return lib


def test_only_hash_tables_take_a_size_and_within_bounds() -> None:
    assert loader.check_sizes({loader.FLOWS: 1000}) == {loader.FLOWS: 1000}
    for bad in ({"nl_masks": 64}, {"nl_nope": 64}):
        with pytest.raises(InvalidInput, match="cannot be sized"):
            loader.check_sizes(bad)
    for n in (MIN_ENTRIES - 1, MAX_ENTRIES + 1, 0, -5):
        with pytest.raises(InvalidInput, match=r"must be in \["):
            loader.check_sizes({loader.FLOWS: n})


def test_sizes_are_set_before_the_load(
    fake_lib: FakeLib, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=loader.__name__):
        obj = loader.PinnedObject(tmp_path / "h", max_entries={loader.FLOWS: 200_000})
    try:
        assert fake_lib.sized == {loader.FLOWS: 200_000} and fake_lib.loaded
        assert obj.info(loader.FLOWS).max_entries == 200_000 and not caplog.text
        assert set(fake_lib.pinned) == {*loader.PROGS, *loader.MAPS}
    finally:
        obj.close()


def test_bad_size_changes_nothing(fake_lib: FakeLib, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        loader.PinnedObject(tmp_path / "h", max_entries={loader.FLOWS: 1})
    assert not fake_lib.loaded and not (tmp_path / "h").exists()


def test_adopted_pin_keeps_its_size_and_says_so(
    fake_lib: FakeLib,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pins = tmp_path / "h"
    pins.mkdir()
    for name in (*loader.PROGS, *loader.MAPS):
        (pins / name).touch()  # pinned by an earlier agent
    monkeypatch.setattr(loader, "map_info", lambda fd: MapInfo(9, 56, 176, DEFAULT_FLOWS, 0))
    with caplog.at_level(logging.WARNING, logger=loader.__name__):
        obj = loader.PinnedObject(pins, max_entries={loader.FLOWS: 500_000})
    try:
        assert not fake_lib.loaded and not fake_lib.sized  # adopted, not reloaded
        assert obj.info(loader.FLOWS).max_entries == DEFAULT_FLOWS
        assert f"pinned with {DEFAULT_FLOWS} entries" in caplog.text and "500000" in caplog.text
    finally:
        obj.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=loader.__name__):
        loader.PinnedObject(pins, max_entries={loader.FLOWS: DEFAULT_FLOWS}).close()
    assert not caplog.text


def test_fake_loader_reports_the_sizes_it_was_given() -> None:
    fl = FakeLoader(max_entries={loader.FLOWS: 1 << 20})
    assert fl.info(loader.FLOWS).max_entries == 1 << 20
    assert fl.info("nl_ports").max_entries == fl.default_entries
    with pytest.raises(InvalidInput):
        FakeLoader(max_entries={"nl_config": 2})


def test_agent_flow_table_size_option() -> None:
    assert AgentOptions(topology="h:1", host_id="x").flow_table_size == DEFAULT_FLOWS
    o = parse_argv(["--topology", "h:1", "--host-id", "x", "--flow-table-size", "1000000"])
    assert o.flow_table_size == 1_000_000 and parse_argv(o.to_argv()) == o
    with pytest.raises(SystemExit):
        parse_argv(["--topology", "h:1", "--host-id", "x", "--flow-table-size", "8"])


def test_memory_datapath_gets_the_agent_size() -> None:
    from netloom.agent.runner import _datapath
    from netloom.datapath.memory import MemoryDatapath

    dp = _datapath(AgentOptions(topology="h:1", host_id="x", flow_table_size=1000), "x")
    assert isinstance(dp, MemoryDatapath) and dp.max_flows == 1000


def test_install_path_packs_keys_and_values_like_the_reference() -> None:
    """The batched install packs a masked key in one step and encodes shared actions once:
    the same bytes as packing each flow on its own."""
    from netloom.datapath.bpf import abi
    from netloom.datapath.bpf.flows import pack_value, pack_values
    from netloom.flows.model import EXACT, Flow, FlowKey, Output, SetTpDst

    key = FlowKey(
        in_port=3, eth_src=0xABCDEF, ip_src=0x0A000001, tp_src=7, tp_dst=0xFFFF, ct_state=6
    )
    for mask in (EXACT, FlowKey(in_port=0xFFFF, ip_src=0xFFFFFF00, tp_dst=0xF0, ct_state=4)):
        assert abi.pack_masked_flow_key(5, key, mask) == abi.pack_flow_key(5, key.masked(mask))
    flows = [
        Flow(key, EXACT, (Output(2),), idle_timeout_s=1.5, cookie=1),
        Flow(key, EXACT, (Output(2),), idle_timeout_s=1.5, cookie=2),
        Flow(key, EXACT, (SetTpDst(80), Output(2)), hard_timeout_s=3, cookie=3),
    ]
    assert pack_values(flows, 42) == [pack_value(f, 42) for f in flows]
    with pytest.raises(InvalidInput):
        pack_values([*flows, Flow(key, EXACT, (), idle_timeout_s=-1)], 42)


def test_masking_covers_every_key_field() -> None:
    """Each field of the key is kept by its own mask bits and cleared by the others' (a field
    forgotten by ``masked`` or by the packed install key would match what the flow excludes)."""
    from dataclasses import replace

    from netloom.datapath.bpf import abi
    from netloom.flows.model import EXACT, FIELD_NAMES, FlowKey

    for name in FIELD_NAMES:
        only = replace(FlowKey(), **{name: getattr(EXACT, name)})
        got = EXACT.masked(only)
        assert got == only, name
        assert abi.pack_masked_flow_key(1, EXACT, only) == abi.pack_flow_key(1, only), name
