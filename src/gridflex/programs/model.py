"""Demand-response programs as configuration, each modelled on a real one (docs/programs.md says
which, and what is simplified): notice, duration, availability windows, measurement (baseline
method), payment and penalty. A site may enrol in several."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

from gridflex.errors import InputError
from gridflex.model.site import require_aware
from gridflex.sim.scenarios import format_validation_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """When the program may call events, in the program's local time: [start_hour, end_hour) on
    `weekdays` (Monday = 0) of `months`."""

    months: tuple[int, ...] = Field(tuple(range(1, 13)), description="months 1..12")
    weekdays: tuple[int, ...] = Field(tuple(range(7)), description="days of week, Monday = 0")
    start_hour: float = Field(0.0, ge=0, lt=24)
    end_hour: float = Field(24.0, gt=0, le=24)

    @model_validator(mode="after")
    def _check(self) -> Window:
        if any(not 1 <= m <= 12 for m in self.months):
            raise ValueError(f"months: {self.months} not allowed; allowed: 1..12")
        if any(not 0 <= d <= 6 for d in self.weekdays):
            raise ValueError(f"weekdays: {self.weekdays} not allowed; allowed: 0 (Monday)..6 (Sunday)")
        if self.end_hour <= self.start_hour:
            raise ValueError(f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})")
        return self

    def contains(self, local: datetime) -> bool:
        hour = local.hour + local.minute / 60 + local.second / 3600
        return local.month in self.months and local.weekday() in self.weekdays and self.start_hour <= hour < self.end_hour


class Measurement(_Strict):
    """How the delivered reduction is measured: the baseline method and the settlement interval."""

    method: Literal["x_of_y", "meter_before_after", "regression"] = "x_of_y"
    interval_s: float = Field(900.0, gt=0, le=3600, description="settlement interval; must divide an hour")
    x: int = Field(10, ge=1, description="x_of_y: days averaged")
    y: int = Field(10, ge=1, description="x_of_y: eligible days considered")
    select: Literal["all", "high", "middle"] = Field("all", description="x_of_y: which X of the Y days")
    lookback_days: int = Field(45, ge=1, le=366, description="x_of_y and regression: days searched back")
    adjustment: Literal["none", "additive", "multiplicative"] = "none"
    adjustment_window_s: float = Field(3 * 3600.0, gt=0, description="length of the same-day adjustment window")
    adjustment_gap_s: float = Field(3600.0, ge=0, description="the window ends this long before the notice or start")
    adjustment_from: Literal["notice", "start"] = Field(
        "notice", description="the gap is counted back from the event's notice (no gaming after notice) or start"
    )
    adjustment_cap: float | None = Field(0.2, gt=0, le=1, description="cap of the adjustment, fraction of baseline")
    before_s: float = Field(3600.0, gt=0, description="meter_before_after: the window before the event")
    after_s: float = Field(0.0, ge=0, description="meter_before_after: the window after the event (0: none)")

    @model_validator(mode="after")
    def _check(self) -> Measurement:
        if self.x > self.y:
            raise ValueError(f"x ({self.x}) must not exceed y ({self.y})")
        if 3600 % self.interval_s:
            raise ValueError(f"interval_s: {self.interval_s} must divide an hour (e.g. 300, 900, 1800, 3600)")
        return self


class Payment(_Strict):
    capacity_usd_per_mw_month: float = Field(0.0, ge=0, description="availability/capacity payment per MW committed")
    energy_usd_per_mwh: float = Field(0.0, ge=0, description="per MWh delivered in events (up to the obligation)")


class Penalty(_Strict):
    threshold: float = Field(0.95, ge=0, le=1, description="performance factor below which an event is penalised")
    usd_per_mw_short: float = Field(0.0, ge=0, description="per MW short of the obligation, per penalised event")
    capacity_at_risk: bool = Field(
        True, description="scale the capacity payment by the month's performance factor when it is below threshold"
    )


class _Program(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=64, description="lower-case id")
    modelled_on: str = Field(min_length=1, description="the real program this is modelled on")
    committed_w: float = Field(gt=0, description="the reduction (or capacity) the site commits")
    notice_s: float = Field(ge=0, description="the least notice the program gives before an event starts")
    max_duration_s: float = Field(gt=0, description="the longest event the program may call")
    response_s: float = Field(0.0, ge=0, description="time allowed from the instruction (notice) to full reduction")
    availability: tuple[Window, ...] = Field((Window(),), min_length=1)
    measurement: Measurement = Measurement()
    payment: Payment = Payment()
    penalty: Penalty = Penalty()
    event_target: Literal["event", "program_baseline", "obligation"] = Field(
        "obligation",
        description="how the controller aims at an event of this program: 'event' (the event's own target against"
        " the controller's baseline), 'program_baseline' (a reduction is a fraction of the program's baseline), or"
        " 'obligation' (as program_baseline, and at most the program's baseline less the event's obligation)",
    )
    timezone: str = Field("America/Chicago", description="the program's local time (IANA name)")
    holidays: tuple[date, ...] = Field((), description="days excluded from baselines and treated as non-weekdays")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {v!r}; use an IANA name such as America/Chicago") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def available(self, local: datetime) -> bool:
        return any(w.contains(local) for w in self.availability)


class EmergencyProgram(_Program):
    """Emergency load reduction with a 10- or 30-minute response."""

    kind: Literal["emergency"]
    response_s: Literal[600, 1800] = Field(description="600 (10-minute) or 1800 (30-minute) response")


class PriceCurtailment(_Program):
    """A large flexible load curtailing whenever the price is above its strike price."""

    kind: Literal["price_curtailment"]
    strike_price_usd_per_mwh: float = Field(description="curtail while the energy price is above this")


class CoincidentPeak(_Program):
    """Avoiding the system's coincident peaks: transmission charges follow the site's load in the
    season's `peaks_per_season` system-peak intervals."""

    kind: Literal["coincident_peak"]
    peaks_per_season: int = Field(4, ge=1, le=12)
    transmission_usd_per_kw_year: float = Field(gt=0, description="the tariff: charge per kW of peak-interval load")
    peak_intervals: tuple[datetime, ...] = Field((), description="the season's system-peak interval starts, once known")

    @field_validator("peak_intervals")
    @classmethod
    def _aware(cls, v: tuple[datetime, ...]) -> tuple[datetime, ...]:
        return tuple(require_aware(t) for t in v)


class CapacityProgram(_Program):
    """A capacity/reliability commitment with scheduled test events."""

    kind: Literal["capacity"]
    test_events_per_year: int = Field(1, ge=0)
    test_prefix: str = Field("test", min_length=1, description="event ids starting with this are the tests")


class Bid(_Strict):
    event_id: str = Field(min_length=1)
    reduction_w: float = Field(gt=0)
    price_usd_per_mwh: float = Field(ge=0)


class FlexBids(_Program):
    """A flexibility service paid per event at the price the site bid; no capacity payment."""

    kind: Literal["flex_bids"]
    bids: tuple[Bid, ...] = ()

    def bid(self, event_id: str) -> Bid | None:
        return next((b for b in self.bids if b.event_id == event_id), None)


Program = Annotated[
    EmergencyProgram | PriceCurtailment | CoincidentPeak | CapacityProgram | FlexBids, Field(discriminator="kind")
]
KINDS = ("emergency", "price_curtailment", "coincident_peak", "capacity", "flex_bids")


class Enrolment(RootModel[tuple[Program, ...]]):
    """The programs one site is enrolled in (the `programs:` list of the service config)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _unique(self) -> Enrolment:
        names = [p.name for p in self.root]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"programs: names must be unique; repeated: {', '.join(dup)}")
        return self

    @property
    def programs(self) -> tuple:
        return self.root

    def get(self, name: str):
        for p in self.root:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.root) or "none configured"
        raise InputError(f"--program: no program {name!r}; enrolled: {known}")


class ProgramsFile(_Strict):
    """A programs file: the `programs:` list alone (`gridflex settle --programs`)."""

    programs: Enrolment = Enrolment(())


def parse_enrolment(data: dict, where: str) -> Enrolment:
    """Programs from a mapping with the key `programs` (a list), e.g. a parsed YAML file."""
    try:
        return ProgramsFile.model_validate(data).programs
    except ValidationError as e:
        raise InputError(f"{where}: invalid programs\n{format_validation_error(e)}") from None
