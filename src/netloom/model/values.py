"""Value forms an operator writes, turned into the JSON values of record fields: integers in
any base (``0x0800``), port ranges (``22``, ``"1000-2000"``, ``{start, end}``) and IP protocol
names (``tcp``). The CLI options and plan documents both read values through here."""

from __future__ import annotations

import json
from typing import Any

from netloom.errors import InvalidInput

# IANA protocol numbers of the names Neutron accepts (neutron-lib ``IP_PROTOCOL_MAP``)
IP_PROTOCOLS = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "egp": 8,
    "udp": 17,
    "dccp": 33,
    "ipv6-encap": 41,
    "ipv6-route": 43,
    "ipv6-frag": 44,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ospf": 89,
    "pgm": 113,
    "vrrp": 112,
    "sctp": 132,
    "udplite": 136,
}


def parse_int(field: str, raw: str) -> int:
    """An integer written in any base Python reads (``0x0800`` works for ethertypes)."""
    try:
        return int(raw.strip(), 0)
    except ValueError:
        raise InvalidInput(f"{raw!r} is not an integer", field=field) from None


def port_range(field: str, value: Any) -> Any:
    """``80``, ``"1000-2000"``, ``"80"`` or a JSON object text -> ``{start, end}``; an object
    (or anything else) is left for the record to validate."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return value
    if isinstance(value, int):
        return {"start": value, "end": value}
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"invalid JSON: {exc.msg} at char {exc.pos}"
            raise InvalidInput(msg, field=field) from None
    lo, sep, hi = text.partition("-")
    start = parse_int(field, lo)
    return {"start": start, "end": parse_int(field, hi) if sep else start}


def ip_protocol(field: str, value: Any) -> Any:
    """``tcp``/``udp``/``icmp`` (any case) or a number (text or int) -> the protocol number;
    anything else is left for the record to validate."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in IP_PROTOCOLS:
            return IP_PROTOCOLS[name]
        if not name.lstrip("-").isdigit() and not name.startswith("0x"):
            names = ", ".join(IP_PROTOCOLS)
            raise InvalidInput(f"{value!r} is not a protocol number or one of {names}", field=field)
        return parse_int(field, name)
    return value


# rule fields read through these forms
RULE_VALUE_FORMS = {"tp_src": port_range, "tp_dst": port_range, "nw_proto": ip_protocol}


__all__ = ["IP_PROTOCOLS", "RULE_VALUE_FORMS", "ip_protocol", "parse_int", "port_range"]
