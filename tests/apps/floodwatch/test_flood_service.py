"""The flood watch service on a real store: readings checked, flags kept with the
readings, one alert per flood, the all-clear, and alerts delivered by a subscription."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from cityos.apps.floodwatch.api import site_entities
from cityos.apps.floodwatch.history import on_grid, series
from cityos.apps.floodwatch.service import FloodWatchService
from cityos.config import Settings
from cityos.core import subscriptions as subs
from cityos.core.errors import BadRequestData
from cityos.core.store import open_store
from cityos.core.timefmt import format_datetime
from tests.core.receivers import Receiver

TENANT = "city"
T0 = 1_767_600_000.0  # 2026-01-05 08:00 UTC
SITE = "urn:ngsi-ld:WaterObserved:underpass"


@pytest.fixture
def store(tmp_path):
    opened = open_store(f"sqlite:///{tmp_path}/flood.db")
    opened.upsert_entities(TENANT, site_entities(
        {"id": "underpass", "name": "Jalan Tun Perak underpass", "lon": 101.69, "lat": 3.14,
         "alertLevels": [10, 20, 30], "gauge": "gauge-1"}))
    opened.upsert_entities(TENANT, [{"id": "urn:ngsi-ld:WeatherObserved:gauge-1",
                                     "type": "WeatherObserved"}])
    yield opened
    opened.close()


@pytest.fixture
def service(store):
    running = FloodWatchService(store)
    running.start()
    yield running
    running.stop()


def post_depths(store, depths, t0=T0, step_s=60.0, battery=None):
    """Write readings as the ingest path does: a merge with the reading's observedAt."""
    for k, depth in enumerate(depths):
        stamp = format_datetime(datetime.fromtimestamp(t0 + k * step_s, UTC))
        fragment = {"id": SITE, "type": "WaterObserved",
                    "depth": {"type": "Property", "value": float(depth), "unitCode": "CMT",
                              "observedAt": stamp}}
        if battery is not None:
            fragment["batteryLevel"] = {"type": "Property", "value": battery,
                                        "observedAt": stamp}
        store.upsert_entities(TENANT, [fragment], replace=False)


def flood_alerts(store):
    return [r.entity for r in store.scan(TENANT, types=["Alert"])
            if r.entity.get("subCategory", {}).get("value") == "flood"]


def test_a_depth_wavering_around_20_cm_raises_one_alert_and_one_all_clear(store, service):
    rng = np.random.default_rng(3)
    rise = np.linspace(0.0, 19.0, 20)
    wavering = 20.0 + np.where(np.arange(30) % 6 < 3, 0.6, -0.6) + rng.normal(0, 0.1, 30)
    fall = np.linspace(18.0, 0.0, 20)
    dry = np.zeros(10)
    post_depths(store, np.concatenate([rise, wavering, fall, dry]))
    assert service.wait_idle(30)
    alerts = flood_alerts(store)
    assert len(alerts) == 1, [a["id"] for a in alerts]
    alert = alerts[0]
    assert alert["alertSource"]["value"] == SITE
    assert alert["severity"]["value"] == "informational"  # lowered back to watch, then cleared
    assert alert["status"]["value"] == "resolved"
    assert alert["status"]["actor"]["value"] == "floodwatch"
    history = store.history(TENANT, alert["id"], ["severity"], None, None, None)
    severities = [r.instance["value"] for r in history]
    assert severities.count("high") == 1  # the 20 cm warning raised once, not five times
    entity = store.get_entity(TENANT, SITE)
    assert entity["floodLevel"]["value"] == 0


def test_a_spike_is_flagged_with_its_reading_and_raises_nothing(store, service):
    depths = [2.0, 2.1, 2.0, 50.0, 2.1, 2.0, 2.2, 2.1]
    post_depths(store, depths)
    assert service.wait_idle(30)
    assert flood_alerts(store) == []
    t, values = series(store, TENANT, SITE, "depth", usable_only=True)
    assert 50.0 not in values.tolist() and len(values) == len(depths) - 1
    rows = store.history(TENANT, SITE, ["depthQuality"], None, None, None)
    final = {r.observed_us: r.instance["value"] for r in rows}
    spike_us = int((T0 + 3 * 60) * 1e6)
    assert "spike" in final[spike_us]


def test_low_battery_is_flagged_but_the_reading_stays_usable(store, service):
    post_depths(store, [1.0, 1.0, 1.2], battery=0.12)
    assert service.wait_idle(30)
    rows = store.history(TENANT, SITE, ["depthQuality", "depthUsable"], None, None, None)
    flags = [r.instance["value"] for r in rows if r.attribute == "depthQuality"]
    assert flags and all("low-battery" in f for f in flags)
    assert all(r.instance["value"] is True for r in rows if r.attribute == "depthUsable")


def test_a_silent_sensor_is_marked_offline_by_the_sweep(store, service):
    post_depths(store, [1.0, 1.1])
    assert service.wait_idle(30)
    service.clock = lambda: T0 + 3600.0
    service.sweep()
    assert store.get_entity(TENANT, SITE)["sensorStatus"]["value"] == "offline"
    post_depths(store, [1.0], t0=T0 + 3600.0)
    assert service.wait_idle(30)
    service.sweep()
    assert store.get_entity(TENANT, SITE)["sensorStatus"]["value"] == "online"


def test_alerts_reach_a_webhook_subscription(store, service):
    receiver = Receiver()
    manager = subs.SubscriptionManager(store, Settings(
        database_url="sqlite:///unused.db", mqtt_url=None, bus_url="memory://",
        auth_required=False))
    manager.start()
    try:
        subs.create_subscription(store, TENANT, {
            "entities": [{"type": "Alert"}], "q": "subCategory==\"flood\"",
            "notification": {"endpoint": {"uri": receiver.url()}}})
        post_depths(store, [0.0, 4.0, 8.0, 12.0, 16.0, 22.0, 26.0])
        assert service.wait_idle(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(receiver.delivered) < 2:
            time.sleep(0.05)
        notified = [e for body in receiver.delivered for e in body["data"]]
        assert notified and all(e["alertSource"]["value"] == SITE for e in notified)
        assert {e["severity"]["value"] for e in notified} >= {"informational", "high"}
    finally:
        manager.stop()
        receiver.close()


def test_registration_names_the_bad_field():
    good = {"id": "s1", "lon": 101.7, "lat": 3.1}
    site_entities(good)
    for body, field in [({**good, "id": "a b"}, "id"), ({**good, "lon": 500}, "lon"),
                        ({"id": "s1", "lat": 3.1}, "lon"),
                        ({**good, "alertLevels": [30, 20]}, "alertLevels"),
                        ({**good, "units": "inch"}, "units"),
                        ({**good, "sensorProfile": {"spike_threshold": -1}}, "sensorProfile")]:
        with pytest.raises(BadRequestData, match=field):
            site_entities(body)


def test_rain_on_the_grid_keeps_the_total_and_spreads_each_interval():
    rain_t = np.array([600.0, 1200.0])  # 6 mm in the 10 min to 600 s, 3 mm to 1200 s
    rain = np.array([6.0, 3.0])
    grid = np.arange(0.0, 1201.0, 60.0)
    on, depth = on_grid(np.array([0.0, 1200.0]), np.array([0.0, 12.0]), rain_t, rain, grid)
    assert on.sum() == pytest.approx(9.0)
    assert on[1:11] == pytest.approx(np.full(10, 0.6))
    assert on[11:] == pytest.approx(np.full(10, 0.3))
    assert depth[10] == pytest.approx(6.0)


def test_a_reading_stored_before_the_service_started_is_caught_up(store):
    post_depths(store, [42.0])  # written while no flood watch was running
    running = FloodWatchService(store)
    running.start()
    try:
        assert running.wait_idle(30)
        entity = store.get_entity(TENANT, SITE)
        assert entity["floodLevel"]["value"] == 3
        assert entity["floodLevelName"]["value"] == "danger"
        alerts = flood_alerts(store)
        assert [a["severity"]["value"] for a in alerts] == ["critical"]
    finally:
        running.stop()


def test_the_pump_controller_follows_its_rule_and_the_nowcast():
    from cityos.apps.floodwatch.models import PumpConfig
    from cityos.apps.floodwatch.pumps_live import SitePumpControl

    rule = SitePumpControl(PumpConfig("urn:ngsi-ld:Pump:p1", "P1", SITE, 15.0, 5.0, 300.0,
                                      300.0, "rule"))
    assert rule.decide(T0, 10.0) == ("off", "")
    setting, reason = rule.decide(T0 + 60, 16.0)
    assert setting == "on" and "15" in reason
    assert rule.decide(T0 + 120, 2.0)[0] == "on"  # held for the 300 s minimum on-time
    assert rule.decide(T0 + 400, 2.0)[0] == "off"
    predictive = SitePumpControl(PumpConfig("urn:ngsi-ld:Pump:p2", "P2", SITE, 15.0, 5.0,
                                            300.0, 300.0, "predictive"))
    # 8 cm now, 18 cm expected in 20 minutes: the predictive pump starts early
    setting, reason = predictive.decide(T0, 8.0, {10.0: 12.0, 20.0: 18.0, 30.0: 22.0})
    assert setting == "on" and reason
    assert SitePumpControl(PumpConfig("urn:ngsi-ld:Pump:p3", "P3", SITE, 15.0, 5.0, 300.0,
                                      300.0, "rule")).decide(
        T0, 8.0, {10.0: 12.0, 20.0: 18.0, 30.0: 22.0})[0] == "off"
