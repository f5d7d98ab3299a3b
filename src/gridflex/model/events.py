"""Grid events: requests to hold site power at or below a target for a while."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridflex.model.site import require_aware

#: What an event id may be: it travels in URLs (DELETE /api/v1/events/{id}), logs and the store.
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
EVENT_ID_RULE = "1 to 128 characters from A-Z a-z 0-9 . _ : -"


class Target(BaseModel):
    """Either a reduction from the baseline or an absolute power ceiling."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    reduction: float | None = Field(None, gt=0, lt=1, description="fraction of the baseline to shed")
    power_w: float | None = Field(None, ge=0, description="absolute site power ceiling")

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.reduction is None) == (self.power_w is None):
            raise ValueError("target needs exactly one of 'reduction' (0..1) or 'power_w' (watts)")
        return self

    def ceiling_w(self, baseline_w: float) -> float:
        return self.power_w if self.power_w is not None else baseline_w * (1 - self.reduction)


class GridEvent(BaseModel):
    """One request. Power ramps down from `start` over `ramp_s`, holds the target, and ramps back
    up so that the ramp ends at `end`. The event is known `notice_s` before `start`
    (None: known from the beginning)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(description=f"event id: {EVENT_ID_RULE}", json_schema_extra={"pattern": EVENT_ID_PATTERN})
    start: datetime
    end: datetime
    ramp_s: float = Field(0.0, ge=0)
    notice_s: float | None = Field(None, ge=0)
    target: Target
    baseline_w: float | None = Field(None, gt=0)
    ramp_up_w_per_min: float | None = Field(
        None, gt=0, description="the return after this event rises no faster (W per minute; the lower of this and"
        " the site's control.ramp_up_w_per_min holds)"
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(EVENT_ID_PATTERN, v):
            shown = repr(v[:40]) + ("..." if len(v) > 40 else "")
            raise ValueError(f"event id {shown} ({len(v)} characters) is not allowed; allowed: {EVENT_ID_RULE}")
        return v

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return require_aware(v)

    @model_validator(mode="after")
    def _check(self) -> GridEvent:
        if self.end <= self.start:
            raise ValueError(f"event {self.id!r}: end ({self.end}) must be after start ({self.start})")
        if 2 * self.ramp_s > (self.end - self.start).total_seconds():
            raise ValueError(f"event {self.id!r}: ramp_s ({self.ramp_s}) leaves no hold period")
        if (
            self.baseline_w is not None
            and self.target.power_w is not None
            and self.target.power_w >= self.baseline_w
        ):
            raise ValueError(
                f"event {self.id!r}: target.power_w ({self.target.power_w:.0f} W) must be below"
                f" baseline_w ({self.baseline_w:.0f} W)"
            )
        return self

    @property
    def hold_start(self) -> datetime:
        return self.start + timedelta(seconds=self.ramp_s)

    @property
    def hold_end(self) -> datetime:
        return self.end - timedelta(seconds=self.ramp_s)

    def known_from_s(self, scenario_start_s: float) -> float:
        """Epoch second from which the event is known: `notice_s` before its start, or from
        the beginning of the scenario when no notice is given."""
        if self.notice_s is None:
            return scenario_start_s
        return max(scenario_start_s, self.start.timestamp() - self.notice_s)
