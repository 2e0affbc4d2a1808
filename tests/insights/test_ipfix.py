"""IPFIX export (RFC 7011): the encoder's messages, and the cluster's flow sink read back by a
real collector (Debian nfdump's nfcapd) with the same 5-tuples and counters."""

from __future__ import annotations

import csv
import io
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from insights.records import record
from netloom.cluster.config import ClusterOptions
from netloom.cluster.flows import FlowSink
from netloom.errors import InvalidInput
from netloom.insights.ipfix import FIELDS, IpfixEncoder, IpfixExporter, template_set
from waiting import wait_until

pytestmark = pytest.mark.unit
NOW = 1_800_000_000.0


def _sets(message: bytes) -> list[tuple[int, bytes]]:
    version, length, _, _, _ = struct.unpack("!HHIII", message[:16])
    assert (version, length) == (10, len(message))
    out, at = [], 16
    while at < length:
        set_id, set_len = struct.unpack("!HH", message[at : at + 4])
        out.append((set_id, message[at + 4 : at + set_len]))
        at += set_len
    return out


def test_the_template_names_the_iana_elements() -> None:
    body = template_set()[4:]
    template_id, count = struct.unpack("!HH", body[:4])
    pairs = [struct.unpack("!HH", body[4 + 4 * i : 8 + 4 * i]) for i in range(count)]
    assert template_id == 256 and pairs == list(FIELDS)
    assert {8, 12, 7, 11, 4, 152, 153, 1, 2} <= {ie for ie, _ in pairs}


def test_templates_are_resent_periodically_and_sequence_counts_records() -> None:
    enc = IpfixEncoder(domain_id=7, template_refresh_s=30.0)
    first = enc.encode([record(1), record(2)], NOW)
    assert [s for s, _ in _sets(first[0])] == [2, 256]
    assert struct.unpack("!I", first[0][12:16]) == (7,)
    again = enc.encode([record(3)], NOW + 10)
    assert [s for s, _ in _sets(again[0])] == [256]
    assert struct.unpack("!I", again[0][8:12]) == (2,)  # data records sent before it
    later = enc.encode([], NOW + 31)  # nothing to say but the template is due
    assert [s for s, _ in _sets(later[0])] == [2]


def test_totals_become_deltas_and_big_batches_split() -> None:
    enc = IpfixEncoder()
    enc.encode([record(1, packets=5, bytes=500)], NOW)
    (msg,) = enc.encode([record(1, packets=8, bytes=800, final=True)], NOW)
    data = dict(_sets(msg))[256]
    assert struct.unpack("!QQ", data[29:45]) == (3, 300)
    assert enc.encode([record(2, packets=0, bytes=0)], NOW)  # a first record always goes
    many = enc.encode([record(n) for n in range(100)], NOW)
    assert len(many) > 1 and all(len(m) <= 1400 for m in many)
    assert enc.encode([record(1, src_ip="2001:db8::1")], NOW) == []  # IPv6: not this template


def test_a_bad_collector_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as err:
        IpfixExporter(("no-such-host.invalid", 4739))
    assert err.value.field == "ipfix"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def nfcapd(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """nfcapd on a free UDP port writing into a temporary directory; stopped (by its pid)
    pass or fail."""
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        pytest.skip("Debian's nfdump package is not installed")
    port = _free_udp_port()
    out = tmp_path / "flows"
    out.mkdir()
    log = (tmp_path / "nfcapd.log").open("wb")
    cmd = ["nfcapd", "-w", str(out), "-b", "127.0.0.1", "-p", str(port), "-t", "3600"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"Startup" in (tmp_path / "nfcapd.log").read_bytes(), 10, "nfcapd")
        yield port, out, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        log.close()


def _unread(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:``port``."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[4].split(":")[1], 16)
    return 0


def _read_back(out: Path) -> list[dict[str, str]]:
    text = subprocess.run(
        ["nfdump", "-R", str(out), "-o", "csv"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    flows = text.split("\nSummary")[0]  # the flows, then a summary table
    return list(csv.DictReader(io.StringIO(flows)))


def test_the_cluster_exports_to_nfcapd(
    nfcapd: tuple[int, Path, subprocess.Popen[bytes]],
) -> None:
    port, out, proc = nfcapd
    options = ClusterOptions(("127.0.0.1", 0), flow_history=":memory:", ipfix=("127.0.0.1", port))
    sink = FlowSink.open(options)
    sent = [
        record(1, first_seen=NOW, last_seen=NOW + 2, packets=3, bytes=300),
        record(2, proto=17, src_port=5353, dst_port=53, packets=1, bytes=80, final=True),
        record(3, verdict="drop", dst_port=22, packets=2, bytes=120, out_port_id=None),
    ]
    sink.ingest(sent)
    sink.ingest([record(1, first_seen=NOW, last_seen=NOW + 5, packets=10, bytes=1000, final=True)])
    assert sink.history.count() == 3
    sink.tick()  # the template is not due again: nothing sent
    assert sink.exporter is not None and sink.exporter.sent == 2
    wait_until(lambda: _unread(port) == 0, 10, "nfcapd to read every datagram")
    sink.close()
    proc.send_signal(signal.SIGTERM)  # nfcapd writes its file out when it stops
    proc.wait(10)
    rows = _read_back(out)
    got: dict[tuple[str, str, int, int, str], list[int]] = {}
    for r in rows:
        key = (r["sa"], r["da"], int(r["sp"]), int(r["dp"]), r["pr"])
        got.setdefault(key, [0, 0])
        got[key][0] += int(r["ipkt"])
        got[key][1] += int(r["ibyt"])
    assert got == {
        ("10.0.0.2", "10.0.1.1", 40001, 80, "TCP"): [10, 1000],
        ("10.0.0.3", "10.0.1.1", 5353, 53, "UDP"): [1, 80],
        ("10.0.0.4", "10.0.1.1", 40003, 22, "TCP"): [2, 120],
    }
