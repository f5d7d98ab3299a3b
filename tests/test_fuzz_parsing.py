"""Fuzzing the parsers with hypothesis, bounded for CI: a valid scenario, event and service config,
mutated (a value anywhere replaced by any JSON-like value, a key dropped, an unknown key added).
Every outcome is either a parsed document or InputError/ValidationError naming a field; never
another exception. The number of cases per parser is N_CASES (docs/reliability.md)."""

from __future__ import annotations

import copy
import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gridflex.errors import InputError
from gridflex.model.events import GridEvent
from gridflex.service.config import load_config
from gridflex.sim.scenarios import _builtin_dir, parse_scenario

N_CASES = 300
FUZZ = settings(max_examples=N_CASES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCENARIO = yaml.safe_load(_builtin_dir().joinpath("phoenix-srp.yaml").read_text())
CONFIG = yaml.safe_load((Path(__file__).parent.parent / "examples" / "site.yaml").read_text())
CONFIG = {**CONFIG, "meter": {"kind": "prometheus", "url": "http://127.0.0.1:9090",
                              "query": "sum(facility_power_w)", "series": ["facility_power_w"]}}
EVENT = {"id": "cut-1", "start": "2026-05-03T16:00:00Z", "end": "2026-05-03T18:00:00Z", "ramp_s": 600,
         "notice_s": 3600, "target": {"reduction": 0.2}, "baseline_w": 90000.0}

#: What a field may be replaced with: anything YAML or JSON can say, including the awkward numbers.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["", "nan", "-1", "1e400", "2026-13-40", "0001-01-01T00:00:00Z", "../../etc/passwd",
                       "a/b", "x" * 300, "\n", "10 kW"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(doc, prefix=()):
    """Every path to a value in `doc` (dict keys and list indices)."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))

#: Unknown keys: visible ones (a blank key is refused too, but the message shows it as blank: see
#: docs/reliability.md).
KEYS = st.text(st.characters(blacklist_categories=["Z", "C"]), min_size=1, max_size=8)


@st.composite
def mutated(draw, base: dict, values: st.SearchStrategy = VALUES):
    """`base` with one to three mutations (replacements drawn from `values`)."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        if how == "replace":
            parent[path[-1]] = draw(values)
        elif how == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(values)
        else:
            parent.append(draw(values))
    return doc


FIELD = re.compile(r"(^|\n)\s*[^\s:]+(\.[^\s:]+)*: ")


def _names_a_field(message: str) -> bool:
    return bool(FIELD.search(message))


@FUZZ
@given(doc=mutated(SCENARIO))
def test_scenario_parsing_refuses_bad_documents_naming_the_field(doc):
    text = json.dumps(doc, allow_nan=True)
    try:
        parse_scenario(text, "fuzz.json", base_dir=None)
    except InputError as e:
        assert _names_a_field(str(e)) or "a scenario must be a mapping" in str(e), str(e)


@FUZZ
@given(doc=mutated(EVENT))
def test_event_parsing_refuses_bad_events_naming_the_field(doc):
    try:
        GridEvent.model_validate(doc)
    except ValidationError as e:
        assert all(err["loc"] or err["type"] == "value_error" for err in e.errors()), e


@pytest.fixture(scope="module")
def config_dir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@FUZZ
@given(doc=mutated(CONFIG))
def test_config_parsing_refuses_bad_configs_naming_the_field(config_dir, doc):
    path = config_dir / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(path)
    except InputError as e:
        assert "invalid config\n" in str(e) and _names_a_field(str(e).split("\n", 1)[1]), str(e)
