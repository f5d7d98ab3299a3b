"""Settings of time shifting: which signal, which policy, how often it re-plans."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

LIVE_KINDS = ("gb-carbon", "watttime", "electricity-maps", "ercot")


class LiveSignal(BaseModel):
    """Where `gridflex serve` reads the shifting signal: a live API (`signals/live.py`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern="^(gb-carbon|watttime|electricity-maps|ercot)$",
                      description="gb-carbon (NESO, no key), watttime, electricity-maps or ercot")
    base_url: str | None = Field(None, description="the API's address (default: the public one)")
    area: str | None = Field(None, description="WattTime region, Electricity Maps zone or ERCOT settlement point")
    secrets_env: dict[str, str] = Field(
        default_factory=dict, description="credential -> environment variable holding it: watttime username and"
        " password, electricity-maps token, ercot subscription_key and id_token")
    refresh_s: float = Field(900.0, gt=0, description="fetch the forecast again after this long")
    max_age_s: float = Field(3600.0, gt=0, description="refuse a forecast not renewed for this long")

SHIFT_POLICIES = ("horizon", "lwa", "threshold", "run-now")


class ShiftSettings(BaseModel):
    """A scenario's (or a site's) `shifting:` section: queued deferrable work is held and
    released by a policy that reads the signal's forecast as known at the time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal: str | None = Field(None, min_length=1, description="recorded source (simulation): gb-carbon-week or"
                               " ercot-price-week")
    live: LiveSignal | None = Field(None, description="live source (gridflex serve)")
    policy: str = Field("horizon", pattern="^(horizon|lwa|threshold|run-now)$",
                        description="horizon (the LP, re-solved), lwa (Let's Wait Awhile, non-interrupting),"
                        " threshold (hold while the signal now is above `threshold`), run-now (never hold)")
    forecast: str = Field("issued", pattern="^(issued|actual)$",
                          description="issued: the forecasts as issued; actual: the true series in their place"
                          " (to measure what forecast error costs)")
    corrected_tau_s: float | None = Field(
        None, gt=0, description="add the last observed forecast error, fading over this time constant (carbon)")
    persistence_weight: float = Field(
        0.0, ge=0, le=1, description="blend this share of same-time-yesterday persistence (from the actuals observed"
        " by then) into the forecast: a forecast combination")
    replan_s: float = Field(900.0, gt=0, description="seconds between horizon solves")
    horizon_s: float = Field(172800.0, gt=0, description="how far ahead the horizon planner looks")
    slot_s: float = Field(900.0, gt=0, description="slot length of the horizon plan")
    threshold: float | None = Field(
        None, description="threshold policy: hold above this value (None: the median of the first 48-h forecast)")
    power_shaping: bool = Field(
        True, description="horizon and threshold policies: also cap running flexible jobs with known work in"
        " dirty or dear hours, within their deadlines and tiers (horizon: by the plan; threshold: at their most"
        " efficient cap while the signal is above the threshold)")
    shaping_pauses: bool = Field(
        False, description="horizon policy with power shaping: also pause (suspend or checkpoint) a running job that"
        " may pause while the plan gives it no work for long enough that its pause's stall is a small share of"
        " the pause, and its deadline and tier leave room for the stall; resumed when the plan gives it work")

    @model_validator(mode="after")
    def _source(self) -> ShiftSettings:
        if self.signal is None and self.live is None:
            raise ValueError("shifting: give `signal` (a recorded source, for simulation) or `live` (for serve)")
        return self
