"""Device messages to entity fragments: the pure parsing, every malformed case."""

from __future__ import annotations

import pytest

from cityos.core.errors import BadRequestData
from cityos.core.ingest.observations import (
    decode_payload,
    entity_urn,
    observation_entity,
    observation_from_mqtt,
    parse_topic,
    topic_tenant,
)

TOPIC = "cityos/acme/Vehicle/bus-17"
BUS = "urn:ngsi-ld:Vehicle:bus-17"


def test_key_values_with_top_level_observed_at():
    payload = b'{"speed": 3.2, "status": "inService", "observedAt": "2026-01-05T08:00:00Z"}'
    observation = observation_from_mqtt(TOPIC, payload)
    assert observation.tenant == "acme"
    assert observation.entity == {
        "id": BUS, "type": "Vehicle",
        "speed": {"type": "Property", "value": 3.2,
                  "observedAt": "2026-01-05T08:00:00.000000Z"},
        "status": {"type": "Property", "value": "inService",
                   "observedAt": "2026-01-05T08:00:00.000000Z"},
    }


def test_own_observed_at_wins_and_offsets_become_utc():
    payload = b"""{"observedAt": "2026-01-05T17:00:00+09:00",
                   "speed": {"type": "Property", "value": 4, "unitCode": "KMH",
                             "observedAt": "2026-01-05T07:59:00Z"},
                   "driver": {"type": "Relationship", "object": "urn:ngsi-ld:Person:ann"}}"""
    entity = observation_from_mqtt(TOPIC, payload).entity
    assert entity["speed"] == {"type": "Property", "value": 4, "unitCode": "KMH",
                               "observedAt": "2026-01-05T07:59:00.000000Z"}
    assert entity["driver"] == {"type": "Relationship", "object": "urn:ngsi-ld:Person:ann",
                                "observedAt": "2026-01-05T08:00:00.000000Z"}


def test_without_observed_at_attributes_carry_none():
    entity = observation_from_mqtt(TOPIC, b'{"speed": 1}').entity
    assert entity["speed"] == {"type": "Property", "value": 1}


def test_full_urn_in_topic_and_matching_id_in_payload():
    topic = "cityos/acme/Vehicle/urn:ngsi-ld:Vehicle:bus-9"
    payload = b'{"id": "urn:ngsi-ld:Vehicle:bus-9", "type": "Vehicle", "speed": 2}'
    assert observation_from_mqtt(topic, payload).entity["id"] == "urn:ngsi-ld:Vehicle:bus-9"
    # a short id in the payload names the same entity
    assert observation_from_mqtt(TOPIC, b'{"id": "bus-17", "speed": 2}').entity["id"] == BUS


def test_multi_instance_attribute_by_dataset_id_is_stamped():
    payload = b"""{"observedAt": "2026-01-05T08:00:00Z", "temperature": [
        {"type": "Property", "value": 20, "datasetId": "urn:ngsi-ld:Dataset:cabin"},
        {"type": "Property", "value": 5, "datasetId": "urn:ngsi-ld:Dataset:outside"}]}"""
    entity = observation_from_mqtt(TOPIC, payload).entity
    assert [i["value"] for i in entity["temperature"]] == [20, 5]
    assert {i["observedAt"] for i in entity["temperature"]} == {"2026-01-05T08:00:00.000000Z"}


def test_key_values_list_stays_a_value():
    entity = observation_from_mqtt(TOPIC, b'{"stops": ["a", "b"]}').entity
    assert entity["stops"] == {"type": "Property", "value": ["a", "b"]}


def test_entity_urn():
    assert entity_urn("WaterObserved", "gauge.3") == "urn:ngsi-ld:WaterObserved:gauge.3"
    assert entity_urn("Vehicle", "urn:ngsi-ld:Vehicle:x") == "urn:ngsi-ld:Vehicle:x"


def test_topic_tenant_for_filing_dead_letters():
    assert topic_tenant("cityos/acme/Vehicle") == "acme"
    assert topic_tenant("cityos/acme/Vehicle/bus/extra") == "acme"
    assert topic_tenant("other/acme/Vehicle/bus") is None
    assert topic_tenant("cityos/@x/Vehicle/bus") is None


@pytest.mark.parametrize(("topic", "reason"), [
    ("cityos/acme/Vehicle",
     "topic cityos/acme/Vehicle has 3 levels, expected cityos/<tenant>/<entityType>/<entityId>"),
    ("cityos/acme/Vehicle/bus-1/speed",
     "topic cityos/acme/Vehicle/bus-1/speed has 5 levels, expected "
     "cityos/<tenant>/<entityType>/<entityId>"),
    ("city/acme/Vehicle/bus-1",
     "topic city/acme/Vehicle/bus-1 does not start with cityos/, expected "
     "cityos/<tenant>/<entityType>/<entityId>"),
    ("cityos//Vehicle/bus-1",
     "topic cityos//Vehicle/bus-1: the tenant level is empty, expected "
     "cityos/<tenant>/<entityType>/<entityId>"),
    ("cityos/acme/Vehicle/",
     "topic cityos/acme/Vehicle/: the entityId level is empty, expected "
     "cityos/<tenant>/<entityType>/<entityId>"),
    ("cityos/ac me/Vehicle/bus-1",
     "topic cityos/ac me/Vehicle/bus-1: tenant 'ac me' is not a valid tenant name "
     "(letters, digits, '-', '_', '.', at most 64)"),
    ("cityos/acme/Vehicle/bus 1",
     "topic cityos/acme/Vehicle/bus 1: entityId: 'bus 1' is not a URI or a short id "
     "(letters, digits, '-', '_', '.', '~'): space \\u0020 at position 4"),
])
def test_bad_topics(topic, reason):
    with pytest.raises(BadRequestData) as caught:
        observation_from_mqtt(topic, b'{"speed": 1}')
    assert caught.value.detail == reason


def test_tenant_outside_the_allowed_list():
    assert parse_topic(TOPIC, ["acme"]) == ("acme", "Vehicle", BUS)
    with pytest.raises(BadRequestData) as caught:
        observation_from_mqtt("cityos/x/Vehicle/bus-1", b'{"speed": 1}', ["acme"])
    assert caught.value.detail == "tenant 'x' is not allowed for this device credential"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "payload is not JSON: Expecting value: line 1 column 1 (char 0)"),
    (b"speed=3", "payload is not JSON: Expecting value: line 1 column 1 (char 0)"),
    (b'{"speed": 3', "payload is not JSON: Expecting ',' delimiter: line 1 column 12 (char 11)"),
    (b'{"speed": NaN}', "payload is not JSON: NaN is not a JSON number"),
    (b"\xff\xfe", "payload is not UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: "
                  "invalid start byte"),
    (b"[1, 2]", "payload must be a JSON object of attributes, got an array"),
    (b'"hello"', "payload must be a JSON object of attributes, got a string"),
    (b"42", "payload must be a JSON object of attributes, got a number"),
    (b"null", "payload must be a JSON object of attributes, got null"),
    (b"{}", "payload has no attributes to store"),
    (b'{"observedAt": "2026-01-05T08:00:00Z"}', "payload has no attributes to store"),
    (b'{"speed": 1, "observedAt": "yesterday"}',
     "observedAt: 'yesterday' is not an ISO 8601 date-time"),
    (b'{"speed": {"type": "Property", "value": 1, "observedAt": "soon"}}',
     "speed.observedAt: 'soon' is not an ISO 8601 date-time"),
    (b'{"speed": {"type": "Property"}}', "speed: a Property needs a 'value'"),
    (b'{"speed": null}', "speed: a Property needs a 'value'"),
    (b'{"driver": {"type": "Relationship", "object": "ann"}}',
     "driver: a Relationship needs an 'object' that is a URI"),
    (b'{"bad name": 1}', "attribute name 'bad name' is not valid"),
    (b'{"type": "Bus", "speed": 1}',
     "type 'Bus' does not match the topic's entity type 'Vehicle'"),
    (b'{"id": "urn:ngsi-ld:Vehicle:bus-18", "speed": 1}',
     "id 'urn:ngsi-ld:Vehicle:bus-18' does not match the topic's entity "
     "'urn:ngsi-ld:Vehicle:bus-17'"),
])
def test_bad_payloads(payload, reason):
    with pytest.raises(BadRequestData) as caught:
        observation_from_mqtt(TOPIC, payload)
    assert caught.value.detail == reason


def test_bad_entity_type_in_topic():
    with pytest.raises(BadRequestData) as caught:
        observation_from_mqtt("cityos/acme/Ve(hicle/bus-1", b'{"speed": 1}')
    assert caught.value.detail == "type: 'Ve(hicle' is not a valid entity type"


def test_http_items_need_id_and_type():
    where = "entity 2: "
    cases = [
        ({"type": "Vehicle", "speed": 1}, "entity 2: id is missing"),
        ({"id": "bus-1", "speed": 1}, "entity 2: type is missing"),
        ({"id": "bus 1", "type": "Vehicle", "speed": 1},
         "entity 2: id: 'bus 1' is not a URI or a short id (letters, digits, '-', '_', '.', '~'): "
         "space \\u0020 at position 4"),
        ({"id": 7, "type": "Vehicle", "speed": 1},
         "entity 2: id: 7 is not a URI or a short id (letters, digits, '-', '_', '.', '~')"),
        ({"id": "bus-1", "type": 5, "speed": 1}, "entity 2: type: 5 is not a valid entity type"),
        ("bus-1", "entity 2: payload must be a JSON object of attributes, got a string"),
    ]
    for body, reason in cases:
        with pytest.raises(BadRequestData) as caught:
            observation_entity(body, where=where)
        assert caught.value.detail == reason
    entity = observation_entity({"id": "bus-1", "type": "Vehicle", "speed": 1}, where=where)
    assert entity == {"id": "urn:ngsi-ld:Vehicle:bus-1", "type": "Vehicle",
                      "speed": {"type": "Property", "value": 1}}


def test_decode_payload_text_and_huge_numbers():
    assert decode_payload('{"a": 1}') == {"a": 1}
    # beyond 64 bits a number is read as a float, which the store can keep
    assert decode_payload(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}
