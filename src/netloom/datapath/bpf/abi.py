"""Byte layouts shared with ``netloom.h`` (keep the two in step; NL_ABI_VERSION guards it)."""

from __future__ import annotations

import struct

from netloom.errors import InvalidInput
from netloom.flows.model import (
    Action,
    CtCommit,
    DecTtl,
    Drop,
    FlowKey,
    Output,
    PopVlan,
    PushVlan,
    SetEthDst,
    SetEthSrc,
    SetIpDst,
    SetIpSrc,
    SetTpDst,
    SetTpSrc,
    Tunnel,
    Userspace,
)

ABI_VERSION = 5
MAX_MASKS = 32
MAX_ACTIONS = 8
EXEC_SLOTS = 64

KEY = struct.Struct("<QQIIIIHHHHBBB5x")  # struct nl_key (48)
FLOW_KEY = struct.Struct("<II")  # + nl_key = struct nl_flow_key (56)
_FLOW_KEY_FULL = struct.Struct("<II" + KEY.format[1:])  # the two at once
MASK = struct.Struct("<II")  # + nl_key = struct nl_mask (56)
ACTION = struct.Struct("<HHIQ")  # struct nl_action (16)
FLOW_TAIL = struct.Struct("<QQIIQQQ")  # cookie created idle hard packets bytes last_used (48)
PORT = struct.Struct("<II")  # kind, mtu
# abi tun_if local_ip trace underlay_if udp_port underlay_mask upcall_cost_ns upcall_burst
# tunnel_mtu ct_tcp_ms ct_closing_ms ct_other_ms pad
CONFIG = struct.Struct("<IIIIIIIIIIIIII")
VNI_DST = struct.Struct("<II")  # struct nl_vni_dst: ifindex, port kind
STATS = struct.Struct("<QQQQQQ")  # struct nl_stats, one per possible CPU
EXEC_HEAD = struct.Struct("<IIIIQ")  # in_port, tun_key, lookup, pad, cookie (+ actions)
VERDICT = struct.Struct("<IIIIQ")
UPCALL = struct.Struct("<IIIIIIQ")  # in_port reason tun_key pkt_len cap_len ct_state cookie
CT_KEY = struct.Struct("<IIIHHB3x")  # struct nl_ct_key: zone src dst sport dport proto
CT_ENTRY = struct.Struct("<QQII")  # struct nl_ct_entry: expires refreshed flags pad
CTF_REPLY, CTF_CLOSING = 1, 2

FLOW_KEY_SIZE = FLOW_KEY.size + KEY.size
FLOW_VALUE_SIZE = ACTION.size * MAX_ACTIONS + FLOW_TAIL.size
EXEC_SIZE = EXEC_HEAD.size + ACTION.size * MAX_ACTIONS

A_NONE, A_SET_ETH_SRC, A_SET_ETH_DST, A_SET_IP_SRC, A_SET_IP_DST = 0, 1, 2, 3, 4
A_SET_TP_SRC, A_SET_TP_DST, A_DEC_TTL, A_PUSH_VLAN, A_POP_VLAN = 5, 6, 7, 8, 9
A_OUTPUT, A_TUNNEL, A_DROP, A_USERSPACE, A_CT_COMMIT = 10, 11, 12, 13, 14
AF_CLONE, AF_CT = 1, 2

MARK_EXEC = 0x80000000


def pack_key(k: FlowKey) -> bytes:
    return KEY.pack(
        k.eth_src,
        k.eth_dst,
        k.in_port,
        k.tun_key,
        k.ip_src,
        k.ip_dst,
        k.eth_type,
        k.vlan,
        k.tp_src,
        k.tp_dst,
        k.ip_proto,
        k.ip_frag,
        k.ct_state,
    )


def unpack_key(b: bytes) -> FlowKey:
    es, ed, ip_, tk, isrc, idst, et, vl, ts, td, pr, fr, ct = KEY.unpack(b)
    return FlowKey(
        in_port=ip_,
        tun_key=tk,
        eth_src=es,
        eth_dst=ed,
        eth_type=et,
        vlan=vl,
        ip_src=isrc,
        ip_dst=idst,
        ip_proto=pr,
        ip_frag=fr,
        tp_src=ts,
        tp_dst=td,
        ct_state=ct,
    )


def pack_flow_key(mask_id: int, masked: FlowKey) -> bytes:
    return FLOW_KEY.pack(mask_id, 0) + pack_key(masked)


def pack_masked_flow_key(mask_id: int, k: FlowKey, m: FlowKey) -> bytes:
    """``pack_flow_key(mask_id, k.masked(m))`` in one step (the install path's)."""
    return _FLOW_KEY_FULL.pack(
        mask_id,
        0,
        k.eth_src & m.eth_src,
        k.eth_dst & m.eth_dst,
        k.in_port & m.in_port,
        k.tun_key & m.tun_key,
        k.ip_src & m.ip_src,
        k.ip_dst & m.ip_dst,
        k.eth_type & m.eth_type,
        k.vlan & m.vlan,
        k.tp_src & m.tp_src,
        k.tp_dst & m.tp_dst,
        k.ip_proto & m.ip_proto,
        k.ip_frag & m.ip_frag,
        k.ct_state & m.ct_state,
    )


def pack_actions(actions: tuple[Action, ...] | list[Action]) -> bytes:
    """Encode actions; outputs before the last one get AF_CLONE (bpf_clone_redirect)."""
    if len(actions) > MAX_ACTIONS:
        raise InvalidInput(f"at most {MAX_ACTIONS} actions per flow", field="actions")
    outs = [i for i, a in enumerate(actions) if isinstance(a, (Output, Tunnel))]
    last_out = outs[-1] if outs else -1
    out = b""
    for i, a in enumerate(actions):
        t, arg, arg64 = _encode(a)
        flags = AF_CLONE if i in outs and i != last_out else 0
        if isinstance(a, (Output, Tunnel)) and a.ct:
            flags |= AF_CT
        out += ACTION.pack(t, flags, arg, arg64)
    return out.ljust(ACTION.size * MAX_ACTIONS, b"\0")


def _encode(a: Action) -> tuple[int, int, int]:
    match a:
        case SetEthSrc(mac=m):
            return A_SET_ETH_SRC, 0, m
        case SetEthDst(mac=m):
            return A_SET_ETH_DST, 0, m
        case SetIpSrc(ip=ip):
            return A_SET_IP_SRC, ip, 0
        case SetIpDst(ip=ip):
            return A_SET_IP_DST, ip, 0
        case SetTpSrc(port=p):
            return A_SET_TP_SRC, p, 0
        case SetTpDst(port=p):
            return A_SET_TP_DST, p, 0
        case DecTtl():
            return A_DEC_TTL, 0, 0
        case PushVlan(vid=v):
            return A_PUSH_VLAN, v, 0
        case PopVlan():
            return A_POP_VLAN, 0, 0
        case Output(port=p):
            return A_OUTPUT, p, 0
        case Tunnel(vni=v, remote=r):
            return A_TUNNEL, v, r
        case Userspace():
            return A_USERSPACE, 0, 0
        case CtCommit():
            return A_CT_COMMIT, 0, 0
        case Drop():
            return A_DROP, 0, 0
    raise InvalidInput(f"unsupported action {a!r}", field="actions")


def unpack_actions(b: bytes) -> tuple[Action, ...]:
    out: list[Action] = []
    for i in range(MAX_ACTIONS):
        t, flags, arg, arg64 = ACTION.unpack_from(b, i * ACTION.size)
        if t == A_NONE:
            break
        out.append(_decode(t, arg, arg64, ct=bool(flags & AF_CT)))
    return tuple(out)


def _decode(t: int, arg: int, arg64: int, *, ct: bool) -> Action:
    table: dict[int, Action] = {
        A_SET_ETH_SRC: SetEthSrc(arg64),
        A_SET_ETH_DST: SetEthDst(arg64),
        A_SET_IP_SRC: SetIpSrc(arg),
        A_SET_IP_DST: SetIpDst(arg),
        A_SET_TP_SRC: SetTpSrc(arg),
        A_SET_TP_DST: SetTpDst(arg),
        A_DEC_TTL: DecTtl(),
        A_PUSH_VLAN: PushVlan(arg),
        A_POP_VLAN: PopVlan(),
        A_OUTPUT: Output(arg, ct),
        A_TUNNEL: Tunnel(arg, arg64, ct),
        A_CT_COMMIT: CtCommit(),
        A_USERSPACE: Userspace(),
        A_DROP: Drop(),
    }
    return table[t]
