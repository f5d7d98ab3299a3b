"""The REST API (under /api/v1), the dashboard (/) and Prometheus metrics (/metrics)."""

import hashlib
import hmac
import logging
import re
import secrets
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.service.config import TOKEN_ENV, ServiceConfig, stale_after_s
from gridflex.service.runtime import LiveService
from gridflex.service.schemas import (
    DecisionOut,
    EventOut,
    EventWindowOut,
    JobChange,
    JobOut,
    JobPlan,
    MinerOut,
    PriceOut,
    QueuedJobOut,
    SessionIn,
    StatusOut,
    TelemetryOut,
)
from gridflex.store import EventRecord

log = logging.getLogger(__name__)
MIN_TOKEN_CHARS = 16
STATIC = resources.files("gridflex.service").joinpath("static")
#: The dashboard's read session: an HttpOnly cookie derived from the token (never the token itself).
SESSION_COOKIE = "gridflex_session"
ANSWERS = {
    400: {"description": "the request cannot be carried out; `detail` is a sentence naming the field"},
    401: {"description": "missing or wrong bearer token"},
    403: {"description": "writes are disabled (api.writes_enabled: false)"},
    404: {"description": "no such event or job"},
    422: {"description": "malformed request; `detail[].loc` names the field"},
}


def _answers(*codes: int) -> dict:
    return {c: ANSWERS[c] for c in codes}


class RedactTokens(logging.Filter):
    """Blanks `token=...` in access-log lines, should a client put a token into a URL."""

    PATTERN = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        record.msg = self.PATTERN.sub(r"\1***", str(record.msg))
        return True


def session_value(token: str) -> str:
    """The dashboard cookie for `token`: good for reads only, useless as a bearer token."""
    return hmac.new(token.encode(), b"gridflex dashboard read session", hashlib.sha256).hexdigest()


def api_token(config: ServiceConfig) -> str | None:
    """The bearer token for writes; refuses a config with writes enabled and no (or a short) token."""
    token = config.token()
    if config.api.writes_enabled and not token:
        raise InputError(f"api.token: writes are enabled but no token is set; set {TOKEN_ENV} or api.token")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise InputError(f"api.token: the token ({TOKEN_ENV} or api.token) needs at least {MIN_TOKEN_CHARS} characters")
    return token


def create_app(service: LiveService, config: ServiceConfig, run_loop: bool = True, ven=None) -> FastAPI:
    """The web app around a live service. With `run_loop` the control loop runs while the app does;
    `ven` (an OpenADR client wrapper with async start/stop) runs alongside."""
    token = api_token(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, RedactTokens) for f in access.filters):
            access.addFilter(RedactTokens())
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

    # Swagger UI from fastapi-offline's bundled assets (no CDN: /docs works on an offline host).
    app = FastAPIOffline(
        title="gridflex", version="1", lifespan=lifespan, description="Grid-responsive site control", redoc_url=None
    )
    bearer = HTTPBearer(auto_error=False)
    session = session_value(token) if token else None

    def _check(creds: HTTPAuthorizationCredentials | None, cookie: str | None = None) -> None:
        if token and creds is not None and secrets.compare_digest(creds.credentials.encode(), token.encode()):
            return
        if session and cookie is not None and secrets.compare_digest(cookie.encode(), session.encode()):
            return
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def write_auth(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not config.api.writes_enabled:
            raise HTTPException(403, "writes are disabled (api.writes_enabled: false)")
        _check(creds)

    def read_auth(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        _check(creds, request.cookies.get(SESSION_COOKIE))

    @app.exception_handler(InputError)
    async def _input_error(_req: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_req: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each field; the input is not echoed (it may be huge, or NaN, which JSON cannot carry)."""
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    # Public reads declare no token in the OpenAPI document; with protect_reads they need one.
    read = [Depends(read_auth)] if config.api.protect_reads else []
    read_answers = _answers(401) if config.api.protect_reads else {}
    write = [Depends(write_auth)]

    @app.post("/api/v1/session", status_code=204, tags=["dashboard"], responses=_answers(401, 422))
    def login(body: SessionIn, response: Response) -> None:
        """Dashboard login: checks the token and sets an HttpOnly cookie good for reads only,
        so the token never appears in a URL or an access log."""
        _check(HTTPAuthorizationCredentials(scheme="Bearer", credentials=body.token))
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")

    @app.delete("/api/v1/session", status_code=204, tags=["dashboard"])
    def logout(response: Response) -> None:
        """Dashboard logout: drops the cookie."""
        response.delete_cookie(SESSION_COOKIE, path="/")

    @app.get("/api/v1/status", dependencies=read, tags=["site"], responses=read_answers)
    def status() -> StatusOut:
        """Site power, target, active events and the current plan per job."""
        s = service.status
        known = service.active_event_ids()
        interval_s = service.control.interval_s
        limit_s = stale_after_s(service.control)
        if s is None:
            return StatusOut(
                t_s=None,
                site_power_w=None,
                target_w=None,
                active_events=[],
                known_events=known,
                jobs=[],
                interval_s=interval_s,
                degraded=True,
                degraded_reasons=["no reading of the plant yet"],
                stale_after_s=limit_s,
            )
        age_s = max(0.0, service.clock() - s.read_at_s)
        reasons = [f"the last reading is {age_s:.0f} s old (limit {limit_s:g} s)"] if age_s > limit_s else []
        reasons += [s.error] if s.error else [] if s.driver_ok else ["the driver reports a problem"]
        return StatusOut(
            t_s=s.t_s,
            site_power_w=s.site_power_w,
            target_w=s.target_w,
            it_power_w=s.it_power_w,
            planned_it_power_w=s.planned_it_power_w,
            active_events=list(s.active_events),
            known_events=known,
            jobs=[JobPlan(**j) for j in s.jobs],
            driver=s.driver,
            driver_ok=s.driver_ok,
            interval_s=interval_s,
            age_s=age_s,
            estimated=s.estimated,
            degraded=bool(reasons),
            degraded_reasons=reasons,
            stale_after_s=limit_s,
            miners=[MinerOut(**m) for m in s.miners],
            queued_jobs=s.queued_jobs,
            site_power_source=s.site_power_source,
            held_jobs=list(s.held_jobs),
            carbon_g_per_kwh=s.carbon_g_per_kwh,
            price_usd_per_mwh=s.price_usd_per_mwh,
            queue=[QueuedJobOut(**q) for q in s.queue],
            free_gpus=s.free_gpus,
            event_windows=[EventWindowOut(**w) for w in s.event_windows],
        )

    @app.get("/api/v1/telemetry", dependencies=read, tags=["site"], responses=read_answers | _answers(422))
    def telemetry(since_s: Annotated[float, Query(allow_inf_nan=False)] = 0.0, limit: Annotated[int, Query(ge=1, le=10000)] = 600) -> list[TelemetryOut]:
        """Site readings after `since_s` (epoch seconds), newest `limit`, oldest first."""
        return [TelemetryOut.model_validate(r) for r in service.store.telemetry(since_s, limit)]

    @app.get("/api/v1/events", dependencies=read, tags=["events"], responses=read_answers | _answers(422))
    def events(status: str | None = Query(None, pattern="^(active|cancelled|completed)$")) -> list[EventOut]:
        """Every event received (from the API or OpenADR) and its state."""
        return [_event_out(r) for r in service.store.events(status)]

    @app.post(
        "/api/v1/events", status_code=201, dependencies=write, tags=["events"], responses=_answers(400, 401, 403, 422)
    )
    def create_event(event: GridEvent) -> EventOut:
        """A utility dispatch: ramp down from `start` over `ramp_s` to `target`, back up by `end`.
        400 if the id exists, the event is over, or the site cannot carry out the target."""
        service.add_event(event, source="api")
        return _event_out(service.store.event(event.id))

    @app.delete("/api/v1/events/{event_id}", dependencies=write, tags=["events"], responses=_answers(401, 403, 404))
    def cancel_event(event_id: str) -> EventOut:
        """Lift an active event."""
        try:
            service.cancel_event(event_id, "cancelled through the API")
        except KeyError:
            raise HTTPException(404, f"no active event {event_id[:128]!r}") from None
        return _event_out(service.store.event(event_id))

    @app.get("/api/v1/jobs", dependencies=read, tags=["jobs"], responses=read_answers)
    def jobs() -> list[JobOut]:
        """Jobs with their flex tier and the share of their flex budget used in the current window."""
        return [JobOut(**j) for j in service.jobs()]

    @app.patch("/api/v1/jobs/{job_id}", dependencies=write, tags=["jobs"], responses=_answers(400, 401, 403, 404, 422))
    def change_job(job_id: str, change: JobChange) -> JobOut | QueuedJobOut:
        """Change a running job's flex tier (its account over the current window carries on) or load
        floor (a fleet coordinator's), and/or a running or queued job's deadline and earliest start
        (time shifting keeps them). All are checked before any is applied, and stored: they outlast
        a restart."""
        try:
            row = service.change_job(job_id, change.flex_tier, change.deadline, change.begin, change.load_floor)
        except KeyError:
            raise HTTPException(404, f"no running or queued job {job_id[:128]!r}") from None
        return JobOut(**row) if "window_start_s" in row else QueuedJobOut(**row)

    @app.get("/api/v1/decisions", dependencies=read, tags=["audit"], responses=read_answers | _answers(422))
    def decisions(since_s: Annotated[float, Query(allow_inf_nan=False)] = 0.0, limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[DecisionOut]:
        """The planner's decisions (audit log), newest `limit` after `since_s`, oldest first."""
        return [DecisionOut.model_validate(r) for r in service.store.decisions(since_s, limit)]

    @app.get("/api/v1/prices", dependencies=read, tags=["audit"], responses=read_answers)
    def prices() -> list[PriceOut]:
        """Price signals received (recorded, not acted on)."""
        return [PriceOut.model_validate(p) for p in service.store.prices()]

    @app.get("/metrics", dependencies=read, tags=["monitoring"], response_class=Response,
             responses=read_answers | {200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                                             "description": "Prometheus text exposition format"}})
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _event_out(r: EventRecord) -> EventOut:
    ev = r.event
    return EventOut(
        **ev.model_dump(exclude={"baseline_w"}),
        baseline_w=ev.baseline_w if ev.baseline_w is not None else r.baseline_w,
        source=r.source,
        status=r.status,
        reason=r.reason,
        created_s=r.created_s,
    )
