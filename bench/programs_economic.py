"""The economic curtailment rule on real ERCOT HB_SOUTH real-time prices (June 2024 - March 2025):
hours each unit would be shed, with and without a price-curtailment strike covering Flex 3.

    .venv/bin/python bench/programs_economic.py
"""

import csv
from pathlib import Path

import numpy as np

from gridflex.model.economics import breakeven_usd_per_mwh
from gridflex.programs.economic import gpu_tier_units, miner_unit, rule_table

PRICES = Path("../shared/data/prices-ercot-hb-south-2024/ercot_hb_south_15min_2024-06-01_2025-03-27.csv")


def main() -> None:
    with PRICES.open() as f:
        price = np.array([float(r["hb_south_rt_spp_usd_per_mwh"]) for r in csv.DictReader(f)])
    units = [miner_unit("S19 Pro, 29.5 J/TH", float(breakeven_usd_per_mwh(0.10, 29.5))),
             miner_unit("S9, 98 J/TH", float(breakeven_usd_per_mwh(0.10, 98))),
             *gpu_tier_units({1: 8.0, 2: 4.0, 3: 2.0}, 400, 1.25)]
    plain = rule_table(price, units, 900)
    strike = rule_table(price, units, 900, 200.0, frozenset({"gpu flex 3"}))
    print(f"{len(price) / 4:,.0f} h of 15-min prices; hashprice 0.10 USD/TH/day; GPU 400 W, PUE 1.25; strike 200")
    print("| unit | value USD/MWh | basis | hours shed | hours shed, strike 200 on Flex 3 |")
    print("|---|---|---|---|---|")
    for a, b in zip(plain, strike):
        print(f"| {a['unit']} | {a['value_usd_per_mwh']:,.0f} | {a['basis']} | {a['shed_hours']:,.2f} | {b['shed_hours']:,.2f} |")


if __name__ == "__main__":
    main()
