"""Every NGSI-LD route where an id enters refuses one that is not a URI, with 400
BadRequestData naming the field and the character, on SQLite and PostgreSQL.

Regression: ``"id": "urn:ngsi-ld:T:a\\u0000b"`` was created (201) on SQLite.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from ngsi_helpers import API, TestClient, problem

from cityos.config import Settings
from cityos.server import create_app

#: (id, the reason the detail gives): NUL, newline, space, DEL, no scheme
BAD_IDS = {
    "nul": ("urn:ngsi-ld:T:a\x00b", "control character \\u0000 at position 16"),
    "newline": ("urn:ngsi-ld:T:a\nb", "control character \\u000a at position 16"),
    "space": ("urn:ngsi-ld:T:a b", "space \\u0020 at position 16"),
    "del": ("urn:ngsi-ld:T:a\x7fb", "control character \\u007f at position 16"),
    "no-scheme": ("bus@17", "no scheme: a URI starts with a scheme and ':' "
                            "(e.g. urn:ngsi-ld:Vehicle:bus-17)"),
}
#: ids accepted as they are (percent-encoded, and IRIs, which CityOS always stored)
GOOD_IDS = ["urn:ngsi-ld:T:Blok%20M", "urn:ngsi-ld:T:Straße", "urn:ngsi-ld:T:東京"]


@pytest.fixture
def client(store):
    settings = Settings(database_url="sqlite:///unused.db", mqtt_url=None,
                        bus_url="memory://", auth_required=False)
    with TestClient(create_app(settings, store)) as test_client:
        yield test_client


def shown(entity_id: str) -> str:
    return entity_id.replace("\x00", "\\u0000").replace("\n", "\\u000a") \
        .replace("\x7f", "\\u007f")


def refused(response, field: str, entity_id: str, reason: str) -> None:
    body = problem(response, 400, "BadRequestData")
    assert body["detail"] == f"{field}: '{shown(entity_id)}' is not a URI ({reason})"
    assert not any(c in body["detail"] for c in "\x00\n\x7f")


def entity(entity_id: str, **extra) -> dict:
    return {"id": entity_id, "type": "T", "n": {"type": "Property", "value": 1}, **extra}


@pytest.mark.parametrize("case", BAD_IDS)
def test_create_refuses_a_bad_id(client, store, case):
    bad, reason = BAD_IDS[case]
    refused(client.post(f"{API}/entities", json=entity(bad)), "id", bad, reason)
    assert list(store.scan("default")) == []


@pytest.mark.parametrize("operation", ["create", "upsert", "update"])
@pytest.mark.parametrize("case", BAD_IDS)
def test_batch_operations_refuse_a_bad_id(client, store, operation, case):
    bad, reason = BAD_IDS[case]
    good = entity("urn:ngsi-ld:T:good")
    if operation == "update":  # updates an entity that exists
        assert client.post(f"{API}/entities", json=good).status_code == 201
    response = client.post(f"{API}/entityOperations/{operation}", json=[good, entity(bad)])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == ["urn:ngsi-ld:T:good"]
    assert [e["entityId"] for e in body["errors"]] == [bad]
    # an update only reaches existing entities, and none can have a bad id
    expected = (f"entity {shown(bad)} does not exist" if operation == "update"
                else f"id: '{shown(bad)}' is not a URI ({reason})")
    assert body["errors"][0]["error"]["detail"] == expected
    assert [r.id for r in store.scan("default")] == ["urn:ngsi-ld:T:good"]


@pytest.mark.parametrize("case", BAD_IDS)
def test_temporal_create_refuses_a_bad_id(client, store, case):
    bad, reason = BAD_IDS[case]
    body = {"id": bad, "type": "T",
            "n": [{"type": "Property", "value": 1, "observedAt": "2026-01-05T08:00:00Z"}]}
    refused(client.post(f"{API}/temporal/entities", json=body), "id", bad, reason)
    assert list(store.scan("default")) == []


@pytest.mark.parametrize("case", BAD_IDS)
def test_a_relationship_object_must_be_a_uri(client, store, case):
    bad, _ = BAD_IDS[case]
    body = entity("urn:ngsi-ld:T:1", owner={"type": "Relationship", "object": bad})
    detail = problem(client.post(f"{API}/entities", json=body), 400, "BadRequestData")["detail"]
    assert detail == "owner: a Relationship needs an 'object' that is a URI"
    assert list(store.scan("default")) == []


@pytest.mark.parametrize("case", BAD_IDS)
def test_a_dataset_id_must_be_a_uri(client, case):
    bad, reason = BAD_IDS[case]
    body = entity("urn:ngsi-ld:T:1", n={"type": "Property", "value": 1, "datasetId": bad})
    refused(client.post(f"{API}/entities", json=body), "n.datasetId", bad, reason)


@pytest.mark.parametrize("bad_type", ["T\x00", "T\n", "T\x7f", "Ve hicle", "T\x1f", ""])
def test_a_type_with_a_control_character_or_space_is_refused(client, store, bad_type):
    body = {**entity("urn:ngsi-ld:T:1"), "type": bad_type}
    detail = problem(client.post(f"{API}/entities", json=body), 400, "BadRequestData")["detail"]
    assert detail == f"type: {bad_type!r} is not a valid entity type"
    assert list(store.scan("default")) == []


@pytest.mark.parametrize("case", BAD_IDS)
def test_a_subscription_id_must_be_a_uri(client, case):
    bad, reason = BAD_IDS[case]
    body = {"id": bad, "type": "Subscription", "entities": [{"type": "T"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
    refused(client.post(f"{API}/subscriptions", json=body), "id", bad, reason)
    body = {"type": "Subscription", "entities": [{"type": "T", "id": bad}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
    refused(client.post(f"{API}/subscriptions", json=body), "entities[0].id", bad, reason)


def test_a_subscription_selector_type_with_a_control_character_is_refused(client):
    body = {"type": "Subscription", "entities": [{"type": "T\x00"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
    detail = problem(client.post(f"{API}/subscriptions", json=body), 400,
                     "BadRequestData")["detail"]
    assert detail == "entities[0].type: 'T\\x00' is not an entity type"


@pytest.mark.parametrize("good", GOOD_IDS)
def test_percent_encoded_and_iri_ids_are_kept(client, store, good):
    created = client.post(f"{API}/entities", json=entity(good))
    assert created.status_code == 201, created.text
    assert [r.id for r in store.scan("default")] == [good]
    assert store.get_entity("default", good)["n"]["value"] == 1


@pytest.mark.parametrize("path", ["/entities/{id}", "/temporal/entities/{id}"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("case", ["nul", "newline", "del"])
def test_an_id_with_a_control_character_in_the_url(client, method, path, case):
    # PostgreSQL text cannot hold U+0000: the lookup must answer (no DataError, 500), and
    # the answer (not found, or a bad id) must not carry the raw control character
    bad, _ = BAD_IDS[case]
    response = client.request(method, API + path.format(id=quote(bad, safe=":")))
    assert response.status_code in (400, 404), response.text
    body = problem(response, response.status_code,
                   "ResourceNotFound" if response.status_code == 404 else "BadRequestData")
    assert shown(bad) in body["detail"] or repr(bad)[1:-1] in body["detail"]
    assert not any(c in body["detail"] for c in "\x00\n\x7f")
