"""``GET /api/v1/insights/simlog``: the simulation log of every host, as the cluster keeps it
(:class:`~netloom.insights.simlog.SimLogStore`).

Newest first. Each entry is :func:`~netloom.model.simlog.entry_json` plus its ``id``; a full
page carries ``next``, the URL of the next (older) page (``before`` = the last id)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from netloom.insights.simlog import MAX_LIMIT, SimLogQuery, SimLogStore
from netloom.model.simlog import KINDS, entry_json

SIMLOG_PATH = "/insights/simlog"


class SimLogParams(BaseModel):
    """The filters of a simulation-log query; every given one must hold."""

    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(None, description="the host's id")
    port: str | None = Field(None, description="the virtual in-port's id")
    kind: str | None = Field(None, description=f"what the entry records: {', '.join(KINDS)}")
    verdict: str | None = Field(None, description="forward, drop, reject, not-yet, ...")
    trace: str | None = Field(None, description="a trace id")
    since: float | None = Field(None, description="wall-clock seconds, from")
    until: float | None = Field(None, description="wall-clock seconds, to")
    before: int | None = Field(None, description="entries older than this id (paging)")
    limit: int = Field(100, ge=1, le=MAX_LIMIT)


def simlog_routes(app: FastAPI, prefix: str, store: SimLogStore) -> None:
    """Add the simulation-log route under ``prefix``."""

    async def simlog(request: Request, p: Annotated[SimLogParams, Query()]) -> dict[str, Any]:
        q = SimLogQuery(
            p.host, p.port, p.kind, p.verdict, p.trace, p.since, p.until, p.before, p.limit
        )
        q.check()
        rows = await run_in_threadpool(store.query, q)
        out: dict[str, Any] = {"entries": [{"id": i, **entry_json(e)} for i, e in rows]}
        if len(rows) == p.limit:
            params = {**request.query_params, "before": str(rows[-1][0])}
            out["next"] = str(request.url.replace_query_params(**params))
        return out

    app.add_api_route(
        f"{prefix}{SIMLOG_PATH}",
        simlog,
        methods=["GET"],
        tags=["insights"],
        summary="the simulation log of every host: simulations and flow events, newest first",
        name="get_simlog",
    )


__all__ = ["SIMLOG_PATH", "SimLogParams", "simlog_routes"]
