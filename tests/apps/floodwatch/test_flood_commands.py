"""Pump commands: topics and payloads, then the commander against a real Mosquitto
(a private broker per test), a real SQLite store and a fake pump controller that is a
real MQTT client on the command topic.

What is proven: a command goes PENDING -> DELIVERED -> OK (or ERROR) in the store's
history of ``switch_status`` with the payload the model doc fixes; a silent pump
expires and raises a ``pumpNotResponding`` alert; malformed, unknown, mis-addressed
and late answers change nothing and the commander keeps working; a newer command
supersedes an older one, whose late answer is ignored; commands from several threads
reach each pump in the order the store records them; with the broker down ``send``
refuses and writes nothing, while a command already out expires with its alert.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

import orjson
import pytest

from cityos.apps.floodwatch.commands import (
    ACK_TOPIC_FILTER,
    NO_CONTROLLER_INFO,
    CommandError,
    PumpCommander,
    PumpCommandUnavailable,
    ack_topic,
    command_topic,
    decode_ack,
    decode_command,
    encode_ack,
    encode_command,
    parse_ack_topic,
    parse_command_topic,
    pump_entity_id,
)
from cityos.core.store import open_store
from tests.core.ingest.brokers import PrivateBroker, wait_until

TENANT = "north"
PUMP = "urn:ngsi-ld:Pump:pump-1"
PUMP_2 = "urn:ngsi-ld:Pump:pump-2"
PUMP_LOCATION = {"type": "Point", "coordinates": [139.70, 35.66]}


# ------------------------------------------------------------------ topics and payloads
def test_topics_go_both_ways_from_a_local_id_or_an_entity_id():
    assert command_topic(TENANT, "pump-1") == "cityos/north/cmd/Pump/pump-1"
    assert command_topic(TENANT, PUMP) == "cityos/north/cmd/Pump/pump-1"
    assert ack_topic("city.b_2", PUMP) == "cityos/city.b_2/cmdexe/Pump/pump-1"
    assert parse_command_topic("cityos/north/cmd/Pump/pump-1") == (TENANT, PUMP)
    assert parse_ack_topic("cityos/north/cmdexe/Pump/p.3~x") == (
        TENANT, "urn:ngsi-ld:Pump:p.3~x")
    assert pump_entity_id("pump-1") == pump_entity_id(PUMP) == PUMP
    # five levels: the core ingester's four-level filter cityos/+/+/+ never matches them
    assert len(command_topic(TENANT, PUMP).split("/")) == 5
    assert ACK_TOPIC_FILTER == "cityos/+/cmdexe/Pump/+"


@pytest.mark.parametrize(("call", "field"), [
    (lambda: command_topic("ac me", "pump-1"), "tenant"),
    (lambda: command_topic("", "pump-1"), "tenant"),
    (lambda: ack_topic("north/south", "pump-1"), "tenant"),
    (lambda: command_topic(TENANT, "pump/1"), "pump_id"),
    (lambda: command_topic(TENANT, "pump+"), "pump_id"),
    (lambda: ack_topic(TENANT, "#"), "pump_id"),
    (lambda: ack_topic(TENANT, "urn:ngsi-ld:Valve:v-1"), "pump_id"),
    (lambda: command_topic(TENANT, None), "pump_id"),
    (lambda: parse_ack_topic("cityos/north/cmd/Pump/pump-1"), "topic"),  # a command
    (lambda: parse_command_topic("cityos/north/Pump/pump-1"), "topic"),  # 4 levels
    (lambda: parse_command_topic("cityos/north/cmd/Valve/pump-1"), "topic"),
    (lambda: parse_command_topic("city/north/cmd/Pump/pump-1"), "topic"),
    (lambda: parse_ack_topic("cityos/ac me/cmdexe/Pump/pump-1"), "topic cityos/ac me/"
                                                                 "cmdexe/Pump/pump-1: tenant"),
    (lambda: parse_ack_topic("cityos/north/cmdexe/Pump/"), "topic cityos/north/cmdexe/Pump/:"
                                                           " pump"),
])
def test_bad_topic_levels_are_refused_naming_the_field(call, field):
    with pytest.raises(CommandError) as raised:
        call()
    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)


def test_command_payload_round_trips_to_the_microsecond():
    from cityos.apps.floodwatch.commands import PumpCommand

    issued = datetime(2026, 1, 5, 8, 0, 0, 250000, tzinfo=UTC).timestamp()
    command = PumpCommand("c-1", TENANT, PUMP, "on", issued, issued + 30, "PENDING",
                          "operator ana", "operator ana", issued)
    payload = orjson.loads(encode_command(command))
    assert payload == {"id": "c-1", "switch": "on", "issuedAt": "2026-01-05T08:00:00.250000Z",
                       "expiresAt": "2026-01-05T08:00:30.250000Z"}
    message = decode_command(encode_command(command))
    assert (message.command_id, message.setting) == ("c-1", "on")
    assert message.issued_at == issued and message.expires_at == issued + 30


@pytest.mark.parametrize(("payload", "field"), [
    (b'{"id": "c-1", "switch": ', "payload"),
    (b"\xff\xfe", "payload"),
    (b'["c-1", "on"]', "payload"),
    (b'{"switch": "on", "issuedAt": "2026-01-05T08:00:00Z",'
     b' "expiresAt": "2026-01-05T08:00:30Z"}', "id"),
    (b'{"id": "c-1", "switch": "ON", "issuedAt": "2026-01-05T08:00:00Z",'
     b' "expiresAt": "2026-01-05T08:00:30Z"}', "switch"),
    (b'{"id": "c-1", "switch": "on", "issuedAt": "yesterday",'
     b' "expiresAt": "2026-01-05T08:00:30Z"}', "issuedAt"),
    (b'{"id": "c-1", "switch": "on", "issuedAt": "2026-01-05T08:00:00Z"}', "expiresAt"),
    (b'{"id": "c-1", "switch": "on", "issuedAt": "2026-01-05T08:00:00Z",'
     b' "expiresAt": "2026-01-05T07:59:00Z"}', "expiresAt"),
])
def test_bad_command_payloads_name_the_field(payload, field):
    with pytest.raises(CommandError) as raised:
        decode_command(payload)
    assert raised.value.field == field


def test_acknowledgement_payloads():
    ack = decode_ack(encode_ack("c-1", "ERROR", "motor overload"))
    assert (ack.command_id, ack.status, ack.info) == ("c-1", "ERROR", "motor overload")
    assert decode_ack(b'{"id": "c-2", "status": "OK"}').info == ""
    assert decode_ack(orjson.dumps({"id": "c", "status": "OK", "info": "x" * 900})).info == (
        "x" * 500)  # cut, not refused: the answer still counts
    for payload, field in [(b"not json", "payload"), (b'{"status": "OK"}', "id"),
                           (b'{"id": "", "status": "OK"}', "id"),
                           (b'{"id": "c", "status": "DONE"}', "status"),
                           (b'{"id": "c", "status": "OK", "info": 5}', "info")]:
        with pytest.raises(CommandError) as raised:
            decode_ack(payload)
        assert raised.value.field == field, payload
    with pytest.raises(CommandError, match="status"):
        encode_ack("c-1", "EXPIRED")


def test_without_a_broker_send_refuses_and_writes_nothing(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.create_entity(TENANT, pump_entity())
        commander = PumpCommander(store, None)
        commander.start()
        try:
            with pytest.raises(CommandError) as raised:  # bad input is told first
                commander.send(TENANT, PUMP, "up", "operator ana")
            assert raised.value.field == "setting"
            with pytest.raises(CommandError, match="reason"):
                commander.send(TENANT, PUMP, "on", "  ")
            with pytest.raises(PumpCommandUnavailable, match="need an MQTT broker"):
                commander.send(TENANT, PUMP, "on", "operator ana")
        finally:
            commander.stop()
        assert "switch" not in store.get_entity(TENANT, PUMP)
        assert commander.recent(TENANT) == []
    finally:
        store.close()


def test_bad_commander_settings_name_the_field(tmp_path):
    with pytest.raises(CommandError) as raised:
        PumpCommander(None, None, timeout_s=0)
    assert raised.value.field == "timeout_s"
    with pytest.raises(CommandError) as raised:
        PumpCommander(None, "http://127.0.0.1:1883")
    assert raised.value.field == "mqtt_url"


# ------------------------------------------------------------------ with a real broker
def pump_entity(pump_id: str = PUMP) -> dict:
    return {"id": pump_id, "type": "Pump",
            "name": {"type": "Property", "value": "Shibuya underpass pump"},
            "location": {"type": "GeoProperty", "value": PUMP_LOCATION},
            "refWaterObserved": {"type": "Relationship",
                                 "object": "urn:ngsi-ld:WaterObserved:site-1"},
            "onLevel": {"type": "Property", "value": 20, "unitCode": "CMT"},
            "offLevel": {"type": "Property", "value": 10, "unitCode": "CMT"},
            "controlMode": {"type": "Property", "value": "rule"}}


class FakePumpController:
    """A pump controller: a real MQTT client on the tenant's command topics.

    ``answer`` maps each command received to ``(status, info)``, or to None to stay
    silent; :meth:`reply` answers by hand.
    """

    def __init__(self, url: str, tenant: str = TENANT, answer=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.answer = answer
        self.received: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pump-ctl-{tenant}")
        self.client.on_connect = lambda c, *a: c.subscribe(f"cityos/{tenant}/cmd/Pump/+", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port), keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the fake pump controller could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.received.append((message.topic, orjson.loads(message.payload)))
        if self.answer is not None:
            answer = self.answer(decode_command(message.payload))
            if answer is not None:
                self.reply(message.topic, message.payload, *answer)

    def reply(self, topic: str, payload, status: str, info: str = "") -> None:
        tenant, pump = parse_command_topic(topic)
        command_id = payload["id"] if isinstance(payload, dict) else orjson.loads(payload)["id"]
        self.client.publish(ack_topic(tenant, pump), encode_ack(command_id, status, info), qos=1)

    def raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    running = PrivateBroker(tmp_path / "broker").start()
    yield running
    running.stop(signal.SIGKILL)


@pytest.fixture
def pump_store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_entity(TENANT, pump_entity(PUMP))
    store.create_entity(TENANT, pump_entity(PUMP_2))
    yield store
    store.close()


@pytest.fixture
def running(broker, pump_store):
    """Start commanders and controllers on the private broker; stop them at the end."""
    started: list = []

    class Running:
        store = pump_store

        @staticmethod
        def commander(timeout_s: float = 10) -> PumpCommander:
            one = PumpCommander(pump_store, broker.url, timeout_s=timeout_s)
            one.start()
            started.append(one)
            assert one.wait_until_ready(15), broker.log()[-2000:]
            return one

        @staticmethod
        def controller(answer=None) -> FakePumpController:
            one = FakePumpController(broker.url, answer=answer)
            started.append(one)
            return one

    yield Running
    for one in reversed(started):
        one.stop() if isinstance(one, PumpCommander) else one.close()


def statuses(store, pump_id: str = PUMP) -> list[str]:
    rows = store.history(TENANT, pump_id, ["switch_status"], None, None, None)
    return [row.instance["value"] for row in rows]


def value(store, name: str, pump_id: str = PUMP):
    return store.get_entity(TENANT, pump_id)[name]["value"]


def alerts(store) -> list[dict]:
    return [record.entity for record in store.scan(TENANT, types=["Alert"])]


def status_of(commander, command_id: str) -> str:
    return commander.get(TENANT, command_id).status


@pytest.mark.mqtt
def test_an_acknowledged_command_goes_pending_delivered_ok(running):
    commander = running.commander(timeout_s=30)
    controller = running.controller(answer=lambda m: ("OK", "started at 3 m3/s"))
    sent = commander.send(TENANT, "pump-1", "on", "rule: depth 24 cm >= on-level 20 cm")
    assert sent.status in ("PENDING", "DELIVERED") and sent.pump_id == PUMP
    wait_until(lambda: status_of(commander, sent.command_id) == "OK", 10, "the OK")

    store = running.store
    assert statuses(store) == ["PENDING", "DELIVERED", "OK"]
    assert value(store, "switch") == "on"
    assert store.get_entity(TENANT, PUMP)["switch"]["reason"]["value"] == (
        "rule: depth 24 cm >= on-level 20 cm")
    assert value(store, "switch_id") == sent.command_id
    assert value(store, "switch_info") == "started at 3 m3/s"
    # the reason is the info the command was issued with: it stays in the history
    info_rows = store.history(TENANT, PUMP, ["switch_info"], None, None, None)
    assert [r.instance["value"] for r in info_rows] == [
        "rule: depth 24 cm >= on-level 20 cm", "started at 3 m3/s"]

    [(topic, payload)] = controller.received
    assert topic == "cityos/north/cmd/Pump/pump-1"
    assert set(payload) == {"id", "switch", "issuedAt", "expiresAt"}
    assert payload["id"] == sent.command_id and payload["switch"] == "on"
    message = decode_command(orjson.dumps(payload))
    assert message.expires_at - message.issued_at == pytest.approx(30, abs=1e-6)
    assert message.issued_at == pytest.approx(sent.issued_at, abs=1e-6)

    [kept] = commander.recent(TENANT, "pump-1")
    assert (kept.status, kept.info, kept.setting) == ("OK", "started at 3 m3/s", "on")
    assert kept.as_dict()["status"] == "OK"
    assert commander.recent(TENANT, PUMP_2) == []
    assert (commander.stats.sent, commander.stats.delivered, commander.stats.ok) == (1, 1, 1)
    assert alerts(store) == []


@pytest.mark.mqtt
def test_an_error_answer_is_recorded_with_its_info(running):
    commander = running.commander()
    running.controller(answer=lambda m: ("ERROR", "motor overload, breaker tripped"))
    sent = commander.send(TENANT, PUMP, "off", "operator ana")
    wait_until(lambda: status_of(commander, sent.command_id) == "ERROR", 10, "the ERROR")
    assert statuses(running.store) == ["PENDING", "DELIVERED", "ERROR"]
    assert value(running.store, "switch") == "off"
    assert value(running.store, "switch_info") == "motor overload, breaker tripped"
    assert commander.get(TENANT, sent.command_id).info == "motor overload, breaker tripped"
    assert commander.get("south", sent.command_id) is None  # another tenant's is not shown
    assert commander.stats.error == 1
    assert alerts(running.store) == []
    with pytest.raises(CommandError) as raised:  # no such Pump: nothing is published
        commander.send(TENANT, "pump-9", "on", "operator ana")
    assert raised.value.field == "pump_id" and "urn:ngsi-ld:Pump:pump-9" in str(raised.value)
    assert commander.stats.sent == 1


@pytest.mark.mqtt
def test_a_silent_pump_expires_and_raises_an_alert(running):
    commander = running.commander(timeout_s=1)
    controller = running.controller(answer=lambda m: None)
    sent = commander.send(TENANT, PUMP, "on", "predictive: 31 cm forecast in 20 min")
    wait_until(lambda: status_of(commander, sent.command_id) == "EXPIRED", 10, "the expiry")
    assert controller.count() == 1  # it was delivered; the pump just did not answer
    assert statuses(running.store) == ["PENDING", "DELIVERED", "EXPIRED"]
    assert "within 1 s" in value(running.store, "switch_info")
    [alert] = alerts(running.store)
    assert alert["category"]["value"] == "infrastructure"
    assert alert["subCategory"]["value"] == "pumpNotResponding"
    assert alert["alertSource"]["value"] == PUMP
    assert alert["severity"]["value"] == "high"  # a pump that does not start
    assert alert["location"]["value"] == PUMP_LOCATION
    assert sent.command_id in alert["description"]["value"]
    assert alert["status"]["value"] == "open"
    assert commander.stats.expired == 1

    # the answer comes too late: ignored, the status stays EXPIRED, no second alert
    controller.reply(*controller.received[0], "OK", "started late")
    wait_until(lambda: commander.stats.acks_ignored == 1, 10, "the late answer handled")
    assert status_of(commander, sent.command_id) == "EXPIRED"
    assert statuses(running.store) == ["PENDING", "DELIVERED", "EXPIRED"]
    assert len(alerts(running.store)) == 1


@pytest.mark.mqtt
def test_bad_and_unknown_answers_are_dropped_and_the_commander_goes_on(running):
    commander = running.commander()
    controller = running.controller()  # answers by hand
    first = commander.send(TENANT, PUMP, "on", "operator ana")
    wait_until(lambda: controller.count() == 1, 10, "the command at the pump")
    good_topic = ack_topic(TENANT, PUMP)
    controller.raw(good_topic, b'{"id": "' + first.command_id.encode() + b'", "status": ')
    controller.raw(good_topic, b"\xff\x00 binary")
    controller.raw(good_topic, orjson.dumps({"id": first.command_id, "status": "DONE"}))
    controller.raw("cityos/ac me/cmdexe/Pump/pump-1",
                   encode_ack(first.command_id, "OK"))  # a topic with a bad tenant
    controller.raw(good_topic, encode_ack("no-such-command", "OK"))
    # the right id on another pump's topic: a mis-addressed (or forged) answer
    controller.raw(ack_topic(TENANT, PUMP_2), encode_ack(first.command_id, "ERROR", "x"))
    wait_until(lambda: (commander.stats.acks_malformed, commander.stats.acks_ignored) == (4, 2),
               10, "every bad answer handled")
    assert status_of(commander, first.command_id) == "DELIVERED"
    assert statuses(running.store) == ["PENDING", "DELIVERED"]

    controller.reply(*controller.received[0], "OK", "running")
    wait_until(lambda: status_of(commander, first.command_id) == "OK", 10, "the real answer")
    second = commander.send(TENANT, PUMP_2, "on", "operator ana")
    wait_until(lambda: controller.count() == 2, 10, "the second command at the pump")
    controller.reply(*controller.received[1], "OK", "running")
    wait_until(lambda: status_of(commander, second.command_id) == "OK", 10, "the second OK")
    assert statuses(running.store, PUMP_2) == ["PENDING", "DELIVERED", "OK"]


@pytest.mark.mqtt
def test_a_newer_command_supersedes_and_the_late_answer_is_ignored(running):
    commander = running.commander()
    controller = running.controller()  # answers by hand
    older = commander.send(TENANT, PUMP, "on", "rule: depth 24 cm >= on-level 20 cm")
    newer = commander.send(TENANT, PUMP, "off", "operator ana")
    wait_until(lambda: controller.count() == 2, 10, "both commands at the pump")
    assert [p["id"] for _, p in controller.received] == [older.command_id, newer.command_id]
    assert status_of(commander, older.command_id) == "SUPERSEDED"

    controller.reply(*controller.received[1], "OK", "stopped")
    wait_until(lambda: status_of(commander, newer.command_id) == "OK", 10, "the newer OK")
    controller.reply(*controller.received[0], "ERROR", "late: could not start")
    wait_until(lambda: commander.stats.acks_ignored == 1, 10, "the late answer handled")

    store = running.store
    assert value(store, "switch_id") == newer.command_id
    assert value(store, "switch") == "off"
    assert value(store, "switch_status") == "OK"
    assert value(store, "switch_info") == "stopped"
    history = statuses(store)
    assert history[-1] == "OK" and "ERROR" not in history and history.count("PENDING") == 2
    latest, earlier = commander.recent(TENANT, PUMP)
    assert (latest.command_id, latest.status) == (newer.command_id, "OK")
    assert (earlier.command_id, earlier.status) == (older.command_id, "SUPERSEDED")
    assert earlier.info == f"superseded by {newer.command_id}"
    assert commander.stats.superseded == 1


@pytest.mark.mqtt
def test_commands_from_several_threads_reach_each_pump_in_store_order(running):
    commander = running.commander()
    controller = running.controller(answer=lambda m: ("OK", f"switched {m.setting}"))
    sent: list = []
    sent_lock = threading.Lock()

    def operator(n: int) -> None:
        for k in range(5):
            pump = (PUMP, PUMP_2)[(n + k) % 2]
            command = commander.send(TENANT, pump, ("on", "off")[k % 2], f"operator {n}")
            with sent_lock:
                sent.append(command)

    threads = [threading.Thread(target=operator, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(sent) == 20
    wait_until(lambda: controller.count() == 20, 10, "every command at a pump")
    for pump in (PUMP, PUMP_2):
        issued = sorted((c for c in sent if c.pump_id == pump), key=lambda c: c.issued_at)
        at_pump = [p["id"] for topic, p in controller.received
                   if parse_command_topic(topic)[1] == pump]
        assert at_pump == [c.command_id for c in issued]  # the order the store recorded
        newest = issued[-1]
        wait_until(lambda n=newest: status_of(commander, n.command_id) == "OK", 10,
                   "the newest command's OK")
        assert value(running.store, "switch_id", pump) == newest.command_id
        assert value(running.store, "switch_status", pump) == "OK"
        kept = commander.recent(TENANT, pump)
        assert [c.command_id for c in kept] == [c.command_id for c in reversed(issued)]
        assert all(c.status in ("OK", "SUPERSEDED") for c in kept)
    assert commander.stats.sent == 20


@pytest.mark.mqtt
def test_with_the_broker_down_send_refuses_and_an_open_command_expires(running, broker):
    # decided: a commander that is not connected refuses at once and writes nothing (an
    # operator must know the pump was not told); a command already out stays open and
    # expires, with its alert, like one the pump never answered
    commander = running.commander(timeout_s=2)
    sent = commander.send(TENANT, PUMP, "on", "operator ana")  # no controller listens
    wait_until(lambda: status_of(commander, sent.command_id) != "PENDING", 10, "the PUBACK")
    # the broker said no one subscribes (MQTT v5 reason 0x10): the operator sees it now
    assert statuses(running.store) == ["PENDING", "DELIVERED"]
    assert value(running.store, "switch_info") == NO_CONTROLLER_INFO
    broker.stop(signal.SIGKILL)
    wait_until(lambda: not commander.stats.connected, 10, "the commander seeing it")
    with pytest.raises(PumpCommandUnavailable, match="not connected"):
        commander.send(TENANT, PUMP_2, "on", "operator ana")
    assert "switch" not in running.store.get_entity(TENANT, PUMP_2)
    wait_until(lambda: status_of(commander, sent.command_id) == "EXPIRED", 10, "the expiry")
    assert statuses(running.store) == ["PENDING", "DELIVERED", "EXPIRED"]
    assert value(running.store, "switch_info") == (
        f"no answer from the pump controller within 2 s ({NO_CONTROLLER_INFO})")
    [alert] = alerts(running.store)
    assert alert["subCategory"]["value"] == "pumpNotResponding"
    assert [c.command_id for c in commander.recent(TENANT)] == [sent.command_id]
