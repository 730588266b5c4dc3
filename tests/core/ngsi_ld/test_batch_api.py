"""Batch operations: /entityOperations/create, upsert, update, delete and query."""

from __future__ import annotations

from ngsi_helpers import API, problem, vehicle

from cityos.core.ngsi_ld.api import MAX_BATCH_ENTITIES

OPS = f"{API}/entityOperations"


def ids(*numbers: int) -> list[str]:
    return [f"urn:ngsi-ld:Vehicle:{n}" for n in numbers]


def speeds(client) -> dict:
    listed = client.get(f"{API}/entities", params={"type": "Vehicle", "options": "keyValues",
                                                   "limit": 100}).json()
    return {e["id"]: e.get("speed") for e in listed}


def test_create_all_good_is_201_with_ids(client):
    done = client.post(f"{OPS}/create", json=[vehicle(1), vehicle(2)])
    assert done.status_code == 201
    assert done.json() == ids(1, 2)
    assert set(speeds(client)) == set(ids(1, 2))


def test_create_with_failures_is_207_per_entity(client):
    client.post(f"{API}/entities", json=vehicle(1))
    bad = {"id": "urn:ngsi-ld:Vehicle:3", "type": "Vehicle", "speed": "fast"}
    done = client.post(f"{OPS}/create", json=[vehicle(1), vehicle(2), bad])
    assert done.status_code == 207
    body = done.json()
    assert body["success"] == ids(2)
    errors = {e["entityId"]: e["error"] for e in body["errors"]}
    assert errors[ids(1)[0]]["type"].endswith("/AlreadyExists")
    assert errors[ids(3)[0]]["type"].endswith("/BadRequestData")
    assert errors[ids(3)[0]]["detail"].startswith("speed: an attribute must be an object")
    assert set(speeds(client)) == set(ids(1, 2))


def test_upsert_creates_201_then_204_and_replace_versus_update(client):
    first = client.post(f"{OPS}/upsert", json=[vehicle(1, speed=10)])
    assert first.status_code == 201 and first.json() == ids(1)
    extra = vehicle(1, speed=11)
    extra["fuelLevel"] = {"type": "Property", "value": 0.5}
    mixed = client.post(f"{OPS}/upsert", json=[extra, vehicle(2, speed=20)])
    assert mixed.status_code == 201 and mixed.json() == ids(2)  # only the new one

    # replace (the default): the body is the whole entity, fuelLevel goes
    replaced = client.post(f"{OPS}/upsert", json=[vehicle(1, speed=12)])
    assert replaced.status_code == 204
    entity = client.get(f"{API}/entities/{ids(1)[0]}", params={"options": "keyValues"}).json()
    assert entity["speed"] == 12 and "fuelLevel" not in entity

    # update: attributes merge into the existing entity
    client.post(f"{OPS}/upsert", params={"options": "update"}, json=[extra])
    patch = {"id": ids(1)[0], "type": "Vehicle", "speed": {"type": "Property", "value": 13}}
    assert client.post(f"{OPS}/upsert", params={"options": "update"},
                       json=[patch]).status_code == 204
    entity = client.get(f"{API}/entities/{ids(1)[0]}", params={"options": "keyValues"}).json()
    assert entity["speed"] == 13 and entity["fuelLevel"] == 0.5
    problem(client.post(f"{OPS}/upsert", params={"options": "update,replace"},
                        json=[patch]), 400, "BadRequestData")


def test_update_existing_entities_and_no_overwrite(client):
    client.post(f"{OPS}/create", json=[vehicle(1, speed=10), vehicle(2, speed=20)])
    change = [{"id": i, "type": "Vehicle", "speed": {"type": "Property", "value": 99}}
              for i in ids(1, 2)]
    assert client.post(f"{OPS}/update", params={"options": "noOverwrite"},
                       json=change).status_code == 204
    assert speeds(client) == {ids(1)[0]: 10, ids(2)[0]: 20}
    assert client.post(f"{OPS}/update", json=change).status_code == 204
    assert speeds(client) == {ids(1)[0]: 99, ids(2)[0]: 99}
    missing = client.post(f"{OPS}/update", json=[{"id": ids(7)[0], "type": "Vehicle",
                                                   "speed": {"type": "Property", "value": 1}}])
    assert missing.status_code == 207
    assert missing.json()["errors"][0]["error"]["type"].endswith("/ResourceNotFound")


def test_delete_by_ids(client):
    client.post(f"{OPS}/create", json=[vehicle(1), vehicle(2), vehicle(3)])
    assert client.post(f"{OPS}/delete", json=ids(1, 2)).status_code == 204
    assert set(speeds(client)) == set(ids(3))
    partly = client.post(f"{OPS}/delete", json=ids(3, 4))
    assert partly.status_code == 207
    assert partly.json()["success"] == ids(3)
    assert partly.json()["errors"][0]["entityId"] == ids(4)[0]
    body = problem(client.post(f"{OPS}/delete", json=[7]), 400, "BadRequestData")
    assert body["detail"].startswith("entity 0: 7 is not an entity id")


def test_batch_shape_and_size_are_checked(client):
    body = problem(client.post(f"{OPS}/create", json=vehicle(1)), 400, "BadRequestData")
    assert body["detail"] == "the body of a batch operation must be a JSON array"
    problem(client.post(f"{OPS}/upsert", json=[]), 400, "BadRequestData")
    too_many = [{"id": f"urn:x:{n}", "type": "T"} for n in range(MAX_BATCH_ENTITIES + 1)]
    body = problem(client.post(f"{OPS}/upsert", json=too_many), 400, "BadRequestData")
    assert body["detail"] == (f"the batch has {MAX_BATCH_ENTITIES + 1} entities; at most "
                              f"{MAX_BATCH_ENTITIES} are accepted in one request")
    assert client.get(f"{API}/entities", params={"type": "T"}).json() == []


def test_json_ld_batch_needs_a_context_per_entity(client):
    """An entity without @context in a JSON-LD batch (or with one in a JSON batch) fails
    alone, 207 (ETSI GS CIM 009 6.3.5 per entity, suite cases 003_06_01 and 003_08_01)."""
    ld = {"Content-Type": "application/ld+json"}
    good = {**vehicle(1), "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}
    answer = client.post(f"{OPS}/create", json=[good, vehicle(2)], headers=ld)
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert body["success"] == [good["id"]]
    assert [e["entityId"] for e in body["errors"]] == [vehicle(2)["id"]]
    assert body["errors"][0]["error"]["detail"].startswith("entity 1: @context is required")
    answer = client.post(f"{OPS}/upsert", json=[{**vehicle(3), "@context": good["@context"]}])
    assert answer.status_code == 207, answer.text
    assert "not allowed" in answer.json()["errors"][0]["error"]["detail"]
    problem(client.get(f"{API}/entities/{vehicle(3)['id']}"), 404, "ResourceNotFound")


def test_json_ld_body_with_a_context_link_is_refused(client):
    """6.3.5: Content-Type application/ld+json together with a JSON-LD Link header."""
    link = ('<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld>; '
            'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')
    good = {**vehicle(1), "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}
    headers = {"Content-Type": "application/ld+json", "Link": link}
    problem(client.post(f"{OPS}/create", json=[good], headers=headers), 400, "BadRequestData")
    problem(client.post(f"{API}/entities", json=good, headers=headers), 400, "BadRequestData")


def test_query_with_a_query_object(client):
    client.post(f"{OPS}/create", json=[vehicle(1, speed=10), vehicle(2, speed=50),
                                       vehicle(3, speed=70, lon=9.5, lat=47.0)])
    query = {"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>20",
             "attrs": ["speed"]}
    found = client.post(f"{OPS}/query", json=query, params={"count": "true"})
    assert found.status_code == 200, found.text
    assert found.headers["NGSILD-Results-Count"] == "2"
    assert [e["id"] for e in found.json()] == ids(2, 3)
    assert set(found.json()[0]) == {"id", "type", "speed"}

    near = dict(query, geoQ={"geometry": "Point", "coordinates": [8.54, 47.37],
                             "georel": "near;maxDistance==1000"})
    assert [e["id"] for e in client.post(f"{OPS}/query", json=near).json()] == ids(2)

    by_id = {"type": "Query", "entities": [{"id": ids(1)[0], "type": "Vehicle"},
                                           {"type": "Vehicle", "idPattern": ".*:3$"}]}
    assert [e["id"] for e in client.post(f"{OPS}/query", json=by_id).json()] == ids(1, 3)
    paged = client.post(f"{OPS}/query", json=query, params={"limit": 1, "offset": 1})
    assert [e["id"] for e in paged.json()] == ids(3)


def test_query_object_errors(client):
    body = problem(client.post(f"{OPS}/query", json={"entities": []}), 400, "BadRequestData")
    assert body["detail"].startswith("type: the body must be a Query object")
    body = problem(client.post(f"{OPS}/query", json={
        "type": "Query", "entities": [{"type": "Vehicle"}],
        "geoQ": {"geometry": "Point", "coordinates": [8.5, 47.3], "georel": "nearby"}}),
        400, "BadRequestData")
    assert body["detail"].startswith("geoQ.georel: 'nearby' is not one of")
    body = problem(client.post(f"{OPS}/query", json={"type": "Query",
                                                     "entities": [{"type": "Vehicle",
                                                                   "id": "not a uri"}]}),
                   400, "BadRequestData")
    assert body["detail"] == "entities[0].id: 'not a uri' is not a URI"
    problem(client.post(f"{OPS}/query", json={"type": "Query"}), 400, "BadRequestData")
