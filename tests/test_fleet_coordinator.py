"""The fleet coordinator's LP on hand-made cases, with the measured inter-region RTTs
(../shared/data/cloud-interregion-latency: Washington DC -> Toronto 19 ms, -> Dallas 31 ms)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gridflex.errors import InputError
from gridflex.fleet.coordinator import FleetCosts, FleetSites, RequestClasses, decide
from gridflex.fleet.latency import RttTable

LONG_CSV = Path("../shared/data/cloud-interregion-latency/ibm_vpc_interregion_latency_long.csv")
J = 500.0  # J per request: 1 request/s = 500 W


@pytest.fixture(scope="module")
def rtt() -> RttTable:
    return RttTable.from_csv(LONG_CSV)


def fleet(n: int = 2, **overrides) -> FleetSites:
    names = ("A", "B", "C")[:n]
    base = dict(
        names=names, regions=("Washington DC", "Dallas", "Toronto")[:n],
        headroom_w=np.full(n, 1e6), capacity_rps=np.full(n, 300.0), energy_per_request_j=np.full(n, J),
        carbon_g_per_kwh=np.full(n, 400.0), price_usd_per_mwh=np.full(n, 50.0), event_cut_w=np.zeros(n),
        flex_w=np.full(n, 1e6), slow_usd_per_mwh=np.full(n, 5000.0), reachable=np.ones(n, bool))
    base.update({k: np.asarray(v) if k not in ("names", "regions") else v for k, v in overrides.items()})
    return FleetSites(**base)


# chat: interactive, 25 ms of added round trip at most; batch: offline inference, 200 ms
CLASSES = RequestClasses(("chat", "batch"), ("Washington DC", "Washington DC"), np.array([100.0, 100.0]),
                         np.array([25.0, 200.0]))
AT_A = np.array([[1.0, 0.0], [1.0, 0.0]])


def test_rtt_table_keeps_the_newest_measurement(rtt):
    m = rtt.between(["Washington DC"], ["Washington DC", "Dallas", "Toronto"])[0]
    assert m[0] == 0 and 25 <= m[1] <= 40 and 15 <= m[2] <= 25
    with pytest.raises(InputError, match="'Houston'.*known"):
        rtt.between(["Houston"], ["Dallas"])


def test_no_event_keeps_traffic_home(rtt):
    d = decide(fleet(price_usd_per_mwh=[80.0, 30.0]), CLASSES, AT_A, rtt)
    assert d.ok and np.allclose(d.share, AT_A) and d.moved_rps == 0 and np.allclose(d.power_change_w, 0)


def test_event_moves_only_the_class_whose_budget_allows_it(rtt):
    """40 kW cut at A = 80 requests/s: batch may go to Dallas (31 ms), chat may not (25 ms)."""
    d = decide(fleet(event_cut_w=[40e3, 0]), CLASSES, AT_A, rtt)
    assert d.ok
    assert np.allclose(d.share, [[1.0, 0.0], [0.2, 0.8]], atol=1e-6)
    assert np.allclose(d.power_change_w, [-40e3, 40e3]) and np.allclose(d.slow_in_place_w, 0)
    assert d.added_latency_ms[0] == 0 and 0.8 * 25 <= d.added_latency_ms[1] <= 0.8 * 40


def test_latency_budget_binding_the_rest_is_slowed_in_place(rtt):
    """60 kW cut: all 100 requests/s of batch (50 kW) move; chat cannot, so 10 kW is slowed."""
    d = decide(fleet(event_cut_w=[60e3, 0]), CLASSES, AT_A, rtt)
    assert np.allclose(d.share, [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    assert np.allclose(d.slow_in_place_w, [10e3, 0]) and np.allclose(d.shortfall_w, 0)
    wide = replace(CLASSES, latency_budget_ms=np.array([40.0, 200.0]))  # a wider budget lets chat go too
    d = decide(fleet(event_cut_w=[60e3, 0]), wide, AT_A, rtt)
    assert np.isclose(d.rps[:, 1].sum(), 120) and d.share[0, 1] > 0 and np.allclose(d.slow_in_place_w, 0)


@pytest.mark.parametrize("limit, moved_rps", [(dict(capacity_rps=[300.0, 50.0]), 50.0),
                                              (dict(headroom_w=[1e6, 10e3]), 20.0)])
def test_capacity_and_headroom_are_hard_limits(rtt, limit, moved_rps):
    d = decide(fleet(event_cut_w=[40e3, 0], **limit), CLASSES, AT_A, rtt)
    assert np.isclose(d.rps[:, 1].sum(), moved_rps)
    assert np.allclose(d.slow_in_place_w, [40e3 - moved_rps * J, 0])
    assert np.isclose(d.power_change_w[1], moved_rps * J)


def test_load_above_what_a_site_can_serve_now_moves_where_budgets_allow(rtt):
    """A's serving job slowed to 150 requests/s it can serve, 200 routed to it: batch (200 ms
    budget) takes the excess to B; chat (25 ms) cannot go, and stays (it is never made worse)."""
    d = decide(fleet(capacity_rps=[150.0, 300.0]), CLASSES, AT_A, rtt)
    assert np.isclose(d.rps[1, 1], 50.0) and np.isclose(d.rps[0, 0], 100.0)
    d = decide(fleet(capacity_rps=[50.0, 300.0]), CLASSES, AT_A, rtt)  # more excess than batch can carry away
    assert np.isclose(d.rps[1, 1], 100.0) and np.isclose(d.rps[0, 0], 100.0) and d.ok
    d = decide(fleet(capacity_rps=[150.0, 300.0], headroom_w=[1e6, 0.0]), CLASSES, AT_A, rtt)  # B has no power
    assert np.allclose(d.rps[:, 0], [100.0, 100.0])


def test_unreachable_site_keeps_its_share_and_gets_nothing_new(rtt):
    batch = RequestClasses(("batch",), ("Washington DC",), np.array([100.0]), np.array([200.0]))
    now = np.array([[0.6, 0.2, 0.2]])
    cheap_b = dict(price_usd_per_mwh=[50.0, 0.0, 50.0], carbon_g_per_kwh=[400.0, 0.0, 400.0])
    d = decide(fleet(3, event_cut_w=[20e3, 0, 0], **cheap_b), batch, now, rtt)
    assert d.share[0, 1] > 0.2  # reachable, the cheap clean site takes the load
    d = decide(fleet(3, event_cut_w=[20e3, 0, 0], reachable=[True, False, True], **cheap_b), batch, now, rtt)
    assert np.allclose(d.share, [[0.2, 0.2, 0.6]], atol=1e-6)
    assert d.power_change_w[1] == 0
    # nor is what it serves taken away, however dear it is (its own controller is in charge)
    dear_b = dict(price_usd_per_mwh=[50.0, 900.0, 50.0], carbon_g_per_kwh=[400.0, 900.0, 50.0])
    free = FleetCosts(latency_usd_per_request_s=0.0)
    assert decide(fleet(3, **dear_b), batch, now, rtt, free).share[0, 1] == 0
    d = decide(fleet(3, reachable=[True, False, True], **dear_b), batch, now, rtt, free)
    assert np.isclose(d.share[0, 1], 0.2)


def test_moving_is_chosen_only_where_it_beats_slowing_in_place(rtt):
    """Slowing A costs 5000 USD/MWh: moving wins. At 50 USD/MWh (less than the latency cost of a
    moved request, 3.6 x 31 ms x 0.001 USD = 0.11 USD/h per request/s, i.e. 223 USD/MWh)
    slowing wins and nothing moves."""
    dear = decide(fleet(event_cut_w=[20e3, 0]), CLASSES, AT_A, rtt)
    assert dear.moved_rps == pytest.approx(40) and np.allclose(dear.slow_in_place_w, 0)
    cheap = decide(fleet(event_cut_w=[20e3, 0], slow_usd_per_mwh=[50.0, 50.0]), CLASSES, AT_A, rtt)
    assert cheap.moved_rps == 0 and np.allclose(cheap.slow_in_place_w, [20e3, 0])
    assert cheap.cost_usd_per_h < dear.cost_usd_per_h + 20e3 / 1e6 * 5000


def test_carbon_pulls_flexible_traffic_when_latency_is_cheap(rtt):
    clean_b = fleet(carbon_g_per_kwh=[800.0, 50.0])
    d = decide(clean_b, CLASSES, AT_A, rtt, FleetCosts(latency_usd_per_request_s=0.0))
    assert np.allclose(d.share, [[1.0, 0.0], [0.0, 1.0]], atol=1e-6)


def test_event_beyond_what_moving_and_slowing_can_do_is_reported_as_shortfall(rtt):
    d = decide(fleet(event_cut_w=[150e3, 0], flex_w=[20e3, 0]), CLASSES, AT_A, rtt)
    assert d.ok and np.allclose(d.shortfall_w, [150e3 - 50e3 - 20e3, 0])


def test_no_feasible_split_keeps_the_current_one_and_says_why(rtt):
    chat = RequestClasses(("chat",), ("Washington DC",), np.array([100.0]), np.array([10.0]))
    d = decide(fleet(capacity_rps=[50.0, 300.0]), chat, np.array([[0.0, 1.0]]), rtt)
    assert not d.ok and "no split" in d.note and np.allclose(d.share, [[0.0, 1.0]])


@pytest.mark.parametrize("field, value, match", [
    ("capacity_rps", [-1.0, 300.0], "sites.capacity_rps"),
    ("price_usd_per_mwh", [50.0], "sites.price_usd_per_mwh: shape"),
    ("energy_per_request_j", [0.0, 500.0], "positive energy per request"),
    ("carbon_g_per_kwh", [np.nan, 1.0], "sites.carbon_g_per_kwh"),
])
def test_bad_site_input_names_the_field(rtt, field, value, match):
    with pytest.raises(InputError, match=match):
        decide(fleet(**{field: value}), CLASSES, AT_A, rtt)


def test_bad_split_or_region_names_the_field(rtt):
    with pytest.raises(InputError, match="current_share"):
        decide(fleet(), CLASSES, np.array([[0.5, 0.4], [1.0, 0.0]]), rtt)
    with pytest.raises(InputError, match="'Mars'"):
        decide(fleet(regions=("Washington DC", "Mars")), CLASSES, AT_A, rtt)


def test_tens_of_sites_and_classes(rtt):
    rng = np.random.default_rng(0)
    regions = [r for r in rtt.regions if r in ("Dallas", "Washington DC", "Toronto", "Montreal", "London",
                                               "Frankfurt", "Madrid")]
    n = 40
    sites = fleet(1)
    sites = replace(sites, names=tuple(f"s{i}" for i in range(n)), regions=tuple(rng.choice(regions, n)),
                    **{k: np.resize(getattr(sites, k), n) for k in (
                        "headroom_w", "capacity_rps", "energy_per_request_j", "flex_w", "slow_usd_per_mwh",
                        "reachable", "event_cut_w")},
                    carbon_g_per_kwh=rng.uniform(50, 800, n), price_usd_per_mwh=rng.uniform(20, 200, n))
    sites = replace(sites, event_cut_w=np.where(np.arange(n) < 5, 30e3, 0.0))
    classes = RequestClasses(tuple(f"c{i}" for i in range(6)), tuple(rng.choice(regions, 6)),
                             rng.uniform(100, 1000, 6), rng.choice([20.0, 50.0, 150.0], 6))
    now = rng.dirichlet(np.ones(n), 6)
    d = decide(sites, classes, now, rtt)
    assert d.ok and np.allclose(d.share.sum(axis=1), 1)
    assert (d.rps.sum(axis=0) <= np.maximum(300.0, (now * classes.rate_rps[:, None]).sum(axis=0)) + 1e-6).all()
    lat = rtt.between(classes.origins, sites.regions)
    moved_in = d.rps > now * classes.rate_rps[:, None] + 1e-6
    assert (lat[moved_in] <= np.repeat(classes.latency_budget_ms[:, None], n, 1)[moved_in]).all()


def test_a_class_with_no_requests_now_keeps_its_split(rtt):
    classes = replace(CLASSES, rate_rps=np.array([0.0, 100.0]))
    start = np.array([[0.3, 0.7], [1.0, 0.0]])
    d = decide(fleet(), classes, start, rtt)
    assert d.ok and np.allclose(d.share.sum(axis=1), 1.0)
    assert np.allclose(d.share[0], [0.3, 0.7])  # nothing to place: the router's split stays as it is
