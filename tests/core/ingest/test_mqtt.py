"""MQTT ingestion against a real Mosquitto: a private broker per test, with persistence,
on a free port (``tests/core/ingest/brokers.py``), and real stores.

What is proven: observations land with their ``observedAt`` history; a bad message is
dead-lettered with its reason and the next good one is still stored; a broker restart
in the middle of a stream loses no message the broker acknowledged to the device, and
none is kept twice; messages published while the ingester is away reach it when it
comes back with the same client id.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest

from cityos.config import Settings
from cityos.core.ingest.deadletters import UNROUTED_TENANT, list_dead_letters
from cityos.core.ingest.mqtt import MqttIngester
from cityos.core.timefmt import format_datetime
from tests.core.ingest.brokers import AckedPublisher, PrivateBroker, wait_until

pytestmark = pytest.mark.mqtt

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
def broker(tmp_path):
    running = PrivateBroker(tmp_path / "broker").start()
    yield running
    running.stop(signal.SIGKILL)


@pytest.fixture
def running(broker):
    """Start ingesters and publishers on the private broker; stop them all at the end."""
    started: list = []

    def ingester(store, client_id="cityos-ingest-test", **settings) -> MqttIngester:
        values = dict(database_url="sqlite:///unused.db", mqtt_url=broker.url,
                      mqtt_client_id=client_id, bus_url="memory://")
        values.update(settings)
        one = MqttIngester(store, Settings(**values), max_batch=200)
        one.start()
        started.append(one)
        assert one.wait_until_subscribed(15), broker.log()[-2000:]
        return one

    def publisher(client_id="device") -> AckedPublisher:
        one = AckedPublisher(broker.url, client_id)
        started.append(one)
        return one

    class Running:
        pass

    handles = Running()
    handles.ingester, handles.publisher = ingester, publisher
    yield handles
    for one in reversed(started):
        if isinstance(one, MqttIngester):
            if one._client is not None:
                one.stop()
        else:
            one.close()


def stamp(n: int) -> str:
    """The ``observedAt`` of message ``n`` of a stream: one second apart."""
    return format_datetime(START + timedelta(seconds=n))


def history(store, tenant: str, entity_id: str, attribute: str) -> list[tuple[str, object]]:
    rows = store.history(tenant, entity_id, [attribute], None, None, None)
    return [(row.instance["observedAt"], row.instance["value"]) for row in rows]


def test_key_values_and_normalised_payloads_land_with_history(store, running):
    ingester = running.ingester(store)
    device = running.publisher()
    device.publish("cityos/north/Vehicle/bus-17",
                   {"speed": 31.5, "status": "inService", "observedAt": stamp(0)})
    device.publish("cityos/north/Vehicle/bus-17", {"speed": 28, "observedAt": stamp(60)})
    device.publish("cityos/north/WaterObserved/urn:ngsi-ld:WaterObserved:gauge-3", {
        "observedAt": stamp(5),
        "height": {"type": "Property", "value": 1.25, "unitCode": "MTR"},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:g3",
                      "observedAt": stamp(1)}})
    bus = "urn:ngsi-ld:Vehicle:bus-17"
    wait_until(lambda: ingester.stats.stored == 3, what="3 observations stored")

    assert history(store, "north", bus, "speed") == [(stamp(0), 31.5), (stamp(60), 28)]
    assert history(store, "north", bus, "status") == [(stamp(0), "inService")]
    entity = store.get_entity("north", bus)
    assert entity["speed"] == {"type": "Property", "value": 28, "observedAt": stamp(60)}
    assert entity["status"]["value"] == "inService"  # merged, not replaced
    gauge = store.get_entity("north", "urn:ngsi-ld:WaterObserved:gauge-3")
    assert gauge["height"] == {"type": "Property", "value": 1.25, "unitCode": "MTR",
                               "observedAt": stamp(5)}
    assert gauge["refDevice"]["observedAt"] == stamp(1)  # its own stamp wins
    assert list_dead_letters(store, "north") == []
    assert ingester.stats.dead_lettered == 0


def test_bad_messages_are_dead_lettered_and_ingestion_goes_on(store, running):
    ingester = running.ingester(store, mqtt_allowed_tenants=["north"])
    device = running.publisher()
    bus = "urn:ngsi-ld:Vehicle:bus-1"
    sent = [
        ("cityos/north/Vehicle/bus-1", {"speed": 10, "observedAt": stamp(0)}),
        ("cityos/north/Vehicle/bus-1", b'{"speed": 11, "observedAt": '),
        ("cityos/north/Vehicle/bus-1", {"speed": 12, "observedAt": "yesterday"}),
        ("cityos/north/Vehicle/bus 1", {"speed": 13}),
        ("cityos/south/Vehicle/bus-1", {"speed": 14, "observedAt": stamp(4)}),
        ("cityos/ac me/Vehicle/bus-1", {"speed": 15}),
        ("cityos/north/Vehicle/bus-1", b"\x00\x01\xff binary"),
        ("cityos/north/Vehicle/bus-1", {"speed": 17, "observedAt": stamp(7)}),
    ]
    for topic, payload in sent:
        device.publish(topic, payload)
    wait_until(lambda: ingester.stats.stored + ingester.stats.dead_lettered == len(sent),
               what="every message handled")

    # the good ones on either side of the bad ones are stored
    assert history(store, "north", bus, "speed") == [(stamp(0), 10), (stamp(7), 17)]
    assert ingester.stats.stored == 2
    north = list_dead_letters(store, "north")
    assert [(d["source"], d["reason"]) for d in north] == [
        ("cityos/north/Vehicle/bus-1",
         "payload is not JSON: Expecting value: line 1 column 29 (char 28)"),
        ("cityos/north/Vehicle/bus-1", "observedAt: 'yesterday' is not an ISO 8601 date-time"),
        ("cityos/north/Vehicle/bus 1",
         "topic cityos/north/Vehicle/bus 1: entityId: 'bus 1' is not a URI or a short id "
         "(letters, digits, '-', '_', '.', '~'): space \\u0020 at position 4"),
        ("cityos/north/Vehicle/bus-1",
         "payload is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 2: "
         "invalid start byte"),
    ]
    assert north[0]["payload"] == '{"speed": 11, "observedAt": '
    assert north[3]["payload"] == "\ufffd\x01\ufffd binary"  # NUL kept as U+FFFD too
    assert north[3]["payloadBytes"] == 10
    assert all(d["tenant"] == "north" and d["receivedAt"].endswith("Z") for d in north)
    # a tenant outside the allowed list, or no tenant at all, is never written into
    assert list(store.scan("south")) == []
    assert list_dead_letters(store, "south") == []
    unrouted = list_dead_letters(store, UNROUTED_TENANT)
    assert [(d["source"], d["reason"]) for d in unrouted] == [
        ("cityos/south/Vehicle/bus-1", "tenant 'south' is not allowed for this device "
                                       "credential"),
        ("cityos/ac me/Vehicle/bus-1",
         "topic cityos/ac me/Vehicle/bus-1: tenant 'ac me' is not a valid tenant name "
         "(letters, digits, '-', '_', '.', at most 64)"),
    ]
    # every message was acknowledged: a device is never asked to send a bad one again
    assert device.acked_count() == len(sent)


def test_a_value_the_backend_cannot_keep_does_not_stop_ingestion(store, running):
    # PostgreSQL cannot keep U+0000 in a string: that message alone is dead-lettered
    ingester = running.ingester(store)
    device = running.publisher()
    device.publish("cityos/north/Vehicle/bus-1",
                   {"note": "a\u0000b", "speed": 1, "observedAt": stamp(1)})
    device.publish("cityos/north/Vehicle/bus-2", {"speed": 2, "observedAt": stamp(2)})
    wait_until(lambda: ingester.stats.stored + ingester.stats.dead_lettered == 2,
               what="both messages handled")
    assert history(store, "north", "urn:ngsi-ld:Vehicle:bus-2", "speed") == [(stamp(2), 2)]
    letters = list_dead_letters(store, "north")
    if store.backend == "sqlite":  # SQLite keeps it
        assert letters == []
        assert history(store, "north", "urn:ngsi-ld:Vehicle:bus-1", "speed") == [
            (stamp(1), 1)]
        return
    assert [d["reason"].split(":")[:2] for d in letters] == [
        ["store error", " UntranslatableCharacter"]]
    assert list(store.scan("north", ids=["urn:ngsi-ld:Vehicle:bus-1"])) == []


def test_messages_without_observed_at_keep_one_history_row_each(sqlite_store, running):
    # they reach the writer together, in one batch: each still gets its own instant
    ingester = running.ingester(sqlite_store)
    device = running.publisher()
    for n in range(50):
        device.publish("cityos/north/Vehicle/bus-1", {"speed": n})
    wait_until(lambda: ingester.stats.stored == 50, what="50 observations stored")
    rows = history(sqlite_store, "north", "urn:ngsi-ld:Vehicle:bus-1", "speed")
    assert [value for _, value in rows] == list(range(50))
    assert len({observed for observed, _ in rows}) == 50
    entity = sqlite_store.get_entity("north", "urn:ngsi-ld:Vehicle:bus-1")
    assert entity["speed"] == {"type": "Property", "value": 49, "observedAt": rows[-1][0]}


def stream(device: AckedPublisher, count: int, tenant: str = "north", buses: int = 20,
           first: int = 0) -> threading.Thread:
    """Publish ``count`` QoS 1 observations in the background, message ``n`` being
    ``speed = n`` of bus ``n % buses`` observed at ``stamp(n)``."""
    def publish() -> None:
        for n in range(first, first + count):
            device.publish(f"cityos/{tenant}/Vehicle/bus-{n % buses}",
                           {"speed": n, "observedAt": stamp(n)}, key=n)
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def stored_messages(store, tenant: str = "north", buses: int = 20) -> list[int]:
    """The message numbers in the speed history of every bus (with repeats, if any)."""
    found = []
    for bus in range(buses):
        for observed, value in history(store, tenant, f"urn:ngsi-ld:Vehicle:bus-{bus}",
                                       "speed"):
            assert observed == stamp(value), (observed, value)
            assert value % buses == bus
            found.append(value)
    return found


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_nothing_acknowledged(sqlite_store, broker, running):
    count = 2000
    ingester = running.ingester(sqlite_store)
    device = running.publisher()
    publishing = stream(device, count)
    wait_until(lambda: device.acked_count() >= count // 3, what="a third acknowledged")
    broker.stop(signal.SIGTERM)  # mosquitto saves the sessions and their queues
    before_restart = device.acked_count()
    broker.start()  # same port, same persistence file
    publishing.join(60)
    assert not publishing.is_alive()
    # the device resends what had no PUBACK when the broker went: all end up acked
    wait_until(lambda: device.acked_count() == count, timeout_s=60,
               what=f"all {count} messages acknowledged by the broker")
    acked = set(device.acked)
    assert before_restart < count and len(acked) == count
    wait_until(lambda: set(stored_messages(sqlite_store)) >= acked, timeout_s=60,
               what="every acknowledged message stored")
    found = stored_messages(sqlite_store)
    assert sorted(found) == list(range(count))  # each exactly once
    assert ingester.stats.connects >= 2  # it did lose the broker and came back
    # the current value of every bus is its last message
    for bus in range(20):
        entity = sqlite_store.get_entity("north", f"urn:ngsi-ld:Vehicle:bus-{bus}")
        assert entity["speed"]["value"] == count - 20 + bus


@pytest.mark.slow
def test_broker_killed_mid_stream_keeps_each_message_once_and_goes_on(sqlite_store, broker,
                                                                       running):
    # SIGKILL gives mosquitto no chance to save: what it acknowledged after its last
    # autosave (every second here) and had not passed on yet is lost by the broker
    # itself. What the ingester answers for: nothing stored twice or invented, and every
    # message the restarted broker acknowledged is stored, the ingester's session (and
    # so its subscription) being back from the broker's last save.
    ingester = running.ingester(sqlite_store)
    wait_until(lambda: (broker.directory / "mosquitto.db").exists(),
               what="the broker saved the ingester's session")
    device = running.publisher()
    publishing = stream(device, 1500)
    wait_until(lambda: device.acked_count() >= 500, what="500 acknowledged")
    broker.stop(signal.SIGKILL)
    # once the device has seen the connection drop, every PUBACK of the killed broker
    # has been counted: the ones after this are the restarted broker's
    wait_until(lambda: not device.connected.is_set(), what="the device saw the crash")
    acked_before_crash = device.acked_count()
    broker.start()
    publishing.join(60)
    assert not publishing.is_alive()
    wait_until(lambda: device.acked_count() == 1500, timeout_s=60,
               what="the whole stream acknowledged")
    acked_after_restart = set(device.acked[acked_before_crash:])
    assert acked_before_crash < 1500 and acked_after_restart
    wait_until(lambda: set(stored_messages(sqlite_store)) >= acked_after_restart,
               timeout_s=60, what="every message acknowledged after the restart stored")
    found = stored_messages(sqlite_store)
    assert len(found) == len(set(found))  # none twice
    assert set(found) <= set(range(1500))  # none invented
    assert ingester.stats.connects >= 2


def test_ingester_away_receives_what_was_published_meanwhile(store, broker, running):
    first = running.ingester(store, client_id="cityos-ingest-away")
    device = running.publisher()
    device.publish("cityos/north/Vehicle/bus-0", {"speed": 0, "observedAt": stamp(0)})
    wait_until(lambda: first.stats.stored == 1, what="the first message stored")
    first.stop()

    stream(device, 200, first=1).join(30)
    wait_until(lambda: device.acked_count() == 201, what="the messages sent meanwhile acked")
    # the broker restarts as well while the ingester is away: the session's queue is on disk
    broker.stop(signal.SIGTERM)
    broker.start()
    assert stored_messages(store) == [0]

    again = running.ingester(store, client_id="cityos-ingest-away")
    wait_until(lambda: len(stored_messages(store)) == 201, timeout_s=60,
               what="the messages published while away stored")
    assert sorted(stored_messages(store)) == list(range(201))  # each once
    assert again.stats.connects == 1


@pytest.mark.slow
def test_ingester_restarted_mid_stream_misses_nothing(sqlite_store, running):
    # what it had received but not yet acknowledged when it stopped comes again
    first = running.ingester(sqlite_store, client_id="cityos-ingest-restarted")
    device = running.publisher()
    publishing = stream(device, 1500)
    wait_until(lambda: first.stats.stored >= 300, what="300 stored")
    first.stop()
    again = running.ingester(sqlite_store, client_id="cityos-ingest-restarted")
    publishing.join(60)
    wait_until(lambda: device.acked_count() == 1500, timeout_s=60,
               what="the whole stream acknowledged")
    wait_until(lambda: len(set(stored_messages(sqlite_store))) == 1500, timeout_s=60,
               what="every message stored")
    assert sorted(stored_messages(sqlite_store)) == list(range(1500))  # each once
    assert again.stats.stored > 0
