"""Flow records as IPFIX (RFC 7011) messages, for the collectors operators already run.

Sans-IO: :class:`IpfixEncoder` turns records into messages (bytes) given ``now``; the
cluster's :class:`IpfixExporter` sends them over UDP. Written here rather than taken from a
library: the one IPFIX exporter on PyPI (``ipfix``) had its last release in 2014, the others
only collect.

One template (RFC 7011 §3.4.1), information elements of IANA's registry (RFC 7012 §4):
the 5-tuple, flowStart/EndMilliseconds, packetDeltaCount/octetDeltaCount and forwardingStatus
(RFC 7270 §4.12). Agents report a flow's totals (several times while it lives); the encoder
keeps what it exported per flow and sends the difference, so a collector's sums are right.
Over UDP the template is resent every ``template_refresh_s`` (RFC 7011 §8.4) and in the first
message. Records of IPv6 flows are not exported (the template is IPv4's).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence
from typing import Any

from netloom.errors import InvalidInput
from netloom.model.flowrecord import FlowRecord

VERSION = 10  # RFC 7011 §3.1
TEMPLATE_SET_ID = 2  # RFC 7011 §3.3.2
TEMPLATE_ID = 256  # the first data set id (RFC 7011 §3.3.2)
MAX_MESSAGE = 1400  # bytes: a message fits one datagram under a 1500-byte MTU (§10.3.3)
MAX_TRACKED = 1_000_000  # flows whose exported counters are remembered (oldest forgotten)

# (IANA element id, length); RFC 7012 §4 / the IANA IPFIX registry
FIELDS = (
    (8, 4),  # sourceIPv4Address
    (12, 4),  # destinationIPv4Address
    (7, 2),  # sourceTransportPort
    (11, 2),  # destinationTransportPort
    (4, 1),  # protocolIdentifier
    (152, 8),  # flowStartMilliseconds
    (153, 8),  # flowEndMilliseconds
    (2, 8),  # packetDeltaCount
    (1, 8),  # octetDeltaCount
    (89, 1),  # forwardingStatus (RFC 7270): 64 forwarded, 128 dropped (reason unknown)
)
_HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence, domain
_SET = struct.Struct("!HH")  # set id, length
_RECORD = struct.Struct("!4s4sHHBQQQQB")
FORWARDED, DROPPED = 64, 128


def template_set() -> bytes:
    """The template set (RFC 7011 §3.4.1) describing :data:`FIELDS`."""
    body = struct.pack("!HH", TEMPLATE_ID, len(FIELDS))
    body += b"".join(struct.pack("!HH", ie, length) for ie, length in FIELDS)
    return _SET.pack(TEMPLATE_SET_ID, _SET.size + len(body)) + body


class IpfixEncoder:
    """Records in, IPFIX messages out (sans-IO: the caller gives the time)."""

    def __init__(self, domain_id: int = 0, template_refresh_s: float = 60.0) -> None:
        if template_refresh_s <= 0:
            raise InvalidInput("the template refresh must be positive", field="ipfix")
        self.domain_id = domain_id
        self.template_refresh_s = template_refresh_s
        self.sequence = 0  # data records sent so far (RFC 7011 §3.1)
        self._template_sent: float | None = None
        self._exported: dict[str, tuple[int, int]] = {}  # flow id -> (packets, bytes) sent

    def encode(self, records: Sequence[FlowRecord], now: float) -> list[bytes]:
        """The messages carrying ``records`` (none for what has nothing new to say)."""
        data = [d for d in (self._data(r) for r in records) if d is not None]
        messages: list[bytes] = []
        per_message = (MAX_MESSAGE - _HEADER.size - _SET.size - len(template_set())) // _RECORD.size
        for start in range(0, len(data), per_message):
            messages.append(self._message(data[start : start + per_message], now))
        if not messages and self._template_due(now):
            messages.append(self._message([], now))
        return messages

    def _template_due(self, now: float) -> bool:
        sent = self._template_sent
        return sent is None or now - sent >= self.template_refresh_s

    def _message(self, data: list[bytes], now: float) -> bytes:
        sets = b""
        if self._template_due(now):
            sets += template_set()
            self._template_sent = now
        if data:
            body = b"".join(data)
            sets += _SET.pack(TEMPLATE_ID, _SET.size + len(body)) + body
        length = _HEADER.size + len(sets)
        header = _HEADER.pack(VERSION, length, int(now), self.sequence, self.domain_id)
        self.sequence = (self.sequence + len(data)) & 0xFFFFFFFF
        return header + sets

    def _data(self, r: FlowRecord) -> bytes | None:
        try:
            src = ipaddress.IPv4Address(r.src_ip).packed
            dst = ipaddress.IPv4Address(r.dst_ip).packed
        except ValueError:
            return None
        packets0, bytes0 = self._exported.pop(r.flow_id, (0, 0))
        packets, octets = max(r.packets - packets0, 0), max(r.bytes - bytes0, 0)
        if not r.final:
            if len(self._exported) >= MAX_TRACKED:
                self._exported.pop(next(iter(self._exported)))
            self._exported[r.flow_id] = (max(r.packets, packets0), max(r.bytes, bytes0))
        if packets == 0 and octets == 0 and (packets0 or bytes0):
            return None  # nothing new since the last export
        status = FORWARDED if r.verdict == "forward" else DROPPED
        start, end = int(r.first_seen * 1000), int(r.last_seen * 1000)
        return _RECORD.pack(
            src, dst, r.src_port, r.dst_port, r.proto, start, end, packets, octets, status
        )


class IpfixExporter:
    """Sends the records' messages to one collector over UDP (RFC 7011 §10.3)."""

    def __init__(self, collector: tuple[str, int], encoder: IpfixEncoder | None = None) -> None:
        self.collector = collector
        self.encoder = encoder or IpfixEncoder()
        try:
            infos = socket.getaddrinfo(*collector, type=socket.SOCK_DGRAM)
            family, kind, proto, _, addr = infos[0]
            self._sock = socket.socket(family, kind, proto)
        except OSError as exc:
            where = f"{collector[0]}:{collector[1]}"
            raise InvalidInput(
                f"ipfix collector {where}: {exc.strerror or exc}", field="ipfix"
            ) from None
        self._addr: tuple[Any, ...] = addr
        self.sent = 0  # messages

    def export(self, records: Sequence[FlowRecord], now: float) -> None:
        for message in self.encoder.encode(records, now):
            try:
                self._sock.sendto(message, self._addr)
            except OSError:
                continue  # UDP: a collector that is down loses messages, as it would anyway
            self.sent += 1

    def close(self) -> None:
        self._sock.close()


__all__ = ["FIELDS", "IpfixEncoder", "IpfixExporter", "template_set"]
