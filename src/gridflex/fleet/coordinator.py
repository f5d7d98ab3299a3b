"""The fleet coordinator's decision: where each class of inference requests is served.

A pure function of what the sites report, solved as one small linear programme (SciPy's
HiGHS). Variables: `x[c, s]` requests/s of class c served at site s, `y[s]` watts site s sheds
in place by slowing its own work, `z[s]` watts of an event's cut that cannot be met, `o[s]`
requests/s above what site s can serve now (they would fail).

    minimise   Σ_cs x·J_s·e_s                                      energy and carbon where served
             + Σ_cs x·3.6·rtt_ms(origin_c, s)·latency_usd_per_request_s     latency added
             + Σ_s y·max(slow_usd_per_mwh_s / 1e6 − e_s, 0)          work lost, less energy saved
             + Σ_s z·shortfall_usd_per_mwh / 1e6
             + Σ_s o·3600·failed_usd_per_request                    (all USD per hour)
    with e_s = (price_s + carbon_s·carbon_usd_per_t / 1000) / 1e6, USD per watt-hour
    s.t.       Σ_s x[c, s] = rate_c                                    every request is served
               x[c, s] = 0 where rtt(origin_c, s) > budget_c           latency budget, per request
               Σ_c x[c, s] − o_s ≤ capacity_s                           what it can serve now
               Σ_c x[c, s] ≤ max(capacity_s, now_s), now_s + headroom_s / J_s   hard limits of the site
               J_s·(now_s − Σ_c x[c, s]) + y_s + z_s ≥ cut_s            an event's cut at s
               0 ≤ y_s ≤ flex_s;  x[c, u] = now[c, u] at unreachable u   (its share is left alone)

Moving load out of an event site is chosen only where it is cheaper than slowing in place:
its cost is the energy and carbon at the receiving site less what the event site saves, plus
the latency added to every moved request; slowing in place costs `slow_usd_per_mwh`, the
value of the work the site would give up per MWh shed (from its own merit order), less the
energy and carbon it saves. A split that
was already outside a budget is moved back within it; a site whose current load is above its
capacity (e.g. its serving job slowed by its own event) is never asked to take more, and its
excess moves to sites with room where the budgets allow (else it stays, and fails there as it
would anyway). When no split meets every hard limit the decision keeps the current split and
says why (`ok` False).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from gridflex.errors import InputError
from gridflex.fleet.latency import RttTable


@dataclass(frozen=True, eq=False)
class FleetSites:
    """What each site reports (arrays follow `names`)."""

    names: tuple[str, ...]
    regions: tuple[str, ...]
    headroom_w: np.ndarray  # more power the site may draw now within its own limits (< 0: none; inf: no limit)
    capacity_rps: np.ndarray  # inference requests/s of this model the site can serve now
    energy_per_request_j: np.ndarray  # marginal site energy per request (W per request/s)
    carbon_g_per_kwh: np.ndarray
    price_usd_per_mwh: np.ndarray
    event_cut_w: np.ndarray  # reduction from current power an active event requires (0: none)
    flex_w: np.ndarray  # how much the site can shed in place by slowing its own work
    slow_usd_per_mwh: np.ndarray  # value of the work lost per MWh shed in place
    reachable: np.ndarray  # bool: the site's API answered


@dataclass(frozen=True, eq=False)
class RequestClasses:
    """Request classes of one model: where their requests enter and their latency budget
    (round trip added by serving at another region, ms)."""

    names: tuple[str, ...]
    origins: tuple[str, ...]
    rate_rps: np.ndarray
    latency_budget_ms: np.ndarray


@dataclass(frozen=True)
class FleetCosts:
    carbon_usd_per_t: float = 100.0
    latency_usd_per_request_s: float = 0.001
    shortfall_usd_per_mwh: float = 100_000.0
    failed_usd_per_request: float = 0.01


@dataclass(frozen=True, eq=False)
class FleetDecision:
    ok: bool
    note: str
    share: np.ndarray  # (classes, sites), rows sum to 1
    rps: np.ndarray  # (classes, sites)
    power_change_w: np.ndarray  # per site, from the traffic it gains or loses
    slow_in_place_w: np.ndarray  # per site
    shortfall_w: np.ndarray  # per site: event cut neither moved nor slowed away
    added_latency_ms: np.ndarray  # per class: mean round trip added to its requests
    moved_rps: float
    cost_usd_per_h: float = field(default=float("nan"))


def decide(sites: FleetSites, classes: RequestClasses, current_share: np.ndarray, rtt: RttTable,
           costs: FleetCosts = FleetCosts(), keep_share: np.ndarray | None = None) -> FleetDecision:
    """The split of every class over the sites, and what it does to each site's power relative
    to `current_share`. Unreachable sites keep `keep_share` (default: `current_share`), e.g. the
    router's actual split when `current_share` is a reference taken before an event."""
    _validate(sites, classes, current_share)
    keep = current_share if keep_share is None else keep_share
    _validate(sites, classes, keep)
    n_c, n_s = len(classes.names), len(sites.names)
    rtt_ms = rtt.between(classes.origins, sites.regions)  # (C, S)
    rate = classes.rate_rps.astype(float)
    now = current_share * rate[:, None]
    now_site = now.sum(axis=0)
    j = sites.energy_per_request_j.astype(float)
    reach = sites.reachable.astype(bool)

    # bounds: budgets per request; unreachable sites keep what they serve now
    ok_latency = rtt_ms <= classes.latency_budget_ms[:, None]
    kept = keep * rate[:, None]
    x_lo = np.where(reach, 0.0, kept)
    x_hi = np.where(reach, np.where(ok_latency, rate[:, None], 0.0), kept)
    event = reach & (sites.event_cut_w > 0)
    y_hi = np.where(event, sites.flex_w, 0.0)
    # site rows: capacity and headroom (never below what the site serves now)
    cap = np.minimum(np.maximum(sites.capacity_rps, now_site), now_site + np.maximum(sites.headroom_w, 0) / j)

    n_x = n_c * n_s
    per_site = np.kron(np.ones(n_c), np.eye(n_s))  # (S, C·S): Σ_c x[c, s]
    eye = np.eye(n_s)
    a_cap = np.hstack([per_site[reach], np.zeros((reach.sum(), 3 * n_s))])
    a_over = np.hstack([per_site[reach], np.zeros((reach.sum(), 2 * n_s)), -eye[reach]])
    a_evt = np.hstack([per_site[event] * j[event, None], -eye[event], -eye[event], np.zeros((event.sum(), n_s))])
    a_ub = np.vstack([a_cap, a_over, a_evt])
    b_ub = np.concatenate([cap[reach], sites.capacity_rps[reach], j[event] * now_site[event] - sites.event_cut_w[event]])
    a_eq = np.hstack([np.kron(np.eye(n_c), np.ones(n_s)), np.zeros((n_c, 3 * n_s))])

    usd_per_w = (sites.price_usd_per_mwh + sites.carbon_g_per_kwh * costs.carbon_usd_per_t / 1e3) / 1e6
    c_x = j[None, :] * usd_per_w[None, :] + 3.6 * rtt_ms * costs.latency_usd_per_request_s
    c_y = np.maximum(sites.slow_usd_per_mwh / 1e6 - usd_per_w, 0.0)
    c = np.concatenate([c_x.ravel(), c_y, np.full(n_s, costs.shortfall_usd_per_mwh / 1e6),
                        np.full(n_s, 3600 * costs.failed_usd_per_request)])
    bounds = np.column_stack([np.concatenate([x_lo.ravel(), np.zeros(3 * n_s)]),
                              np.concatenate([x_hi.ravel(), y_hi, np.where(event, np.inf, 0.0), np.full(n_s, np.inf)])])
    res = linprog(c, A_ub=a_ub if len(b_ub) else None, b_ub=b_ub if len(b_ub) else None, A_eq=a_eq, b_eq=rate,
                  bounds=bounds, method="highs")
    if res.status != 0:
        short = [classes.names[i] for i in range(n_c) if x_hi[i].sum() < rate[i] - 1e-9]
        why = (f"class(es) {short} have no site within their latency budget" if short
               else "capacity and headroom of the sites within the budgets are below the traffic")
        return _decision(False, f"no split meets every hard limit ({why}); current split kept", now, now, j,
                         np.zeros(n_s), np.zeros(n_s), rtt_ms, rate, current_share)
    x = np.clip(res.x[:n_x].reshape(n_c, n_s), x_lo, x_hi)
    z = np.where(event, res.x[n_x + n_s:n_x + 2 * n_s], 0.0)
    # slowing that costs nothing beyond the energy it saves is free to the LP: report only what the cut needs
    needed = np.where(event, np.maximum(sites.event_cut_w + j * (x.sum(axis=0) - now_site) - z, 0.0), 0.0)
    y = np.minimum(res.x[n_x:n_x + n_s], needed)
    return _decision(True, "optimal", x, now, j, y, z, rtt_ms, rate, current_share, float(res.fun))


def _decision(ok, note, x, now, j, y, z, rtt_ms, rate, current_share, cost=float("nan")) -> FleetDecision:
    # a class with no requests now keeps its split
    share = np.divide(x, rate[:, None], out=np.array(current_share, float), where=rate[:, None] > 0)
    return FleetDecision(
        ok=ok, note=note, share=share, rps=x, power_change_w=j * (x.sum(axis=0) - now.sum(axis=0)),
        slow_in_place_w=y, shortfall_w=z, added_latency_ms=(share * rtt_ms).sum(axis=1),
        moved_rps=float(np.maximum(x - now, 0).sum()), cost_usd_per_h=cost)


def _validate(sites: FleetSites, classes: RequestClasses, current_share: np.ndarray) -> None:
    n_s, n_c = len(sites.names), len(classes.names)
    if n_s == 0 or n_c == 0:
        raise InputError("fleet: needs at least one site and one request class")
    for name in ("names", "regions"):
        if len(getattr(sites, name)) != n_s:
            raise InputError(f"sites.{name}: {len(getattr(sites, name))} entries for {n_s} sites")
    for name in ("headroom_w", "capacity_rps", "energy_per_request_j", "carbon_g_per_kwh", "price_usd_per_mwh",
                 "event_cut_w", "flex_w", "slow_usd_per_mwh", "reachable"):
        v = np.asarray(getattr(sites, name))
        if v.shape != (n_s,):
            raise InputError(f"sites.{name}: shape {v.shape}; allowed: one value per site ({n_s})")
        if name == "headroom_w":
            if np.isnan(v).any() or np.isneginf(v).any():
                raise InputError(f"sites.headroom_w: {v.tolist()}; allowed: watts (inf: no limit)")
        elif name != "reachable" and (not np.isfinite(v).all() or (v < 0).any()):
            raise InputError(f"sites.{name}: {v.tolist()}; allowed: finite numbers >= 0")
    if (np.asarray(sites.energy_per_request_j) <= 0).any():
        raise InputError("sites.energy_per_request_j: every site needs a positive energy per request")
    for name in ("rate_rps", "latency_budget_ms"):
        v = np.asarray(getattr(classes, name))
        if v.shape != (n_c,) or not np.isfinite(v).all() or (v < 0).any():
            raise InputError(f"classes.{name}: {v.tolist()}; allowed: one finite number >= 0 per class ({n_c})")
    if len(classes.origins) != n_c:
        raise InputError(f"classes.origins: {len(classes.origins)} entries for {n_c} classes")
    share = np.asarray(current_share)
    if share.shape != (n_c, n_s) or not np.isfinite(share).all() or (share < 0).any() \
            or not np.allclose(share.sum(axis=1), 1, atol=1e-6):
        raise InputError(f"current_share: shape {share.shape}; allowed: ({n_c} classes, {n_s} sites), "
                         "shares >= 0 summing to 1 per class")
