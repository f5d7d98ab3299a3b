"""Site power from a Prometheus query: the same interface as the Modbus meter (drivers/meter.py).

    meter:
      kind: prometheus
      url: http://prometheus:9090
      query: sum(DCGM_FI_DEV_POWER_USAGE) + sum(facility_power_w)
      series: [DCGM_FI_DEV_POWER_USAGE, facility_power_w]
      max_age_s: 60

`query` must give one number (wrap several series in `sum()`). Every selector in `series` must have
a sample no older than `max_age_s`, measured on Prometheus' own clock (evaluation time minus the
sample's timestamp), so a target that stopped being scraped, or an exporter that stamps old samples,
makes the meter stale instead of silently answering with old watts. An unreachable server, an empty
answer (target down: Prometheus marks its series stale) or a stale series raises `DriverError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from gridflex.errors import DriverError


class PrometheusMeterSettings(BaseModel):
    """Where the Prometheus server is and which query is site power in watts."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["prometheus"]
    url: str = Field(pattern=r"^https?://", description="Prometheus server, e.g. http://127.0.0.1:9090")
    query: str = Field(min_length=1, description="PromQL giving site power (one number; use sum() over series)")
    series: tuple[str, ...] = Field(
        min_length=1, description="selectors the query reads; each must have a sample younger than max_age_s"
    )
    scale: float = Field(1.0, description="watts per unit of the query's value (1000 for kW)")
    max_age_s: float = Field(60.0, gt=0, le=3600, description="older samples make the meter stale")
    timeout_s: float = Field(3.0, gt=0, le=60, description="deadline of one HTTP query")


class PrometheusMeter:
    """Reads site power with Prometheus' HTTP API (`/api/v1/query`)."""

    def __init__(self, settings: PrometheusMeterSettings, clock: Callable[[], float] = time.time):
        self.settings, self.clock = settings, clock
        self.name = f"prometheus {settings.url}"
        self.client = httpx.Client(base_url=settings.url, timeout=settings.timeout_s)
        self.last: tuple[float, float] | None = None

    def _query(self, promql: str) -> list[dict]:
        try:
            answer = self.client.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as e:
            raise DriverError(f"{self.name}: {type(e).__name__}: {e or 'no answer'}") from None
        try:
            body = answer.json()
        except ValueError:
            raise DriverError(f"{self.name}: HTTP {answer.status_code}, not a Prometheus API answer") from None
        if body.get("status") != "success":
            raise DriverError(f"{self.name}: query {promql!r} failed: {body.get('error', answer.status_code)}")
        data = body["data"]
        return [{"value": data["result"]}] if data["resultType"] in ("scalar", "string") else data["result"]

    def _one(self, promql: str, what: str) -> tuple[float, float]:
        result = self._query(promql)
        if len(result) != 1:
            hint = "no sample (is the target up and scraped?)" if not result else f"{len(result)} series; wrap in sum()"
            raise DriverError(f"{self.name}: {what} {promql!r} gave {hint}")
        eval_s, value = result[0]["value"]
        return float(eval_s), float(value)

    def read(self) -> tuple[float, float]:
        """(site power in W, epoch second of its oldest sample); DriverError if unreachable or stale."""
        s = self.settings
        oldest_age_s = 0.0
        for sel in s.series:
            eval_s, sample_s = self._one(f"min(timestamp({sel}))", "series")
            age_s = eval_s - sample_s
            if age_s > s.max_age_s:
                raise DriverError(f"{self.name}: {sel} was last sampled {age_s:.0f} s ago (max_age_s {s.max_age_s:g})")
            oldest_age_s = max(oldest_age_s, age_s)
        power_w = self._one(s.query, "query")[1] * s.scale
        if not math.isfinite(power_w):
            raise DriverError(f"{self.name}: query {s.query!r} gave {power_w}")
        self.last = (power_w, self.clock() - oldest_age_s)
        return self.last

    def age_s(self) -> float:
        """Seconds since the last good reading's sample (infinite before the first)."""
        return math.inf if self.last is None else self.clock() - self.last[1]

    def close(self) -> None:
        self.client.close()
