"""Ids entering by ingestion (HTTP observations, MQTT topics and payloads, file import)
must be URIs; a bad one is refused naming the field and the character, escaped.

MQTT runs against a real Mosquitto (a private broker per test). The broker itself
refuses a topic with a control character (MQTT 5, 1.5.4: it closes the connection with
"malformed packet"), so over MQTT control characters arrive in the payload's ``id``;
the topic parser is checked for them directly.
"""

from __future__ import annotations

import json
import signal
import warnings

import pytest

from cityos import cli
from cityos.config import Settings
from cityos.core.errors import BadRequestData
from cityos.core.ingest.deadletters import list_dead_letters
from cityos.core.ingest.mqtt import MqttIngester
from cityos.core.ingest.observations import observation_from_mqtt, parse_topic
from cityos.core.store import open_store
from cityos.server import create_app
from tests.core.ingest.brokers import AckedPublisher, PrivateBroker, wait_until

with warnings.catch_warnings():  # starlette's testclient warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SHORT_ID_RULE = "is not a URI or a short id (letters, digits, '-', '_', '.', '~')"
NO_SCHEME = "no scheme: a URI starts with a scheme and ':' (e.g. urn:ngsi-ld:Vehicle:bus-17)"
#: (id as sent, as the error shows it, the reason): NUL, newline, space, DEL, no scheme
BAD_IDS = {
    "nul": ("urn:ngsi-ld:Vehicle:a\x00b", "urn:ngsi-ld:Vehicle:a\\u0000b",
            "control character \\u0000 at position 22"),
    "newline": ("urn:ngsi-ld:Vehicle:a\nb", "urn:ngsi-ld:Vehicle:a\\u000ab",
                "control character \\u000a at position 22"),
    "space": ("urn:ngsi-ld:Vehicle:a b", "urn:ngsi-ld:Vehicle:a b", "space \\u0020 at position 22"),
    "del": ("urn:ngsi-ld:Vehicle:a\x7fb", "urn:ngsi-ld:Vehicle:a\\u007fb",
            "control character \\u007f at position 22"),
    # a short id (bus-17) is made a URN; this is neither a short id nor a URI
    "no-scheme": ("bus@17", "bus@17", NO_SCHEME),
}
RAW_CONTROLS = "\x00\n\x7f"


def no_raw_control(text: str) -> bool:
    return not any(c in text for c in RAW_CONTROLS)


# ----------------------------------------------------------------- HTTP observations
@pytest.mark.parametrize("case", BAD_IDS)
def test_the_observations_api_refuses_a_bad_id(store, case):
    bad, shown, reason = BAD_IDS[case]
    client = TestClient(create_app(Settings(database_url="sqlite:///unused.db", mqtt_url=None,
                                            bus_url="memory://", auth_required=False), store))
    batch = [{"id": "bus-1", "type": "Vehicle", "speed": 1},
             {"id": bad, "type": "Vehicle", "speed": 2}]
    response = client.post("/apps/ingest/observations", json=batch,
                           headers={"NGSILD-Tenant": "north"})
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == ["urn:ngsi-ld:Vehicle:bus-1"]
    [error] = body["errors"]
    assert error["error"]["detail"] == f"entity 1: id: '{shown}' {SHORT_ID_RULE}: {reason}"
    assert [r.id for r in store.scan("north")] == ["urn:ngsi-ld:Vehicle:bus-1"]
    [letter] = list_dead_letters(store, "north")
    assert letter["reason"] == f"entity 1: id: '{shown}' {SHORT_ID_RULE}: {reason}"
    assert no_raw_control(letter["reason"])


def test_the_observations_api_refuses_a_type_with_a_control_character(store):
    client = TestClient(create_app(Settings(database_url="sqlite:///unused.db", mqtt_url=None,
                                            bus_url="memory://", auth_required=False), store))
    response = client.post("/apps/ingest/observations", headers={"NGSILD-Tenant": "north"},
                           json=[{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle\x00",
                                  "speed": 1}])
    assert response.status_code == 207, response.text
    assert response.json()["errors"][0]["error"]["detail"] == \
        "entity 0: type: 'Vehicle\\x00' is not a valid entity type"
    assert list(store.scan("north")) == []


# ------------------------------------------------------------------------ MQTT topic
@pytest.mark.parametrize("case", BAD_IDS)
def test_the_topic_parser_refuses_a_bad_id(case):
    bad, shown, reason = BAD_IDS[case]
    with pytest.raises(BadRequestData) as caught:
        parse_topic(f"cityos/north/Vehicle/{bad}")
    detail = caught.value.detail
    assert detail == (f"topic cityos/north/Vehicle/{shown}: entityId: '{shown}' "
                      f"{SHORT_ID_RULE}: {reason}")
    assert no_raw_control(detail)


def test_a_type_level_with_a_control_character_is_refused():
    with pytest.raises(BadRequestData) as caught:
        observation_from_mqtt("cityos/north/Vehi\x01cle/bus-1", b'{"speed": 1}')
    assert caught.value.detail == ("id: 'urn:ngsi-ld:Vehi\\u0001cle:bus-1' "
                                   f"{SHORT_ID_RULE}: control character \\u0001 at position 17")


@pytest.fixture
def broker(tmp_path):
    running = PrivateBroker(tmp_path / "broker").start()
    yield running
    running.stop(signal.SIGKILL)


@pytest.fixture
def ingest(broker, store):
    """An ingester on the private broker and a device publishing to it."""
    ingester = MqttIngester(store, Settings(
        database_url="sqlite:///unused.db", mqtt_url=broker.url,
        mqtt_client_id="cityos-ingest-ids", bus_url="memory://"), max_batch=50)
    ingester.start()
    assert ingester.wait_until_subscribed(15), broker.log()[-2000:]
    device = AckedPublisher(broker.url, "device-ids")
    yield ingester, device
    device.close()
    ingester.stop()


@pytest.mark.mqtt
def test_mqtt_bad_ids_are_dead_lettered_with_the_reason(store, ingest):
    ingester, device = ingest
    sent = [
        # a bad id in the payload, on the topic of a good one
        *[("cityos/north/Vehicle/bus-1", {"id": BAD_IDS[c][0], "speed": 1}) for c in BAD_IDS],
        # a bad id in the topic itself (a control character never gets past the broker)
        ("cityos/north/Vehicle/urn:ngsi-ld:Vehicle:a b", {"speed": 2}),
        ("cityos/north/Vehicle/bus@17", {"speed": 3}),
        ("cityos/north/Vehicle/bus-1", {"speed": 4, "observedAt": "2026-01-05T08:00:00Z"}),
    ]
    for topic, payload in sent:
        device.publish(topic, payload)
    wait_until(lambda: ingester.stats.stored + ingester.stats.dead_lettered == len(sent),
               what="every message handled")
    assert ingester.stats.stored == 1
    assert store.get_entity("north", "urn:ngsi-ld:Vehicle:bus-1")["speed"]["value"] == 4
    letters = sorted(list_dead_letters(store, "north"), key=lambda d: d["reason"])
    expected = sorted(
        [("cityos/north/Vehicle/bus-1", f"id: '{shown}' {SHORT_ID_RULE}: {reason}")
         for _, shown, reason in BAD_IDS.values()]
        + [("cityos/north/Vehicle/urn:ngsi-ld:Vehicle:a b",
            "topic cityos/north/Vehicle/urn:ngsi-ld:Vehicle:a b: entityId: "
            f"'urn:ngsi-ld:Vehicle:a b' {SHORT_ID_RULE}: space \\u0020 at position 22"),
           ("cityos/north/Vehicle/bus@17",
            f"topic cityos/north/Vehicle/bus@17: entityId: 'bus@17' {SHORT_ID_RULE}: "
            f"{NO_SCHEME}")],
        key=lambda pair: pair[1])
    assert [(d["source"], d["reason"]) for d in letters] == expected
    assert all(no_raw_control(d["reason"]) for d in letters)
    assert [r.id for r in store.scan("north")] == ["urn:ngsi-ld:Vehicle:bus-1"]


# ----------------------------------------------------------------------- file import
def _import(tmp_path, document) -> tuple[int, str]:
    from typer.testing import CliRunner

    path = tmp_path / "entities.json"
    path.write_text(json.dumps(document))
    db_url = f"sqlite:///{tmp_path / 'city.db'}"
    result = CliRunner().invoke(cli.app, ["import", str(path), "--database-url", db_url])
    store = open_store(db_url)
    try:
        assert list(store.scan("default")) == []  # all or nothing: nothing written
    finally:
        store.close()
    return result.exit_code, result.stderr.replace(f"{path}: ", "")


@pytest.mark.parametrize("case", ["nul", "newline", "space", "del"])
def test_import_refuses_a_bad_ngsi_ld_id(tmp_path, case):
    bad, shown, reason = BAD_IDS[case]
    code, errors = _import(tmp_path, [
        {"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"},
        {"id": bad, "type": "Vehicle", "speed": {"type": "Property", "value": 1}}])
    assert code == 2
    assert errors.splitlines()[0] == f"entity 2: id: '{shown}' is not a URI ({reason})"
    assert no_raw_control(errors.replace("\n", ""))


def test_import_refuses_an_ngsi_ld_id_without_a_scheme(tmp_path):
    code, errors = _import(tmp_path, [{"id": "bus-17", "type": "Vehicle"}])
    assert code == 2
    assert errors.splitlines()[0] == f"entity 1: id: 'bus-17' is not a URI ({NO_SCHEME})"


@pytest.mark.parametrize("local_id, shown, reason", [
    ("a\x00b", "a\\u0000b", "control character \\u0000 at position 22"),
    ("a\nb", "a\\u000ab", "control character \\u000a at position 22"),
    ("a b", "a b", "space \\u0020 at position 22"),
    ("a\x7fb", "a\\u007fb", "control character \\u007f at position 22"),
])
def test_import_refuses_a_bad_geojson_feature_id(tmp_path, local_id, shown, reason):
    # a feature id that is not a URI is a local id, made urn:ngsi-ld:<type>:<id>
    code, errors = _import(tmp_path, {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": local_id, "properties": {"type": "Vehicle"},
         "geometry": {"type": "Point", "coordinates": [139.7, 35.7]}}]})
    assert code == 2
    assert errors.splitlines()[0] == \
        f"entity 1: id: 'urn:ngsi-ld:Vehicle:{shown}' is not a URI ({reason})"
