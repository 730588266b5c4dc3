"""HTTP ingestion: the gateway batch upsert and the dead-letter listing, through the
real app over SQLite and PostgreSQL."""

from __future__ import annotations

import warnings

import pytest

from cityos.config import Settings
from cityos.core.ingest.deadletters import UNROUTED_TENANT, record_dead_letter
from cityos.core.tenancy import create_key
from cityos.server import create_app

with warnings.catch_warnings():  # starlette's testclient warns about httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OBSERVATIONS = "/apps/ingest/observations"
DEAD_LETTERS = "/apps/ingest/deadletters"
BUS = "urn:ngsi-ld:Vehicle:bus-17"
GAUGE = "urn:ngsi-ld:WaterObserved:gauge-3"


def client_for(store, **overrides) -> TestClient:
    """The app over ``store``; the lifespan is not run, so the fixture keeps the store."""
    values = dict(database_url="sqlite:///unused.db", mqtt_url=None, bus_url="memory://",
                  auth_required=False, max_query_limit=50)
    values.update(overrides)
    return TestClient(create_app(Settings(**values), store))


def problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"].endswith("/" + kind)
    return body


def speeds(store, tenant: str, entity_id: str = BUS) -> list[tuple[str, float]]:
    rows = store.history(tenant, entity_id, ["speed"], None, None, None)
    return [(row.instance["observedAt"], row.instance["value"]) for row in rows]


def test_good_batch_is_stored_with_history(store):
    client = client_for(store)
    batch = [
        {"id": "bus-17", "type": "Vehicle", "speed": 31.5, "status": "inService",
         "observedAt": "2026-01-05T08:00:00Z"},
        {"id": BUS, "type": "Vehicle", "speed": 28,  # 09:00Z, an hour after the first
         "observedAt": "2026-01-05T10:00:00+01:00"},
        {"id": "gauge-3", "type": "WaterObserved",
         "height": {"type": "Property", "value": 1.25, "unitCode": "MTR",
                    "observedAt": "2026-01-05T08:00:30Z"},
         "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:g3"}},
    ]
    response = client.post(OBSERVATIONS, json=batch, headers={"NGSILD-Tenant": "north"})
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert speeds(store, "north") == [("2026-01-05T08:00:00.000000Z", 31.5),
                                      ("2026-01-05T09:00:00.000000Z", 28)]
    bus = store.get_entity("north", BUS)
    assert bus["speed"] == {"type": "Property", "value": 28,
                            "observedAt": "2026-01-05T09:00:00.000000Z"}
    assert bus["status"]["value"] == "inService"  # merged, not replaced
    gauge = store.get_entity("north", GAUGE)
    assert gauge["height"] == {"type": "Property", "value": 1.25, "unitCode": "MTR",
                               "observedAt": "2026-01-05T08:00:30.000000Z"}
    assert gauge["refDevice"]["object"] == "urn:ngsi-ld:Device:g3"
    # nothing of it is in another tenant, and nothing was dead-lettered
    assert list(store.scan("south", ids=[BUS, GAUGE])) == []
    assert client.get(DEAD_LETTERS, headers={"NGSILD-Tenant": "north"}).json() == []

    # the gateway sends the same batch again (it did not see the answer): kept once
    assert client.post(OBSERVATIONS, json=batch,
                       headers={"NGSILD-Tenant": "north"}).status_code == 204
    assert len(speeds(store, "north")) == 2


def test_readings_without_observed_at_keep_one_history_row_each(sqlite_store):
    client = client_for(sqlite_store)
    batch = [{"id": "bus-17", "type": "Vehicle", "speed": n} for n in range(5)]
    batch.append({"id": "bus-17", "type": "Vehicle", "speed": 5,
                  "observedAt": "2020-01-01T00:00:00Z"})  # its own instant is kept
    assert client.post(OBSERVATIONS, json=batch).status_code == 204
    rows = speeds(sqlite_store, "default")
    assert [value for _, value in rows] == [5, 0, 1, 2, 3, 4]
    assert rows[0][0] == "2020-01-01T00:00:00.000000Z"
    assert len({observed for observed, _ in rows}) == 6


def test_mixed_batch_gives_per_item_errors_and_dead_letters(store):
    client = client_for(store)
    batch = [
        {"id": "bus-1", "type": "Vehicle", "speed": 10, "observedAt": "2026-01-05T08:00:00Z"},
        {"type": "Vehicle", "speed": 11},
        {"id": "bus-2", "type": "Vehicle", "speed": 12, "observedAt": "yesterday"},
        "bus-3 speed 13",
        {"id": "bus-4", "type": "Vehicle", "driver": {"type": "Relationship", "object": "ann"}},
        {"id": "bus-5", "type": "Vehicle", "speed": 15, "observedAt": "2026-01-05T08:00:05Z"},
    ]
    response = client.post(OBSERVATIONS, json=batch)
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == ["urn:ngsi-ld:Vehicle:bus-1", "urn:ngsi-ld:Vehicle:bus-5"]
    reasons = {
        1: "entity 1: id is missing",
        2: "entity 2: observedAt: 'yesterday' is not an ISO 8601 date-time",
        3: "entity 3: payload must be a JSON object of attributes, got a string",
        4: "entity 4: driver: a Relationship needs an 'object' that is a URI",
    }
    assert [e["index"] for e in body["errors"]] == [1, 2, 3, 4]
    assert [e["entityId"] for e in body["errors"]] == [None, "bus-2", None, "bus-4"]
    for error in body["errors"]:
        assert error["error"]["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
        assert error["error"]["status"] == 400
        assert error["error"]["detail"] == reasons[error["index"]]

    # the good ones are stored despite the bad ones around them
    assert speeds(store, "default", "urn:ngsi-ld:Vehicle:bus-1") == [
        ("2026-01-05T08:00:00.000000Z", 10)]
    assert speeds(store, "default", "urn:ngsi-ld:Vehicle:bus-5") == [
        ("2026-01-05T08:00:05.000000Z", 15)]
    assert [e.id for e in store.scan("default")] == ["urn:ngsi-ld:Vehicle:bus-1",
                                                     "urn:ngsi-ld:Vehicle:bus-5"]

    letters = client.get(DEAD_LETTERS).json()
    assert [letter["reason"] for letter in letters] == [reasons[i] for i in (4, 3, 2, 1)]
    assert {letter["source"] for letter in letters} == {"http"}
    assert {letter["tenant"] for letter in letters} == {"default"}
    assert letters[1]["payload"] == '"bus-3 speed 13"'
    assert letters[3]["payload"] == '{"type":"Vehicle","speed":11}'
    assert all(letter["receivedAt"].endswith("Z") for letter in letters)


def test_a_batch_where_every_item_fails_is_still_207(store):
    client = client_for(store)
    response = client.post(OBSERVATIONS, json=[{"id": "x", "type": "Vehicle"}])
    assert response.status_code == 207
    assert response.json() == {"success": [], "errors": [{
        "index": 0, "entityId": "x", "error": {
            "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "title": "Bad request data", "status": 400,
            "detail": "entity 0: payload has no attributes to store"}}]}
    assert len(client.get(DEAD_LETTERS).json()) == 1


@pytest.mark.parametrize(("content", "status", "kind", "detail"), [
    (b'{"id": "bus-1", "type": "Vehicle", "speed": 1}', 400, "BadRequestData",
     "body: must be a JSON array of observations (objects with id, type and attributes)"),
    (b"[]", 400, "BadRequestData", "body: the array of observations is empty"),
    (b'[{"id": "bus-1", "speed": 1},', 400, "InvalidRequest",
     "request body is not valid JSON: line 1 column 30: Expecting value"),
    (b"", 400, "InvalidRequest", "request body is empty; a JSON payload is required"),
])
def test_body_level_errors(sqlite_store, content, status, kind, detail):
    client = client_for(sqlite_store)
    response = client.post(OBSERVATIONS, content=content,
                           headers={"Content-Type": "application/json"})
    assert problem(response, status, kind)["detail"] == detail
    assert list(sqlite_store.scan("default")) == []
    assert client.get(DEAD_LETTERS).json() == []  # the request was refused, not stored


def test_too_many_observations_in_one_request(sqlite_store):
    client = client_for(sqlite_store)
    batch = [{"id": f"bus-{n}", "type": "Vehicle", "speed": n} for n in range(1001)]
    body = problem(client.post(OBSERVATIONS, json=batch), 400, "BadRequestData")
    assert body["detail"] == "body: 1001 observations; at most 1000 are accepted in one request"
    problem(client.post(OBSERVATIONS, content=b"[1]", headers={"Content-Type": "text/csv"}),
            415, "UnsupportedMediaType")


def test_a_value_the_backend_cannot_keep_is_refused_alone(store):
    # PostgreSQL cannot keep U+0000 in a string: that observation alone is refused
    client = client_for(store)
    batch = [{"id": "bus-1", "type": "Vehicle", "speed": 1, "note": "a\u0000b"},
             {"id": "bus-2", "type": "Vehicle", "speed": 2}]
    response = client.post(OBSERVATIONS, json=batch)
    if store.backend == "sqlite":  # SQLite keeps it
        assert response.status_code == 204, response.text
        assert store.get_entity("default", "urn:ngsi-ld:Vehicle:bus-1")["note"]["value"] \
            == "a\x00b"
        return
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == ["urn:ngsi-ld:Vehicle:bus-2"]
    assert [e["index"] for e in body["errors"]] == [0]
    assert body["errors"][0]["error"]["detail"].startswith(
        "entity 0: store error: UntranslatableCharacter: ")
    [letter] = client.get(DEAD_LETTERS).json()
    assert letter["reason"] == body["errors"][0]["error"]["detail"]
    assert "\\u0000" in letter["payload"]  # the JSON text the gateway sent


def test_keys_and_roles(store):
    client = client_for(store, auth_required=True)
    operator, _ = create_key(store, "north", "operator")
    viewer, _ = create_key(store, "north", "viewer")
    batch = [{"id": "bus-1", "type": "Vehicle", "speed": 3}, {"id": "bus-2", "speed": 4}]

    problem(client.post(OBSERVATIONS, json=batch), 401, "Unauthorized")
    problem(client.get(DEAD_LETTERS), 401, "Unauthorized")
    problem(client.post(OBSERVATIONS, json=batch, headers={"X-API-Key": "cty_nope_nope"}),
            401, "Unauthorized")
    problem(client.post(OBSERVATIONS, json=batch,
                        headers={"Authorization": f"Bearer {viewer}"}), 403, "Forbidden")
    assert list(store.scan("north")) == []
    # a north key cannot write into south
    problem(client.post(OBSERVATIONS, json=batch, headers={
        "Authorization": f"Bearer {operator}", "NGSILD-Tenant": "south"}), 403, "Forbidden")

    response = client.post(OBSERVATIONS, json=batch,
                           headers={"Authorization": f"Bearer {operator}"})
    assert response.status_code == 207, response.text
    assert response.json()["success"] == ["urn:ngsi-ld:Vehicle:bus-1"]
    assert [e.id for e in store.scan("north")] == ["urn:ngsi-ld:Vehicle:bus-1"]
    letters = client.get(DEAD_LETTERS, headers={"Authorization": f"Bearer {viewer}"})
    assert letters.status_code == 200
    assert [letter["reason"] for letter in letters.json()] == ["entity 1: type is missing"]


def test_dead_letters_per_tenant(store):
    client = client_for(store)
    client.post(OBSERVATIONS, json=[{"id": "bus-1", "speed": 1}],
                headers={"NGSILD-Tenant": "north"})
    record_dead_letter(store, None, "cityos/nowhere", b"{}", "tenant 'nowhere' is not allowed")
    north = client.get(DEAD_LETTERS, headers={"NGSILD-Tenant": "north"}).json()
    assert [letter["reason"] for letter in north] == ["entity 0: type is missing"]
    assert client.get(DEAD_LETTERS, headers={"NGSILD-Tenant": "south"}).json() == []
    assert client.get(DEAD_LETTERS).json() == []  # the default tenant

    # the unrouted ones are for an admin of every tenant only
    unrouted = client.get(DEAD_LETTERS, params={"unrouted": "true"}).json()  # auth off
    assert [(u["tenant"], u["source"]) for u in unrouted] == [(UNROUTED_TENANT,
                                                                "cityos/nowhere")]
    secured = client_for(store, auth_required=True)
    platform, _ = create_key(store, "*", "admin")
    north_admin, _ = create_key(store, "north", "admin")
    problem(secured.get(DEAD_LETTERS, params={"unrouted": "true"},
                        headers={"X-API-Key": north_admin}), 403, "Forbidden")
    assert secured.get(DEAD_LETTERS, params={"unrouted": "true"},
                       headers={"X-API-Key": platform}).json() == unrouted
    assert secured.get(DEAD_LETTERS, headers={"X-API-Key": north_admin}).json() == north


def test_dead_letters_newest_first_in_pages(store):
    client = client_for(store)
    for n in range(7):
        record_dead_letter(store, "default", f"cityos/default/Vehicle/b{n}", b"x",
                           f"reason {n}")
    first = client.get(DEAD_LETTERS, params={"limit": 3}).json()
    second = client.get(DEAD_LETTERS, params={"limit": 3, "offset": 3}).json()
    last = client.get(DEAD_LETTERS, params={"limit": 3, "offset": 6}).json()
    assert [letter["reason"] for letter in first + second + last] == [
        f"reason {n}" for n in range(6, -1, -1)]
    assert first[0]["source"] == "cityos/default/Vehicle/b6"
    assert first[0]["payload"] == "x"
    body = problem(client.get(DEAD_LETTERS, params={"limit": 51}), 403, "TooManyResults")
    assert body["detail"] == "limit: 51 is larger than the maximum 50"
    body = problem(client.get(DEAD_LETTERS, params={"offset": "-1"}), 400, "BadRequestData")
    assert body["detail"] == "offset: -1 is less than 0"
    assert len(client.get(DEAD_LETTERS).json()) == 7  # the default page is 20
