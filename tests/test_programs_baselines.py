"""Customer baselines against worked examples computed by hand.

The meter series (hourly, UTC days, kW): every day is flat at its day level, except the event day.

    weekday   level  | notes
    Mon 06-22  130   | 11th eligible weekday: outside 10-of-10
    Tue 06-23..Fri 06-26: 130 (older still)
    Mon 06-29   99
    Tue 06-30   94
    Wed 07-01  106
    Thu 07-02   98
    Fri 07-03   40   | holiday (Independence Day observed): excluded
    Mon 07-06  102
    Tue 07-07   90
    Wed 07-08   50   | an event day: excluded
    Thu 07-09  110
    Fri 07-10   96
    Mon 07-13  104
    Tue 07-14  100
    weekends    60
    Wed 07-15: 120 kW 00-14 h, 70 kW during the event 14-16 h, 110 kW 16-24 h

The 10 eligible weekdays before 07-15 (newest first): 100, 104, 96, 110, 90, 102, 98, 106, 94, 99;
sum 999.
"""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.programs.baselines import adjust, eligible_days, meter_before_after, regression, x_of_y
from gridflex.programs.meter import day_matrix, interval_means

KW = 1e3
EVENT_DAY = date(2026, 7, 15)
HOLIDAYS = {date(2026, 7, 3)}
EVENT_DAYS = {date(2026, 7, 8)}
LEVELS_KW = {
    date(2026, 6, 29): 99, date(2026, 6, 30): 94, date(2026, 7, 1): 106, date(2026, 7, 2): 98,
    date(2026, 7, 3): 40, date(2026, 7, 6): 102, date(2026, 7, 7): 90, date(2026, 7, 8): 50,
    date(2026, 7, 9): 110, date(2026, 7, 10): 96, date(2026, 7, 13): 104, date(2026, 7, 14): 100,
}
EVENT_HOURS = np.arange(14, 16)


def _t(day: date, hour: float) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + hour * 3600


def _series(bump=None):
    """Hourly starts and power (W) from 2026-06-22 through the event day."""
    first = date(2026, 6, 22)
    t, p = [], []
    for i in range((EVENT_DAY - first).days + 1):
        day = first + timedelta(days=i)
        for h in range(24):
            if day == EVENT_DAY:
                kw = 120 if h < 14 else 70 if h < 16 else 110
            elif day.weekday() >= 5:
                kw = 60
            else:
                kw = LEVELS_KW.get(day, 130)
            if bump and (day, h) in bump:
                kw += bump[(day, h)]
            t.append(_t(day, h))
            p.append(kw * KW)
    t = np.array(t)
    return interval_means(t, np.array(p), 3600, t[0], t[-1] + 3600)


@pytest.fixture(scope="module")
def load():
    return _series()


@pytest.fixture(scope="module")
def matrix(load):
    return day_matrix(load, "UTC")


def _xy(matrix, x, y, select, lookback=45):
    return x_of_y(matrix, EVENT_DAY, EVENT_HOURS, x, y, select, lookback, EVENT_DAYS, HOLIDAYS)


def test_eligible_days_skip_holidays_and_event_days(matrix):
    used, skipped = eligible_days(matrix, EVENT_DAY, EVENT_HOURS, 10, 45, EVENT_DAYS, HOLIDAYS)
    assert used[0] == date(2026, 7, 14) and used[-1] == date(2026, 6, 29) and len(used) == 10
    assert (date(2026, 7, 8), "event day") in skipped and (date(2026, 7, 3), "holiday") in skipped
    assert all(d.weekday() < 5 for d in used)


def test_ten_of_ten(matrix):
    # 999 / 10 = 99.9 kW in every hour of the event day
    b = _xy(matrix, 10, 10, "all")
    assert b.power_w == pytest.approx(np.full(24, 99.9 * KW))
    assert len(b.days_used) == 10 and date(2026, 6, 26) not in b.days_used


def test_high_five_of_ten(matrix):
    # highest five event-window means: 110 + 106 + 104 + 102 + 100 = 522 -> 104.4 kW
    b = _xy(matrix, 5, 10, "high")
    assert b.power_w[14] == pytest.approx(104.4 * KW)
    assert set(b.days_used) == {date(2026, 7, d) for d in (9, 1, 13, 6, 14)}


def test_middle_eight_of_ten(matrix):
    # drop the highest (110) and the lowest (90): (999 - 200) / 8 = 99.875 kW
    b = _xy(matrix, 8, 10, "middle")
    assert b.power_w[15] == pytest.approx(99.875 * KW)
    assert date(2026, 7, 9) not in b.days_used and date(2026, 7, 7) not in b.days_used


def test_short_lookback_uses_the_days_it_finds(matrix):
    # 14 days back: 07-01..07-14 weekdays less 07-03 and 07-08 = 8 days, sum 806
    assert _xy(matrix, 5, 10, "high", lookback=14).power_w[14] == pytest.approx(104.4 * KW)
    assert _xy(matrix, 8, 10, "middle", lookback=14).power_w[14] == pytest.approx(100.75 * KW)  # none to drop
    with pytest.raises(InputError, match="only 8 eligible day"):
        _xy(matrix, 10, 10, "all", lookback=14)


def test_weekend_event_uses_weekend_days_and_skips_the_holiday(matrix):
    b = x_of_y(matrix, date(2026, 7, 12), EVENT_HOURS, 4, 4, "all", 45, EVENT_DAYS, HOLIDAYS)
    assert b.days_used == (date(2026, 7, 11), date(2026, 7, 5), date(2026, 7, 4), date(2026, 6, 28))
    assert (date(2026, 7, 3), "holiday") in b.days_skipped
    assert b.power_w[0] == pytest.approx(60 * KW)


# Adjustment window: 10:00-13:00 (3 h, ending 1 h before the 14:00 start); actual load there 120 kW.
W0, W1 = _t(EVENT_DAY, 10), _t(EVENT_DAY, 13)


def test_multiplicative_adjustment_capped(matrix, load):
    # 120 / 99.9 = 1.2012 > 1.2: capped at 1.2 -> 99.9 * 1.2 = 119.88 kW
    b = adjust(_xy(matrix, 10, 10, "all"), load, W0, W1, "multiplicative", 0.2)
    assert b.adjustment["raw"] == pytest.approx(120 / 99.9)
    assert b.adjustment["applied"] == pytest.approx(1.2) and b.adjustment["capped"]
    assert b.power_w[14] == pytest.approx(119.88 * KW)


def test_multiplicative_adjustment_within_cap(matrix, load):
    # high 5-of-10: 120 / 104.4 = 1.1494 < 1.2: not capped -> 120.0 kW
    b = adjust(_xy(matrix, 5, 10, "high"), load, W0, W1, "multiplicative", 0.2)
    assert not b.adjustment["capped"]
    assert b.power_w[14] == pytest.approx(120 * KW)


def test_additive_adjustment_capped_and_uncapped(matrix, load):
    # 120 - 99.9 = +20.1 kW; cap 10 % of 99.9 = 9.99 kW -> 109.89 kW; uncapped -> 120.0 kW
    base = _xy(matrix, 10, 10, "all")
    capped = adjust(base, load, W0, W1, "additive", 0.1)
    assert capped.adjustment["applied"] == pytest.approx(9.99 * KW)
    assert capped.power_w[15] == pytest.approx(109.89 * KW)
    assert adjust(base, load, W0, W1, "additive", None).power_w[15] == pytest.approx(120 * KW)


def test_adjustment_down_is_capped_too(matrix, load):
    # window 14:00-16:00 of the event itself (70 kW): 70 / 99.9 = 0.7007 -> floored at 0.8 -> 79.92 kW
    b = adjust(_xy(matrix, 10, 10, "all"), load, _t(EVENT_DAY, 14), _t(EVENT_DAY, 16), "multiplicative", 0.2)
    assert b.power_w[0] == pytest.approx(79.92 * KW)


def test_meter_before_and_after(load):
    start, end = _t(EVENT_DAY, 14), _t(EVENT_DAY, 16)
    before = meter_before_after(load, start, end, before_s=3600)
    assert before.power_w == pytest.approx([120 * KW, 120 * KW])  # the hour 13-14: 120 kW
    both = meter_before_after(load, start, end, before_s=3600, after_s=3600)
    assert both.power_w == pytest.approx([115 * KW, 115 * KW])  # (120 + 110) / 2


def test_regression_is_the_two_way_least_squares_fit():
    """Lookback 14 days: 07-01..07-14 less 07-03 (holiday) and 07-08 (event): 12 days, complete hours,
    so the OLS fit is additive: prediction = mean of the weekday + mean of the hour - grand mean.
    Day levels sum to 106+98+60+60+102+90+110+96+60+60+104+100 = 1046. Add a 24 kW bump to Wed 07-01 at 14 h:
      mean(Wednesday) = 106 + 24/24 = 107;  mean(hour 14) = (1046 + 24)/12 = 89.1667;
      mean(other hours) = 1046/12 = 87.1667;  grand mean = 1046/12 + 24/288 = 87.25.
    Event day (Wednesday): hour 14 -> 107 + 89.1667 - 87.25 = 108.9167 kW; other hours 106.9167 kW."""
    load = _series(bump={(date(2026, 7, 1), 14): 24})
    b = regression(day_matrix(load, "UTC"), EVENT_DAY, 14, EVENT_DAYS, HOLIDAYS)
    assert len(b.days_used) == 12
    assert b.power_w[14] == pytest.approx(108.9167 * KW, abs=1)
    assert b.power_w[3] == pytest.approx(106.9167 * KW, abs=1)
    assert {d for d, _ in b.days_skipped} == {date(2026, 7, 3), date(2026, 7, 8)}


def test_regression_needs_the_event_weekday(matrix):
    with pytest.raises(InputError, match="no Wednesday"):
        regression(matrix, EVENT_DAY, 6, EVENT_DAYS, HOLIDAYS)


def test_local_days_and_missing_data():
    """Days are local: 15-min readings at 1 kW, with 2 kW from 05:00 UTC (midnight in Chicago, CDT)."""
    t = _t(date(2026, 7, 1), 0) + 900 * np.arange(4 * 48)
    p = np.where(t >= _t(date(2026, 7, 1), 5), 2e3, 1e3)
    p[100:104] = np.nan  # one hour without readings
    m = day_matrix(interval_means(t, p, 900, t[0], t[-1] + 900), "America/Chicago")
    assert [date.fromordinal(int(d)) for d in m.days] == [date(2026, 6, 30), date(2026, 7, 1), date(2026, 7, 2)]
    assert np.nanmax(m.power_w[0]) == 1e3 and np.nanmin(m.power_w[1]) == 2e3
    # 06-30 has 19:00-24:00 (20 of 96 slots), 07-02 00:00-19:00 (76), 07-01 lacks the missing hour (4)
    assert np.isnan(m.power_w).sum() == 76 + 4 + 20


def test_interval_needs_half_its_length_of_samples():
    """2-s samples: 0-3 min of the first 15-min interval (3 min of 15: missing), 0-10 min of the second
    (10 of 15: its mean), the third complete."""
    t = np.concatenate([np.arange(0, 180, 2.0), 900 + np.arange(0, 600, 2.0), 1800 + np.arange(0, 900, 2.0)])
    p = np.where(t < 1800, 5e3, 7e3)
    load = interval_means(t, p, 900, 0, 2700)
    assert np.isnan(load.power_w[0]) and load.power_w[1:].tolist() == [5e3, 7e3]
