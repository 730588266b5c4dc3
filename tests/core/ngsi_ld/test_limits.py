"""Limits and bad input through the real app: every refusal is a ProblemDetails body
whose ``detail`` names the field.

Body size (with and without ``Content-Length``), query result limit, invalid GeoJSON
in entities and geo-queries, invalid date-times, oversized and malformed ``q``.
Where a refused write could leave a trace, the test runs on SQLite and PostgreSQL and
checks that nothing was stored.
"""

from __future__ import annotations

import json

import pytest
from ngsi_helpers import API, TestClient, keyed, make_settings, problem, vehicle

BUS = "urn:ngsi-ld:Vehicle:1"
MAX_BODY = 4096
MAX_Q = 200


@pytest.fixture
def city(store, tmp_path):
    """An operator's client of the real app over the store of the backend under test,
    with small limits so they are cheap to exceed."""
    from cityos.server import create_app

    app = create_app(make_settings(tmp_path, max_body_bytes=MAX_BODY, max_query_limit=50,
                                   max_q_length=MAX_Q), store=store)
    with TestClient(app) as client:
        client.headers.update(keyed(app, "default", "operator"))
        yield client


def nothing_stored(city) -> None:
    """The tenant holds no entity and no history."""
    assert city.get(f"{API}/entities", params={"idPattern": ".*"}).json() == []
    assert city.get(f"{API}/temporal/entities", params={"idPattern": ".*"}).json() == []


# ================================================================== body size
def padded_vehicle(size: int) -> bytes:
    """A Vehicle whose JSON text is exactly ``size`` bytes."""
    entity = vehicle(1)
    entity["note"] = {"type": "Property", "value": ""}
    text = json.dumps(entity, separators=(",", ":")).encode()
    entity["note"]["value"] = "x" * (size - len(text))
    text = json.dumps(entity, separators=(",", ":")).encode()
    assert len(text) == size
    return text


def test_a_body_at_the_limit_is_accepted(city):
    created = city.post(f"{API}/entities", content=padded_vehicle(MAX_BODY),
                        headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text


def test_a_body_over_the_limit_is_413(city):
    response = city.post(f"{API}/entities", content=padded_vehicle(MAX_BODY + 1),
                         headers={"Content-Type": "application/json"})
    body = problem(response, 413, "BadRequestData")
    assert body["detail"] == f"request body is larger than the limit of {MAX_BODY} bytes"
    nothing_stored(city)


def test_a_chunked_body_over_the_limit_is_413(city):
    """No Content-Length: the limit is enforced on the bytes that arrive."""
    payload = padded_vehicle(MAX_BODY * 3)
    chunks = (payload[i:i + 1000] for i in range(0, len(payload), 1000))
    response = city.post(f"{API}/entityOperations/upsert", content=chunks,
                         headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.request.headers["transfer-encoding"] == "chunked"
    body = problem(response, 413, "BadRequestData")
    assert str(MAX_BODY) in body["detail"]
    nothing_stored(city)


def test_a_content_length_that_understates_the_body_changes_nothing(city):
    response = city.post(f"{API}/entities", content=padded_vehicle(MAX_BODY * 2),
                         headers={"Content-Type": "application/json",
                                  "Content-Length": "100"})
    assert response.request.headers["content-length"] == "100"
    problem(response, 413, "BadRequestData")
    nothing_stored(city)


def test_a_chunked_body_under_the_limit_is_accepted(city):
    payload = padded_vehicle(MAX_BODY - 10)
    chunks = (payload[i:i + 500] for i in range(0, len(payload), 500))
    created = city.post(f"{API}/entities", content=chunks,
                        headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert city.get(f"{API}/entities/{BUS}").json()["note"]["value"].startswith("xxx")


def test_the_body_limit_holds_on_every_write_route(city):
    big = padded_vehicle(MAX_BODY + 1)
    for method, path in (("PUT", f"{API}/entities/{BUS}"),
                         ("PATCH", f"{API}/entities/{BUS}/attrs"),
                         ("POST", f"{API}/temporal/entities"),
                         ("POST", f"{API}/subscriptions")):
        response = city.request(method, path, content=big,
                                headers={"Content-Type": "application/json"})
        problem(response, 413, "BadRequestData")


# =============================================================== result limit
@pytest.mark.parametrize("method,path,params,body", [
    ("GET", "/entities", {"type": "Vehicle"}, None),
    ("GET", "/temporal/entities", {"type": "Vehicle"}, None),
    ("POST", "/entityOperations/query", {}, {"type": "Query",
                                             "entities": [{"type": "Vehicle"}]}),
    ("GET", "/subscriptions", {}, None),
], ids=["entities", "temporal", "batch-query", "subscriptions"])
def test_a_limit_over_the_maximum_is_too_many_results(city, method, path, params, body):
    at_max = city.request(method, API + path, params={**params, "limit": 50}, json=body)
    assert at_max.status_code == 200, at_max.text
    over = city.request(method, API + path, params={**params, "limit": 51}, json=body)
    problem_body = problem(over, 403, "TooManyResults")
    assert problem_body["detail"] == "limit: 51 is larger than the maximum 50"


def test_a_bad_limit_or_offset_names_the_parameter(city):
    body = problem(city.get(f"{API}/entities", params={"type": "Vehicle", "limit": "ten"}),
                   400, "BadRequestData")
    assert body["detail"].startswith("limit:")
    body = problem(city.get(f"{API}/entities", params={"type": "Vehicle", "offset": "-1"}),
                   400, "BadRequestData")
    assert body["detail"].startswith("offset:")


# ==================================================================== geometry
BAD_GEOMETRIES = {
    "unclosed-ring": ({"type": "Polygon",
                       "coordinates": [[[8.5, 47.3], [8.6, 47.3], [8.6, 47.4], [8.5, 47.4]]]},
                      "[0]: the polygon ring is not closed"),
    # a self-intersecting Polygon is valid GeoJSON (RFC 7946) and is stored: see
    # test_consumption_api.py::test_a_self_intersecting_polygon_is_stored_and_queried
    "longitude-out-of-range": ({"type": "Point", "coordinates": [200.0, 47.3]},
                               "longitude 200.0 is outside [-180, 180]"),
    "latitude-out-of-range": ({"type": "Point", "coordinates": [8.5, -91]},
                              "latitude -91 is outside [-90, 90]"),
    "polygon-nested-too-shallow": ({"type": "Polygon",
                                    "coordinates": [[8.5, 47.3], [8.6, 47.3], [8.6, 47.4],
                                                    [8.5, 47.3]]},
                                   "[0][0]: a position must be [longitude, latitude] "
                                   "(optionally with altitude), got 8.5"),
    "point-nested-too-deep": ({"type": "Point", "coordinates": [[8.5, 47.3]]},
                              "a position must be [longitude, latitude] (optionally with "
                              "altitude), got [[8.5, 47.3]]"),
}


@pytest.mark.parametrize("name", BAD_GEOMETRIES)
def test_invalid_geometry_in_an_entity_is_refused_naming_the_attribute(city, name):
    geometry, why = BAD_GEOMETRIES[name]
    entity = vehicle(1)
    entity["location"]["value"] = geometry
    body = problem(city.post(f"{API}/entities", json=entity), 400, "BadRequestData")
    assert body["detail"].startswith("location"), body
    assert why in body["detail"]
    # the same through the temporal API, an attribute update and a batch
    body = problem(city.post(f"{API}/temporal/entities", json={
        "id": BUS, "type": "Vehicle",
        "location": [{"type": "GeoProperty", "value": geometry,
                      "observedAt": "2026-01-05T08:00:00Z"}]}), 400, "BadRequestData")
    assert body["detail"].startswith("location") and why in body["detail"]
    batch = city.post(f"{API}/entityOperations/upsert", json=[vehicle(2), entity])
    assert batch.status_code == 207, batch.text
    assert batch.json()["success"] == ["urn:ngsi-ld:Vehicle:2"]
    error, = batch.json()["errors"]
    assert error["entityId"] == BUS
    assert error["error"]["type"].endswith("/BadRequestData")
    assert error["error"]["detail"].startswith("location") and why in error["error"]["detail"]
    nothing_stored_but(city, {"urn:ngsi-ld:Vehicle:2"})
    city.post(f"{API}/entities", json=vehicle(1)).raise_for_status()
    body = problem(city.patch(f"{API}/entities/{BUS}/attrs", json={
        "location": {"type": "GeoProperty", "value": geometry}}), 400, "BadRequestData")
    assert body["detail"].startswith("location") and why in body["detail"]
    kept = city.get(f"{API}/entities/{BUS}").json()["location"]["value"]
    assert kept == {"type": "Point", "coordinates": [8.54, 47.37]}


def nothing_stored_but(city, ids: set[str]) -> None:
    found = {e["id"] for e in city.get(f"{API}/entities", params={"idPattern": ".*"}).json()}
    assert found == ids
    history = city.get(f"{API}/temporal/entities", params={"idPattern": ".*"}).json()
    assert {e["id"] for e in history} <= ids


@pytest.mark.parametrize("name", BAD_GEOMETRIES)
def test_invalid_geometry_in_a_geo_query_is_refused_naming_coordinates(city, name):
    geometry, why = BAD_GEOMETRIES[name]
    georel = "near;maxDistance==100" if geometry["type"] == "Point" else "within"
    params = {"type": "Vehicle", "georel": georel, "geometry": geometry["type"],
              "coordinates": json.dumps(geometry["coordinates"])}
    for path in ("/entities", "/temporal/entities"):
        body = problem(city.get(API + path, params=params), 400, "BadRequestData")
        assert body["detail"].startswith("coordinates"), body
        assert why in body["detail"]
    query = {"type": "Query", "entities": [{"type": "Vehicle"}],
             "geoQ": {"georel": georel, "geometry": geometry["type"],
                      "coordinates": geometry["coordinates"]}}
    body = problem(city.post(f"{API}/entityOperations/query", json=query), 400,
                   "BadRequestData")
    assert body["detail"].startswith("geoQ.coordinates"), body
    assert why in body["detail"]


def test_geo_query_parameters_are_named(city):
    base = {"type": "Vehicle", "georel": "near;maxDistance==100", "geometry": "Point",
            "coordinates": "[8.5,47.3]"}
    for changed, field in (({"coordinates": "8.5,47.3"}, "coordinates"),
                           ({"geometry": "Circle"}, "geometry"),
                           ({"georel": "nearby"}, "georel"),
                           ({"georel": "near;maxDistance==-5"}, "georel")):
        body = problem(city.get(f"{API}/entities", params={**base, **changed}), 400,
                       "BadRequestData")
        assert body["detail"].startswith(field + ":"), body
    without = {k: v for k, v in base.items() if k != "coordinates"}
    body = problem(city.get(f"{API}/entities", params=without), 400, "BadRequestData")
    assert body["detail"].startswith("coordinates")


# ======================================================================= dates
def test_an_impossible_observed_at_is_refused_naming_the_attribute(city):
    entity = vehicle(1)
    entity["speed"]["observedAt"] = "2026-13-40T08:00:00Z"
    body = problem(city.post(f"{API}/entities", json=entity), 400, "BadRequestData")
    assert body["detail"] == ("speed.observedAt: '2026-13-40T08:00:00Z' is not an ISO 8601 "
                              "date-time")
    body = problem(city.post(f"{API}/temporal/entities", json={
        "id": BUS, "type": "Vehicle",
        "speed": [{"type": "Property", "value": 3, "observedAt": "2026-01-05T08:00:00Z"},
                  {"type": "Property", "value": 4, "observedAt": "2026-13-40"}]}),
        400, "BadRequestData")
    assert body["detail"].startswith("speed.observedAt: '2026-13-40'")
    nothing_stored(city)
    city.post(f"{API}/entities", json=vehicle(1)).raise_for_status()
    body = problem(city.post(f"{API}/temporal/entities/{BUS}/attrs", json={
        "speed": {"type": "Property", "value": 3, "observedAt": "yesterday"}}),
        400, "BadRequestData")
    assert body["detail"].startswith("speed.observedAt: 'yesterday'")
    body = problem(city.patch(f"{API}/entities/{BUS}/attrs", json={
        "speed": {"type": "Property", "value": 3, "observedAt": "2026-02-30T00:00:00Z"}}),
        400, "BadRequestData")
    assert body["detail"].startswith("speed.observedAt:")
    assert "observedAt" not in city.get(f"{API}/entities/{BUS}").json()["speed"]


@pytest.mark.parametrize("params,field", [
    ({"timerel": "after", "timeAt": "garbage"}, "timeAt"),
    ({"timerel": "after", "timeAt": "2026-13-40T00:00:00Z"}, "timeAt"),
    ({"timerel": "between", "timeAt": "2026-01-05T08:00:00Z"}, "endTimeAt"),
    ({"timerel": "between", "timeAt": "2026-01-05T08:00:00Z", "endTimeAt": "soon"},
     "endTimeAt"),
    ({"timerel": "between", "timeAt": "2026-01-05T08:00:00Z",
      "endTimeAt": "2026-01-05T07:00:00Z"}, "endTimeAt"),
    ({"timerel": "during", "timeAt": "2026-01-05T08:00:00Z"}, "timerel"),
    ({"timeAt": "2026-01-05T08:00:00Z"}, "timerel"),
    ({"timerel": "before"}, "timeAt"),
    ({"lastN": "0"}, "lastN"),
], ids=["timeAt-garbage", "timeAt-impossible", "between-no-end", "endTimeAt-garbage",
        "end-before-start", "timerel-unknown", "timeAt-without-timerel",
        "timerel-without-timeAt", "lastN-zero"])
def test_invalid_temporal_parameters_name_the_field(city, params, field):
    city.post(f"{API}/entities", json=vehicle(1)).raise_for_status()
    for path in ("/temporal/entities", f"/temporal/entities/{BUS}"):
        body = problem(city.get(API + path, params={"type": "Vehicle", **params}), 400,
                       "BadRequestData")
        assert body["detail"].startswith(field), body


def test_invalid_subscription_expiry_names_the_field(city):
    body = problem(city.post(f"{API}/subscriptions", json={
        "entities": [{"type": "Vehicle"}], "expiresAt": "2026-13-40T00:00:00Z",
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}), 400,
        "BadRequestData")
    assert body["detail"].startswith("expiresAt:")


# =========================================================================== q
def test_a_q_over_the_length_limit_is_refused(city):
    long_q = "speed>1;" * (MAX_Q // 8) + "speed>2"
    assert len(long_q) > MAX_Q
    expected = f"q: the expression is {len(long_q)} characters long; the limit is {MAX_Q}"
    body = problem(city.get(f"{API}/entities", params={"q": long_q}), 400, "BadRequestData")
    assert body["detail"] == expected
    body = problem(city.get(f"{API}/temporal/entities", params={"q": long_q}), 400,
                   "BadRequestData")
    assert body["detail"] == expected
    body = problem(city.post(f"{API}/entityOperations/query",
                             json={"type": "Query", "q": long_q}), 400, "BadRequestData")
    assert body["detail"] == expected
    body = problem(city.post(f"{API}/subscriptions", json={
        "entities": [{"type": "Vehicle"}], "q": long_q,
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}), 400,
        "BadRequestData")
    assert body["detail"] == expected
    at_limit = "speed>1;" * ((MAX_Q - 7) // 8) + "speed>2"
    assert len(at_limit) <= MAX_Q
    assert city.get(f"{API}/entities", params={"q": at_limit}).status_code == 200


@pytest.mark.parametrize("q,position", [
    ("speed>>3", 7),
    ("speed==", 8),
    ("(speed>3", 9),
    ("speed>3;;name==1", 9),
    ("speed==\"open", 8),
])
def test_a_malformed_q_gives_the_position(city, q, position):
    for path, kwargs in (("/entities", {"params": {"q": q}}),
                         ("/entityOperations/query", {"json": {"type": "Query", "q": q}})):
        method = "GET" if path == "/entities" else "POST"
        body = problem(city.request(method, API + path, **kwargs), 400, "BadRequestData")
        assert body["detail"].startswith("q:"), body
        assert f"character {position}" in body["detail"], body
