"""Recorded carbon and price sources: bundled slices and the shared real-data folder."""

from datetime import UTC, datetime

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.signals import recorded

H = 3600.0


def test_gb_week_has_the_forecasts_actually_issued():
    gb = recorded.builtin("gb-carbon-week")
    f = gb.forecast
    assert len(f.issue_times_s) == 111  # hourly where the archive has a snapshot, see the data NOTICE
    gaps_h = np.diff(f.issue_times_s) / H
    assert gaps_h.max() == pytest.approx(34.5)  # the archive has nothing from 03-19 20:31 to 03-21 07:01 UTC
    assert np.sort(gaps_h)[-2] <= 2.5
    assert f.lead_times_s().min() >= -H and f.lead_times_s().max() <= 48 * H
    # every vintage is 48 h of half-hours; its errors against the actuals are real, not zero
    errs = []
    for issue in f.issue_times_s:
        s = f.forecast_at(issue)
        assert len(s.times_s) == 96
        errs.append(np.abs(s.values - gb.actual.at(s.times_s)).mean())
    assert 5 < np.mean(errs) < 80
    assert gb.kind == "carbon_average" and gb.unit == "gCO2/kWh"


def test_ercot_week_day_ahead_is_issued_the_afternoon_before():
    e = recorded.builtin("ercot-price-week")
    assert e.actual.values.max() > 4000  # the 2024-08-20 real-time spike
    for issue in e.forecast.issue_times_s:
        local = datetime.fromtimestamp(issue, recorded.ERCOT_TZ)
        assert (local.hour, local.minute) == (13, 30)
    spike_t = e.actual.times_s[np.argmax(e.actual.values)]
    known = e.forecast.forecast_at(spike_t - 6 * H)  # what a planner had six hours before the spike
    assert known.at(spike_t) < 0.5 * e.actual.values.max()  # day-ahead did not see it coming
    with pytest.raises(InputError, match="built-in sources"):
        recorded.builtin("nope")


def test_shared_sources_load_with_their_forecasts():
    wt = recorded.watttime_caiso_north()
    assert wt.kind == "carbon_marginal"
    lead = wt.forecast.lead_times_s()
    assert lead.min() > 0 and np.quantile(lead, 0.99) <= 65 * 60  # forecasts up to 65 min ahead
    em = recorded.electricity_maps_hourly("US-TEX-ERCO")
    issue = datetime(2023, 7, 1, 12, tzinfo=UTC).timestamp()
    s = em.forecast.forecast_at(issue)
    assert s.at(issue + 3 * H) == pytest.approx(em.actual.at(issue + 3 * H - 24 * H))
    with pytest.raises(InputError, match="allowed"):
        recorded.electricity_maps_hourly("DE")


def test_missing_shared_folder_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDFLEX_SHARED_DATA", str(tmp_path))
    with pytest.raises(InputError, match="GRIDFLEX_SHARED_DATA"):
        recorded.gb_carbon()


def test_full_year_and_season_files_give_forecasts_known_at_the_time():
    gb = recorded.gb_carbon()
    issue = datetime(2023, 7, 1, 12, tzinfo=UTC).timestamp()
    s = gb.forecast.forecast_at(issue)
    assert s.at(issue + 3 * H) == pytest.approx(gb.actual.at(issue + 3 * H - 24 * H))
    ercot = recorded.ercot_hb_south()
    before = datetime(2024, 8, 20, 13, 0, tzinfo=recorded.ERCOT_TZ).timestamp()
    after = datetime(2024, 8, 20, 14, 0, tzinfo=recorded.ERCOT_TZ).timestamp()
    tomorrow = datetime(2024, 8, 21, 0, 0, tzinfo=recorded.ERCOT_TZ).timestamp()
    assert ercot.forecast.forecast_at(before).times_s[-1] < tomorrow  # 08-21 not yet published
    assert ercot.forecast.forecast_at(after).times_s[-1] >= tomorrow + 23 * H
