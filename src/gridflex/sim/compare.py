"""`gridflex compare`: several planners on the same scenario and seeds, side by side, each
measured against the offline bound (`plan/oracle.py`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from gridflex.console import fail, fmt, out, progress, write
from gridflex.plan.registry import PLANNERS

DEFAULT_PLANNERS = ("optimal", "dvfs-fair", "dvfs-pause-fair", "pause-greedy", "pause-resize-fair", "uniform-cap",
                    "pause-by-tier", "oracle")
#: Columns of the printed table, in order.
COLUMNS = ("planner", "compliance", "sla_violations", "weighted_performance", "oracle_ratio", "over_delivery",
           "response_s", "energy_kwh")


def compare_runs(
    loaded, planners: Sequence[str], seeds: int, progress: Callable[[float], None] | None = None
) -> tuple[dict, list]:
    """Run every planner on every seed. Returns the comparison (one entry per planner: the keys of
    `gridflex simulate`'s summary, averaged over seeds where there are several, plus
    `oracle_bound` and `oracle_ratio`) and the run results of seed 0, for plotting."""
    from gridflex.plan.oracle import solve_oracle
    from gridflex.report.summary import summarize
    from gridflex.sim.run import run_scenario

    bounds = [solve_oracle(loaded, seed).weighted_performance for seed in range(seeds)]
    entries, first_runs = [], []
    total = len(planners) * seeds
    for i, name in enumerate(planners):
        summaries = []
        for seed in range(seeds):
            done = i * seeds + seed
            tick = (lambda f, done=done: progress((done + f) / total)) if progress else None
            result = run_scenario(loaded, name, seed, progress=tick)
            summary = summarize(result)
            summary["oracle_bound"] = round(bounds[seed], 6)
            summary["oracle_ratio"] = round(summary["weighted_performance"] / bounds[seed], 6)
            summaries.append(summary)
            if seed == 0:
                first_runs.append(result)
        entries.append(_merge(summaries))
    return {"scenario": loaded.scenario.name, "seeds": list(range(seeds)), "planners": entries}, first_runs


def _merge(summaries: list[dict]) -> dict:
    """One planner's entry: the single summary, or over several seeds the mean of each number
    (SLA violations summed, response the slowest) with every seed's summary under `runs`."""
    if len(summaries) == 1:
        return summaries[0]
    out = dict(summaries[0])
    out.pop("seed")
    for key, value in summaries[0].items():
        values = [s[key] for s in summaries]
        if key == "sla_violations":
            out[key] = int(sum(values))
        elif key == "response_s":
            out[key] = None if None in values else max(values)
        elif isinstance(value, float):
            out[key] = round(float(np.mean(values)), 6)
    out["runs"] = summaries
    return out


def compare_report(comparison: dict, runs: list) -> str:
    """HTML: the table and the power traces of seed 0 overlaid."""
    from gridflex.report.html import power_plot
    from gridflex.report.render import page, table

    return page(
        f"gridflex compare — {comparison['scenario']}",
        [
            f"<p>{len(runs)} planners, seeds {comparison['seeds']}; oracle_ratio is weighted performance over"
            " the offline LP bound (perfect knowledge of the twin's true curves and every event).</p>",
            table(comparison["planners"], COLUMNS),
            "<h2>Site power (seed 0)</h2>",
            power_plot(runs),
        ],
    )


def compare(
    scenario: Annotated[str, typer.Argument(help="built-in scenario name or path to a YAML/JSON file")] = "phoenix-srp",
    planners: Annotated[str, typer.Option(help=f"comma-separated, from: {', '.join(PLANNERS)}")] = ",".join(
        DEFAULT_PLANNERS
    ),
    seeds: Annotated[int, typer.Option(min=1, help="run seeds 0..N-1 (twin model error and noise; a time-shifting"
                                      " scenario: one table per seed)")] = 1,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the comparison as JSON here")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report with the power traces overlaid")] = None,
) -> None:
    """Run several planners on the same scenario and seeds; one table, ratios to the offline bound."""

    from gridflex.errors import InputError
    from gridflex.fleet.scenario import is_fleet_scenario
    from gridflex.sim.scenarios import load_scenario

    names = [p.strip() for p in planners.split(",") if p.strip()]
    try:
        if is_fleet_scenario(scenario):
            raise InputError(f"{scenario} is a fleet scenario: `gridflex simulate {scenario}` runs it with the fleet"
                             " coordinator and each site alone, side by side; compare takes single-site scenarios")
        unknown = [p for p in names if p not in PLANNERS]
        if unknown or not names:
            raise InputError(f"--planners: unknown {unknown or 'none given'}; choose from: {', '.join(PLANNERS)}")
        loaded = load_scenario(scenario)
        if loaded.scenario.shifting is not None:  # time shifting: its policies and bound instead
            return _compare_shifting(loaded, seeds, json_path)
        with progress(f"{loaded.scenario.name} · {len(names)} planners × {seeds} seed(s)") as tick:
            comparison, runs = compare_runs(loaded, names, seeds, tick)
    except InputError as e:
        raise fail(str(e)) from None
    _show(comparison, "planners", COLUMNS, f"{comparison['scenario']} · seeds {comparison['seeds']}", json_path)
    if report:
        write(report, compare_report(comparison, runs))


def _show(comparison: dict, key: str, columns: Sequence[str], title: str, json_path: Path | None) -> None:
    """Print the comparison's rows under `key` as a table; write it as JSON if asked."""
    from rich.table import Table

    table = Table(*columns, title=title)
    for row in comparison[key]:
        table.add_row(*(fmt(row[c]) for c in columns))
    out.print(table)
    if json_path:
        write(json_path, json.dumps(comparison, indent=2))


def _compare_shifting(loaded, seeds: int, json_path: Path | None) -> None:
    """One table per seed (JSON: the comparison, or a list of them for several seeds)."""
    from gridflex.sim.shift_compare import COLUMNS as SHIFT_COLUMNS
    from gridflex.sim.shift_compare import shift_comparison

    comparisons = []
    for seed in range(seeds):
        with progress(f"{loaded.scenario.name} · time-shifting policies · seed {seed}") as tick:
            comparisons.append(shift_comparison(loaded, seed, tick))
        c = comparisons[-1]
        _show(c, "policies", SHIFT_COLUMNS, f"{c['scenario']} · {c['unit']} · seed {seed}", None)
    if json_path:
        write(json_path, json.dumps(comparisons[0] if seeds == 1 else comparisons, indent=2))
