"""Mining economics against hand calculations."""

from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from gridflex.model.economics import breakeven_usd_per_mwh, energy_cost_usd, revenue_usd, value_usd_per_mwh
from gridflex.model.miners import builtin_asic_models
from gridflex.signals.prices import load_hashprice

BTC_DAILY = Path("../shared/data/btc-network-daily/btc_daily_merged.csv")


def test_s19_pro_breakeven_by_hand():
    # 0.10 USD per TH/s per day at 29.5 J/TH: one TH/s-day takes 29.5 J/s * 86,400 s = 2.5488 MJ
    # = 0.000708 MWh, so a MWh is worth 0.10 / 0.000708 = 141.24 USD.
    assert breakeven_usd_per_mwh(0.10, 29.5) == pytest.approx(141.24, abs=0.01)


def test_value_scales_with_hashprice_and_inverse_efficiency():
    assert value_usd_per_mwh(0.05, 21.5) == pytest.approx(0.05 * 3.6e9 / (86400 * 21.5))
    assert value_usd_per_mwh(0.10, 29.5, pool_fee=0.02) == pytest.approx(141.24 * 0.98, abs=0.01)
    np.testing.assert_allclose(value_usd_per_mwh(0.1, np.array([29.5, 59.0])), [141.24, 70.62], atol=0.01)


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="pool_fee"):
        value_usd_per_mwh(0.1, 29.5, pool_fee=1.0)
    with pytest.raises(ValueError, match="efficiency"):
        value_usd_per_mwh(0.1, 0.0)


def test_revenue_and_cost_by_hand():
    # One S19 Pro (110 TH/s, 3250 W) for a day at 0.10 USD/TH/day: 11 USD; its 78 kWh at 50 USD/MWh: 3.90 USD.
    assert revenue_usd(110, 86400, 0.10) == pytest.approx(11.0)
    assert energy_cost_usd(3250, 86400, 50.0) == pytest.approx(3.9)


def test_builtin_table_matches_the_source_list():
    s19pro = builtin_asic_models()["bitmain antminer s19 pro"]
    assert (s19pro.hashrate_th_s, s19pro.power_w) == (110.0, 3250.0)
    assert s19pro.efficiency_j_per_th == pytest.approx(29.55, abs=0.01)
    assert len(builtin_asic_models()) == 25


@pytest.mark.skipif(not BTC_DAILY.exists(), reason="shared data not present")
def test_real_hashprice_series_gives_breakeven():
    hashprice = load_hashprice(BTC_DAILY)
    from datetime import datetime

    t = datetime(2021, 12, 13, 12, tzinfo=UTC).timestamp()
    assert float(hashprice.at(t)) == pytest.approx(0.25)
    # An S19 Pro (29.55 J/TH) on that day broke even at 0.25 * 41,667 / 29.55 = 352.5 USD/MWh.
    assert breakeven_usd_per_mwh(hashprice.at(t), 3250 / 110) == pytest.approx(352.5, abs=0.1)
