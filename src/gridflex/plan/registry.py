"""Planners by name."""

from __future__ import annotations

from collections.abc import Callable

from gridflex.errors import InputError
from gridflex.plan.base import Planner
from gridflex.plan.baselines import BASELINES
from gridflex.plan.merit import MeritPlanner
from gridflex.plan.oracle import OraclePlanner

PLANNERS: dict[str, Callable[[], Planner]] = {
    "optimal": MeritPlanner,  # miners and jobs in one merit order; without miners, OptimalPlanner
    **{p.name: p for p in BASELINES},
    "oracle": OraclePlanner,
}


def make_planner(name: str) -> Planner:
    try:
        return PLANNERS[name]()
    except KeyError:
        raise InputError(f"unknown planner {name!r}; choose one of: {', '.join(PLANNERS)}") from None
