"""Forecast vintages: a planner asking at time t reads only what was issued by t."""

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.signals.forecast import BlendedForecast, CorrectedForecast, Forecast, persistence_forecast
from gridflex.signals.prices import StepSignal

H = 3600.0


def vintages(issues, horizon=6, fill=None):
    """One vintage per issue time, hourly targets from the issue on; value = issue hour * 10 + lead."""
    rows = [(i, i + k * H, (fill if fill is not None else i / H * 10 + k)) for i in issues for k in range(horizon)]
    a = np.array(rows)
    return Forecast(a[:, 0], a[:, 1], a[:, 2], "test")


def test_forecast_at_reads_the_latest_vintage_issued_by_then():
    f = vintages([0.0, 2 * H, 4 * H])
    s = f.forecast_at(3 * H)  # between the second and third issue
    assert list(s.times_s) == [2 * H + k * H for k in range(6)]
    assert s.at(5 * H) == pytest.approx(20 + 3)
    assert f.latest_issue_s(3 * H) == 2 * H
    assert f.forecast_at(4 * H).at(4 * H) == pytest.approx(40)  # issued exactly now: known


def test_values_issued_later_can_never_be_read():
    early = vintages([0.0, 2 * H])
    later = vintages([3 * H, 5 * H], fill=1e6)  # absurd values, issued after t
    both = Forecast(np.concatenate([early.issued_s, later.issued_s]),
                    np.concatenate([early.target_s, later.target_s]),
                    np.concatenate([early.values, later.values]))
    for t in np.linspace(0, 3 * H - 1, 17):
        probe = np.linspace(0, 10 * H, 41)
        assert np.array_equal(both.forecast_at(t).at(probe), early.forecast_at(t).at(probe))
    assert both.forecast_at(3 * H).at(3 * H) == 1e6  # and it is there once issued


def test_nothing_issued_yet_and_bad_rows_are_refused():
    f = vintages([H])
    with pytest.raises(InputError, match="nothing issued"):
        f.forecast_at(0.0)
    with pytest.raises(InputError, match="two values"):
        Forecast(np.array([0.0, 0.0]), np.array([H, H]), np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="finite"):
        Forecast(np.array([0.0]), np.array([H]), np.array([np.nan]))


def test_persistence_yesterday_uses_only_observed_values():
    t = np.arange(0, 72 * H, H)
    actual = StepSignal(t, np.sin(t / H) * 100 + 200, "a")
    issue = 50 * H
    f = persistence_forecast(actual, np.array([issue]), 24 * H, H, "yesterday", report_delay_s=H)
    s = f.forecast_at(issue)
    # latest observed sample is 49 h; target 50 h + k -> same time 24 h earlier (or 48 h if not yet observed)
    for k in range(1, 25):
        target = issue + k * H
        src = target - 24 * H if target - 24 * H <= 49 * H else target - 48 * H
        assert s.at(target) == pytest.approx(actual.at(src))
    # changing the actuals after the issue time changes nothing
    later = actual.values.copy()
    later[t > 49 * H] = -1
    g = persistence_forecast(StepSignal(t, later), np.array([issue]), 24 * H, H, "yesterday", report_delay_s=H)
    assert np.array_equal(g.values, f.values)


def test_persistence_last_and_errors():
    t = np.arange(0, 10 * H, H)
    actual = StepSignal(t, t / H)
    f = persistence_forecast(actual, np.array([5 * H]), 3 * H, H, "last")
    assert np.all(f.values == 5.0)
    with pytest.raises(InputError, match="allowed"):
        persistence_forecast(actual, np.array([5 * H]), 3 * H, H, "tomorrow")
    with pytest.raises(InputError, match="before any observed"):
        persistence_forecast(actual, np.array([-2 * H]), 3 * H, H, "last")


def test_corrected_forecast_uses_only_observed_errors():
    f = vintages([0.0], horizon=12)  # values 0, 1, 2, ... at hours 0..11
    actual = StepSignal(np.arange(0, 12 * H, H), np.arange(12.0) + 10.0)  # 10 above the forecast
    c = CorrectedForecast(f, actual, tau_s=2 * H, report_delay_s=H)
    s = c.forecast_at(3 * H)  # the newest actual observed by then is hour 2's
    assert s.at(2 * H) == pytest.approx(2 + 10)
    assert s.at(4 * H) == pytest.approx(4 + 10 * np.exp(-1))
    later = StepSignal(actual.times_s, np.where(actual.times_s > 2 * H, -1e6, actual.values))
    assert np.array_equal(CorrectedForecast(f, later, 2 * H, H).forecast_at(3 * H).values, s.values)


def test_blended_forecast_mixes_two_vintages_known_then_and_nothing_later():
    a = vintages([0.0, 2 * H])
    later = vintages([3 * H], fill=1e6)
    with_later = Forecast(np.concatenate([a.issued_s, later.issued_s]), np.concatenate([a.target_s, later.target_s]),
                          np.concatenate([a.values, later.values]))
    flat = vintages([0.0, 2 * H], fill=100.0)
    blend = BlendedForecast(with_later, flat, 0.25)
    s = blend.forecast_at(2.5 * H)
    assert s.at(3 * H) == pytest.approx(0.25 * (20 + 1) + 0.75 * 100)
    assert np.all(s.values < 1e5)  # the vintage issued at 3 h is not read at 2.5 h
