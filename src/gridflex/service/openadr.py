"""The OpenADR 2.0b VEN: turns VTN events into grid events (or price records), opts in or out,
and reports site power back.

Mapping (per event interval):
- LOAD_DISPATCH, signal type `setpoint`: a ceiling on site power (`target.power_w`); the value's
  unit is the signal's itemBase scale (W, kW, MW), else `openadr.setpoint_unit_w`.
- SIMPLE, level 1..3: a reduction from the baseline, per `openadr.simple_levels`; level 0: none.
The event's ramp-up period becomes the ramp of its first interval.
- ELECTRICITY_PRICE: recorded as a price signal, not acted on.
Anything else, or an event the site cannot carry out, is answered with an opt-out and a logged
reason; an event is applied whole (every interval) or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pydantic import ValidationError

from gridflex.errors import InputError
from gridflex.model.events import EVENT_ID_PATTERN, EVENT_ID_RULE, GridEvent
from gridflex.service.config import OpenAdrConfig
from gridflex.service.runtime import LiveService

log = logging.getLogger(__name__)

SCALE_W = {"none": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
PREFIX = "oadr"
SUPPORTED = "LOAD_DISPATCH/setpoint, SIMPLE/level, ELECTRICITY_PRICE"


@dataclass
class Translation:
    """What an OpenADR event asks of the site."""

    events: list[GridEvent] = field(default_factory=list)
    prices: list[tuple[float, float, float]] = field(default_factory=list)  # (start_s, end_s, price)
    reason: str = ""  # non-empty: refuse (opt out)


#: What a malformed event raises while it is read (a field missing, None, of the wrong type, out of range).
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def event_id_prefix(oadr_event_id: str) -> str:
    return f"{PREFIX}:{oadr_event_id}:"


def translate(event: dict, cfg: OpenAdrConfig) -> Translation:
    """Turn one parsed OpenADR event (openleadr's dict form) into grid events or prices."""
    try:
        desc, period = event["event_descriptor"], event["active_period"]
        signals = event["event_signals"]
        signals = signals if isinstance(signals, list) else signals["event_signals"]
        start = _aware(period["dtstart"])
        ramp_s = _seconds(period.get("ramp_up"))
        mod = int(desc.get("modification_number", 0))
        base_id = f"{event_id_prefix(desc['event_id'])}{mod}"
    except MALFORMED as e:
        return Translation(reason=f"malformed event: missing or bad {e}")
    if not re.fullmatch(EVENT_ID_PATTERN, f"{base_id}:999"):  # room for the interval number
        shown = repr(str(desc["event_id"])[:40])
        return Translation(reason=f"event_id {shown} is not allowed: gridflex ids ('{PREFIX}:<event id>:<modification"
                                  f" number>:<n>') must be {EVENT_ID_RULE}")
    out = Translation()
    try:
        for sig in signals:
            reason = _translate_signal(sig, start, ramp_s, base_id, cfg, out)
            if reason:
                return Translation(reason=reason)
    except MALFORMED as e:
        return Translation(reason=f"malformed interval: missing or bad {e}")
    return out


def _translate_signal(
    sig: dict, start: datetime, ramp_s: float, base_id: str, cfg: OpenAdrConfig, out: Translation
) -> str:
    """Add one signal's intervals to `out`; return why the event must be refused ("" if it need not)."""
    name, kind = sig.get("signal_name"), sig.get("signal_type")
    for i, (t0, t1, value) in enumerate(_intervals(sig, start)):
        if value is None:
            return f"{name}: interval {i} has no payload value"
        if name == "ELECTRICITY_PRICE":
            out.prices.append((t0.timestamp(), t1.timestamp(), float(value)))
            continue
        if name == "LOAD_DISPATCH" and kind == "setpoint":
            scale = (sig.get("measurement") or {}).get("scale")
            if scale and scale not in SCALE_W:
                return f"LOAD_DISPATCH: scale {scale!r} not supported; allowed: {', '.join(SCALE_W)}"
            target = {"power_w": float(value) * (SCALE_W[scale] if scale else cfg.setpoint_unit_w)}
        elif name in ("SIMPLE", "simple") and kind in ("level", None):
            level = int(value)
            if level == 0:
                continue
            if level not in cfg.simple_levels:
                return f"SIMPLE: level {level} has no reduction in openadr.simple_levels"
            target = {"reduction": cfg.simple_levels[level]}
        else:
            return f"signal {name}/{kind} is not supported; supported: {SUPPORTED}"
        ramp = ramp_s if not out.events else 0.0  # the event's ramp leads into its first interval
        try:
            out.events.append(
                GridEvent(id=f"{base_id}:{len(out.events)}", start=t0, end=t1, ramp_s=ramp, target=target)
            )
        except ValidationError as e:
            first = e.errors()[0]
            return f"{name}: interval {i}: {'.'.join(map(str, first['loc']))}: {first['msg']}"
    return ""


def _intervals(sig: dict, start: datetime):
    """(start, end, value) of each interval; openleadr gives dtstart per interval or durations in order."""
    t = start
    for iv in sig.get("intervals") or []:
        t0 = _aware(iv["dtstart"]) if iv.get("dtstart") else t
        t1 = t0 + (iv.get("duration") or timedelta(0))
        t = t1
        yield t0, t1, iv.get("signal_payload")


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _seconds(d: timedelta | None) -> float:
    return d.total_seconds() if d else 0.0


class Ven:
    """Runs openleadr's OpenADRClient inside the service's event loop."""

    def __init__(self, service: LiveService, cfg: OpenAdrConfig):
        self.service, self.cfg = service, cfg
        self.client = None
        self._task: asyncio.Task | None = None

    def _new_client(self):
        from openleadr import OpenADRClient

        # openleadr sets its logger to INFO on import: three lines per report sample. Quiet but for --log-level debug.
        debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        logging.getLogger("openleadr").setLevel(logging.DEBUG if debug else logging.WARNING)
        client = OpenADRClient(ven_name=self.cfg.ven_name, vtn_url=self.cfg.vtn_url, show_fingerprint=False)
        client.add_handler("on_event", self.on_event)
        client.add_handler("on_update_event", self.on_event)
        client.add_report(
            callback=self.site_power_w,
            resource_id="site",
            measurement="RealPower",
            unit="W",
            scale="none",
            sampling_rate=timedelta(seconds=self.cfg.report_interval_s),
            report_duration=timedelta(hours=1),
        )
        return client

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Register with the VTN, retrying every `retry_s` until it answers; openleadr then polls.
        When the VTN answers again after polls failed (it restarted, and forgot this VEN and its
        reports), register again from scratch."""
        while True:
            self.client = self._new_client()
            back = self._watch_polls(self.client)
            try:
                await self.client.run()
            except Exception:  # the API keeps serving while the VTN is away
                log.exception("OpenADR client failed")
            if self.client.registration_id:
                log.info("registered with VTN %s as %s", self.cfg.vtn_url, self.client.ven_id)
                await back.wait()
                log.warning("VTN %s answers again after failed polls: registering again", self.cfg.vtn_url)
                await self._stop_client()
                continue
            await self._stop_client()
            log.warning("no registration from VTN %s; retrying in %.0f s", self.cfg.vtn_url, self.cfg.retry_s)
            await asyncio.sleep(self.cfg.retry_s)

    @staticmethod
    def _watch_polls(client) -> asyncio.Event:
        """An event set when a poll succeeds after one or more failed (the VTN was away)."""
        back, failed = asyncio.Event(), [0]
        poll = client.poll

        async def watched():
            answer = await poll()
            kind, payload = answer if isinstance(answer, tuple) else (None, {})
            code = ((payload or {}).get("response") or {}).get("response_code", 200)
            if kind is None or code != 200:
                failed[0] += 1
            elif failed[0]:
                back.set()
            return answer

        client.poll = watched  # openleadr's scheduled _poll calls self.poll()
        return back

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._stop_client()

    async def _stop_client(self) -> None:
        try:
            await self.client.stop()
        except Exception as e:  # already stopped or never connected
            log.debug("OpenADR client stop: %s", e)

    def site_power_w(self) -> float:
        status = self.service.status
        return float(status.site_power_w) if status else 0.0

    async def on_event(self, event: dict) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.handle, event)

    def handle(self, event: dict) -> str:
        """Apply the event whole and opt in, or refuse it and opt out."""
        desc = event.get("event_descriptor")
        desc = desc if isinstance(desc, dict) else {}
        oadr_id = desc.get("event_id", "?")
        prefix = event_id_prefix(oadr_id)
        superseded = [e for e in self.service.active_event_ids() if e.startswith(prefix)]
        if desc.get("event_status") in ("cancelled", "completed"):
            for ev_id in superseded:
                self.service.cancel_event(ev_id, f"OpenADR event {desc.get('event_status')}")
            return "optIn"
        tr = translate(event, self.cfg)
        if tr.events and {e.id for e in tr.events} <= set(superseded):
            return "optIn"  # already in force (e.g. re-sent after a restart)
        if not tr.reason:
            now = self.service.clock()
            try:
                for ev in tr.events:
                    self.service.check_event(ev, now)
            except InputError as e:
                tr.reason = str(e)
        if tr.reason:
            log.warning("opting out of OpenADR event %r: %s", str(oadr_id)[:128], tr.reason)
            self.service.metrics.opt_outs.inc()
            return "optOut"
        added: list[str] = []
        try:
            for ev in tr.events:
                self.service.add_event(ev, source="openadr")
                added.append(ev.id)
            for start_s, end_s, price in tr.prices:
                self.service.store.add_price(oadr_id, start_s, end_s, price, "openadr")
        except Exception as e:  # never half-applied: undo what was added
            for ev_id in added:
                self.service.cancel_event(ev_id, f"rolled back: {e}")
            log.warning("opting out of OpenADR event %r: %s", str(oadr_id)[:128], e)
            self.service.metrics.opt_outs.inc()
            return "optOut"
        for ev_id in superseded:
            self.service.cancel_event(ev_id, "superseded by a modified OpenADR event")
        log.info("opted in to OpenADR event %r (%d interval(s))", oadr_id, len(tr.events))
        return "optIn"
