"""Tenants and API keys through the real app, on SQLite and on PostgreSQL.

One tenant never sees, changes or deletes another's entities, history, types,
attributes or subscriptions; a key of one tenant is refused for another; a request
without a valid key is 401, a viewer that writes is 403; keys are stored hashed.
"""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from ngsi_helpers import API, TestClient, make_settings, problem, vehicle

from cityos.core.tenancy import KEY_KIND, KEYS_TENANT, create_key, revoke_key

NORTH_BUS = "urn:ngsi-ld:Vehicle:1"
SOUTH_LAMP = "urn:ngsi-ld:Streetlight:9"
SUBSCRIPTION = "urn:ngsi-ld:Subscription:north-speeding"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def city(store, tmp_path):
    """A client of the real app over the store of the backend under test."""
    from cityos.server import create_app

    app = create_app(make_settings(tmp_path), store=store)
    with TestClient(app) as client:
        yield client


def streetlight(number: int, state: str = "on") -> dict:
    return {"id": f"urn:ngsi-ld:Streetlight:{number}", "type": "Streetlight",
            "powerState": {"type": "Property", "value": state,
                           "observedAt": "2026-01-05T18:00:00Z"}}


@pytest.fixture
def two_tenants(city):
    """North holds a bus with history and a subscription; south holds a streetlight."""
    store = city.app.state.store
    keys = {f"{tenant}_{role}": bearer(create_key(store, tenant, role)[0])
            for tenant in ("north", "south") for role in ("viewer", "operator")}
    bus = vehicle(1, speed=10.0)
    bus["speed"]["observedAt"] = "2026-01-05T08:00:00Z"
    assert city.post(f"{API}/entities", json=bus,
                     headers=keys["north_operator"]).status_code == 201
    assert city.patch(f"{API}/entities/{NORTH_BUS}/attrs", headers=keys["north_operator"],
                      json={"speed": {"type": "Property", "value": 20.0,
                                      "observedAt": "2026-01-05T08:05:00Z"}}
                      ).status_code == 204
    assert city.post(f"{API}/entities", json=streetlight(9),
                     headers=keys["south_operator"]).status_code == 201
    sub = {"id": SUBSCRIPTION, "type": "Subscription", "entities": [{"type": "Vehicle"}],
           "q": "speed>50", "isActive": False,
           "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}}}
    created = city.post(f"{API}/subscriptions", json=sub, headers=keys["north_operator"])
    assert created.status_code == 201, created.text
    return keys


def north_bus_is_intact(city, keys) -> None:
    """The north's bus still has its value and its two history instances."""
    got = city.get(f"{API}/entities/{NORTH_BUS}", headers=keys["north_viewer"])
    assert got.status_code == 200, got.text
    assert got.json()["speed"]["value"] == 20.0
    history = city.get(f"{API}/temporal/entities/{NORTH_BUS}", headers=keys["north_viewer"],
                       params={"options": "temporalValues"})
    assert history.json()["speed"]["values"] == [[10.0, "2026-01-05T08:00:00.000000Z"],
                                                 [20.0, "2026-01-05T08:05:00.000000Z"]]


# ===================================================================== tenancy
def test_reads_of_another_tenant_see_nothing(city, two_tenants):
    south = two_tenants["south_viewer"]
    north = two_tenants["north_viewer"]
    assert city.get(f"{API}/entities", params={"type": "Vehicle"}, headers=south).json() == []
    counted = city.get(f"{API}/entities", headers=south,
                       params={"type": "Vehicle", "count": "true", "limit": 0})
    assert counted.headers["NGSILD-Results-Count"] == "0"
    everything = city.get(f"{API}/entities", params={"idPattern": ".*"}, headers=south)
    assert [e["id"] for e in everything.json()] == [SOUTH_LAMP]
    near = city.get(f"{API}/entities", headers=south, params={
        "georel": "near;maxDistance==1000", "geometry": "Point",
        "coordinates": "[8.54,47.37]"})
    assert near.json() == []
    by_id = city.get(f"{API}/entities", params={"id": NORTH_BUS, "type": "Vehicle"},
                     headers=south)
    assert by_id.json() == []
    body = problem(city.get(f"{API}/entities/{NORTH_BUS}", headers=south), 404,
                   "ResourceNotFound")
    assert NORTH_BUS in body["detail"]
    queried = city.post(f"{API}/entityOperations/query", headers=south,
                        json={"type": "Query", "entities": [{"type": "Vehicle"}]})
    assert queried.status_code == 200 and queried.json() == []
    # the owner sees its own
    assert [e["id"] for e in city.get(f"{API}/entities", params={"type": "Vehicle"},
                                      headers=north).json()] == [NORTH_BUS]


def test_history_of_another_tenant_is_invisible(city, two_tenants):
    south = two_tenants["south_viewer"]
    assert city.get(f"{API}/temporal/entities", params={"type": "Vehicle"},
                    headers=south).json() == []
    assert city.get(f"{API}/temporal/entities", params={"attrs": "speed"},
                    headers=south).json() == []
    problem(city.get(f"{API}/temporal/entities/{NORTH_BUS}", headers=south), 404,
            "ResourceNotFound")
    mine = city.get(f"{API}/temporal/entities", params={"idPattern": ".*"}, headers=south)
    assert [e["id"] for e in mine.json()] == [SOUTH_LAMP]


def test_types_and_attributes_are_per_tenant(city, two_tenants):
    south = two_tenants["south_viewer"]
    north = two_tenants["north_viewer"]
    assert city.get(f"{API}/types", headers=south).json()["typeList"] == ["Streetlight"]
    assert city.get(f"{API}/types", headers=north).json()["typeList"] == ["Vehicle"]
    detailed = city.get(f"{API}/types", params={"details": "true"}, headers=south).json()
    assert [t["typeName"] for t in detailed] == ["Streetlight"]
    problem(city.get(f"{API}/types/Vehicle", headers=south), 404, "ResourceNotFound")
    assert city.get(f"{API}/attributes", headers=south).json()["attributeList"] == [
        "powerState"]
    assert city.get(f"{API}/attributes", headers=north).json()["attributeList"] == [
        "location", "speed"]
    problem(city.get(f"{API}/attributes/speed", headers=south), 404, "ResourceNotFound")


def test_writes_to_another_tenants_id_never_touch_it(city, two_tenants):
    south = two_tenants["south_operator"]
    path = f"{API}/entities/{NORTH_BUS}"
    speed = {"speed": {"type": "Property", "value": 99.0}}
    for response in (
        city.patch(f"{path}/attrs", json=speed, headers=south),
        city.post(f"{path}/attrs", json=speed, headers=south),
        city.patch(path, json=speed, headers=south),
        city.put(path, json={"type": "Vehicle", **speed}, headers=south),
        city.patch(f"{path}/attrs/speed", json={"value": 99.0}, headers=south),
        city.delete(f"{path}/attrs/speed", headers=south),
        city.delete(path, headers=south),
        city.post(f"{API}/temporal/entities/{NORTH_BUS}/attrs", headers=south,
                  json={"speed": [{"type": "Property", "value": 99.0,
                                   "observedAt": "2026-01-05T09:00:00Z"}]}),
        city.delete(f"{API}/temporal/entities/{NORTH_BUS}", headers=south),
    ):
        problem(response, 404, "ResourceNotFound")
    north_bus_is_intact(city, two_tenants)


def test_batch_operations_stay_in_the_callers_tenant(city, two_tenants):
    south = two_tenants["south_operator"]
    ops = f"{API}/entityOperations"
    deleted = city.post(f"{ops}/delete", json=[NORTH_BUS], headers=south)
    assert deleted.status_code == 207, deleted.text
    assert [e["entityId"] for e in deleted.json()["errors"]] == [NORTH_BUS]
    updated = city.post(f"{ops}/update", headers=south, json=[
        {"id": NORTH_BUS, "type": "Vehicle", "speed": {"type": "Property", "value": 99.0}}])
    assert updated.status_code == 207, updated.text
    assert [e["entityId"] for e in updated.json()["errors"]] == [NORTH_BUS]
    north_bus_is_intact(city, two_tenants)
    # the same id is a different entity in the south: upsert creates it there
    upserted = city.post(f"{ops}/upsert", headers=south, json=[vehicle(1, speed=99.0)])
    assert upserted.status_code == 201, upserted.text
    assert upserted.json() == [NORTH_BUS]
    created = city.post(f"{ops}/create", headers=south, json=[vehicle(2)])
    assert created.status_code == 201, created.text
    assert city.get(f"{API}/entities/{NORTH_BUS}", headers=south).json()["speed"][
        "value"] == 99.0
    north_bus_is_intact(city, two_tenants)
    problem(city.get(f"{API}/entities/urn:ngsi-ld:Vehicle:2",
                     headers=two_tenants["north_viewer"]), 404, "ResourceNotFound")
    # deleting the south's copy leaves the north's
    assert city.post(f"{ops}/delete", json=[NORTH_BUS], headers=south).status_code == 204
    north_bus_is_intact(city, two_tenants)


def test_subscriptions_are_per_tenant(city, two_tenants):
    south = two_tenants["south_operator"]
    path = f"{API}/subscriptions/{SUBSCRIPTION}"
    assert city.get(f"{API}/subscriptions", headers=south).json() == []
    counted = city.get(f"{API}/subscriptions", params={"count": "true"}, headers=south)
    assert counted.headers["NGSILD-Results-Count"] == "0"
    problem(city.get(path, headers=south), 404, "ResourceNotFound")
    problem(city.patch(path, json={"q": "speed>0"}, headers=south), 404, "ResourceNotFound")
    problem(city.delete(path, headers=south), 404, "ResourceNotFound")
    north = city.get(path, headers=two_tenants["north_viewer"])
    assert north.status_code == 200
    assert (north.json()["q"], north.json()["isActive"]) == ("speed>50", False)


def test_a_key_is_refused_for_another_tenant(city, two_tenants):
    other = {"NGSILD-Tenant": "south"}
    for role in ("viewer", "operator"):
        key = two_tenants[f"north_{role}"]
        for response in (
            city.get(f"{API}/entities", params={"type": "Streetlight"},
                     headers={**key, **other}),
            city.get(f"{API}/entities/{SOUTH_LAMP}", headers={**key, **other}),
            city.get(f"{API}/temporal/entities/{SOUTH_LAMP}", headers={**key, **other}),
            city.get(f"{API}/types", headers={**key, **other}),
            city.get(f"{API}/subscriptions", headers={**key, **other}),
            city.delete(f"{API}/entities/{SOUTH_LAMP}", headers={**key, **other}),
            city.post(f"{API}/entities", json=vehicle(5), headers={**key, **other}),
        ):
            body = problem(response, 403, "Forbidden")
            assert "'south'" in body["detail"]
    assert city.get(f"{API}/entities/{SOUTH_LAMP}",
                    headers=two_tenants["south_viewer"]).status_code == 200
    problem(city.get(f"{API}/entities/urn:ngsi-ld:Vehicle:5",
                     headers=two_tenants["south_viewer"]), 404, "ResourceNotFound")
    # the key's own tenant, named or implied, works
    assert city.get(f"{API}/entities/{NORTH_BUS}", headers={
        **two_tenants["north_viewer"], "NGSILD-Tenant": "north"}).status_code == 200


def test_a_platform_key_reaches_the_tenant_it_names(city, two_tenants):
    token, _ = create_key(city.app.state.store, "*", "admin")
    for tenant, entity in (("north", NORTH_BUS), ("south", SOUTH_LAMP)):
        got = city.get(f"{API}/entities", params={"idPattern": ".*"},
                       headers={**bearer(token), "NGSILD-Tenant": tenant})
        assert [e["id"] for e in got.json()] == [entity]


def test_a_bad_tenant_name_is_bad_request_naming_the_header(city, two_tenants):
    body = problem(city.get(f"{API}/types", headers={
        **two_tenants["north_viewer"], "NGSILD-Tenant": "@system"}), 400, "BadRequestData")
    assert body["detail"].startswith("NGSILD-Tenant:")


# ====================================================================== access
PROTECTED = (
    ("GET", f"{API}/entities?type=Vehicle", None),
    ("GET", f"{API}/entities/{NORTH_BUS}", None),
    ("GET", f"{API}/types", None),
    ("GET", f"{API}/attributes", None),
    ("GET", f"{API}/temporal/entities?type=Vehicle", None),
    ("GET", f"{API}/subscriptions", None),
    ("POST", f"{API}/entities", vehicle(7)),
    ("POST", f"{API}/entityOperations/upsert", [vehicle(7)]),
    ("DELETE", f"{API}/entities/{NORTH_BUS}", None),
)


def _call(city, method, path, body, headers):
    return city.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer not-a-key"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"X-API-Key": "cty_000000000000_forged"},
], ids=["none", "empty", "garbage", "basic", "forged"])
def test_no_valid_key_is_401(city, two_tenants, headers):
    for method, path, body in PROTECTED:
        response = _call(city, method, path, body, headers)
        answer = problem(response, 401, "Unauthorized")
        assert "API key" in answer["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    north_bus_is_intact(city, two_tenants)
    assert city.get(f"{API}/entities/urn:ngsi-ld:Vehicle:7",
                    headers=two_tenants["north_viewer"]).status_code == 404


def test_a_key_with_a_wrong_secret_or_revoked_is_401(city):
    store = city.app.state.store
    token, record = create_key(store, "north", "operator")
    assert city.get(f"{API}/types", headers=bearer(token)).status_code == 200
    wrong_secret = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    problem(city.get(f"{API}/types", headers=bearer(wrong_secret)), 401, "Unauthorized")
    revoke_key(store, record.key_id)
    problem(city.get(f"{API}/types", headers=bearer(token)), 401, "Unauthorized")
    problem(city.post(f"{API}/entities", json=vehicle(1), headers=bearer(token)), 401,
            "Unauthorized")


def test_bearer_and_x_api_key_are_both_accepted(city):
    token, _ = create_key(city.app.state.store, "north", "operator")
    assert city.post(f"{API}/entities", json=vehicle(1),
                     headers={"Authorization": f"Bearer {token}"}).status_code == 201
    assert city.post(f"{API}/entities", json=vehicle(2),
                     headers={"X-API-Key": token}).status_code == 201
    listed = city.get(f"{API}/entities", params={"type": "Vehicle"},
                      headers={"X-API-Key": token})
    assert [e["id"] for e in listed.json()] == ["urn:ngsi-ld:Vehicle:1",
                                                "urn:ngsi-ld:Vehicle:2"]


def test_a_viewer_reads_but_may_not_write(city, two_tenants):
    viewer = two_tenants["north_viewer"]
    ops = f"{API}/entityOperations"
    assert city.get(f"{API}/entities", params={"type": "Vehicle"},
                    headers=viewer).status_code == 200
    assert city.post(f"{ops}/query", json={"type": "Query", "entities": [{"type": "Vehicle"}]},
                     headers=viewer).status_code == 200  # a query is a read
    assert city.get(f"{API}/subscriptions/{SUBSCRIPTION}", headers=viewer).status_code == 200
    speed = {"speed": {"type": "Property", "value": 99.0}}
    for response in (
        city.post(f"{API}/entities", json=vehicle(8), headers=viewer),
        city.patch(f"{API}/entities/{NORTH_BUS}/attrs", json=speed, headers=viewer),
        city.post(f"{API}/entities/{NORTH_BUS}/attrs", json=speed, headers=viewer),
        city.put(f"{API}/entities/{NORTH_BUS}", json={"type": "Vehicle", **speed},
                 headers=viewer),
        city.delete(f"{API}/entities/{NORTH_BUS}", headers=viewer),
        city.post(f"{ops}/create", json=[vehicle(8)], headers=viewer),
        city.post(f"{ops}/upsert", json=[vehicle(1, speed=99.0)], headers=viewer),
        city.post(f"{ops}/delete", json=[NORTH_BUS], headers=viewer),
        city.post(f"{API}/temporal/entities/{NORTH_BUS}/attrs", headers=viewer,
                  json={"speed": [{"type": "Property", "value": 99.0,
                                   "observedAt": "2026-01-05T09:00:00Z"}]}),
        city.delete(f"{API}/temporal/entities/{NORTH_BUS}", headers=viewer),
        city.post(f"{API}/subscriptions", headers=viewer, json={
            "entities": [{"type": "Vehicle"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}),
        city.patch(f"{API}/subscriptions/{SUBSCRIPTION}", json={"isActive": True},
                   headers=viewer),
        city.delete(f"{API}/subscriptions/{SUBSCRIPTION}", headers=viewer),
    ):
        body = problem(response, 403, "Forbidden")
        assert body["detail"] == "role 'viewer' may not do this; 'operator' is needed"
    north_bus_is_intact(city, two_tenants)
    problem(city.get(f"{API}/entities/urn:ngsi-ld:Vehicle:8", headers=viewer), 404,
            "ResourceNotFound")
    assert len(city.get(f"{API}/subscriptions", headers=viewer).json()) == 1


def test_operators_and_admins_write(city):
    store = city.app.state.store
    for number, role in ((1, "operator"), (2, "admin")):
        key = bearer(create_key(store, "north", role)[0])
        path = f"{API}/entities/urn:ngsi-ld:Vehicle:{number}"
        assert city.post(f"{API}/entities", json=vehicle(number), headers=key
                         ).status_code == 201
        assert city.patch(f"{path}/attrs", headers=key, json={
            "speed": {"type": "Property", "value": 55.0}}).status_code == 204
        assert city.get(path, headers=key).json()["speed"]["value"] == 55.0
        assert city.delete(path, headers=key).status_code == 204


def test_health_needs_no_key(city):
    assert city.get("/health").json()["status"] == "ok"


# ============================================================= hashed at rest
def _stored_text(store) -> str:
    """Every row of every table of the store, as text (the store's own documents)."""
    if store.backend == "sqlite":
        with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = [repr(row) for table in tables
                    for row in conn.execute(f'SELECT * FROM "{table}"')]
        return "\n".join(rows)
    import psycopg

    with psycopg.connect(store.url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'spatial_ref_sys'")]
        return "\n".join(row[0] for table in tables
                         for row in conn.execute(f"SELECT t::text FROM {table} t"))


def test_keys_are_stored_hashed(city):
    store = city.app.state.store
    token, record = create_key(store, "north", "operator", name="traffic desk")
    assert city.post(f"{API}/entities", json=vehicle(1), headers=bearer(token)
                     ).status_code == 201
    secret = token.split("_", 2)[2]
    text = _stored_text(store)
    assert record.key_id in text and "traffic desk" in text  # the key is there ...
    assert token not in text and secret not in text          # ... its secret is not
    doc = store.get_document(KEYS_TENANT, KEY_KIND, record.key_id)
    assert doc["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(doc) and secret not in repr(doc)
    assert "token_sha256" not in record.public()
