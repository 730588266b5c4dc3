"""The provision routes of ETSI GS CIM 009 that write Fragments: merge, update, partial
update and replace of attributes, batch merge, purge, the type selector, path checks, and
temporal attribute instances by instanceId."""

from __future__ import annotations

import pytest
from ngsi_helpers import API, problem

ENTITIES = f"{API}/entities"
TEMPORAL = f"{API}/temporal/entities"
TOWER = "urn:ngsi-ld:Building:tower"
NULL = "urn:ngsi-ld:null"


@pytest.fixture
def tower(client):
    created = client.post(ENTITIES, json={
        "id": TOWER, "type": "Building", "scope": "/Paris",
        "name": {"type": "Property", "value": "Eiffel Tower"},
        "address": {"type": "Property", "value": {"street": "Champ de Mars", "city": "Paris"}},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [2.29, 48.86]}}})
    assert created.status_code == 201, created.text
    return client


def current(client) -> dict:
    response = client.get(f"{ENTITIES}/{TOWER}")
    assert response.status_code == 200, response.text
    return response.json()


def test_merge_entity_patches_and_deletes(tower):
    answer = tower.patch(f"{ENTITIES}/{TOWER}", json={
        "address": {"type": "Property", "value": {"street": "Quai Branly", "city": NULL}},
        "location": {"type": "GeoProperty", "value": NULL}})
    assert answer.status_code == 204, answer.text
    entity = current(tower)
    assert entity["address"]["value"] == {"street": "Quai Branly"}
    assert "location" not in entity
    assert tower.patch(f"{ENTITIES}/{TOWER}", json={}).status_code == 204


def test_null_in_update_and_partial_update(tower):
    assert tower.patch(f"{ENTITIES}/{TOWER}/attrs",
                       json={"name": {"type": "Property", "value": NULL}}).status_code == 204
    assert "name" not in current(tower)
    problem(tower.patch(f"{ENTITIES}/{TOWER}/attrs/address",
                        json={"value": {"city": NULL}}), 400, "BadRequestData")
    assert tower.patch(f"{ENTITIES}/{TOWER}/attrs/address",
                       json={"value": NULL}).status_code == 204
    assert "address" not in current(tower)
    problem(tower.patch(f"{ENTITIES}/{TOWER}/attrs/scope", json={"value": "/Lyon"}),
            400, "BadRequestData")


def test_type_selector_gates_writes(tower):
    fragment = {"name": {"type": "Property", "value": "Tour Eiffel"}}
    problem(tower.post(f"{ENTITIES}/{TOWER}/attrs?type=Vehicle", json=fragment),
            404, "ResourceNotFound")
    assert current(tower)["name"]["value"] == "Eiffel Tower"
    assert tower.post(f"{ENTITIES}/{TOWER}/attrs?type=Building",
                      json=fragment).status_code == 204
    problem(tower.delete(f"{ENTITIES}/{TOWER}?type=Vehicle"), 404, "ResourceNotFound")
    assert tower.delete(f"{ENTITIES}/{TOWER}?type=Building").status_code == 204


@pytest.mark.parametrize("path", [f"{ENTITIES}/not-a-uri/attrs", f"{ENTITIES}//attrs"])
def test_path_ids_are_checked(client, path):
    problem(client.post(path, json={"name": {"type": "Property", "value": 1}}),
            400, "BadRequestData")


def test_replace_attribute(tower):
    assert tower.put(f"{ENTITIES}/{TOWER}/attrs/name",
                     json={"type": "Property", "value": "La dame de fer"}).status_code == 204
    assert current(tower)["name"] == {"type": "Property", "value": "La dame de fer"}
    problem(tower.put(f"{ENTITIES}/{TOWER}/attrs/height",
                      json={"type": "Property", "value": 330}), 404, "ResourceNotFound")


def test_batch_merge(tower):
    answer = tower.post(f"{API}/entityOperations/merge", json=[
        {"id": TOWER, "type": "Building", "height": {"type": "Property", "value": 330}},
        {"id": "urn:ngsi-ld:Building:none", "type": "Building",
         "height": {"type": "Property", "value": 1}}])
    assert answer.status_code == 207, answer.text
    assert answer.json()["success"] == [TOWER]
    assert [e["entityId"] for e in answer.json()["errors"]] == ["urn:ngsi-ld:Building:none"]
    assert current(tower)["height"]["value"] == 330
    problem(tower.post(f"{API}/entityOperations/merge", json=[None]), 400, "BadRequestData")
    problem(tower.post(f"{API}/entityOperations/merge", json=[]), 400, "BadRequestData")


def test_purge(tower):
    problem(tower.delete(f"{ENTITIES}?id={TOWER}"), 400, "BadRequestData")
    problem(tower.delete(f"{ENTITIES}?type=Building&q=owner{{name}}==%22x%22"), 400,
            "BadRequestData")
    problem(tower.delete(f"{ENTITIES}?type=Building&keep=name&drop=address"),
            400, "BadRequestData")
    assert tower.delete(f"{ENTITIES}?type=Building&drop=name").status_code == 204
    assert "name" not in current(tower)
    assert tower.delete(f"{ENTITIES}/?type=Building").status_code == 204
    problem(tower.get(f"{ENTITIES}/{TOWER}"), 404, "ResourceNotFound")


def test_temporal_instances_by_instance_id(client):
    gauge = "urn:ngsi-ld:WaterObserved:gauge-1"
    created = client.post(TEMPORAL, json={"id": gauge, "type": "WaterObserved", "level": [
        {"type": "Property", "value": v, "observedAt": f"2026-01-05T0{h}:00:00.000000Z"}
        for h, v in ((0, 1.0), (1, 2.0), (2, 3.0))]})
    assert created.status_code == 201, created.text
    instances = client.get(f"{TEMPORAL}/{gauge}").json()["level"]
    ids = [i["instanceId"] for i in instances]
    assert ids == ["urn:ngsi-ld:Instance:1767571200000000",
                   "urn:ngsi-ld:Instance:1767574800000000",
                   "urn:ngsi-ld:Instance:1767578400000000"]
    assert client.patch(f"{TEMPORAL}/{gauge}/attrs/level/{ids[1]}",
                        json={"value": 20.0}).status_code == 204
    assert client.delete(f"{TEMPORAL}/{gauge}/attrs/level/{ids[0]}").status_code == 204
    after = client.get(f"{TEMPORAL}/{gauge}").json()["level"]
    assert [(i["instanceId"], i["value"]) for i in after] == [(ids[1], 20.0), (ids[2], 3.0)]
    problem(client.delete(f"{TEMPORAL}/{gauge}/attrs/level/{ids[0]}"), 404, "ResourceNotFound")
    problem(client.delete(f"{TEMPORAL}/{gauge}/attrs/level/not-a-uri"), 400, "BadRequestData")
    assert client.delete(f"{TEMPORAL}/{gauge}/attrs/level").status_code == 204
    assert "level" not in client.get(f"{TEMPORAL}/{gauge}").json()


def test_null_item_fails_the_whole_batch_create(client):
    problem(client.post(f"{API}/entityOperations/create", json=[
        {"id": TOWER, "type": "Building"}, None]), 400, "BadRequestData")
    problem(client.get(f"{ENTITIES}/{TOWER}"), 404, "ResourceNotFound")


def test_json_null_value_is_refused_before_the_entity_is_looked_up(client):
    answer = client.post(f"{API}/entityOperations/merge", json=[
        {"id": "urn:ngsi-ld:Building:none", "type": "Building",
         "name": {"type": "Property", "value": None}}])
    assert answer.status_code == 207, answer.text
    assert answer.json()["errors"][0]["error"]["type"].endswith("/BadRequestData")


@pytest.mark.parametrize("attr", [
    {"type": "Property", "value": NULL},
    {"type": "Relationship", "object": NULL},
    {"type": "Property", "value": 1, "sub": {"type": "Property", "value": NULL}},
    {"type": "Property", "value": {"address": {"country": NULL}}},
])
def test_the_ngsi_ld_null_cannot_be_created(client, attr):
    problem(client.post(ENTITIES, json={"id": TOWER, "type": "Building", "probe": attr}),
            400, "BadRequestData")
    answer = client.post(f"{API}/entityOperations/create",
                         json=[{"id": TOWER, "type": "Building", "probe": attr}])
    assert answer.status_code == 207, answer.text
    problem(client.get(f"{ENTITIES}/{TOWER}"), 404, "ResourceNotFound")
