"""Settlement from a store, checked by hand, and its digest.

The site (America/Chicago, 5-min telemetry, June-July 2026): weekdays 100 kW, weekends 60 kW, the
holiday 07-03 40 kW. Program `ers-10`: 20 kW committed, 10-of-10 baseline (no adjustment), 15-min
intervals, 6000 USD/MW-month capacity, 100 USD/MWh energy, penalty 1000 USD/MW short below 0.95.

- Event `ers-10:jul15` (named), Wed 07-15 14:00-16:00 CDT, 10-min notice: the site holds 80 kW.
  Baseline 100 kW (10 weekdays 07-01..07-14 without the holiday). Reduction 20 kW = obligation: PF 1.0;
  delivered 20 kW × 2 h = 0.04 MWh -> 4 USD.
- Event `evt-22` (by rules: notice 600 s), Wed 07-22 14:00-15:00: the site holds 90 kW. Baseline: the
  10 weekdays before, skipping 07-15 (an event day; had it been used the baseline would be
  (9·100 + 80)/10 = 98 kW): 100 kW. Reduction 10 kW: PF 0.5; 0.01 MWh -> 1 USD; short 10 kW -> 10 USD.
- Event `weekend` (no notice) matches no program (ers-10 needs 600 s).
Month PF = (1.0 + 0.5)/2 = 0.75 < 0.95: capacity 0.02 MW × 6000 × 0.75 = 90 USD.
Net = 90 + 4 + 1 - 10 = 85 USD.
"""

import csv
import json
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import insert, update
from typer.testing import CliRunner

from gridflex.cli import app
from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.programs.model import parse_enrolment
from gridflex.programs.settle import settle_month
from gridflex.programs.statement import write_statement
from gridflex.store import Store
from gridflex.store.models import DecisionRow, TelemetryRow

TZ = ZoneInfo("America/Chicago")
PROGRAMS = {"programs": [{
    "name": "ers-10", "kind": "emergency", "modelled_on": "ERCOT ERS-10", "committed_w": 20000, "notice_s": 600,
    "response_s": 600, "max_duration_s": 28800, "holidays": ["2026-07-03"],
    "measurement": {"method": "x_of_y", "x": 10, "y": 10, "select": "all", "interval_s": 900},
    "payment": {"capacity_usd_per_mw_month": 6000, "energy_usd_per_mwh": 100},
    "penalty": {"threshold": 0.95, "usd_per_mw_short": 1000},
}]}


def _local(month, day, hour) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=TZ)


def _site_w(t_s: np.ndarray) -> np.ndarray:
    local = [datetime.fromtimestamp(t, TZ) for t in t_s]
    kw = np.array([40.0 if (d.month, d.day) == (7, 3) else 60.0 if d.weekday() >= 5 else 100.0 for d in local])
    for start, end, level in ((_local(7, 15, 14), _local(7, 15, 16), 80.0), (_local(7, 22, 14), _local(7, 22, 15), 90.0)):
        kw[(t_s >= start.timestamp()) & (t_s < end.timestamp())] = level
    return kw * 1e3


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'site.db'}")
    s.migrate()
    t = np.arange(_local(6, 1, 0).timestamp(), _local(8, 1, 0).timestamp(), 300.0)
    with s.engine.begin() as conn:
        conn.execute(insert(TelemetryRow), [{"t_s": float(a), "site_power_w": float(p), "it_power_w": float(p) * 0.8,
                                                 "estimated": False, "job_power_w": []} for a, p in zip(t, _site_w(t))])
    for ev_id, start, hours, notice in (("ers-10:jul15", _local(7, 15, 14), 2, 600), ("evt-22", _local(7, 22, 14), 1, 600),
                                        ("weekend", _local(7, 26, 10), 1, 0)):
        ev = GridEvent(id=ev_id, start=start, end=start + timedelta(hours=hours), notice_s=notice,
                       target={"reduction": 0.2})
        s.add_event(ev, "api", start.timestamp() - notice)
    for ev_id, t in (("ers-10:jul15", _local(7, 15, 14)), ("evt-22", _local(7, 22, 14))):
        s.add_decision(DecisionRow(t_s=t.timestamp() - 300, site_power_w=1e5, target_w=8e4, it_ceiling_w=6e4,
                                   it_power_w=6e4, shortfall_w=0.0, model_ratio=1.0, planner_s=0.001,
                                   active_events=[ev_id], broken_tier=[], notes=["ramp down"], cap_w=[], active=[]),
                       [], {})
    yield s
    s.close()


def test_month_settled_by_hand(store):
    st = settle_month(store, parse_enrolment(PROGRAMS, "test"), "ers-10", "2026-07")
    by_id = {e.event_id: e for e in st.events}
    assert set(by_id) == {"ers-10:jul15", "evt-22"}
    jul15, jul22 = by_id["ers-10:jul15"], by_id["evt-22"]
    assert jul15.matched.startswith("named") and jul22.matched.startswith("by rules")
    assert len(jul15.start_s) == 8 and jul15.baseline_w == pytest.approx(np.full(8, 100e3))
    assert jul15.performance_factor == pytest.approx(1.0) and jul15.payment_usd == pytest.approx(4.0)
    assert jul15.penalty_usd == 0
    assert jul22.baseline_w == pytest.approx(np.full(4, 100e3))  # 07-15 skipped as an event day
    assert (datetime(2026, 7, 15).date(), "event day") in jul22.baseline.days_skipped
    assert (datetime(2026, 7, 3).date(), "holiday") in jul15.baseline.days_skipped
    assert jul22.performance_factor == pytest.approx(0.5)
    assert jul22.payment_usd == pytest.approx(1.0) and jul22.penalty_usd == pytest.approx(10.0)
    assert st.performance_factor == pytest.approx(0.75) and st.capacity_usd == pytest.approx(90.0)
    assert st.net_usd == pytest.approx(85.0)
    assert [i for i, _ in st.unmatched] == ["weekend"] and "notice 0 s < 600 s" in st.unmatched[0][1]
    assert len(jul15.decisions) == 1 and jul15.decisions[0]["active_events"] == ["ers-10:jul15"]


def test_digest_reproducible_and_changes_with_a_record(store):
    enrol = parse_enrolment(PROGRAMS, "test")
    first = settle_month(store, enrol, "ers-10", "2026-07").records.digest
    assert settle_month(store, enrol, "ers-10", "2026-07").records.digest == first
    with store.engine.begin() as conn:
        conn.execute(update(TelemetryRow).where(TelemetryRow.id == 5000).values(site_power_w=99_999.0))
    assert settle_month(store, enrol, "ers-10", "2026-07").records.digest != first


def test_statement_files(store, tmp_path):
    st = settle_month(store, parse_enrolment(PROGRAMS, "test"), "ers-10", "2026-07")
    paths = write_statement(st, tmp_path / "out")
    page = paths[0].read_text()
    assert st.records.digest in page and page.count("data:image/png;base64") == 3  # month + 2 events
    assert "capacity 6,000 USD/MW-month" in page and "penalty 1,000 USD/MW short when PF &lt; 0.95" in page
    rows = list(csv.DictReader(paths[2].open()))
    assert len(rows) == 12 and rows[0]["interval_start_utc"] == "2026-07-15T19:00:00Z"
    assert float(rows[0]["reduction_kw"]) == pytest.approx(20.0)
    data = json.loads(paths[1].read_text())
    assert data["totals"]["net_usd"] == pytest.approx(85.0) and data["digest_sha256"] == st.records.digest
    assert data["events"][0]["received"]["event"]["id"] == "ers-10:jul15"


def test_cli_settle(store, tmp_path):
    programs = tmp_path / "programs.yaml"
    programs.write_text(json.dumps(PROGRAMS))
    args = ["settle", "--store", store.url, "--programs", str(programs), "--program", "ers-10", "--month", "2026-07",
            "--out", str(tmp_path / "st")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "net_usd" in result.output and (tmp_path / "st" / "statement.html").exists()
    bad = CliRunner().invoke(app, [*args[:-4], "--month", "2026-13", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output
    bad = CliRunner().invoke(app, [*args[:5], "--program", "nope", "--month", "2026-07", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "enrolled: ers-10" in bad.output
    missing = CliRunner().invoke(app, ["settle", "--store", f"sqlite:///{tmp_path}/none.db", *args[3:]])
    assert missing.exit_code == 2 and "no such file" in missing.output and not (tmp_path / "none.db").exists()
    sqlite3.connect(tmp_path / "empty.db").close()  # a SQLite file without gridflex's tables
    empty = CliRunner().invoke(app, ["settle", "--store", f"sqlite:///{tmp_path}/empty.db", *args[3:]])
    assert empty.exit_code == 2 and "no gridflex tables" in empty.output


def test_too_little_history_is_reported_not_raised(store):
    """A store with only 7 days of history (the default retention) cannot give a 10-of-10 baseline."""
    with store.engine.begin() as conn:
        from sqlalchemy import delete

        conn.execute(delete(TelemetryRow).where(TelemetryRow.t_s < _local(7, 8, 0).timestamp()))
    st = settle_month(store, parse_enrolment(PROGRAMS, "test"), "ers-10", "2026-07")
    jul15 = next(e for e in st.events if e.event_id == "ers-10:jul15")
    assert jul15.baseline is None and "eligible day" in jul15.error and jul15.payment_usd == 0


def test_bad_month_and_program(store):
    enrol = parse_enrolment(PROGRAMS, "test")
    with pytest.raises(InputError, match="YYYY-MM"):
        settle_month(store, enrol, "ers-10", "July")
    with pytest.raises(InputError, match="no program 'x'"):
        settle_month(store, enrol, "x", "2026-07")


def test_coincident_peaks_priced_under_the_tariff(store, tmp_path):
    """Peaks at 07-15 14:00 CDT (the site held 80 kW against a 100 kW 10-of-10 baseline: 20 kW avoided,
    20 × 55 / 4 = 275 USD) and 07-20 15:00 (a normal Monday: 0), and one in August (not this month)."""
    cp = {"name": "cp", "kind": "coincident_peak", "modelled_on": "ERCOT 4CP", "committed_w": 20000, "notice_s": 0,
          "max_duration_s": 14400, "peaks_per_season": 4, "transmission_usd_per_kw_year": 55, "holidays": ["2026-07-03"],
          "peak_intervals": ["2026-07-15T19:00:00Z", "2026-07-20T20:00:00Z", "2026-08-10T20:00:00Z"],
          "measurement": {"method": "x_of_y", "x": 10, "y": 10, "interval_s": 900}, "penalty": {"threshold": 0}}
    st = settle_month(store, parse_enrolment({"programs": [cp]}, "test"), "cp", "2026-07")
    assert [round(p.avoided_usd, 6) for p in st.peaks] == [275.0, 0.0]
    assert st.peaks[0].baseline_w == pytest.approx(100e3) and st.peaks[0].metered_w == pytest.approx(80e3)
    assert st.avoided_usd == pytest.approx(275.0)
    page = write_statement(st, tmp_path / "cp")[0].read_text()
    assert "Coincident peaks" in page and "275" in page


def test_measured_once_the_response_time_has_passed(store):
    """An event known 60 s before its 14:00 start, 10-min response: full reduction is due at 14:09, so
    the 15-min intervals measured are 14:15, 14:30 and 14:45 (14:00 is only partly inside)."""
    start = _local(7, 29, 14)
    store.add_event(GridEvent(id="ers-10:late", start=start, end=start + timedelta(hours=1), notice_s=60,
                              target={"reduction": 0.2}), "api", start.timestamp() - 60)
    st = settle_month(store, parse_enrolment(PROGRAMS, "test"), "ers-10", "2026-07")
    late = next(e for e in st.events if e.event_id == "ers-10:late")
    assert [datetime.fromtimestamp(t, TZ).strftime("%H:%M") for t in late.start_s] == ["14:15", "14:30", "14:45"]
    assert late.performance_factor == pytest.approx(0.0)  # the site did not respond: 100 kW against 100 kW


def test_digest_and_load_do_not_depend_on_the_chunk_size(store, monkeypatch):
    enrol = parse_enrolment(PROGRAMS, "test")
    whole = settle_month(store, enrol, "ers-10", "2026-07")
    read = store.telemetry_between
    monkeypatch.setattr(store, "telemetry_between", lambda a, b: read(a, b, chunk=997))
    chunked = settle_month(store, enrol, "ers-10", "2026-07")
    assert chunked.records.digest == whole.records.digest
    assert np.array_equal(chunked.records.load.power_w, whole.records.load.power_w, equal_nan=True)


class _Controller:
    """What `ProgramTargets.apply` calls on the controller, recorded."""

    def __init__(self, *events):
        self.added, self.cancelled, self.baselines_w = [], [], {}
        self._events = {ev.id: ev for ev in events}

    def events(self):
        return self._events

    def cancel_event(self, event_id):
        self.cancelled.append(event_id)
        del self._events[event_id]

    def add_event(self, ev, known_from_s):
        self.added.append((ev, known_from_s))
        self._events[ev.id] = ev


@pytest.mark.parametrize("mode, ceiling_kw", [("obligation", 80.0), ("program_baseline", 90.0), ("event", None)])
def test_events_aimed_at_the_x_of_y_baseline_by_hand(store, mode, ceiling_kw):
    """Wed 07-29 14:00-16:00, 10 % off, 10 minutes' notice. The 10-of-10 baseline is 100 kW (the
    weekdays before, 07-15 and 07-22 skipped as event days, 07-03 as a holiday); with 20 kW
    committed: `obligation` min(90, 100 - 20) = 80 kW, `program_baseline` 90 kW, `event` as is."""
    from gridflex.programs.steer import ProgramTargets

    programs = json.loads(json.dumps(PROGRAMS))
    programs["programs"][0]["event_target"] = mode
    start = _local(7, 29, 14)
    ev = GridEvent(id="ers-10:jul29", start=start, end=start + timedelta(hours=2), notice_s=600,
                   target={"reduction": 0.1})
    known_s = start.timestamp() - 600
    store.add_event(ev, "api", known_s)
    targets, controller = ProgramTargets(store, parse_enrolment(programs, "test")), _Controller(ev)
    targets.add(ev, "api", known_s)
    targets.apply(controller, known_s - 1)  # not known yet
    assert controller.added == []
    targets.apply(controller, known_s)
    if ceiling_kw is None:
        assert controller.added == [] and targets.baselines_w == {}
        return
    ((steered, steered_known_s),) = controller.added
    assert controller.cancelled == ["ers-10:jul29"] and steered_known_s == known_s
    assert steered.baseline_w == pytest.approx(100e3) and controller.baselines_w == {"ers-10:jul29": steered.baseline_w}
    assert steered.target.power_w == pytest.approx(ceiling_kw * 1e3) and steered.end == ev.end
    targets.apply(controller, known_s + 60)  # once only
    assert len(controller.added) == 1


def test_an_event_cancelled_before_it_is_aimed_stays_cancelled(store):
    from gridflex.programs.steer import ProgramTargets

    start = _local(7, 29, 14)
    ev = GridEvent(id="ers-10:jul29", start=start, end=start + timedelta(hours=2), notice_s=600,
                   target={"reduction": 0.1})
    store.add_event(ev, "api", start.timestamp() - 600)
    targets, controller = ProgramTargets(store, parse_enrolment(PROGRAMS, "test")), _Controller()
    targets.add(ev, "api", start.timestamp() - 600)  # the controller no longer has it (cancelled)
    targets.apply(controller, start.timestamp())
    assert controller.added == [] and controller.events() == {}
