"""How much carbon could moving work between the geo-fleet's sites save at most?

    python bench/geo_fleet_carbon_bound.py [--fleet geo-fleet] [--json out/bound.json]

An upper bound from the scenario alone (no simulation): every request of a class that may move
(its budget covers the round trip to another site) and every queued batch job served, every
minute, at the cleanest site it could reach, with no limit on capacity, headroom, events or
data, against everything served where it entered. Inference energy is the sites' marginal
energy per request; a batch job's is its power above idle at full speed, times the site's PUE,
over its work (cut at the scenario's end) from its submission. The carbon is the real hourly
intensity of each site's grid. Compare with the carbon of the fleet's extra work in
`gridflex simulate geo-fleet` (docs/fleet.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gridflex.fleet.latency import RttTable
from gridflex.fleet.scenario import load_fleet
from gridflex.sim.fleet_run import FleetTraffic

STEP_S = 60.0


def bound(name: str) -> dict:
    fleet = load_fleet(name)
    spec = fleet.spec
    t = np.arange(spec.start.timestamp(), spec.end.timestamp(), STEP_S)
    carbon = np.column_stack([fleet.carbon[s.name].at(t) for s in spec.sites])  # [t, sites] g/kWh
    j_kwh = np.array([fleet.energy_per_request_j(s) for s in spec.sites]) / 3.6e6
    rtt = RttTable.from_csv(fleet.fleet_config().rtt_file).between(
        [c.origin for c in spec.classes], [s.region for s in spec.sites])
    home = FleetTraffic(fleet).home.argmax(axis=1)
    rates = FleetTraffic(fleet).rates_rps(t)  # [t, classes]
    inference_kg, movable_kwh = 0.0, 0.0
    for c, cls in enumerate(spec.classes):
        may = rtt[c] <= cls.latency_budget_ms  # sites within the class's budget (its home included)
        g_home = carbon[:, home[c]] * j_kwh[home[c]]
        g_best = (carbon * j_kwh)[:, may].min(axis=1)
        if may.sum() > 1:
            inference_kg += float((rates[:, c] * STEP_S * (g_home - g_best)).sum() / 1e3)
            movable_kwh += float((rates[:, c] * STEP_S).sum() * j_kwh[home[c]])
    batch_kg, batch_kwh = 0.0, 0.0
    names = [s.name for s in spec.sites]
    pue = np.array([fleet.sites[n].scenario.site.pue for n in names])
    for job in {j.id: j for ls in fleet.sites.values() for j in ls.scenario.jobs if j.queued}.values():
        o = names.index(fleet.batch_home[job.id])
        curve = fleet.sites[names[o]].curves[job.workload]
        run = (t >= job.submit.timestamp()) & (t < job.submit.timestamp() + job.duration_s)
        kwh_per_step = job.gpus * (curve.full_power_w - curve.idle_w) * pue * STEP_S / 3.6e6  # [sites]
        batch_kwh += float(run.sum() * kwh_per_step[o])
        batch_kg += float(((carbon[run, o] * kwh_per_step[o]) - (carbon[run] * kwh_per_step).min(axis=1)).sum() / 1e3)
    return {"fleet": fleet.name, "movable_inference_kwh": round(movable_kwh, 1),
            "inference_saving_kg_at_most": round(inference_kg, 2), "batch_kwh": round(batch_kwh, 1),
            "batch_saving_kg_at_most": round(batch_kg, 2),
            "saving_kg_at_most": round(inference_kg + batch_kg, 2),
            "carbon_g_per_kwh_mean": {n: round(float(carbon[:, i].mean()), 1) for i, n in enumerate(names)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", default="geo-fleet")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = bound(args.fleet)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
