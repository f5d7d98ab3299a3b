"""The twin of a fleet: several simulated sites, one coordinator, one router, in simulated time.

Each site is assembled by `assembly.simulated` like any scenario (its own twin, controller,
planner and events); the only addition is where its serving job's load comes from: the requests
the router sends it (`FleetTraffic`), so its inference power follows the traffic it serves.
The coordinator is the one of `gridflex fleet` (`FleetCoordinator.tick_with`: the same
decision and the same bounded steps through a router driver); it reads the sites as it would
read their API (`/api/v1/status`: measured power, target, active events) plus their carbon and
price now, and steps a `TwinRouter` instead of HAProxy; the load floor it gives each site's
serving job (`PATCH /api/v1/jobs/{id}` live) goes straight to that site's controller.

Requests: each class's rate is its peak times the real trace's load (`sim/load_trace.py`);
requests a site cannot serve, because its serving job is slowed below the load it gets, count as
failed. A request served outside its origin region gains the measured RTT between the regions.

Modes: `fleet` (the coordinator shifts traffic), `alone` (no coordinator: every class stays in
its origin region and each site meets its events by itself). `coordinator_stops_s` stops the
coordinator that many seconds into a fleet run (it is gone: the router keeps its last split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gridflex.assembly import Site
from gridflex.drivers.router_twin import TwinRouter
from gridflex.fleet.latency import RttTable
from gridflex.fleet.loop import FleetCoordinator, SiteReport, placement_sites, serving_share
from gridflex.fleet.placement import BatchJobs, PlacementCosts, PlacementSites, place
from gridflex.fleet.scenario import LoadedFleet
from gridflex.report.metrics import weighted_performance
from gridflex.report.summary import job_performance, summarize
from gridflex.sim.journal import TraceJournal
from gridflex.sim.load_trace import load_at, utilization_fn
from gridflex.sim.run import RunResult, finish_site, start_site

MODES = ("fleet", "alone")
MET_COMPLIANCE = 0.99  # an event is met when at least 99 % of its 1-minute means are in band


class FleetTraffic:
    """Every class's request rate over time, and the router's split now (classes × sites)."""

    def __init__(self, fleet: LoadedFleet):
        spec = fleet.spec
        self.names = tuple(c.name for c in spec.classes)
        self.sites = tuple(s.name for s in spec.sites)
        home = np.array([[s.region == c.origin for s in spec.sites] for c in spec.classes], float)
        self.home = home / home.sum(axis=1, keepdims=True)
        self.share = self.home.copy()
        self._classes = spec.classes
        tz = {s.region: fleet.sites[s.name].scenario.start.tzinfo for s in spec.sites}  # diurnal in local time
        self._tz = [tz[c.origin] for c in spec.classes]

    def rates_rps(self, t_s: np.ndarray) -> np.ndarray:
        """Requests/s of every class at each of `t_s` [n, classes]."""
        t = np.atleast_1d(np.asarray(t_s, float))
        return np.column_stack([c.peak_rps * load_at(c.trace, t, tz) for c, tz in zip(self._classes, self._tz)])

    def utilization(self, fleet: LoadedFleet, site: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The site's twin load: its serving job at the traffic routed to it over its capacity
        (at most 1), other jobs as the site's own scenario drives them."""
        spec = fleet.spec.sites[site]
        sc = fleet.sites[spec.name].scenario
        ids = tuple(j.id for j in sc.jobs)
        row = ids.index(spec.serves)
        others = utilization_fn({k: v for k, v in sc.load_traces.items() if k != spec.serves}, ids, sc.start.tzinfo)

        def utilization(times_s: np.ndarray, rows: np.ndarray) -> np.ndarray:
            out = others(times_s, rows) if others else np.ones((len(times_s), len(rows)))
            serving = rows == row
            if serving.any():
                served = self.rates_rps(times_s) @ self.share[:, site]
                out[:, serving] = np.clip(served / spec.capacity_rps, 0.0, 1.0)[:, None]
            return out

        return utilization


class _ServingJournal(TraceJournal):
    """The site's journal, also keeping its serving job's last throughput (its capacity now) and
    the share of its capacity the site vouches for: what its own controller may slow the job to
    before the coordinator's next tick, its tier's floor (lower while it runs slower now)."""

    def __init__(self, serves: str, loaded):
        super().__init__(loaded.scenario.jobs, loaded.curves)
        self.serves, self.serving_throughput = serves, 1.0
        self.tier = next(j.flex_tier for j in loaded.scenario.jobs if j.id == serves)

    @property
    def shares(self) -> dict[str, float]:
        """As a site's status reports it (`fleet.loop.site_report`)."""
        return {self.serves: serving_share(self.serving_throughput, self.tier)}

    def telemetry(self, tel) -> None:
        if self.serves in tel.job_ids:
            thr = float(tel.throughput[tel.job_ids.index(self.serves)])
            if np.isfinite(thr):
                self.serving_throughput = thr
        super().telemetry(tel)


class BatchPlacer:
    """The coordinator's placement of queued batch jobs in the twin of a fleet: each job, as it
    is submitted at its site, goes to the site `fleet.placement.place` chooses (before it can
    start there: the twin starts a job one scheduling pass after it is listed). A job moved is
    withdrawn from its site's queue and submitted to the chosen site's plant, where it is a new
    job like any other. The sites report as their API would: free GPUs less their queue's, power
    headroom under their target, events known now, and carbon and price now (persistence: the
    forecast of the job's whole run is the value now)."""

    def __init__(self, fleet: LoadedFleet, sites: dict[str, tuple[Site, _ServingJournal]], costs: PlacementCosts,
                 data_gb: float):
        self.fleet, self.sites, self.costs = fleet, sites, costs
        self.names = list(sites)
        self.jobs = jobs = sorted({j.id: j for ls in fleet.sites.values() for j in ls.scenario.jobs
                                   if j.queued}.values(), key=lambda j: j.submit)
        self.origin = np.array([self.names.index(fleet.batch_home[j.id]) for j in jobs], dtype=np.int64)
        self.submit_s = np.array([j.submit.timestamp() for j in jobs])
        curves = [fleet.sites[fleet.batch_home[j.id]].curves[j.workload] for j in jobs]
        self.power_w = np.array([j.gpus * (c.full_power_w - c.idle_w) for j, c in zip(jobs, curves)])
        self.data_gb = np.full(len(jobs), data_gb)
        self.pue = np.array([fleet.sites[n].scenario.site.pue for n in self.names])
        self.site_configs = fleet.fleet_config().sites
        self.moves: list[dict] = []

    def place(self, t0_s: float, t_s: float, decisions: dict) -> None:
        """Place the jobs submitted in (t0_s, t_s]."""
        due = np.flatnonzero((self.submit_s > t0_s) & (self.submit_s <= t_s))
        if not len(due):
            return
        jobs = BatchJobs(ids=tuple(self.jobs[i].id for i in due), origin=self.origin[due],
                         gpus=np.array([self.jobs[i].gpus for i in due]), power_w=self.power_w[due],
                         run_s=np.array([self.jobs[i].duration_s for i in due]), data_gb=self.data_gb[due])
        placement = place(jobs, self._report(t_s, decisions), t_s, self.costs)
        for k in np.flatnonzero(placement.moved):
            i, to = due[k], self.names[placement.site[k]]
            frm = self.names[self.origin[i]]
            self.sites[frm][0].driver.withdraw(jobs.ids[k])
            self.sites[to][0].driver.submit(jobs.ids[k], float(self.submit_s[i]))
            self.moves.append({"t_s": t_s, "job": jobs.ids[k], "from": frm, "to": to, "gpus": int(jobs.gpus[k]),
                               "work_gpu_h": float(jobs.gpus[k] * jobs.run_s[k] / 3600),
                               "data_gb": float(jobs.data_gb[k]), "why": placement.why[k]})

    def _report(self, t_s: float, decisions: dict) -> PlacementSites:
        """The sites as their API would report them now (`fleet.loop.placement_sites`)."""
        reports = [_report(self.sites[s.name][0], decisions.get(s.name), self.fleet, s.name, t_s)
                   for s in self.fleet.spec.sites]
        return placement_sites(self.site_configs, reports, self.pue)


@dataclass
class FleetRun:
    fleet: LoadedFleet
    mode: str
    sites: dict[str, RunResult]
    rtt_ms: np.ndarray  # classes × sites: round trip added to a request served there
    requests: np.ndarray  # classes × sites: requests routed there over the run
    failed: np.ndarray  # classes × sites: of which not served (the site's serving job too slow)
    t_s: np.ndarray  # coordinator ticks
    share: np.ndarray  # [ticks, sites]: each site's share of all requests
    rates_rps: np.ndarray  # [ticks, classes]
    work_gpu_h: dict[str, float]  # per site: work done by its other jobs, GPU-hours at full speed
    placement_carbon_kg: float  # carbon of serving requests where they were served, less at their origin
    coordinator_lines: list[dict] = field(default_factory=list)
    batch_moves: list[dict] = field(default_factory=list)  # queued jobs placed at another site than their own


def run_fleet(fleet: LoadedFleet, planner: str = "optimal", seed: int = 0, mode: str = "fleet",
              coordinator_stops_s: float | None = None, progress: Callable[[float], None] | None = None) -> FleetRun:
    """Simulate every site of the fleet in step, with (mode `fleet`) or without (`alone`) the coordinator."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; allowed: {MODES}")
    spec = fleet.spec
    cfg = fleet.fleet_config()
    traffic = FleetTraffic(fleet)
    rtt = RttTable.from_csv(cfg.rtt_file)
    rtt_ms = rtt.between([c.origin for c in spec.classes], [s.region for s in spec.sites])
    router = TwinRouter({c.name: {s: int(h > 0) for s, h in zip(traffic.sites, traffic.home[i])}
                         for i, c in enumerate(spec.classes)})
    # the coordinator routes; batch jobs are placed as they are submitted (`BatchPlacer`), not advised
    coordinator = FleetCoordinator(cfg.model_copy(update={"placement": None}), router, rtt) if mode == "fleet" else None
    sites: dict[str, tuple[Site, _ServingJournal]] = {}
    for i, s in enumerate(spec.sites):
        journal = _ServingJournal(s.serves, fleet.sites[s.name])
        sites[s.name] = start_site(fleet.sites[s.name], planner, seed + i, journal, traffic.utilization(fleet, i))
        for job_id, home in fleet.batch_home.items():  # each site's queue is its own jobs until one is placed there
            if home != s.name:
                sites[s.name][0].driver.withdraw(job_id)
    placer = (BatchPlacer(fleet, sites, PlacementCosts(cfg.costs.carbon_usd_per_t, cfg.placement.data_usd_per_gb),
                          cfg.placement.data_gb) if mode == "fleet" and cfg.placement is not None else None)
    interval_s = next(iter(fleet.sites.values())).scenario.control.interval_s
    start_s, end_s = spec.start.timestamp(), spec.end.timestamp()
    ticks = np.arange(start_s, end_s, interval_s)
    every = round(spec.interval_s / interval_s)
    capacity = np.array([s.capacity_rps for s in spec.sites])
    requests, failed = np.zeros_like(rtt_ms), np.zeros_like(rtt_ms)
    j_kwh = np.array([fleet.energy_per_request_j(s) for s in spec.sites]) / 3.6e6
    placement_g = 0.0
    series_t, series_share, series_rates, lines = [], [], [], []
    decisions = {}
    for k, t in enumerate(ticks):
        t = float(t)
        if placer is not None and (coordinator_stops_s is None or t - start_s < coordinator_stops_s):
            placer.place(float(ticks[k - 1]) if k else -np.inf, t, decisions)
        for name, (site, _) in sites.items():
            decisions[name] = site.tick(t)
        rates = traffic.rates_rps(t)[0]
        routed = rates[:, None] * traffic.share * interval_s
        serving = np.array([journal.serving_throughput for _, journal in sites.values()])
        demand = routed.sum(axis=0)
        short = np.maximum(demand - capacity * serving * interval_s, 0.0)
        lost = routed * np.divide(short, demand, out=np.zeros_like(demand), where=demand > 0)
        failed += lost
        requests += routed
        g_per_request = j_kwh * np.array([fleet.carbon[name].at(t) for name in traffic.sites])
        placement_g += float((routed - traffic.home * routed.sum(axis=1, keepdims=True)).sum(axis=0) @ g_per_request)
        for c, name in enumerate(traffic.names):
            router.count(name, routed[c] - lost[c], lost[c])
        if k % every == 0:
            if coordinator is not None and (coordinator_stops_s is None or t - start_s < coordinator_stops_s):
                router.t_s = t
                reports = {name: _report(site, decisions[name], fleet, name, t, journal.shares)
                           for name, (site, journal) in sites.items()}
                line = coordinator.tick_with(reports, dict(zip(traffic.names, rates.tolist())))
                for (name, job), floor in coordinator.load_floors(line, reports).items():  # as PATCH /jobs/{id}
                    sites[name][0].controller.set_load_floor(job, floor)
                lines.append({"t_s": t, **line})
                traffic.share = np.array([router.read(c).shares for c in traffic.names])
            series_t.append(t)
            series_share.append(rates @ traffic.share / max(rates.sum(), 1e-12))
            series_rates.append(rates)
        if progress and k % max(1, len(ticks) // 200) == 0:
            progress(k / len(ticks))
    results = {name: finish_site(fleet.sites[name], f"{planner} · {mode}", seed, site, journal)
               for name, (site, journal) in sites.items()}
    work_gpu_h = {}
    for s in spec.sites:
        twin = sites[s.name][0].driver
        others = np.array([j.id != s.serves for j in twin.jobs])
        work_gpu_h[s.name] = float((twin.throughput_s * twin.fleet.gpus)[others].sum() / 3600)
    if progress:
        progress(1.0)
    return FleetRun(fleet, mode, results, rtt_ms, requests, failed, np.array(series_t), np.array(series_share),
                    np.array(series_rates), work_gpu_h, placement_g / 1e3, lines, placer.moves if placer else [])


def _report(site: Site, decision, fleet: LoadedFleet, name: str, t_s: float,
            shares: dict[str, float] | None = None) -> SiteReport:
    """What the site's API would say now (`/api/v1/status`; None: no decision yet): its power,
    target and events (with their times), its free GPUs and queue, its carbon and price now, and
    the share of its inference capacity it vouches for (`_ServingJournal.shares`)."""
    prices, twin = fleet.prices[name], site.driver
    return SiteReport(
        reachable=True, site_power_w=decision.site_power_w if decision is not None else float("nan"),
        target_w=decision.target_w if decision is not None and np.isfinite(decision.target_w) else None,
        active_events=decision.active_events if decision is not None else (),
        carbon_g_per_kwh=float(fleet.carbon[name].at(t_s)),
        price_usd_per_mwh=float(prices.at(t_s)) if prices is not None else None,
        free_gpus=int(twin.pool_gpus.sum() - twin.pool_used.sum()), queue=tuple({"gpus": j.gpus} for j in twin.queue()),
        serving_share=shares or {}, event_windows=tuple(site.controller.event_windows(t_s)))


def fleet_summary(run: FleetRun) -> dict:
    """Per site and in total: events, weighted performance, energy, carbon, cost, requests; per
    class: requests moved, added latency against the budget."""
    spec = run.fleet.spec
    sites, perf, tiers = {}, [], []
    for i, s in enumerate(spec.sites):
        result = run.sites[s.name]
        summary = summarize(result, job_records=0)
        p, _ = job_performance(result)
        started = ~np.isnan(p)
        perf.append(p[started])
        tiers.append(np.array([j.flex_tier for j in result.scenario.jobs])[started])
        energy_kwh = result.site_power_w * result.scenario.step_s / 3.6e6
        carbon_kg = float((energy_kwh * run.fleet.carbon[s.name].at(result.step_times_s)).sum() / 1e3)
        prices = run.fleet.prices[s.name]
        price = prices.at(result.step_times_s) if prices is not None else s.price_usd_per_mwh
        sites[s.name] = {
            "region": s.region,
            "events": [{"id": e["id"], "compliance": e["compliance"], "met": e["compliance"] >= MET_COMPLIANCE,
                        "target_w": e["target_w"], "mean_power_w": e["mean_power_w"]} for e in summary["events"]],
            "weighted_performance": summary["weighted_performance"],
            "sla_violations": summary["sla_violations"],
            "energy_kwh": _r(energy_kwh.sum()), "carbon_kg": _r(carbon_kg),
            "carbon_g_per_kwh": _r(carbon_kg * 1e3 / energy_kwh.sum()), "work_gpu_h": _r(run.work_gpu_h[s.name]),
            "energy_cost_usd": _r(float((energy_kwh * price).sum() / 1e3)),
            "requests": _r(run.requests[:, i].sum()), "requests_failed": _r(run.failed[:, i].sum()),
            "traffic_share_mean": _r(run.requests[:, i].sum() / run.requests.sum()),
            "traffic_share_range": [_r(run.share[:, i].min()), _r(run.share[:, i].max())],
            "batch_placed_in": sum(m["to"] == s.name for m in run.batch_moves),
            "batch_placed_out": sum(m["from"] == s.name for m in run.batch_moves),
        }
    home = FleetTraffic(run.fleet).home > 0
    classes = {}
    for c, spec_c in enumerate(spec.classes):
        w = run.requests[c]
        classes[spec_c.name] = {
            "origin": spec_c.origin, "requests": _r(w.sum()), "moved": _r(w[~home[c]].sum()),
            "added_latency_mean_ms": _r(float((w * run.rtt_ms[c]).sum() / w.sum())),
            "added_latency_p99_ms": _r(_weighted_percentile(run.rtt_ms[c], w, 99)),
            "added_latency_max_ms": _r(float(run.rtt_ms[c][w > 0].max())),
            "latency_budget_ms": spec_c.latency_budget_ms,
            "budget_kept": bool(run.rtt_ms[c][w > 0].max() <= spec_c.latency_budget_ms),
        }
    return {
        "mode": run.mode,
        "sites": sites,
        "classes": classes,
        "batch_moves": [{**m, "t_s": _r(m["t_s"]), "work_gpu_h": _r(m["work_gpu_h"])} for m in run.batch_moves],
        "total": {
            "energy_kwh": _r(sum(s["energy_kwh"] for s in sites.values())),
            "carbon_kg": _r(sum(s["carbon_kg"] for s in sites.values())),
            "carbon_g_per_kwh": _r(sum(s["carbon_kg"] for s in sites.values()) * 1e3
                                   / sum(s["energy_kwh"] for s in sites.values())),
            "placement_carbon_kg": _r(run.placement_carbon_kg),
            "work_gpu_h": _r(sum(run.work_gpu_h.values())),
            "carbon_g_per_gpu_h": _r(sum(s["carbon_kg"] for s in sites.values()) * 1e3 / sum(run.work_gpu_h.values())),
            "batch_moved": len(run.batch_moves),
            "batch_moved_work_gpu_h": _r(sum(m["work_gpu_h"] for m in run.batch_moves)),
            "batch_data_moved_gb": _r(sum(m["data_gb"] for m in run.batch_moves)),
            "batch_data_cost_usd": _r(sum(m["data_gb"] for m in run.batch_moves)
                                      * (spec.placement.data_usd_per_gb if spec.placement else 0.0)),
            "energy_cost_usd": _r(sum(s["energy_cost_usd"] for s in sites.values())),
            "weighted_performance": _r(weighted_performance(np.concatenate(perf), np.concatenate(tiers))),
            "requests": _r(run.requests.sum()), "requests_moved": _r(sum(c["moved"] for c in classes.values())),
            "requests_failed": _r(run.failed.sum()),
            "events_met": sum(e["met"] for s in sites.values() for e in s["events"]),
            "events": sum(len(s["events"]) for s in sites.values()),
            "budgets_kept": all(c["budget_kept"] for c in classes.values()),
        },
    }


def compare_fleet(fleet: LoadedFleet, planner: str = "optimal", seed: int = 0,
                  progress: Callable[[float], None] | None = None) -> tuple[dict, dict[str, FleetRun]]:
    """The fleet with its coordinator and the same sites alone, in one run: the summary and both runs."""
    runs = {}
    for i, mode in enumerate(MODES):
        runs[mode] = run_fleet(fleet, planner, seed, mode,
                               progress=(lambda f, i=i: progress((i + f) / len(MODES))) if progress else None)
    by_mode = {mode: fleet_summary(run) for mode, run in runs.items()}
    f, a = by_mode["fleet"], by_mode["alone"]
    return {
        "scenario": fleet.name, "planner": planner, "seed": seed,
        **by_mode,
        "fleet_vs_alone": {
            "weighted_performance": {name: [f["sites"][name]["weighted_performance"],
                                            a["sites"][name]["weighted_performance"]] for name in f["sites"]}
            | {"total": [f["total"]["weighted_performance"], a["total"]["weighted_performance"]]},
            "events_met": [f["total"]["events_met"], a["total"]["events_met"]],
            "carbon_kg": [f["total"]["carbon_kg"], a["total"]["carbon_kg"]],
            "energy_kwh": [f["total"]["energy_kwh"], a["total"]["energy_kwh"]],
            "work_gpu_h": [f["total"]["work_gpu_h"], a["total"]["work_gpu_h"]],
            "carbon_g_per_gpu_h": [f["total"]["carbon_g_per_gpu_h"], a["total"]["carbon_g_per_gpu_h"]],
            "batch_moved": f["total"]["batch_moved"],
            "placement_carbon_kg": f["total"]["placement_carbon_kg"],
            "requests_failed": [f["total"]["requests_failed"], a["total"]["requests_failed"]],
            "budgets_kept": f["total"]["budgets_kept"],
        },
    }, runs


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q / 100 * cum[-1])])


def _r(v) -> float:
    return round(float(v), 4)
