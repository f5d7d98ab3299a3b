"""The live service's telemetry rows say what the site drew as the controller saw it: the site
meter's reading (a real Modbus TCP server) when there is one, else the drivers' power plus the
miners'; each row carries the miners' power, the meter's reading and the source."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.service_support import FakeClock, make_service, run_ticks
from tests.test_meter_loop import REGISTER, LiveMeter

T0 = datetime(2026, 8, 20, 15, 0, tzinfo=timezone.utc)
OTHER_W = 4000.0  # what the meter sees that no driver reads (lights, storage, losses)
MINERS = {
    "groups": [{"id": "s19", "model": "bitmain antminer s19 xp", "count": 4}],
    "hashprice_usd_per_th_day": 0.043,
    "prices": "ercot-hb-south-2024-08-20",
    "dispatch": {"mode": "economic"},
}


def _rows(svc):
    return svc.store.telemetry(0.0, 100)


@pytest.mark.parametrize("metered", [True, False], ids=["meter", "drivers"])
def test_telemetry_rows_carry_site_power_with_miners_the_meter_reading_and_the_source(tmp_path, metered):
    holder: dict = {}
    meter = LiveMeter(lambda: holder["svc"].driver.site_power_w + holder["svc"].miners.last.total_w + OTHER_W)
    clock = FakeClock(T0.timestamp())
    extra = {"meter": {"host": "127.0.0.1", "port": meter.port, "address": REGISTER, "scale": 1000}} if metered else {}
    try:
        svc = holder["svc"] = make_service(f"sqlite:///{tmp_path}/t.db", clock, miners=MINERS, **extra)
        svc.miners.read()  # the meter's first answer needs a miner reading
        run_ticks(svc, clock, 5)
        rows, tel = _rows(svc), svc.journal.last_tel
        assert len(rows) == 5
        last = rows[-1]
        miners_w = svc.miners.last.total_w
        assert miners_w > 4 * 2000  # the miners draw (s19 xp: ~3 kW each) and are in the row
        assert last.miners_power_w == pytest.approx(miners_w)
        assert last.t_s == tel.t_s and last.it_power_w == pytest.approx(tel.it_power_w)
        if metered:
            assert last.source == f"meter 127.0.0.1:{meter.port}" and last.estimated is False
            assert last.meter_power_w == pytest.approx(tel.site_power_w + miners_w + OTHER_W, rel=1e-6)  # float32
            assert last.site_power_w == last.meter_power_w
        else:
            assert last.source == "drivers (twin)" and last.meter_power_w is None
            assert last.site_power_w == pytest.approx(tel.site_power_w + miners_w)
        assert last.site_power_w == pytest.approx(svc.status.site_power_w)  # what /status and the controller saw
    finally:
        meter.close()


def test_a_site_meter_s_unmetered_load_counts_in_what_an_event_may_ask(tmp_path):
    """With a meter, the site's full and least power include the load only the meter sees: a power
    target between them is accepted (it was refused as 'not below the site's full power')."""
    from gridflex.errors import InputError
    from gridflex.model.events import GridEvent, Target

    holder: dict = {}
    meter = LiveMeter(lambda: holder["svc"].driver.site_power_w + 50_000.0)
    clock = FakeClock(T0.timestamp())
    try:
        svc = holder["svc"] = make_service(
            f"sqlite:///{tmp_path}/t.db", clock,
            meter={"host": "127.0.0.1", "port": meter.port, "address": REGISTER, "scale": 1000})
        run_ticks(svc, clock, 3)
        metered_w = svc.status.site_power_w
        assert svc.unmetered_w == pytest.approx(50_000.0, rel=1e-4)
        full_w, least_w = svc._power_range_w()
        assert least_w > 50_000.0 and full_w > metered_w - 1.0
        start = datetime.fromtimestamp(clock.t_s, timezone.utc)
        end = start + timedelta(hours=1)
        svc.check_event(GridEvent(id="ok", start=start, end=end, target=Target(power_w=0.9 * metered_w)), clock.t_s)
        with pytest.raises(InputError, match="below the least the site can draw"):
            svc.check_event(GridEvent(id="low", start=start, end=end, target=Target(power_w=40_000.0)), clock.t_s)
    finally:
        meter.close()


def test_a_store_of_the_first_release_keeps_its_telemetry_through_the_migration(tmp_path):
    from importlib import resources

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from gridflex.store import Store

    store = Store(f"sqlite:///{tmp_path}/old.db")
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("gridflex.store").joinpath("migrations")))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO telemetry (t_s, site_power_w, it_power_w, estimated, job_power_w)"
                          " VALUES (1.0, 90000.0, 89000.0, 1, '[400.0]')"))
    store.migrate()
    (row,) = store.telemetry(0.0, 10)
    assert (row.site_power_w, row.miners_power_w, row.meter_power_w, row.source) == (90000.0, None, None, None)
    store.close()
