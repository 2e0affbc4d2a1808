"""From a simulation :class:`~netloom.sim.result.Result` to a datapath :class:`Flow`.

The simulation speaks of *virtual* ports; the datapath of local interfaces and tunnels. An
output to virtual port P becomes:

* ``Output(n)`` when P is bound to this host (``n``: the datapath port number of P's
  interface), or
* ``Tunnel(vni=P.tunnel_key, remote=underlay IP of P's host)`` otherwise (MidoNet's rule: the
  receiving host maps the VNI straight to P's interface without simulating again, MidoNet's
  rule; RFC 7348 carries the VNI).

A result that commits its connection (``Result.ct_commit``: kernel conntrack) starts with
``CtCommit`` and its outputs and tunnels carry ``ct``, so the receiving port commits the reply
direction: no flow-state push is needed for the connection's replies.

Header rewrites map 1:1 (the simulation already uses the datapath's action types). The match
is the packet's key with ``in_port`` set to the datapath port it arrived on; the mask is the
set of fields the simulation read, so one flow serves every packet the simulation would have
treated the same way (a megaflow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from netloom.errors import Untranslatable
from netloom.flows.model import Action, CtCommit, Flow, FlowKey, Output, Tunnel
from netloom.sim.result import OutputPort, Result, VirtualAction

# virtual port id -> where its packets go from this host (None: unknown, cannot send)
Locate = Callable[[str], Output | Tunnel | None]


def to_datapath_actions(
    actions: tuple[VirtualAction, ...], locate: Locate, *, ct_commit: bool = False
) -> tuple[Action, ...]:
    """Translate virtual actions; raises :class:`Untranslatable` for an unknown output.
    ``ct_commit``: commit the connection (first, before any rewrite) and flag the outputs."""
    out: list[Action] = [CtCommit()] if ct_commit else []
    for a in actions:
        if isinstance(a, OutputPort):
            where = locate(a.port_id)
            if where is None:
                raise Untranslatable(a.port_id)
            out.append(replace(where, ct=True) if ct_commit else where)
        else:
            out.append(a)
    return tuple(out)


def to_flow(
    result: Result,
    in_port: int,
    locate: Locate,
    *,
    idle_timeout_s: float,
    cookie: int,
) -> Flow:
    """The megaflow for ``result`` entering on datapath port ``in_port``.

    Callers check ``result.cacheable`` first; a non-cacheable result is executed once and
    never installed."""
    key = replace(result.match, in_port=in_port)
    mask = result.mask
    actions = to_datapath_actions(result.actions, locate, ct_commit=result.ct_commit)
    return Flow(key, mask, actions, idle_timeout_s=idle_timeout_s, cookie=cookie)


def masked_key(flow: Flow) -> FlowKey:
    return flow.key.masked(flow.mask)


__all__ = ["Locate", "masked_key", "to_datapath_actions", "to_flow"]
