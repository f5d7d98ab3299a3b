"""Price signals: recorded series, constants, the bundled ERCOT day."""

from datetime import datetime

import numpy as np
import pytest

from gridflex.errors import GridflexError, InputError
from gridflex.signals.prices import ConstantSignal, PolledSignal, load_prices, read_series_csv


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def test_bundled_ercot_day_has_the_scarcity_spike():
    prices = load_prices("ercot-hb-south-2024-08-20")
    # 2024-08-20 19:30 CDT = 00:30 UTC on the 21st: 4,857.82 USD/MWh, held for 15 minutes.
    assert float(prices.at(ts("2024-08-21T00:30:00+00:00"))) == pytest.approx(4857.82)
    assert float(prices.at(ts("2024-08-21T00:44:59+00:00"))) == pytest.approx(4857.82)
    assert float(prices.at(ts("2024-08-20T09:00:00+00:00"))) < 30
    assert load_prices("ercot-hb-south-2024-08-20", "da_usd_per_mwh").at(ts("2024-08-21T00:30:00+00:00")) == 606.10


def test_step_signal_holds_and_clamps():
    s = read_series_csv("t,v\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00Z,2\n", "x", "t", "v")
    t0 = ts("2024-01-01T00:00:00+00:00")
    np.testing.assert_array_equal(s.at(np.array([t0 - 10, t0, t0 + 3599, t0 + 3600, t0 + 1e6])), [1, 1, 1, 2, 2])
    assert ConstantSignal(3.5).at(np.zeros(2)).tolist() == [3.5, 3.5]


def test_bad_series_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="no column 'price'"):
        read_series_csv("t,v\n2024-01-01T00:00:00Z,1\n", "x", "t", "price")
    with pytest.raises(InputError, match="timezone"):
        read_series_csv("t,v\n2024-01-01T00:00:00,1\n", "x", "t", "v")
    with pytest.raises(InputError, match="ascending"):
        read_series_csv("t,v\n2024-01-02,1\n2024-01-01,2\n", "x", "t", "v")
    with pytest.raises(InputError, match="built-in series"):
        load_prices(str(tmp_path / "missing.csv"))


def test_polled_signal_refreshes_and_refuses_stale_data():
    now = [0.0]
    calls = []

    def fetch():
        calls.append(now[0])
        if now[0] >= 100:
            raise ConnectionError("source down")
        return np.array([0.0, 50.0]), np.array([10.0, 20.0 + now[0]])

    live = PolledSignal(fetch, refresh_s=30, max_age_s=120, clock=lambda: now[0])
    assert float(live.at(60)) == 20.0
    now[0] = 40.0
    assert float(live.at(60)) == 60.0 and calls == [0.0, 40.0]
    now[0] = 150.0  # the source fails: the last series holds for max_age_s ...
    assert float(live.at(60)) == 60.0
    now[0] = 161.0  # ... and then the signal refuses to answer
    with pytest.raises(GridflexError, match="no usable data.*source down"):
        live.at(60)
