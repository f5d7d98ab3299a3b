"""The REST API (under /api/v1), the dashboard (/) and Prometheus metrics (/metrics)."""

import logging
import secrets
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.service.config import TOKEN_ENV, ServiceConfig
from gridflex.service.runtime import LiveService

log = logging.getLogger(__name__)
STATIC = resources.files("gridflex.service").joinpath("static")


class TierChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flex_tier: int = Field(ge=0, le=3, description="0 = never slowed; 1/2/3 keep 90/75/50 % of throughput")


def create_app(service: LiveService, config: ServiceConfig, run_loop: bool = True, ven=None) -> FastAPI:
    """The web app around a live service. With `run_loop` the control loop runs while the app does;
    `ven` (an OpenADR client wrapper with async start/stop) runs alongside."""
    token = config.token()
    if config.api.writes_enabled and not token:
        raise InputError(f"api.token: writes are enabled but no token is set; set {TOKEN_ENV} or api.token")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run_loop:
            service.start()
        if ven is not None:
            await ven.start()
        try:
            yield
        finally:
            if ven is not None:
                await ven.stop()
            service.stop()

    app = FastAPI(title="gridflex", version="1", lifespan=lifespan, description="Grid-responsive site control")
    bearer = HTTPBearer(auto_error=False)

    def _check(creds: HTTPAuthorizationCredentials | None) -> None:
        if creds is None or not token or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def write_auth(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not config.api.writes_enabled:
            raise HTTPException(403, "writes are disabled (api.writes_enabled: false)")
        _check(creds)

    def read_auth(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if config.api.protect_reads:
            _check(creds)

    @app.exception_handler(InputError)
    async def _input_error(_req: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    read = [Depends(read_auth)]
    write = [Depends(write_auth)]

    @app.get("/api/v1/status", dependencies=read, tags=["site"])
    def status() -> dict:
        """Site power, target, active events and the current plan per job."""
        s = service.status
        events = service.active_event_ids()
        if s is None:
            return {"t_s": None, "site_power_w": None, "target_w": None, "active_events": events, "jobs": []}
        return {
            "t_s": s.t_s,
            "site_power_w": s.site_power_w,
            "target_w": s.target_w,
            "it_power_w": s.it_power_w,
            "planned_it_power_w": s.planned_it_power_w,
            "active_events": list(s.active_events),
            "known_events": events,
            "jobs": list(s.jobs),
            "driver": s.driver,
            "driver_ok": s.driver_ok,
            "interval_s": service.control.interval_s,
        }

    @app.get("/api/v1/telemetry", dependencies=read, tags=["site"])
    def telemetry(since_s: float = 0.0, limit: Annotated[int, Query(ge=1, le=10000)] = 600) -> list[dict]:
        """Site readings after `since_s` (epoch seconds), newest `limit`, oldest first."""
        return [
            {
                "t_s": r.t_s,
                "site_power_w": r.site_power_w,
                "it_power_w": r.it_power_w,
                "estimated": r.estimated,
                "job_power_w": r.job_power_w,
            }
            for r in service.store.telemetry(since_s, limit)
        ]

    @app.get("/api/v1/events", dependencies=read, tags=["events"])
    def events(status: str | None = Query(None, pattern="^(active|cancelled|completed|rejected)$")) -> list[dict]:
        """Every event received (from the API or OpenADR) and its state."""
        return [_event_json(r) for r in service.store.events(status)]

    @app.post("/api/v1/events", status_code=201, dependencies=write, tags=["events"])
    def create_event(event: GridEvent) -> dict:
        """A utility dispatch: ramp down from `start` over `ramp_s` to `target`, back up by `end`."""
        service.add_event(event, source="api")
        return _event_json(service.store.event(event.id))

    @app.delete("/api/v1/events/{event_id}", dependencies=write, tags=["events"])
    def cancel_event(event_id: str) -> dict:
        try:
            service.cancel_event(event_id, "cancelled through the API")
        except KeyError:
            raise HTTPException(404, f"no active event {event_id!r}") from None
        return _event_json(service.store.event(event_id))

    @app.get("/api/v1/jobs", dependencies=read, tags=["jobs"])
    def jobs() -> list[dict]:
        """Jobs with their flex tier and the share of their flex budget used in the current window."""
        return service.jobs()

    @app.patch("/api/v1/jobs/{job_id}", dependencies=write, tags=["jobs"])
    def change_job(job_id: str, change: TierChange) -> dict:
        try:
            service.set_tier(job_id, change.flex_tier)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        return next(j for j in service.jobs() if j["id"] == job_id)

    @app.get("/api/v1/decisions", dependencies=read, tags=["audit"])
    def decisions(since_s: float = 0.0, limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[dict]:
        """The planner's decisions (audit log), newest `limit` after `since_s`, oldest first."""
        return [
            {
                c: getattr(r, c)
                for c in (
                    "id",
                    "t_s",
                    "site_power_w",
                    "target_w",
                    "it_ceiling_w",
                    "it_power_w",
                    "shortfall_w",
                    "model_ratio",
                    "planner_s",
                    "active_events",
                    "broken_tier",
                    "notes",
                    "cap_w",
                    "active",
                )
            }
            for r in service.store.decisions(since_s, limit)
        ]

    @app.get("/api/v1/prices", dependencies=read, tags=["audit"])
    def prices() -> list[dict]:
        """Price signals received (recorded, not acted on)."""
        return [
            {"event_id": p.event_id, "start_s": p.start_s, "end_s": p.end_s, "price": p.price, "source": p.source}
            for p in service.store.prices()
        ]

    @app.get("/metrics", dependencies=read, tags=["monitoring"])
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _event_json(r) -> dict:
    return {
        **r.event.model_dump(mode="json"),
        "source": r.source,
        "status": r.status,
        "reason": r.reason,
        "baseline_w": r.baseline_w,
        "created_s": r.created_s,
    }
