"""Live adapters against recorded responses (httpx.MockTransport): same objects, stale data refused."""

import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from gridflex.errors import GridflexError
from gridflex.signals.live import (
    G_PER_KWH_PER_LB_PER_MWH,
    ElectricityMaps,
    ErcotPrices,
    GBCarbonIntensity,
    StaleDataError,
    WattTime,
    polled,
)
from gridflex.signals.recorded import ERCOT_TZ

FIXTURES = Path(__file__).parent / "fixtures" / "signals"


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def replay(routes: dict[str, str], seen: list | None = None) -> httpx.Client:
    """A client whose transport answers each path with a recorded JSON file (404 otherwise)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        for prefix, name in routes.items():
            if request.url.path.startswith(prefix):
                return httpx.Response(200, json=json.loads((FIXTURES / name).read_text()))
        return httpx.Response(404, json={"error": "not recorded"})

    return httpx.Client(base_url="https://example.test", transport=httpx.MockTransport(handler))


def test_gb_carbon_intensity_forecast_and_actuals():
    seen = []
    client = replay({"/intensity/2023-03-21T12:40Z/fw48h": "carbonintensity_fw48h.json",
                     "/intensity/2023-03-21T12:40Z/pt24h": "carbonintensity_pt24h.json"}, seen)
    gb = GBCarbonIntensity(client, clock=lambda: at("2023-03-21T12:40:00+00:00"))
    f = gb.forecast()
    s = f.forecast_at(f.issued_s[0])
    assert s.at(at("2023-03-21T14:10:00+00:00")) == 93
    assert f.issued_s[0] == at("2023-03-21T12:40:00+00:00")
    a = gb.actuals()
    assert a.at(at("2023-03-21T12:10:00+00:00")) == 85 and len(a.times_s) == 5  # the unmeasured period is left out
    assert seen[0].url.path == "/intensity/2023-03-21T12:40Z/fw48h"


def test_gb_refuses_a_stale_forecast():
    client = replay({"/intensity/": "carbonintensity_fw48h.json"})
    gb = GBCarbonIntensity(client, clock=lambda: at("2023-03-21T15:30:00+00:00"), max_age_s=1800)
    with pytest.raises(StaleDataError, match="min old"):
        gb.forecast()


def test_watttime_logs_in_converts_units_and_refuses_stale():
    seen = []
    client = replay({"/login": "watttime_login.json", "/v3/forecast": "watttime_forecast.json"}, seen)
    wt = WattTime(client, "user", "pw", "CAISO_NORTH", clock=lambda: at("2023-06-20T11:12:00+00:00"))
    f = wt.forecast()
    assert f.issued_s[0] == at("2023-06-20T11:10:00+00:00")
    assert f.values[0] == pytest.approx(423.5, abs=0.1)  # 933.7 lbs/MWh back in g/kWh
    assert seen[1].headers["authorization"] == "Bearer recorded-test-token"
    assert seen[1].url.params["region"] == "CAISO_NORTH"
    late = WattTime(client, "user", "pw", "CAISO_NORTH", clock=lambda: at("2023-06-20T12:00:00+00:00"))
    with pytest.raises(StaleDataError):
        late.forecast()
    assert G_PER_KWH_PER_LB_PER_MWH == pytest.approx(453.59237 / 1000)


def test_electricity_maps_forecast_history_and_errors():
    client = replay({"/v3/carbon-intensity/forecast": "electricitymaps_forecast.json",
                     "/v3/carbon-intensity/history": "electricitymaps_history.json"})
    em = ElectricityMaps(client, "tok", "US-TEX-ERCO", clock=lambda: at("2023-07-01T12:30:00+00:00"))
    f = em.forecast()
    assert f.forecast_at(f.issued_s[0]).at(at("2023-07-01T14:30:00+00:00")) == 296
    assert em.actuals().at(at("2023-07-01T11:59:00+00:00")) == 299
    broken = ElectricityMaps(replay({}), "tok", "US-TEX-ERCO")
    with pytest.raises(GridflexError, match="HTTP 404"):
        broken.forecast()


def test_ercot_real_time_and_day_ahead():
    client = replay({"/np6-905-cd/": "ercot_rt_spp.json", "/np4-190-cd/": "ercot_dam_spp.json"})
    now = datetime(2024, 8, 20, 20, 10, tzinfo=ERCOT_TZ).timestamp()
    ercot = ErcotPrices(client, "key", "token", clock=lambda: now)
    rt = ercot.actuals()
    assert rt.at(datetime(2024, 8, 20, 19, 30, tzinfo=ERCOT_TZ).timestamp()) == pytest.approx(4857.82)
    da = ercot.forecast()
    hour_19 = datetime(2024, 8, 20, 19, 15, tzinfo=ERCOT_TZ).timestamp()
    assert da.forecast_at(now).at(hour_19) == pytest.approx(606.1)  # hour ending 20:00
    stale = ErcotPrices(client, "key", "token", clock=lambda: now + 3 * 3600)
    with pytest.raises(StaleDataError):
        stale.actuals()


def test_polled_signal_wraps_an_adapter_and_stops_when_stale():
    now = [at("2023-03-21T12:40:00+00:00")]
    client = replay({"/intensity/": "carbonintensity_fw48h.json"})
    gb = GBCarbonIntensity(client, clock=lambda: now[0], max_age_s=1800)
    sig = polled(gb.forecast, refresh_s=300, max_age_s=1800, clock=lambda: now[0])
    assert sig.at(at("2023-03-21T13:05:00+00:00")) == 97
    now[0] += 3 * 3600  # the API keeps answering with the old forecast: refused, then no data at all
    with pytest.raises(GridflexError, match="no usable data"):
        sig.at(now[0])


def test_a_live_source_is_corrected_and_blended_as_in_simulation():
    """carbon-week-gb's settings on the live NESO API: the forecast (93 g/kWh at 14:00) plus the
    last observed error (12:00: 85 measured, 98 forecast) fading over 3 h, blended half and half
    with the same time yesterday (2023-03-20 14:00: 197, from the past day the API publishes)."""
    import math

    from gridflex.model.shifting import LiveSignal, ShiftSettings
    from gridflex.signals.live import live_source

    now = at("2023-03-21T12:40:00+00:00")
    client = replay({"/intensity/2023-03-21T12:40Z/fw48h": "carbonintensity_fw48h.json",
                     "/intensity/2023-03-21T12:40Z/pt24h": "carbonintensity_pt24h_day.json"})
    spec = LiveSignal(kind="gb-carbon")
    settings = ShiftSettings(live=spec, corrected_tau_s=10800, persistence_weight=0.5)
    sig = live_source(spec, lambda: now, client, settings)
    corrected = 93 + (85 - 98) * math.exp(-2 / 3)
    assert sig.at(at("2023-03-21T14:10:00+00:00")) == pytest.approx(0.5 * corrected + 0.5 * 197)
    assert live_source(spec, lambda: now, client).at(at("2023-03-21T14:10:00+00:00")) == 93  # as published
    watttime = LiveSignal(kind="watttime", secrets_env={"username": "HOME", "password": "HOME"})
    with pytest.raises(GridflexError, match="shifting.corrected_tau_s/persistence_weight: the watttime source"):
        live_source(watttime, lambda: now, client, ShiftSettings(live=watttime, corrected_tau_s=3600))
