"""Prometheus metrics (one registry per service, served at /metrics)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gridflex.control.controller import Decision
from gridflex.drivers.base import Telemetry
from gridflex.drivers.miner_base import MinerTelemetry
from gridflex.model.fleet import JobFleet


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.site_power = Gauge("gridflex_site_power_watts", "Measured site power", registry=r)
        self.target_power = Gauge("gridflex_target_power_watts", "Site power ceiling now (NaN: none)", registry=r)
        self.tier_power = Gauge("gridflex_tier_power_watts", "Measured IT power by flex tier", ["tier"], registry=r)
        self.event_ticks = Counter("gridflex_event_ticks", "Control ticks under an event ceiling", registry=r)
        self.compliant_ticks = Counter(
            "gridflex_event_compliant_ticks", "Ticks under an event ceiling with power within tolerance", registry=r
        )
        self.compliance = Gauge("gridflex_event_compliance_ratio", "Compliant / all ticks under events", registry=r)
        self.budget_used = Gauge(
            "gridflex_flex_budget_used_ratio",
            "Fraction of a job's flex allowance spent in its window",
            ["job"],
            registry=r,
        )
        self.planner_latency = Histogram(
            "gridflex_planner_latency_seconds",
            "Time from reading the plant to the decision",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.driver_errors = Counter("gridflex_driver_errors", "Driver reads or actions that failed", registry=r)
        self.tick_errors = Counter("gridflex_tick_errors", "Control ticks that failed (nothing acted on)", registry=r)
        self.opt_outs = Counter("gridflex_openadr_opt_outs", "OpenADR events refused", registry=r)
        self.ticks = Counter("gridflex_control_ticks", "Control ticks run", registry=r)
        self.jobs = Gauge("gridflex_jobs", "Jobs by state (running, queued, held)", ["state"], registry=r)
        self.miner_power = Gauge("gridflex_miner_power_watts", "Measured power of the miner fleet", registry=r)
        self.miners_mining = Gauge("gridflex_miners_mining", "Miners with a non-zero power target", registry=r)
        self._under_event = self._compliant = 0
        self._job_labels: set[str] = set()
        self.compliance.set(float("nan"))  # no tick under an event yet

    def observe(self, d: Decision, tel: Telemetry, fleet: JobFleet, used: np.ndarray, tolerance: float) -> None:
        self.ticks.inc()
        self.site_power.set(d.site_power_w)
        self.target_power.set(d.target_w if np.isfinite(d.target_w) else float("nan"))
        for tier in range(4):
            self.tier_power.labels(str(tier)).set(float(tel.job_power_w[fleet.flex_tier == tier].sum()))
        if d.active_events:
            ok = d.site_power_w <= d.target_w * (1 + tolerance)
            self._under_event += 1
            self._compliant += ok
            self.event_ticks.inc()
            self.compliant_ticks.inc(ok)
            self.compliance.set(self._compliant / self._under_event)
        for job_id, u in zip(fleet.ids, used.tolist(), strict=True):
            self.budget_used.labels(job_id).set(u)
        for gone in self._job_labels - set(fleet.ids):  # a job that ended has no series any more
            self.budget_used.remove(gone)
        self._job_labels = set(fleet.ids)
        self.jobs.labels("running").set(len(fleet))

    def observe_queue(self, queued: int, held: int) -> None:
        self.jobs.labels("queued").set(queued)
        self.jobs.labels("held").set(held)

    def observe_miners(self, tel: MinerTelemetry) -> None:
        self.miner_power.set(tel.total_w)
        self.miners_mining.set(int(np.sum(tel.target_w > 0)))
