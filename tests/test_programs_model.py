"""Programs as configuration: the example catalogue loads, bad input names the field, and events are
assigned to the right program (by name, else by rules)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.programs.match import which_program
from gridflex.programs.model import parse_enrolment
from gridflex.service.config import load_config

EXAMPLE = Path("examples/programs.yaml")
BASE = {"modelled_on": "x", "committed_w": 1000, "notice_s": 600, "max_duration_s": 7200}


def _enrol(*programs):
    return parse_enrolment({"programs": list(programs)}, "test")


def test_example_catalogue_has_the_five_kinds():
    enrol = load_config(EXAMPLE).programs
    assert sorted(p.kind for p in enrol.programs) == sorted(
        ["emergency", "price_curtailment", "coincident_peak", "capacity", "flex_bids"])
    assert enrol.get("dfs").bid("dfs-2026-01-15").price_usd_per_mwh == 3000


def test_programs_in_the_service_config(tmp_path):
    cfg = tmp_path / "site.yaml"
    cfg.write_text(EXAMPLE.read_text())
    assert [p.name for p in load_config(cfg).programs.programs][:2] == ["ers-10", "clr"]


@pytest.mark.parametrize("change, field", [
    ({"kind": "emergency", "response_s": 300}, "response_s"),
    ({"kind": "nope"}, "kind"),
    ({"kind": "capacity", "measurement": {"x": 11, "y": 10}}, "measurement"),
    ({"kind": "capacity", "measurement": {"interval_s": 700}}, "interval_s"),
    ({"kind": "capacity", "timezone": "Mars/Olympus"}, "timezone"),
    ({"kind": "capacity", "availability": [{"start_hour": 20, "end_hour": 8}]}, "availability.0"),
    ({"kind": "capacity", "color": "red"}, "color"),
    ({"kind": "coincident_peak"}, "transmission_usd_per_kw_year"),
    ({"kind": "flex_bids", "name": "Bad Name"}, "name"),
])
def test_bad_program_names_the_field(change, field):
    with pytest.raises(InputError, match=field.replace(".", r"\.")) as e:
        _enrol({"name": "p", **BASE, **change})
    assert "programs.0" in str(e.value)


def test_duplicate_names_refused():
    with pytest.raises(InputError, match="repeated: p"):
        _enrol({"name": "p", "kind": "capacity", **BASE}, {"name": "p", "kind": "capacity", **BASE})


T0 = datetime(2026, 7, 15, 19, 0, tzinfo=UTC)  # 14:00 in Chicago


def _match(enrol, ev_id="e1", notice_s=900.0, hours=1.0, source="api", start=T0):
    ev = GridEvent(id=ev_id, start=start, end=start + timedelta(hours=hours), target={"reduction": 0.1})
    return which_program(ev, source, start.timestamp() - notice_s, enrol)


ENROL = [
    {"name": "ers-10", "kind": "emergency", **BASE, "response_s": 600},
    {"name": "ers-30", "kind": "emergency", **BASE, "notice_s": 1800, "response_s": 1800},
    {"name": "cp", "kind": "coincident_peak", **BASE, "notice_s": 0, "transmission_usd_per_kw_year": 50,
     "availability": [{"months": [6, 7, 8, 9], "start_hour": 14, "end_hour": 19}]},
]


def test_named_event_wins_and_longest_name_first():
    enrol = _enrol(*ENROL, {"name": "ers", "kind": "capacity", **BASE})
    assert _match(enrol, "ers-30:2026-07-15", notice_s=0).program == "ers-30"
    assert _match(enrol, "ers:x", notice_s=0).program == "ers"
    assert _match(enrol, "e1", source="cp").program == "cp"
    assert _match(enrol, "ers-300", notice_s=0).program == "ers"  # not ers-30: a name ends at a separator


def test_rules_pick_the_program_whose_notice_the_event_gives():
    enrol = _enrol(*ENROL)
    m = _match(enrol, notice_s=900)
    assert m.program == "ers-10" and "also fitted: cp" in m.how
    assert _match(enrol, notice_s=3600).program == "ers-30"
    assert _match(enrol, notice_s=60).program == "cp"  # 14:00 CDT in July: inside the CP window
    late = _match(enrol, notice_s=60, start=T0 + timedelta(hours=6))  # 20:00 CDT: outside it
    assert late.program is None and "outside its availability windows" in late.how
    assert _match(enrol, notice_s=900, hours=3).program is None  # longer than any max_duration_s
