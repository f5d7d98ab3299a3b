"""Live carbon and price adapters: small httpx clients that return the same `Forecast` and
`StepSignal` objects as the recorded sources, and refuse data that has gone stale.

- `GBCarbonIntensity`: the NESO Carbon Intensity API (api.carbonintensity.org.uk, no key):
  48-h forecast (`/intensity/{now}/fw48h`) and the past 24 h of actuals (`/intensity/{now}/pt24h`).
- `WattTime`: WattTime API v3 (`/login`, `/v3/forecast`): marginal emissions (MOER) forecast.
- `ElectricityMaps`: Electricity Maps API v3 (`/v3/carbon-intensity/forecast` and `/history`).
- `ErcotPrices`: ERCOT Public API (api.ercot.com/api/public-reports): real-time settlement point
  prices (NP6-905-CD) as actuals and day-ahead prices (NP4-190-CD) as the forecast.

Each takes an `httpx.Client` whose `base_url` points at the service (tests pass one with an
`httpx.MockTransport` replaying recorded responses). `polled(fetch)` wraps any of their fetch
methods into a `PolledSignal`, the live `at(t)` signal of `signals.prices`.
We use plain httpx rather than gridstatus: gridstatus brings pandas and requests (which
httpx.MockTransport cannot replay) and covers ISOs' prices, not the carbon APIs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import numpy as np

from gridflex.errors import GridflexError, InputError
from gridflex.signals.forecast import Forecast, as_known
from gridflex.signals.prices import PolledSignal, StepSignal
from gridflex.signals.recorded import ERCOT_TZ, ercot_da_forecast

#: WattTime reports MOER in lbs CO2 per MWh; 1 lb/MWh = 0.45359237 g/kWh.
G_PER_KWH_PER_LB_PER_MWH = 0.45359237


class StaleDataError(GridflexError):
    """A live source answered with data too old to act on."""


def _get(client: httpx.Client, url: str, source: str, **kw) -> dict:
    try:
        r = client.get(url, **kw)
        r.raise_for_status()
        return r.json()
    except httpx.HTTPStatusError as e:
        raise GridflexError(
            f"{source}: HTTP {e.response.status_code} from {url}; check the credentials and parameters"
        ) from None
    except (httpx.HTTPError, ValueError) as e:
        raise GridflexError(f"{source}: no usable answer from {url} ({type(e).__name__}: {e})") from None


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _check_fresh(source: str, newest_s: float, now_s: float, max_age_s: float) -> None:
    age = now_s - newest_s
    if age > max_age_s:
        raise StaleDataError(
            f"{source}: newest data is {age / 60:.0f} min old (limit {max_age_s / 60:.0f} min); not used"
        )


def _vintage(issued_s: float, times_s: list[float], values: list[float], name: str) -> Forecast:
    if not times_s:
        raise GridflexError(f"{name}: the answer holds no values")
    return Forecast(np.full(len(times_s), issued_s), np.array(times_s), np.array(values, float), name)


@dataclass
class GBCarbonIntensity:
    """NESO Carbon Intensity API, national average intensity [gCO2/kWh], half-hourly."""

    client: httpx.Client
    clock: Callable[[], float] = time.time
    max_age_s: float = 3600.0

    def _periods(self, window: str) -> list[dict]:
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%MZ")
        return _get(self.client, f"/intensity/{now}/{window}", "carbonintensity.org.uk").get("data", [])

    def forecast(self) -> Forecast:
        """The 48-h forecast as published now (the API states no issue time: the fetch time)."""
        now = self.clock()
        rows = [d for d in self._periods("fw48h") if d["intensity"].get("forecast") is not None]
        if rows:  # the first period must be the current one
            _check_fresh("carbonintensity.org.uk forecast", _ts(rows[0]["to"]), now, self.max_age_s)
        return _vintage(now, [_ts(d["from"]) for d in rows], [d["intensity"]["forecast"] for d in rows],
                        "gb-carbon live")

    def actuals(self) -> StepSignal:
        """The past 24 h of measured intensity (periods not yet measured are left out)."""
        rows = [d for d in self._periods("pt24h") if d["intensity"].get("actual") is not None]
        if not rows:
            raise StaleDataError("carbonintensity.org.uk: no actuals in the past 24 h")
        _check_fresh("carbonintensity.org.uk actuals", _ts(rows[-1]["to"]), self.clock(), self.max_age_s)
        return StepSignal(np.array([_ts(d["from"]) for d in rows]),
                          np.array([float(d["intensity"]["actual"]) for d in rows]), "gb-carbon live actual")


@dataclass
class WattTime:
    """WattTime API v3, marginal operating emissions rate (MOER) [gCO2/kWh], 5-min."""

    client: httpx.Client
    username: str
    password: str
    region: str
    clock: Callable[[], float] = time.time
    max_age_s: float = 900.0
    _token: str | None = field(default=None, repr=False)

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            body = _get(self.client, "/login", "watttime login", auth=(self.username, self.password))
            if "token" not in body:
                raise GridflexError("watttime login: no token in the answer; check username and password")
            self._token = body["token"]
        return {"Authorization": f"Bearer {self._token}"}

    def forecast(self) -> Forecast:
        """The latest MOER forecast, issued at its `meta.generated_at`."""
        body = _get(self.client, "/v3/forecast", "watttime forecast", headers=self._headers(),
                    params={"region": self.region, "signal_type": "co2_moer"})
        meta = body.get("meta", {})
        if meta.get("units") != "lbs_co2_per_mwh":
            raise GridflexError(f"watttime forecast: units {meta.get('units')!r}; expected lbs_co2_per_mwh")
        issued = _ts(meta["generated_at"])
        _check_fresh("watttime forecast", issued, self.clock(), self.max_age_s)
        pts = body.get("data", [])
        return _vintage(issued, [_ts(p["point_time"]) for p in pts],
                        [p["value"] * G_PER_KWH_PER_LB_PER_MWH for p in pts], f"watttime {self.region}")


@dataclass
class ElectricityMaps:
    """Electricity Maps API v3, average (consumption-based) intensity [gCO2eq/kWh], hourly."""

    client: httpx.Client
    token: str
    zone: str
    clock: Callable[[], float] = time.time
    max_age_s: float = 7200.0

    def _get(self, path: str) -> dict:
        return _get(self.client, path, "electricitymaps", headers={"auth-token": self.token},
                    params={"zone": self.zone})

    def forecast(self) -> Forecast:
        body = self._get("/v3/carbon-intensity/forecast")
        issued = _ts(body["updatedAt"])
        _check_fresh("electricitymaps forecast", issued, self.clock(), self.max_age_s)
        pts = body.get("forecast", [])
        return _vintage(issued, [_ts(p["datetime"]) for p in pts], [p["carbonIntensity"] for p in pts],
                        f"electricitymaps {self.zone}")

    def actuals(self) -> StepSignal:
        pts = [p for p in self._get("/v3/carbon-intensity/history").get("history", [])
               if p.get("carbonIntensity") is not None]
        if not pts:
            raise StaleDataError(f"electricitymaps {self.zone}: no history")
        _check_fresh("electricitymaps history", _ts(pts[-1]["datetime"]) + 3600, self.clock(), self.max_age_s)
        return StepSignal(np.array([_ts(p["datetime"]) for p in pts]),
                          np.array([float(p["carbonIntensity"]) for p in pts]), f"electricitymaps {self.zone}")


@dataclass
class ErcotPrices:
    """ERCOT settlement point prices [USD/MWh] at one hub or load zone."""

    client: httpx.Client
    subscription_key: str
    id_token: str
    settlement_point: str = "HB_SOUTH"
    clock: Callable[[], float] = time.time
    max_age_s: float = 3600.0

    def _rows(self, path: str, first: date, last: date) -> list[dict]:
        body = _get(self.client, path, "ercot", params={
            "settlementPoint": self.settlement_point, "deliveryDateFrom": first.isoformat(),
            "deliveryDateTo": last.isoformat(), "size": 10000,
        }, headers={"Ocp-Apim-Subscription-Key": self.subscription_key, "Authorization": f"Bearer {self.id_token}"})
        names = [f["name"] for f in body.get("fields", [])]
        return [dict(zip(names, row)) for row in body.get("data", [])]

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock(), ERCOT_TZ).date()

    def actuals(self) -> StepSignal:
        """Real-time 15-min prices of today and yesterday (Central time)."""
        rows = self._rows("/np6-905-cd/spp_node_zone_hub", self._today() - timedelta(days=1), self._today())
        t = [_local(r["deliveryDate"], r["deliveryHour"] - 1, 15 * (r["deliveryInterval"] - 1), r["DSTFlag"])
             for r in rows]
        if not t:
            raise StaleDataError(f"ercot {self.settlement_point}: no real-time prices")
        order = np.argsort(t)
        times = np.array(t)[order]
        _check_fresh(f"ercot {self.settlement_point} real-time", times[-1] + 900, self.clock(), self.max_age_s)
        return StepSignal(times, np.array([r["settlementPointPrice"] for r in rows], float)[order],
                          f"ercot {self.settlement_point} rt")

    def forecast(self) -> Forecast:
        """Day-ahead prices of today and (once published, 13:30 Central) tomorrow, as vintages."""
        rows = self._rows("/np4-190-cd/dam_stlmnt_pnt_prices", self._today(), self._today() + timedelta(days=1))
        t = [_local(r["deliveryDate"], int(r["hourEnding"].split(":")[0]) - 1, 0, r["DSTFlag"]) for r in rows]
        if not t:
            raise StaleDataError(f"ercot {self.settlement_point}: no day-ahead prices for today")
        order = np.argsort(t)
        times = np.array(t)[order]
        if times[-1] + 3600 <= self.clock():
            raise StaleDataError(f"ercot {self.settlement_point}: day-ahead prices end before now")
        return ercot_da_forecast(times, np.array([r["settlementPointPrice"] for r in rows], float)[order],
                                 f"ercot {self.settlement_point}")


def _local(day: str, hour: int, minute: int, dst_repeated: bool) -> float:
    """Epoch seconds of a Central-time interval start; `dst_repeated` marks the second 1 a.m. hour."""
    d = date.fromisoformat(day)
    t = datetime(d.year, d.month, d.day, tzinfo=ERCOT_TZ) + timedelta(hours=hour, minutes=minute)
    return datetime(t.year, t.month, t.day, t.hour, t.minute, tzinfo=ERCOT_TZ, fold=int(bool(dst_repeated))).timestamp()


def polled(fetch: Callable[[], Forecast | StepSignal], refresh_s: float = 300.0, max_age_s: float = 3600.0,
           clock: Callable[[], float] = time.time) -> PolledSignal:
    """A live `at(t)` signal from an adapter's `forecast` or `actuals` method (the newest vintage)."""

    def series() -> tuple[np.ndarray, np.ndarray]:
        got = fetch()
        if isinstance(got, Forecast):
            got = got.forecast_at(got.issued_s[-1])
        return got.times_s, got.values

    return PolledSignal(series, refresh_s=refresh_s, max_age_s=max_age_s, clock=clock)


#: Public addresses of the live APIs.
BASE_URLS = {"gb-carbon": "https://api.carbonintensity.org.uk", "watttime": "https://api.watttime.org",
             "electricity-maps": "https://api.electricitymap.org",
             "ercot": "https://api.ercot.com/api/public-reports"}


def live_source(spec, clock: Callable[[], float] = time.time, client: httpx.Client | None = None,
                settings=None) -> PolledSignal:
    """The forecast of a configured live source (`model.shifting.LiveSignal`) as a refreshing
    `at(t)` signal; credentials come from the environment variables `spec.secrets_env` names.
    With `settings` (`model.shifting.ShiftSettings`) asking for it, each fetch also reads the
    source's actuals and corrects and blends the forecast as simulation does (`as_known`)."""
    import os

    def secret(name: str) -> str:
        env = spec.secrets_env.get(name)
        if env is None or not os.environ.get(env):
            raise GridflexError(f"shifting.live.secrets_env.{name}: name an environment variable holding the {spec.kind}"
                                f" {name}" + (f" ({env} is not set)" if env else ""))
        return os.environ[env]

    client = client or httpx.Client(base_url=spec.base_url or BASE_URLS[spec.kind], timeout=10.0)
    if spec.kind == "gb-carbon":
        adapter = GBCarbonIntensity(client, clock, spec.max_age_s)
    elif spec.kind == "watttime":
        adapter = WattTime(client, secret("username"), secret("password"), spec.area or "CAISO_NORTH", clock)
    elif spec.kind == "electricity-maps":
        adapter = ElectricityMaps(client, secret("token"), spec.area or "GB", clock)
    else:
        adapter = ErcotPrices(client, secret("subscription_key"), secret("id_token"), spec.area or "HB_SOUTH", clock)
    fetch = adapter.forecast
    if settings is not None and (settings.corrected_tau_s is not None or settings.persistence_weight > 0):
        if not hasattr(adapter, "actuals"):
            raise InputError(f"shifting.corrected_tau_s/persistence_weight: the {spec.kind} source publishes no"
                             " actuals to correct or blend with; leave both unset")

        def fetch() -> StepSignal:
            return as_known(adapter.forecast(), adapter.actuals(), settings.corrected_tau_s,
                            settings.persistence_weight, settings.horizon_s).forecast_at(clock())
    return polled(fetch, spec.refresh_s, spec.max_age_s, clock)
