"""Where queued batch jobs run: each job to the cheapest site that may take it, in submission order.

A pure function of what the sites report and what the jobs need. The cost of running job j at
site s (USD) is the energy of its expected run there times the site's price and carbon, as
forecast when the job is placed (the caller's forecast; the twin of a fleet uses persistence,
the value now), plus the cost of moving its data when s is not where it was submitted:

    cost[j, s] = kWh[j, s] · (price_s / 1000 + carbon_s · carbon_usd_per_t / 1e6)
               + data_gb_j · data_usd_per_gb · (s ≠ origin_j)
               + kWh_cut[j, s] · slow_usd_per_mwh_s / 1000

where kWh_cut is the energy of the job's expected run that falls in an event's cut at s (the
caller's cut windows: from the event's start to its end). A site held at an event's target must
shed whatever a job adds there, by holding or slowing it or its other work: that costs the work
it gives up, valued as the coordinator values slowing in place (`slow_usd_per_mwh`). So a job
submitted at a site whose event will cut its run moves to a site with room when the work it
would cost there outweighs moving its data; a short one stays.

**Hard limits** (never traded against cost): a site that is unreachable gets nothing; a site
takes a job only if its free GPUs (less what its own queue already waits for) hold it; another
site's job also needs the site's power headroom to hold the job's power and no event in force,
or known to start, during the job's expected run (the caller gives each site's event windows,
e.g. from the event's baseline window to the end of its guard): an event site gets no new
batch. A job may stay where it was submitted despite an event or no headroom there: its own
controller holds it or slows other work, as it would alone. A job no site may take, or whose
origin cannot be reached (the coordinator cannot see or move it), stays where it was
submitted: the origin's own scheduler and controller decide (queue, hold, slow).

**A merit order, not an LP**: jobs are indivisible, so the exact problem is an assignment with
capacities (an integer programme); jobs arrive a few at a time and each cost depends on one job
and one site only, so taking them in submission order (the queue's own fairness) and giving
each the cheapest site with room left is optimal whenever capacity does not bind, and keeps
first-in-first-out when it does. It is what a scheduler does at submission, one job at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridflex.errors import InputError

DATA_USD_PER_GB = 0.02  # default: inter-region transfer, the AWS list price between US regions
DATA_GB = 100.0  # default data a batch job reads (datasets and checkpoints), when the job gives none


@dataclass(frozen=True, eq=False)
class PlacementSites:
    """What each site reports (arrays follow `names`), as at `now_s`."""

    names: tuple[str, ...]
    reachable: np.ndarray  # bool
    free_gpus: np.ndarray  # GPUs free now, less those its own queue already waits for (NaN: not reported)
    headroom_w: np.ndarray  # more site power it may draw within its own limits (inf: no limit)
    carbon_g_per_kwh: np.ndarray  # forecast over the jobs' runs
    price_usd_per_mwh: np.ndarray
    event_windows_s: tuple[np.ndarray, ...]  # per site: (k, 2) [start, end) of known events (epoch s)
    pue: np.ndarray
    cut_windows_s: tuple[np.ndarray, ...]  # per site: (k, 2) [start, end) in which an event cuts its power
    slow_usd_per_mwh: np.ndarray  # value of the work the site gives up per MWh it sheds in place


def windows_of(events: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """A site's reported events (`Controller.event_windows`) as (quiet, cut) windows, each (k, 2)
    [start, end) in epoch seconds (`PlacementSites.event_windows_s`, `cut_windows_s`)."""
    quiet = np.array([[e["quiet_from_s"], e["quiet_until_s"]] for e in events], float).reshape(-1, 2)
    cut = np.array([[e["start_s"], e["end_s"]] for e in events], float).reshape(-1, 2)
    return quiet, cut


@dataclass(frozen=True, eq=False)
class BatchJobs:
    """Queued jobs not started yet (arrays follow `ids`)."""

    ids: tuple[str, ...]
    origin: np.ndarray  # index of the site where each was submitted
    gpus: np.ndarray
    power_w: np.ndarray  # IT power at full speed above the idle of its GPUs
    run_s: np.ndarray  # expected run (its work at full speed)
    data_gb: np.ndarray


@dataclass(frozen=True)
class PlacementCosts:
    carbon_usd_per_t: float = 100.0
    data_usd_per_gb: float = DATA_USD_PER_GB


@dataclass(frozen=True, eq=False)
class Placement:
    site: np.ndarray  # per job: index of the site it runs at
    origin: np.ndarray  # per job: where it was submitted
    cost_usd: np.ndarray  # (jobs, sites): the cost of running there (inf: not allowed)
    why: tuple[str, ...]  # per job: why it runs there

    @property
    def moved(self) -> np.ndarray:
        return self.site != self.origin


def place(jobs: BatchJobs, sites: PlacementSites, now_s: float, costs: PlacementCosts = PlacementCosts()) -> Placement:
    """The site of every job: the cheapest one allowed, in the order given (submission order)."""
    _validate(jobs, sites)
    n_j, n_s = len(jobs.ids), len(sites.names)
    kwh = jobs.power_w[:, None] * sites.pue[None, :] * jobs.run_s[:, None] / 3.6e6
    usd_per_kwh = (sites.price_usd_per_mwh + sites.carbon_g_per_kwh * costs.carbon_usd_per_t / 1e3) / 1e3
    moving = np.arange(n_s)[None, :] != jobs.origin[:, None]
    end_s = now_s + jobs.run_s
    event = np.zeros((n_j, n_s), dtype=bool)
    for s, w in enumerate(sites.event_windows_s):
        if len(w):
            event[:, s] = ((w[None, :, 0] < end_s[:, None]) & (w[None, :, 1] > now_s)).any(axis=1)
    cut_s = np.zeros((n_j, n_s))
    for s, w in enumerate(sites.cut_windows_s):
        if len(w):
            overlap = np.minimum(w[None, :, 1], end_s[:, None]) - np.maximum(w[None, :, 0], now_s)
            cut_s[:, s] = np.clip(overlap, 0.0, None).sum(axis=1)
    cut_kwh = jobs.power_w[:, None] * sites.pue[None, :] * cut_s / 3.6e6
    cost = (kwh * usd_per_kwh[None, :] + moving * (jobs.data_gb * costs.data_usd_per_gb)[:, None]
            + cut_kwh * sites.slow_usd_per_mwh[None, :] / 1e3)
    reach = sites.reachable.astype(bool)
    free, headroom = sites.free_gpus.astype(float).copy(), sites.headroom_w.astype(float).copy()
    site, why, out = jobs.origin.copy(), [], np.full((n_j, n_s), np.inf)
    for j in range(n_j):
        o = jobs.origin[j]
        if not reach[o]:
            why.append("stays: its site is unreachable")
            continue
        site_w = jobs.power_w[j] * sites.pue
        home = np.arange(n_s) == o
        room = free >= jobs.gpus[j]  # a site that does not report its GPUs takes nothing new; its own jobs stay
        ok = reach & ((room & (headroom >= site_w) & ~event[j]) | (home & (room | np.isnan(free))))
        out[j] = np.where(ok, cost[j], np.inf)
        if not ok.any():
            why.append("stays: no site has room outside an event")
            continue
        best = int(np.argmin(np.where(ok, cost[j] - 1e-12 * home, np.inf)))  # ties: stay
        site[j] = best
        free[best] -= jobs.gpus[j]
        headroom[best] -= site_w[best]
        why.append("stays: cheapest" if best == o else
                   f"moved: {cost[j, best]:.2f} USD at {sites.names[best]} against "
                   + (f"{cost[j, o]:.2f} at home" if ok[o] else "home not allowed (event or no room)"))
    return Placement(site=site, origin=jobs.origin.copy(), cost_usd=out, why=tuple(why))


def _validate(jobs: BatchJobs, sites: PlacementSites) -> None:
    n_s, n_j = len(sites.names), len(jobs.ids)
    if n_s == 0:
        raise InputError("placement: needs at least one site")
    for name in ("reachable", "free_gpus", "headroom_w", "carbon_g_per_kwh", "price_usd_per_mwh", "pue",
                 "slow_usd_per_mwh"):
        v = np.asarray(getattr(sites, name))
        if v.shape != (n_s,):
            raise InputError(f"sites.{name}: shape {v.shape}; allowed: one value per site ({n_s})")
        if name == "free_gpus" and (np.isinf(v).any() or (v < 0).any()):
            raise InputError(f"sites.free_gpus: {v.tolist()}; allowed: GPUs >= 0 (NaN: not reported)")
        if name in ("carbon_g_per_kwh", "price_usd_per_mwh", "pue", "slow_usd_per_mwh") and (not np.isfinite(v).all() or (v < 0).any()):
            raise InputError(f"sites.{name}: {v.tolist()}; allowed: finite numbers >= 0")
    for name in ("event_windows_s", "cut_windows_s"):
        windows = getattr(sites, name)
        if len(windows) != n_s or any(np.shape(w)[1:] != (2,) for w in windows if len(w)):
            raise InputError(f"sites.{name}: one (k, 2) array of [start, end) per site ({n_s})")
    for name in ("origin", "gpus", "power_w", "run_s", "data_gb"):
        v = np.asarray(getattr(jobs, name))
        if v.shape != (n_j,) or not np.isfinite(v).all() or (v < 0).any():
            raise InputError(f"jobs.{name}: {v.tolist()}; allowed: one finite number >= 0 per job ({n_j})")
    if n_j and np.asarray(jobs.origin).max() >= n_s:
        raise InputError(f"jobs.origin: {np.asarray(jobs.origin).tolist()}; allowed: site indices 0..{n_s - 1}")
