"""The flood watch's demo city and its live feed.

What is proven: the builder registers the model doc's entities (sites, sensor devices,
gauges, pumps) with their links and settings, writes two days of one-minute history
holding several storms, and writes nothing on a second run; a later build agrees with
the earlier history and keeps a newer live reading current. The feed's water model
is the synthetic catchment's; the design storm takes the underpass past 20 cm within
5 minutes; a pump lowers the water against the same storm with the pump off; the
faults sit where :data:`FAULTS` says and the quality checks catch them; the pump
controllers answer commands in the model doc's format. Against a real Mosquitto and
the core MQTT ingester, :func:`run` gets readings stored and acknowledges a command.
"""

from __future__ import annotations

import math
import signal
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from cityos.apps.floodwatch.commands import decode_ack
from cityos.apps.floodwatch.demo import (
    GAUGES,
    PUMPS,
    SENSOR_PROFILE,
    SITES,
    build_floodwatch_demo,
    demo_history,
    device_id,
    gauge_id,
    pump_id,
    site_id,
)
from cityos.apps.floodwatch.models import PumpConfig, Site
from cityos.apps.floodwatch.quality import SensorProfile, check_series
from cityos.apps.floodwatch.sim import (
    FAULTS,
    FIRST_STORM_S,
    STORM_EVERY_S,
    TICK_S,
    FloodwatchFeed,
    PumpControllers,
    SimError,
    SiteWater,
    simulate,
)
from cityos.apps.floodwatch.synthetic import Storm, site_response, storm_rain
from cityos.core.timefmt import format_datetime
from cityos.demo import CITY_CENTRE, DemoContext

TENANT = "demo"
AT = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
START = 1_767_600_000.0  # a demo started at 2026-01-05 08:00 UTC
ALL_IDS = ({site_id(s.local_id) for s in SITES} | {device_id(s.local_id) for s in SITES}
           | {gauge_id(g.local_id) for g in GAUGES} | {pump_id(p.local_id) for p in PUMPS})


def history_rows(store, ids) -> list[tuple]:
    return sorted((row.entity_id, row.attribute, row.observed_us)
                  for entity_id in sorted(ids)
                  for row in store.history(TENANT, entity_id, None, None, None, None))


def metres_from_centre(lon: float, lat: float) -> float:
    d_lat = math.radians(lat - CITY_CENTRE[1])
    d_lon = math.radians(lon - CITY_CENTRE[0]) * math.cos(math.radians(lat))
    return 6_371_000.0 * math.hypot(d_lat, d_lon)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with the demo built twice at the same ``at``; the state after each."""
    from cityos.core.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path_factory.mktemp("fw-demo") / "store.db"))
    first_ids = build_floodwatch_demo(store, TENANT, AT)
    first = ({r.id: (r.entity, r.modified_us) for r in store.scan(TENANT, ids=first_ids)},
             history_rows(store, first_ids))
    second_ids = build_floodwatch_demo(store, TENANT, AT)
    second = ({r.id: (r.entity, r.modified_us) for r in store.scan(TENANT, ids=second_ids)},
              history_rows(store, second_ids))
    yield store, first_ids, second_ids, first, second
    store.close()


# ======================================================================== builder
def test_builder_registers_sites_gauges_and_pumps_as_the_model_says(built):
    store, ids, *_ = built
    assert set(ids) == ALL_IDS and len(ids) == 18
    entities = {r.id: r.entity for r in store.scan(TENANT, ids=ids)}
    assert {e["type"] for e in entities.values()} == {"WaterObserved", "Device",
                                                      "WeatherObserved", "Pump"}
    for spec in SITES:
        entity = entities[site_id(spec.local_id)]
        assert entity["alertLevels"] == {"type": "Property", "value": [10.0, 20.0, 30.0],
                                         "unitCode": "CMT"}
        assert entity["depth"]["unitCode"] == "CMT" and "observedAt" in entity["depth"]
        assert 0.0 <= entity["batteryLevel"]["value"] <= 1.0
        gauge = entity["refWeatherObserved"]["object"]
        assert entities[gauge]["type"] == "WeatherObserved"
        assert entities[entity["refDevice"]["object"]]["type"] == "Device"
        assert metres_from_centre(*entity["location"]["value"]["coordinates"]) < 2000.0
        site = Site.from_entity(entity)  # the service's reading of it
        assert site.levels_cm == (10.0, 20.0, 30.0) and site.gauge_id == gauge
        assert site.profile == SENSOR_PROFILE
        SensorProfile.for_kind("depth", **site.profile)  # a valid profile
    pumps = [PumpConfig.from_entity(entities[pump_id(p.local_id)]) for p in PUMPS]
    assert sorted(p.mode for p in pumps) == ["predictive", "rule", "rule"]
    for pump in pumps:
        assert (pump.on_level_cm, pump.off_level_cm, pump.min_on_s, pump.min_off_s) == (
            15.0, 5.0, 300.0, 300.0)
        # the pump's site names it back, and the pump reports itself off
        assert Site.from_entity(entities[pump.site_id]).pump_ids == (pump.pump_id,)
        assert entities[pump.pump_id]["status"]["value"] == "off"
    pumped = {p.site_id for p in pumps}
    assert len(pumped) == 3
    assert all("refPump" not in entities[site_id(s.local_id)] for s in SITES
               if site_id(s.local_id) not in pumped)
    for spec in GAUGES:
        gauge = entities[gauge_id(spec.local_id)]
        assert gauge["precipitation"]["unitCode"] == "MMT"


def test_builder_is_idempotent(built):
    _, first_ids, second_ids, first, second = built
    assert first_ids == second_ids
    assert second[0] == first[0]  # same bodies, not even rewritten (same modifiedAt)
    assert second[1] == first[1]
    assert len(set(first[1])) == len(first[1])  # no instant twice


def test_history_is_two_days_of_minutes_with_storms_that_flood(built):
    store, *_ = built
    at_s = AT.timestamp()
    for spec in SITES:
        rows = store.history(TENANT, site_id(spec.local_id), ["depth"], None, None, None)
        t = np.array([r.observed_us for r in rows]) / 1e6
        assert len(t) == 2880 and t[-1] == at_s and t[0] == at_s - 2 * 86400 + 60
        assert np.all(np.diff(t) == 60.0)
    rows = store.history(TENANT, gauge_id(GAUGES[0].local_id), ["precipitation"],
                         None, None, None)
    rain = np.array([r.instance["value"] for r in rows])
    # storms: runs of rain separated by at least an hour dry, each of a few mm
    wet = np.flatnonzero(rain > 0)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(wet) > 60) + 1])
    totals = np.add.reduceat(rain[wet], starts)
    assert (totals >= 3.0).sum() >= 2, totals
    depth = max(r.instance["value"] for r in store.history(
        TENANT, site_id("fw-tun-perak"), ["depth"], None, None, None))
    assert depth > 10.0


def test_history_depends_on_the_instant_not_on_at():
    first = demo_history(AT.timestamp())
    later = demo_history(AT.timestamp() + 5 * 3600 + 120)
    common, i, j = np.intersect1d(first.t_s, later.t_s, return_indices=True)
    assert len(common) > 2000
    np.testing.assert_array_equal(first.depth_cm[:, i], later.depth_cm[:, j])
    np.testing.assert_array_equal(first.rain_mm[:, i], later.rain_mm[:, j])
    assert later.t_s[-1] == AT.timestamp() + 5 * 3600 + 120


def test_a_later_build_adds_history_and_keeps_a_newer_live_reading(sqlite_store):
    build_floodwatch_demo(sqlite_store, TENANT, AT)
    site = site_id("fw-tun-perak")
    live = format_datetime(AT + timedelta(hours=3))
    sqlite_store.update_entities(TENANT, [{"id": site, "depth": {
        "type": "Property", "value": 42.0, "unitCode": "CMT", "observedAt": live}}])
    build_floodwatch_demo(sqlite_store, TENANT, AT + timedelta(hours=1))
    rows = sqlite_store.history(TENANT, site, ["depth"], None, None, None)
    stamps = [r.observed_us for r in rows]
    assert len(stamps) == len(set(stamps)) == 2880 + 60 + 1
    assert sqlite_store.get_entity(TENANT, site)["depth"]["observedAt"] == live


def test_bad_builder_input_names_the_field(sqlite_store):
    with pytest.raises(ValueError, match="^at:"):
        build_floodwatch_demo(sqlite_store, TENANT, datetime(2026, 1, 7, 9, 0))
    with pytest.raises(ValueError, match="^days:"):
        demo_history(AT.timestamp(), days=0)
    with pytest.raises(ValueError, match="^step_s:"):
        demo_history(AT.timestamp(), step_s=7.0)


# ========================================================================= physics
def test_site_water_steps_the_synthetic_catchment_model_exactly():
    t = START + TICK_S * np.arange(1, 241)
    rain = storm_rain(t, [Storm(START + 300.0, 40.0, 90.0, 0.2)], TICK_S, seed=3)
    params = [s.params for s in SITES]
    rows = np.tile(rain, (len(SITES), 1))
    expected = site_response(params, rows, TICK_S).depth_cm
    water = SiteWater(params, TICK_S)
    got = np.stack([water.step(rows[:, k]) for k in range(rows.shape[1])], axis=1)
    assert expected.max() > 10.0
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_a_pump_drains_its_rate_from_a_pond():
    # no rain, a 30 cm pond: the drain alone, then drain + pump, lower it linearly
    spec = SITES[0].params
    water = SiteWater([spec], 60.0)
    water.pond[:] = 30.0 * 10.0 / spec.area_ratio
    drained = 30.0 - water.step([0.0])[0]
    pumped = (30.0 - drained) - water.step([0.0], water.extra_drain_mm([90.0], 60.0))[0]
    assert drained == pytest.approx(spec.drain_cm_per_h / 60.0)
    assert pumped == pytest.approx((spec.drain_cm_per_h + 90.0) / 60.0)


# ============================================================================ feed
def test_simulate_is_deterministic_for_a_seed():
    one = simulate(START, START + 2 * STORM_EVERY_S, seed=5)
    two = simulate(START, START + 2 * STORM_EVERY_S, seed=5)
    other = simulate(START, START + 2 * STORM_EVERY_S, seed=6)
    np.testing.assert_array_equal(one.depth_cm, two.depth_cm)
    np.testing.assert_array_equal(one.rain_mm, two.rain_mm)
    assert one.messages == two.messages
    assert not np.array_equal(one.rain_mm, other.rain_mm)
    assert one.t_s[0] == START + TICK_S and one.t_s[-1] == START + 2 * STORM_EVERY_S
    assert np.all(np.diff(one.t_s) == TICK_S)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_first_storm_floods_the_underpass_within_five_minutes(seed):
    feed = simulate(START, START + 15 * 60, seed=seed)
    storm_start = START + FIRST_STORM_S
    assert feed.storms[0].start_s == storm_start
    assert feed.rain_mm[:, feed.t_s <= storm_start].sum() == 0.0  # dry before it
    within = feed.t_s <= storm_start + 5 * 60
    deepest = feed.depth_true_cm[:, within].max(axis=1)
    assert deepest.max() > 20.0
    assert (feed.depth_true_cm[:, feed.t_s <= storm_start + 10 * 60].max(axis=1)
            > 10.0).sum() >= 2


def test_pumps_lower_the_water_against_the_same_storm():
    end = START + 2 * STORM_EVERY_S
    off = simulate(START, end, pumps="off")
    rule = simulate(START, end, pumps="rule")
    always = simulate(START, end, pumps="on")
    np.testing.assert_array_equal(off.rain_true_mm, rule.rain_true_mm)
    assert not off.pump_on.any() and always.pump_on.all() and rule.pump_on.any()
    pumped = {off.site(p.site) for p in PUMPS}
    for i in range(len(SITES)):
        if i in pumped:
            assert np.all(rule.depth_true_cm[i] <= off.depth_true_cm[i] + 1e-9)
            assert np.all(always.depth_true_cm[i] <= rule.depth_true_cm[i] + 1e-9)
            assert rule.depth_true_cm[i].max() < off.depth_true_cm[i].max() - 1.0
        else:
            np.testing.assert_array_equal(rule.depth_true_cm[i], off.depth_true_cm[i])
    # the rule starts a pump only at its onLevel: the underpass's from its first 15 cm
    underpass, pump = off.site("fw-tun-perak"), off.pump_ids.index("fw-pump-tun-perak")
    first_on = np.argmax(rule.pump_on[pump])
    first_15 = np.argmax(rule.depth_cm[underpass] >= 15.0)
    assert first_on == first_15 + 1
    assert rule.depth_true_cm[underpass].max() < 0.85 * off.depth_true_cm[underpass].max()


def test_faults_are_where_the_docstring_says_and_quality_checks_catch_them():
    feed = simulate(START, START + 2 * STORM_EVERY_S, pumps="rule")
    in_cycle = (feed.t_s - START) % STORM_EVERY_S
    fault = {f.kind: f for f in FAULTS}
    profile = SensorProfile.for_kind("depth", interval_s=TICK_S)

    spike = fault["spike"]
    s = feed.site(spike.site)
    at = in_cycle == spike.start_s
    assert at.sum() == 2  # once a cycle
    lift = feed.depth_cm[s, at] - feed.depth_true_cm[s, at]
    assert np.all(np.abs(lift - spike.size_cm) < 2.0)
    other = ~at
    assert np.all(np.abs(feed.depth_cm[s, other] - feed.depth_true_cm[s, other]) < 2.0)
    quality = check_series(feed.t_s, feed.depth_cm[s], profile)
    np.testing.assert_array_equal(quality.flag_mask("spike"), at)

    stuck = fault["stuck"]
    s = feed.site(stuck.site)
    window = (in_cycle >= stuck.start_s) & (in_cycle < stuck.end_s)
    first_cycle = window & (feed.t_s < START + STORM_EVERY_S)
    assert first_cycle.sum() == 50
    values = feed.depth_cm[s, first_cycle]
    assert np.all(values == values[0]) and values[0] > 1.0
    assert np.ptp(feed.depth_true_cm[s, first_cycle]) > 5.0  # the water did move
    quality = check_series(feed.t_s, feed.depth_cm[s], profile)
    flagged = quality.flag_mask("stuck")
    assert flagged[first_cycle].sum() == 50 - profile.stuck_count + 1
    assert not flagged[~window].any()

    offline = fault["offline"]
    s = feed.site(offline.site)
    silent = (in_cycle >= offline.start_s) & (in_cycle < offline.end_s)
    assert silent.sum() == 2 * 8
    np.testing.assert_array_equal(np.isnan(feed.depth_cm[s]), silent)
    sent = {t for t, kind, local, _ in feed.messages
            if kind == "WaterObserved" and local == offline.site}
    assert sent == set(feed.t_s[~silent].tolist())
    ok = ~silent
    quality = check_series(feed.t_s[ok], feed.depth_cm[s, ok], profile)
    back = in_cycle[ok] == offline.end_s
    np.testing.assert_array_equal(quality.flag_mask("gap"), back)

    s = feed.site(fault["low-battery"].site)
    assert np.all(feed.battery[s] < 0.2)
    assert np.all(np.delete(feed.battery, s, axis=0) > 0.7)
    # with the demo sites' own profile (the service turns the fraction into %)
    own = SensorProfile.for_kind("depth", **SENSOR_PROFILE)
    for i in range(len(SITES)):
        ok = ~np.isnan(feed.depth_cm[i])
        quality = check_series(feed.t_s[ok], feed.depth_cm[i, ok], own,
                               battery=100.0 * feed.battery[i, ok])
        assert quality.flag_mask("low-battery").all() == (i == s)
        assert quality.flag_mask("low-battery").any() == (i == s)


def test_observations_follow_the_model_doc():
    feed = FloodwatchFeed(START)
    tick = feed.tick()
    messages = feed.observations(tick)
    kinds = {(kind, local) for kind, local, _ in messages}
    assert {("WaterObserved", s.local_id) for s in SITES} <= kinds
    assert {("WeatherObserved", g.local_id) for g in GAUGES} <= kinds
    stamp = format_datetime(datetime.fromtimestamp(START + TICK_S, tz=UTC))
    body = next(b for kind, _, b in messages if kind == "WaterObserved")
    assert body["depth"]["unitCode"] == "CMT" and body["observedAt"] == stamp
    body = next(b for kind, _, b in messages if kind == "WeatherObserved")
    assert body["precipitation"] == {"type": "Property", "value": 0.0, "unitCode": "MMT"}


def test_bad_feed_settings_name_the_field():
    with pytest.raises(SimError, match="^pumps:"):
        simulate(START, START + 60, pumps="sideways")
    with pytest.raises(SimError, match="^end_s:"):
        simulate(START, START - 60)
    with pytest.raises(SimError, match="^dt_s:"):
        FloodwatchFeed(START, dt_s=7.0)
    with pytest.raises(SimError, match="^start_s:"):
        FloodwatchFeed(math.nan)


# ========================================================================== pumps
def command(command_id: str, switch: str, now: float, expires_in: float = 30.0) -> bytes:
    stamp = lambda t: format_datetime(datetime.fromtimestamp(t, tz=UTC))  # noqa: E731
    return orjson.dumps({"id": command_id, "switch": switch, "issuedAt": stamp(now),
                         "expiresAt": stamp(now + expires_in)})


def test_pump_controllers_answer_switch_and_fail_every_tenth_command():
    pumps = PumpControllers()
    now = START
    answer, report = pumps.command("fw-pump-pudu", command("c1", "on", now), now)
    assert answer[:2] == ("cmdexe", "fw-pump-pudu")
    ack = decode_ack(orjson.dumps(answer[2]))  # what the platform's commander reads
    assert (ack.command_id, ack.status) == ("c1", "OK")
    assert report == ("Pump", "fw-pump-pudu", {"status": "on", "observedAt": format_datetime(
        datetime.fromtimestamp(now, tz=UTC))})
    assert pumps.states()["fw-pump-pudu"] is True
    for n in range(2, 10):
        pumps.command("fw-pump-pudu", command(f"c{n}", "on", now), now)
    answer, report = pumps.command("fw-pump-pudu", command("c10", "off", now), now)
    assert answer[2] == {"id": "c10", "status": "ERROR", "info": "motor overload"}
    assert report[2]["status"] == "on" and pumps.states()["fw-pump-pudu"] is True
    answer, _ = pumps.command("fw-pump-pudu", command("c11", "off", now), now)
    assert answer[2]["status"] == "OK" and pumps.states()["fw-pump-pudu"] is False


def test_pump_controllers_ignore_late_or_unreadable_commands_and_refuse_bad_ones():
    pumps = PumpControllers()
    assert pumps.command("fw-pump-pudu", command("late", "on", START), START + 31.0) == []
    assert pumps.command("fw-pump-pudu", b"{not json", START) == []
    assert pumps.command("fw-pump-pudu", b'{"switch": "on"}', START) == []
    (answer,) = pumps.command("fw-pump-pudu", command("x", "sideways", START), START)
    assert answer[2]["status"] == "ERROR" and answer[2]["info"].startswith("switch:")
    (answer,) = pumps.command("nope", command("y", "on", START), START)
    assert answer[2]["status"] == "ERROR" and "nope" in answer[2]["info"]
    assert not any(pumps.states().values())
    assert pumps.commands == 0  # refused commands do not count towards the failures


# ============================================================ through the real ingest
@pytest.mark.mqtt
def test_run_feeds_the_mqtt_ingester_and_acknowledges_pump_commands(tmp_path, sqlite_store):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from cityos.apps.floodwatch import sim
    from cityos.config import Settings
    from cityos.core.ingest.mqtt import MqttIngester
    from tests.core.ingest.brokers import PrivateBroker, wait_until

    broker = PrivateBroker(tmp_path / "broker").start()
    ingester = MqttIngester(sqlite_store, Settings(
        database_url="sqlite:///unused.db", mqtt_url=broker.url,
        mqtt_client_id="cityos-ingest-fw-test", bus_url="memory://"), max_batch=200)
    demo = DemoContext("http://127.0.0.1:9", "", TENANT, broker.url, sqlite_store)
    answers: list[tuple[str, dict]] = []
    operator = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fw-test-operator")
    subscribed = threading.Event()
    operator.on_subscribe = lambda *args: subscribed.set()
    operator.on_message = lambda c, u, m: answers.append((m.topic, orjson.loads(m.payload)))
    thread = None
    try:
        ingester.start()
        assert ingester.wait_until_subscribed(15), broker.log()[-2000:]
        host, port = broker.url.removeprefix("mqtt://").split(":")
        operator.connect(host, int(port))
        operator.loop_start()
        operator.subscribe(f"cityos/{TENANT}/cmdexe/Pump/+", qos=1)
        assert subscribed.wait(10)
        # 60x: a reading every half second of wall time
        thread = threading.Thread(target=sim.run, args=(demo,), kwargs={"speedup": 60.0},
                                  daemon=True)
        thread.start()

        def stored(entity_id: str, attribute: str) -> int:
            return len(sqlite_store.history(TENANT, entity_id, [attribute], None, None, None))

        wait_until(lambda: all(stored(site_id(s.local_id), "depth") >= 3 for s in SITES
                               if s.local_id != "fw-kuching")
                   and all(stored(gauge_id(g.local_id), "precipitation") >= 3 for g in GAUGES),
                   timeout_s=20, what="readings of every site and gauge stored")
        pump = pump_id("fw-pump-tun-perak")
        wait_until(lambda: stored(pump, "status") >= 1, timeout_s=10, what="pump status")
        assert sqlite_store.get_entity(TENANT, pump)["status"]["value"] == "off"

        import time

        operator.publish(f"cityos/{TENANT}/cmd/Pump/fw-pump-tun-perak",
                         command("cmd-1", "on", time.time()), qos=1)
        wait_until(lambda: answers, timeout_s=10, what="the command's answer")
        assert answers[0] == (f"cityos/{TENANT}/cmdexe/Pump/fw-pump-tun-perak",
                              {"id": "cmd-1", "status": "OK", "info": "switched on"})
        wait_until(lambda: sqlite_store.get_entity(TENANT, pump)["status"]["value"] == "on",
                   timeout_s=10, what="the pump reporting itself on")
        entity = sqlite_store.get_entity(TENANT, site_id("fw-tun-perak"))
        assert entity["depth"]["unitCode"] == "CMT"
        assert ingester.stats.dead_lettered == 0
    finally:
        demo.stop.set()
        if thread is not None:
            thread.join(10)
        operator.loop_stop()
        operator.disconnect()
        ingester.stop()
        broker.stop(signal.SIGKILL)
    assert thread is not None and not thread.is_alive()
