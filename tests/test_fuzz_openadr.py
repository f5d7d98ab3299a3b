"""Mutated OpenADR events into the VEN, bounded for CI: every oadrDistributeEvent sample of the
OpenADR Alliance (../shared/data/openadr-samples), moved to start soon and then mutated anywhere
(values replaced by numbers, NaN, text, naive or aware times, negative or huge durations, nested
junk; keys dropped or added). The VEN answers optIn or optOut, never raises, and an optOut leaves
no event and no price behind."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridflex.service.openadr import Ven
from tests.service_support import FakeClock, make_service
from tests.test_fuzz_parsing import VALUES, mutated
from tests.test_openadr import CFG, SAMPLES, _sample

N_CASES = 300
NOW = datetime(2026, 5, 3, 16, tzinfo=timezone.utc)


def _distribute_events() -> list[str]:
    """The samples that are an oadrDistributeEvent with an event."""
    names = []
    for p in sorted((SAMPLES / "enernoc_2.0a").glob("*.xml")) if SAMPLES.is_dir() else []:
        try:
            _sample(p.name)
        except Exception:  # another message kind, or no event in it
            continue
        names.append(p.name)
    return names


NAMES = _distribute_events()

OADR_VALUES = VALUES | st.datetimes(timezones=st.none() | st.just(timezone.utc)) | st.timedeltas() \
    | st.sampled_from([timedelta(0), timedelta(seconds=-1), timedelta(days=3650), "PT1H", "far", "active",
                       "cancelled", "completed", "LOAD_DISPATCH", "SIMPLE", "setpoint", "level", "price"])


def _base(name: str) -> dict:
    event = _sample(name)
    event["active_period"]["dtstart"] = NOW + timedelta(minutes=10)
    return event


@pytest.fixture(scope="module")
def ven(tmp_path_factory):
    svc = make_service(f"sqlite:///{tmp_path_factory.mktemp('ven')}/v.db", FakeClock(NOW.timestamp()))
    return Ven(svc, CFG)


def test_the_samples_are_there():
    if not NAMES:
        pytest.skip(f"shared data not found: {SAMPLES}")
    assert len(NAMES) >= 5


@settings(max_examples=N_CASES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_events_opt_in_or_out_and_an_opt_out_leaves_nothing(ven, data):
    if not NAMES:
        pytest.skip(f"shared data not found: {SAMPLES}")
    event = data.draw(mutated(_base(data.draw(st.sampled_from(NAMES))), OADR_VALUES))
    store = ven.service.store
    before = (len(store.events(status="active")), len(store.prices()), ven.service.active_event_ids())
    answer = ven.handle(event)
    assert answer in ("optIn", "optOut")
    if answer == "optOut":  # (an event added then rolled back stays in the store as cancelled, for the record)
        assert (len(store.events(status="active")), len(store.prices()), ven.service.active_event_ids()) == before
