"""Economic curtailment and coincident-peak alerts, by hand and on real data."""

import csv
from pathlib import Path

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.model.economics import breakeven_usd_per_mwh
from gridflex.programs.economic import curtail_mask, gpu_tier_units, miner_unit, rule_table
from gridflex.programs.peaks import avoided_transmission_usd, peak_alerts, read_srp_day

ERCOT = Path("../shared/data/prices-ercot-hb-south-2024/ercot_hb_south_15min_2024-06-01_2025-03-27.csv")
SRP = Path("../shared/data/phoenix-2025-measured-srp/SRP_0503.csv")


def _units():
    # S19 Pro 29.5 J/TH at hashprice 0.10: 41,667 * 0.10 / 29.5 = 141.24 USD/MWh
    miner = miner_unit("s19pro", float(breakeven_usd_per_mwh(0.10, 29.5)))
    # 2 USD/GPU-h (Flex 3), 400 W × PUE 1.25 = 0.0005 MW: 2 / 0.0005 = 4000 USD/MWh
    return [miner, *gpu_tier_units({3: 2.0}, 400, 1.25)]


def test_values_by_hand():
    miner, flex0, flex3 = _units()
    assert miner.value_usd_per_mwh == pytest.approx(141.24, abs=0.01)
    assert flex0.value_usd_per_mwh == np.inf and flex3.value_usd_per_mwh == pytest.approx(4000)


def test_rule_by_hand_with_a_strike_price():
    price = np.array([50, 150, 5000, 250])
    units = _units()
    assert curtail_mask(price, units).tolist() == [[False] * 3, [True, False, False], [True, False, True],
                                                   [True, False, False]]
    covered = curtail_mask(price, units, 200, frozenset({"gpu flex 3"}))
    assert covered[:, 2].tolist() == [False, False, True, True]  # 250 > strike 200
    table = rule_table(price, units, 900, 200, frozenset({"gpu flex 3"}))
    assert [r["shed_hours"] for r in table] == [0.75, 0.0, 0.5]
    assert table[1]["rule"] == "never shed for price" and "strike 200" in table[2]["rule"]


def test_real_ercot_prices_shed_gpu_work_only_in_the_spike():
    with ERCOT.open() as f:
        rows = list(csv.DictReader(f))
    price = np.array([float(r["hb_south_rt_spp_usd_per_mwh"]) for r in rows])
    day = np.array([r["interval_start_local_CPT"][:10] for r in rows])
    shed = curtail_mask(price, _units())
    assert shed[:, 1].sum() == 0
    assert set(day[shed[:, 2]]) <= {"2024-08-20"} and shed[:, 2].any()  # above 4000 USD/MWh only that day
    assert 0.001 < shed[:, 0].mean() < 0.2  # miners shed in a small share of intervals


def test_bad_gpu_values():
    with pytest.raises(InputError, match="tier 4"):
        gpu_tier_units({4: 1.0}, 400)


def test_srp_peak_alerts():
    """SRP 2025-05-03, hourly actual load (GW; the file's forecast columns are empty, so this is the
    perfect-forecast case): max 4.965 at hour ending 18; within 3 %: >= 4.816 -> hours 16, 17, 18."""
    hour, load = read_srp_day(SRP)
    alert = peak_alerts(load, 0.03)
    assert hour[alert].tolist() == [16, 17, 18] and hour[np.argmax(load)] in hour[alert]
    assert not peak_alerts(load, 0.03, season_max=6.0).any()  # below the season's peak so far: no alert


def test_avoided_transmission():
    # 20 kW off at one of 4 peaks, 55 USD/kW-year: 20 * 55 / 4 = 275 USD; drawing 5 kW more at another: -68.75
    assert avoided_transmission_usd(np.array([20.0, -5.0]), 55.0, 4) == pytest.approx(275 - 68.75)
