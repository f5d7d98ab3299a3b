"""The fleet coordinator process: poll every site's API, decide the split, step the router.

Each tick polls `GET /api/v1/status` of all sites at once (httpx, with a timeout; a site that
does not answer is unreachable), turns the answers into `FleetSites` per model, solves
`decide`, and moves the model's HAProxy backends one bounded step towards the split; the next
tick decides again with fresh readings, so a shift follows the sites as they change. All
classes of a model move the same fraction of the way (no share by more than `router.max_step`),
so each step's split is a convex combination of the router's split and the decided one: a site
within its capacity and headroom before and after is within them at every step. What a site
reports and what the coordinator derives:

- headroom: `target_w − site_power_w` (the config's `limit_w` when the site has no target);
- class rates: the configured `rate_rps`, or with `router.measured_rates` the requests the
  router counted on the class's backend (all its servers) since the last tick, per second;
- the reference: the router's split and each site's power, taken at every tick in which no
  site of the model has an active event and frozen while one has; the LP's `current_share`
  is the reference split, and an event's cut is `reference power − target_w`. Decisions during
  an event are therefore a fixed point (moving load out lowers the site's power, not the cut
  asked of the moved split), and outside events the split follows the cheapest placement.
  The reference is the coordinator's only state: with a store (`store_url`) it is written
  there (key `fleet.reference` of the `meta` table) whenever it changes and read back on start,
  so a coordinator restarted during an event keeps the split from before it; without one it
  lives in memory and a restarted coordinator takes what it first sees.

The sites never depend on the coordinator: each meets its own targets by its own controller,
and the router keeps the last split if the coordinator dies (`restore` puts the original
weights back from the ledger).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from gridflex.drivers.router_base import RouterDriver, shift_traffic
from gridflex.errors import DriverError, InputError
from gridflex.fleet.config import FleetConfig, ModelConfig, SiteConfig
from gridflex.fleet.coordinator import FleetCosts, FleetDecision, FleetSites, RequestClasses, decide
from gridflex.fleet.latency import RttTable
from gridflex.fleet.placement import BatchJobs, PlacementCosts, PlacementSites, place, windows_of
from gridflex.model.site import FLEX_FACTOR
from gridflex.store.db import Store

REFERENCE_KEY = "fleet.reference"


@dataclass(frozen=True)
class SiteReport:
    reachable: bool
    site_power_w: float = float("nan")
    target_w: float | None = None
    active_events: tuple[str, ...] = ()
    error: str = ""
    carbon_g_per_kwh: float | None = None  # now, where the site knows it (else fleet.yaml's)
    price_usd_per_mwh: float | None = None
    free_gpus: int | None = None  # GPUs no running job holds (None: not reported)
    queue: tuple[dict, ...] = ()  # the jobs waiting in its queue (`QueuedJobOut` of the site API)
    serving_share: dict[str, float] = field(default_factory=dict)  # job id -> `serving_share` (reported jobs)
    event_windows: tuple[dict, ...] | None = None  # known events with their times (None: not reported)


def serving_share(throughput: float, flex_tier: int) -> float:
    """The share of a serving job's capacity a coordinator may count on now: its throughput, and
    no more than its tier's floor (its site may slow it that far at any time)."""
    return min(throughput, FLEX_FACTOR[flex_tier])


def site_report(body: dict) -> SiteReport:
    """A site's `GET /api/v1/status` body as the coordinator reads it."""
    power = body.get("site_power_w")
    if power is None:
        return SiteReport(False, error="no reading yet (site_power_w null)")
    shares = {j["id"]: serving_share(float(j["throughput"]), int(j["flex_tier"])) for j in body.get("jobs") or ()
              if j.get("throughput") is not None and j.get("flex_tier") in FLEX_FACTOR}
    return SiteReport(True, float(power), body.get("target_w"), tuple(body.get("active_events") or ()),
                      free_gpus=body.get("free_gpus"), queue=tuple(body.get("queue") or ()),
                      carbon_g_per_kwh=body.get("carbon_g_per_kwh"), price_usd_per_mwh=body.get("price_usd_per_mwh"),
                      serving_share=shares, event_windows=None if body.get("event_windows") is None
                      else tuple(body["event_windows"]))


async def poll_sites(cfg: FleetConfig) -> dict[str, SiteReport]:
    """Every site's status, concurrently; a failure makes that site unreachable, never an error."""
    async def one(client: httpx.AsyncClient, site) -> SiteReport:
        token = os.environ.get(site.token_env) if site.token_env else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            r = await client.get(site.api_url.rstrip("/") + "/api/v1/status", headers=headers)
            r.raise_for_status()
            return site_report(r.json())
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as e:
            return SiteReport(False, error=f"{type(e).__name__}: {e}")

    async with httpx.AsyncClient(timeout=cfg.timeout_s) as client:
        reports = await asyncio.gather(*(one(client, s) for s in cfg.sites))
    return {s.name: r for s, r in zip(cfg.sites, reports)}


async def post_load_floors(cfg: FleetConfig, floors: dict[tuple[str, str], float]) -> dict[str, str]:
    """`PATCH /api/v1/jobs/{job}` with each load floor, concurrently; site -> error for those that
    failed (the site keeps its last floor)."""
    sites = {s.name: s for s in cfg.sites}

    async def one(client: httpx.AsyncClient, site: str, job: str, floor: float) -> str:
        s = sites[site]
        token = os.environ.get(s.token_env) if s.token_env else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            r = await client.patch(f"{s.api_url.rstrip('/')}/api/v1/jobs/{job}", json={"load_floor": floor},
                                   headers=headers)
            r.raise_for_status()
            return ""
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"

    async with httpx.AsyncClient(timeout=cfg.timeout_s) as client:
        errors = await asyncio.gather(*(one(client, site, job, f) for (site, job), f in floors.items()))
    return {site: e for (site, _), e in zip(floors, errors) if e}


class FleetCoordinator:
    def __init__(self, cfg: FleetConfig, router: RouterDriver, rtt: RttTable | None = None, store: Store | None = None,
                 clock: Callable[[], float] = time.time):
        self.cfg, self.router, self.store, self.clock = cfg, router, store, clock
        self.store_error = ""
        self.rtt = rtt or RttTable.from_csv(cfg.rtt_file)
        self.costs = FleetCosts(**cfg.costs.model_dump())
        self.reference: dict[str, tuple[np.ndarray, dict[str, float]]] = {}  # model -> (split, site power)
        self._counted: dict[str, tuple[float, float]] = {}  # backend -> (read at, requests counted so far)
        self.measured_rps: dict[str, float] = {}  # class -> requests/s the router counted over the last tick
        saved = json.loads(store.meta(REFERENCE_KEY) or "{}") if store else {}
        for m in cfg.models:  # a model whose classes or sites changed since starts afresh
            ref = saved.get(m.name)
            if ref and np.shape(ref["share"]) == (len(m.classes), len(m.servers)) and set(ref["power_w"]) == set(
                    m.servers):
                self.reference[m.name] = (np.array(ref["share"]), ref["power_w"])
        for m in cfg.models:  # every region must be in the RTT table before the first tick
            self.rtt.between([c.origin for c in m.classes], [self._site(s).region for s in m.servers])

    def tick(self) -> dict:
        """Poll, decide and take one step per backend, and give each site's serving job its load
        floor; returns what happened (one JSON line)."""
        reports = asyncio.run(poll_sites(self.cfg))
        out = self.tick_with(reports)
        floors = self.load_floors(out, reports)
        if floors:
            errors = asyncio.run(post_load_floors(self.cfg, floors))
            if errors:
                out["load_floor_errors"] = errors
        return out

    def load_floors(self, out: dict, reports: dict[str, SiteReport]) -> dict[tuple[str, str], float]:
        """(site, job id) -> the load floor of a tick's line (`tick_with`), for the reachable sites
        whose serving job the config names (`models[].jobs`); a job serving several models keeps
        the sum of their floors (at most 1)."""
        floors: dict[tuple[str, str], float] = {}
        for model in self.cfg.models:
            for site, floor in out["models"].get(model.name, {}).get("load_floor", {}).items():
                job = model.jobs.get(site)
                if job is not None and reports[site].reachable:
                    floors[site, job] = min(1.0, floors.get((site, job), 0.0) + floor)
        return floors

    def tick_with(self, reports: dict[str, SiteReport], rates_rps: dict[str, float] | None = None) -> dict:
        """Decide from the sites' reports and take one step per backend. `rates_rps` (class ->
        requests/s) replaces the configured rates where given (the twin of a fleet knows them)."""
        out = {"sites": {n: {"reachable": r.reachable, "power_w": r.site_power_w, "events": list(r.active_events),
                             **({"error": r.error} if r.error else {})} for n, r in reports.items()},
               "models": {}}
        for model in self.cfg.models:
            names = list(model.servers)
            try:
                current, seen = self._read_router(model, names)
            except (DriverError, InputError) as e:
                out["models"][model.name] = {"ok": False, "note": f"router: {e}"}
                continue
            if model.name not in self.reference or not any(reports[n].active_events for n in names):
                self._set_reference(model.name, current, {n: reports[n].site_power_w for n in names})
            share, power_w = self.reference[model.name]
            rates = {**(self.measured_rps if self.cfg.router.measured_rates else {}), **(rates_rps or {})}
            classes = self._classes(model, rates)
            decision = decide(self._sites(model, reports, power_w), classes, share, self.rtt, self.costs,
                              keep_share=current)
            out["models"][model.name] = {"ok": decision.ok, "note": decision.note,
                                         "rates_rps": dict(zip(classes.names, np.round(classes.rate_rps, 2).tolist())),
                                         **self._step(model, names, decision, current), "router": seen}
        if self.cfg.placement is not None:
            out["batch"] = self._place(reports)
        if self.store_error:
            out["store_error"] = self.store_error
        return out

    def _place(self, reports: dict[str, SiteReport]) -> list[dict]:
        """Where the jobs waiting in the reachable sites' queues should run (`fleet/placement.py`):
        the moves advised. Nothing moves a job between clusters yet (docs/fleet.md), so this is
        advice in the tick's line. The events each site reports (`event_windows`) keep new batch
        out of their quiet windows and price the work their cuts would take (a site that does not
        report them: an event in force keeps all new batch out and cuts a whole run there); a site
        that does not report its free GPUs takes nothing new."""
        names = [s.name for s in self.cfg.sites]
        rows = sorted(((i, q) for i, n in enumerate(names) if reports[n].reachable for q in reports[n].queue
                       if q.get("power_w") is not None and q.get("work_s")), key=lambda r: r[1].get("submit_s") or 0)
        if not rows:
            return []
        jobs = BatchJobs(ids=tuple(q["id"] for _, q in rows), origin=np.array([i for i, _ in rows]),
                         gpus=np.array([q["gpus"] for _, q in rows]), power_w=np.array([q["power_w"] for _, q in rows]),
                         run_s=np.array([q["work_s"] for _, q in rows]),
                         data_gb=np.full(len(rows), self.cfg.placement.data_gb))
        sites = placement_sites(self.cfg.sites, [reports[n] for n in names],
                                np.ones(len(names)))  # a queued job's power_w is site power already
        placement = place(jobs, sites, self.clock(), PlacementCosts(self.costs.carbon_usd_per_t,
                                                                   self.cfg.placement.data_usd_per_gb))
        return [{"job": jobs.ids[k], "from": names[jobs.origin[k]], "to": names[placement.site[k]],
                 "why": placement.why[k]} for k in np.flatnonzero(placement.moved)]

    def _set_reference(self, model: str, share: np.ndarray, power_w: dict[str, float]) -> None:
        self.reference[model] = (share, power_w)
        if self.store is not None:
            try:
                self.store.set_meta(REFERENCE_KEY, json.dumps(
                    {m: {"share": s.tolist(), "power_w": p} for m, (s, p) in self.reference.items()}))
                self.store_error = ""
            except SQLAlchemyError as e:  # the store away: go on from memory, say so in the tick's line
                self.store_error = f"{type(e).__name__}: {str(e).splitlines()[0]}"

    def _read_router(self, model: ModelConfig, names: list[str]) -> tuple[np.ndarray, dict]:
        """The router's split of every class over the model's sites (equal if none is serving),
        and its per-site telemetry per class: failed requests so far and response time."""
        rows, seen = [], {}
        for cls in model.classes:
            stats = self.router.read(cls.backend)
            self._count(cls.name, cls.backend, stats.t_s, float(stats.sessions_total.sum()))
            idx = [stats.index(model.servers[n]) for n in names]
            row = stats.shares[idx]
            rows.append(row / row.sum() if row.sum() > 0 else np.full(len(names), 1 / len(names)))
            seen[cls.name] = {"failed_total": dict(zip(names, stats.failed_total[idx].tolist())),
                              "response_ms": dict(zip(names, np.nan_to_num(stats.response_ms[idx]).tolist()))}
        return np.array(rows), seen

    def _count(self, cls: str, backend: str, t_s: float, total: float) -> None:
        """The class's request rate since the backend's last reading; none after a counter reset
        (e.g. HAProxy reloaded) or with no time between the readings."""
        last = self._counted.get(backend)
        self._counted[backend] = (t_s, total)
        if last is not None and t_s > last[0] and total >= last[1]:
            self.measured_rps[cls] = (total - last[1]) / (t_s - last[0])
        else:
            self.measured_rps.pop(cls, None)

    def _step(self, model: ModelConfig, names: list[str], d: FleetDecision, current: np.ndarray) -> dict:
        reach = self.cfg.router.max_step - 1 / self.router.max_weight  # as in shift_traffic
        gap = float(np.abs(d.share - current).max())
        step = d.share if gap <= reach else current + (d.share - current) * reach / gap
        # the least throughput each site's serving job needs for what it gets before and after the
        # step until the next tick (what the site is asked to hold: `load_floor`): each class at its
        # rate now or the rate the config plans with (`rate_rps`, e.g. its peak), whichever is higher
        # (a rate measured now can double within a tick), with the split's margin for bursts
        rate = np.maximum(d.rps.sum(axis=1), [c.rate_rps for c in model.classes])
        routed = np.maximum(rate @ current, rate @ step)
        full = np.array([model.capacity_rps[n] for n in names]) * (1 - model.capacity_margin)
        floor = np.clip(np.divide(routed, full, out=np.zeros_like(routed), where=full > 0), 0.0, 1.0)
        split, errors = {}, {}
        for c, cls in enumerate(model.classes):
            target = {model.servers[s]: float(step[c, i]) for i, s in enumerate(names)}
            split[cls.name] = dict(zip(names, np.round(d.share[c], 4).tolist()))
            try:
                shift_traffic(self.router, cls.backend, target, 1.0, 0, max_steps=1)
            except DriverError as e:  # e.g. a receiving server down: the backend keeps its split
                errors[cls.name] = str(e)
        return {"split": split, "power_change_w": dict(zip(names, np.round(d.power_change_w).tolist())),
                "slow_in_place_w": dict(zip(names, np.round(d.slow_in_place_w).tolist())),
                "added_latency_ms": dict(zip([c.name for c in model.classes],
                                             np.round(d.added_latency_ms, 1).tolist())),
                "load_floor": dict(zip(names, np.round(floor, 4).tolist())),
                **({"errors": errors} if errors else {})}

    def _site(self, name: str):
        return next(s for s in self.cfg.sites if s.name == name)

    def _sites(self, model: ModelConfig, reports: dict[str, SiteReport], reference_w: dict[str, float]) -> FleetSites:
        names = list(model.servers)
        sites = [self._site(n) for n in names]
        rep = [reports[n] for n in names]

        def arr(values) -> np.ndarray:
            return np.array(list(values), dtype=float)

        limit = [r.target_w if r.target_w is not None else s.limit_w for s, r in zip(sites, rep)]
        headroom = [np.inf if not r.reachable or lim is None else lim - r.site_power_w for lim, r in zip(limit, rep)]
        cut = [max(_finite(reference_w.get(n), r.site_power_w) - r.target_w, 0.0)
               if r.reachable and r.active_events and r.target_w is not None else 0.0 for n, r in zip(names, rep)]
        return FleetSites(
            names=tuple(names), regions=tuple(s.region for s in sites), headroom_w=arr(headroom),
            capacity_rps=arr(model.capacity_rps[n] * r.serving_share.get(model.jobs.get(n, ""), 1.0)
                             * (1 - model.capacity_margin)
                             for n, r in zip(names, rep)),
            energy_per_request_j=arr(model.energy_per_request_j[n] for n in names),
            carbon_g_per_kwh=arr(_finite(r.carbon_g_per_kwh, s.carbon_g_per_kwh) for s, r in zip(sites, rep)),
            price_usd_per_mwh=arr(_finite(r.price_usd_per_mwh, s.price_usd_per_mwh) for s, r in zip(sites, rep)),
            event_cut_w=arr(cut), flex_w=arr(s.flex_w for s in sites), slow_usd_per_mwh=arr(s.slow_usd_per_mwh
                                                                                           for s in sites),
            reachable=np.array([r.reachable for r in rep]))

    @staticmethod
    def _classes(model: ModelConfig, rates_rps: dict[str, float]) -> RequestClasses:
        return RequestClasses(tuple(c.name for c in model.classes), tuple(c.origin for c in model.classes),
                              np.array([rates_rps.get(c.name, c.rate_rps) for c in model.classes], float),
                              np.array([c.latency_budget_ms for c in model.classes], float))


def placement_sites(sites: Sequence[SiteConfig], reports: Sequence[SiteReport], pue: np.ndarray) -> PlacementSites:
    """What batch placement knows of each site (`fleet/placement.py`), from its report as its
    `/api/v1/status` gives it (the twin of a fleet reports the same), fleet.yaml's values where it
    reports none: free GPUs less its queue's; headroom under its target (else its `limit_w`); its
    events' quiet and cut windows (a site that does not report them: an event in force keeps all
    new batch out and cuts a whole run there); carbon and price now. `pue`: per site, to turn the
    jobs' power into site power (1 where it is site power already)."""
    limit = [r.target_w if r.target_w is not None else s.limit_w for s, r in zip(sites, reports)]
    events = [windows_of(r.event_windows) if r.event_windows is not None else
              (np.array([[-np.inf, np.inf]] if r.active_events else np.zeros((0, 2))),) * 2 for r in reports]
    return PlacementSites(
        names=tuple(s.name for s in sites), reachable=np.array([r.reachable for r in reports]),
        free_gpus=np.array([np.nan if r.free_gpus is None else max(r.free_gpus - sum(q["gpus"] for q in r.queue), 0)
                            for r in reports], float),
        headroom_w=np.array([np.inf if lim is None or not r.reachable else lim - r.site_power_w
                             for lim, r in zip(limit, reports)], float),
        carbon_g_per_kwh=np.array([_finite(r.carbon_g_per_kwh, s.carbon_g_per_kwh) for s, r in zip(sites, reports)]),
        price_usd_per_mwh=np.array([_finite(r.price_usd_per_mwh, s.price_usd_per_mwh) for s, r in zip(sites, reports)]),
        event_windows_s=tuple(q for q, _ in events), cut_windows_s=tuple(c for _, c in events), pue=pue,
        slow_usd_per_mwh=np.array([s.slow_usd_per_mwh for s in sites]))


def _finite(value: float | None, fallback: float) -> float:
    return value if value is not None and np.isfinite(value) else fallback
