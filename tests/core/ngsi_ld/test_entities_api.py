"""Entity endpoints of the NGSI-LD API: create, retrieve, replace, attributes, delete."""

from __future__ import annotations

from datetime import datetime

import pytest
from ngsi_helpers import API, problem, vehicle

BUS = "urn:ngsi-ld:Vehicle:1"


def test_create_answers_201_with_location_and_retrieve_gives_it_back(client):
    body = vehicle(1, speed=42.5)
    body["speed"]["observedAt"] = "2026-01-05T08:00:00Z"
    body["owner"] = {"type": "Relationship", "object": "urn:ngsi-ld:Organisation:city"}
    created = client.post(f"{API}/entities", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{API}/entities/{BUS}"

    got = client.get(created.headers["location"])
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert "ngsi-ld-core-context" in got.headers["link"]
    assert got.json() == {
        "id": BUS, "type": "Vehicle",
        "speed": {"type": "Property", "value": 42.5, "unitCode": "KMH",
                  "observedAt": "2026-01-05T08:00:00.000000Z"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [8.54, 47.37]}},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Organisation:city"},
    }


def test_create_twice_is_already_exists(client):
    assert client.post(f"{API}/entities", json=vehicle(1)).status_code == 201
    body = problem(client.post(f"{API}/entities", json=vehicle(1)), 409, "AlreadyExists")
    assert body["detail"] == f"entity {BUS} already exists"


def test_create_checks_the_entity(client):
    body = problem(client.post(f"{API}/entities", json={"id": "bus 1", "type": "Vehicle"}),
                   400, "BadRequestData")
    assert body["detail"] == "id: 'bus 1' is not a URI (space \\u0020 at position 4)"
    body = problem(client.post(f"{API}/entities", json={"id": BUS, "type": "Vehicle",
                                                        "speed": 3}), 400, "BadRequestData")
    assert body["detail"].startswith("speed: an attribute must be an object")


@pytest.mark.parametrize("members, field", [
    ({"type": "9Bus"}, "type"),
    ({"type": "type"}, "type"),
    ({"scope": "/Kuala_Lumpur/9bad"}, "scope"),
    ({"scope": "/a//b"}, "scope"),
    ({"scope": ["/ok", "/not-ok"]}, "scope"),
    ({"observedAt": {"type": "Property", "value": 1}}, "observedAt"),
    ({"driver": {"type": "Relationship", "object": "urn:ngsi-ld:P:1", "unitCode": "KMH"}},
     "driver"),
    ({"driver": {"type": "Relationship", "object": "urn:ngsi-ld:P:1", "value": 3}}, "driver"),
    ({"speed": {"type": "Property", "value": 3, "object": "urn:ngsi-ld:P:1"}}, "speed"),
    ({"name": {"type": "LanguageProperty", "languageMap": {"en": 3}}}, "name.languageMap"),
    ({"name": {"type": "LanguageProperty", "languageMap": {"": "x"}}}, "name.languageMap"),
    ({"name": {"type": "LanguageProperty", "languageMap": {"en": "x"},
               "valueType": "xsd:string"}}, "name.valueType"),
    ({"location": {"type": "GeoProperty", "value": "not a geometry"}}, "location"),
    ({"@odd": {"type": "Property", "value": 1}}, "attribute name"),
    ({"ngsildproof": {"type": "Property", "value": "not-a-proof"}}, "ngsildproof"),
])
def test_create_refuses_what_the_standard_refuses(client, members, field):
    """Clauses 4.5, 4.6.2 and 4.18, as the ETSI suite checks them, naming the field."""
    entity = {"id": BUS, "type": "Vehicle", **members}
    body = problem(client.post(f"{API}/entities", json=entity), 400, "BadRequestData")
    assert body["detail"].startswith(field), body["detail"]


def test_create_takes_what_the_standard_allows(client):
    entity = {"id": BUS, "type": "Vehicle", "scope": ["/Kuala_Lumpur/Bukit_Bintang"],
              "speed": {"type": "Property", "value": 3.0, "valueType": "xsd:double",
                        "datasetId": "@none"}}
    assert client.post(f"{API}/entities", json=entity).status_code == 201
    stored = client.get(f"{API}/entities/{BUS}").json()
    assert stored["speed"] == {"type": "Property", "value": 3.0, "valueType": "xsd:double"}
    problem(client.post(f"{API}/entities", json=[entity]), 400, "InvalidRequest")
    other = "urn:ngsi-ld:Vehicle:2"
    assert client.post(f"{API}/entities", json={
        "id": other, "type": "Vehicle",
        "route": {"type": "ListRelationship",
                  "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]},
        "location": {"type": "GeoProperty",
                     "value": '{"type": "Point", "coordinates": [101.7, 3.15]}'}},
    ).status_code == 201
    stored = client.get(f"{API}/entities/{other}").json()
    assert stored["route"]["objectList"] == [{"object": "urn:ngsi-ld:Road:1"},
                                             {"object": "urn:ngsi-ld:Road:2"}]
    assert stored["location"]["value"] == {"type": "Point", "coordinates": [101.7, 3.15]}


def test_create_refuses_an_id_with_an_invisible_character(client):
    for invisible in ("\u200b", "\ufeff", "\ufe0f", "\u3164", "\u2800"):
        body = problem(client.post(f"{API}/entities", json={
            "id": f"urn:ngsi-ld:Vehicle:A{invisible}1", "type": "Vehicle"}),
            400, "BadRequestData")
        assert body["detail"].startswith("id:")


def test_sys_attrs_only_when_asked(client):
    client.post(f"{API}/entities", json=vehicle(1))
    plain = client.get(f"{API}/entities/{BUS}").json()
    assert "createdAt" not in plain and "modifiedAt" not in plain
    with_sys = client.get(f"{API}/entities/{BUS}", params={"options": "sysAttrs"}).json()
    created = datetime.fromisoformat(with_sys["createdAt"].replace("Z", "+00:00"))
    modified = datetime.fromisoformat(with_sys["modifiedAt"].replace("Z", "+00:00"))
    assert created <= modified
    assert with_sys["createdAt"].endswith("Z")


def test_key_values_and_simplified_format(client):
    client.post(f"{API}/entities", json=vehicle(1, speed=12))
    expected = {"id": BUS, "type": "Vehicle", "speed": 12,
                "location": {"type": "Point", "coordinates": [8.54, 47.37]}}
    assert client.get(f"{API}/entities/{BUS}", params={"options": "keyValues"}).json() == expected
    assert client.get(f"{API}/entities/{BUS}", params={"format": "simplified"}).json() == expected
    problem(client.get(f"{API}/entities/{BUS}", params={"options": "compact"}), 400,
            "InvalidRequest")


def test_retrieve_projects_attrs_and_checks_type(client):
    client.post(f"{API}/entities", json=vehicle(1))
    got = client.get(f"{API}/entities/{BUS}", params={"attrs": "speed"}).json()
    assert set(got) == {"id", "type", "speed"}
    assert client.get(f"{API}/entities/{BUS}", params={"type": "Vehicle"}).status_code == 200
    problem(client.get(f"{API}/entities/{BUS}", params={"type": "Building"}), 404,
            "ResourceNotFound")


def test_retrieve_unknown_is_404(client):
    body = problem(client.get(f"{API}/entities/urn:ngsi-ld:Vehicle:404"), 404,
                   "ResourceNotFound")
    assert body["detail"] == "entity urn:ngsi-ld:Vehicle:404 does not exist"


def test_replace_swaps_every_attribute(client):
    client.post(f"{API}/entities", json=vehicle(1))
    new = {"type": "Vehicle", "fuelLevel": {"type": "Property", "value": 0.5}}
    assert client.put(f"{API}/entities/{BUS}", json=new).status_code == 204
    assert client.get(f"{API}/entities/{BUS}").json() == {
        "id": BUS, "type": "Vehicle", "fuelLevel": {"type": "Property", "value": 0.5}}
    body = problem(client.put(f"{API}/entities/{BUS}", json={"id": "urn:x:2", **new}), 400,
                   "BadRequestData")
    assert "differs" in body["detail"]
    problem(client.put(f"{API}/entities/urn:ngsi-ld:Vehicle:9", json=new), 404,
            "ResourceNotFound")


def test_append_and_no_overwrite(client):
    client.post(f"{API}/entities", json=vehicle(1, speed=10))
    fuel = {"fuelLevel": {"type": "Property", "value": 0.8}}
    assert client.post(f"{API}/entities/{BUS}/attrs", json=fuel).status_code == 204
    again = client.post(f"{API}/entities/{BUS}/attrs", params={"options": "noOverwrite"},
                        json={"speed": {"type": "Property", "value": 99},
                              "heading": {"type": "Property", "value": 90}})
    assert again.status_code == 207
    assert again.json() == {"updated": ["heading"], "notUpdated": [
        {"attributeName": "speed", "reason": "attribute exists and noOverwrite is set"}]}
    entity = client.get(f"{API}/entities/{BUS}", params={"options": "keyValues"}).json()
    assert (entity["speed"], entity["fuelLevel"], entity["heading"]) == (10, 0.8, 90)


def test_update_writes_existing_attributes_only(client):
    client.post(f"{API}/entities", json=vehicle(1, speed=10))
    done = client.patch(f"{API}/entities/{BUS}/attrs",
                        json={"speed": {"type": "Property", "value": 20}})
    assert done.status_code == 204
    partly = client.patch(f"{API}/entities/{BUS}/attrs",
                          json={"speed": {"type": "Property", "value": 25},
                                "colour": {"type": "Property", "value": "red"}})
    assert partly.status_code == 207
    assert partly.json()["updated"] == ["speed"]
    assert partly.json()["notUpdated"][0]["attributeName"] == "colour"
    entity = client.get(f"{API}/entities/{BUS}", params={"options": "keyValues"}).json()
    assert entity["speed"] == 25 and "colour" not in entity
    problem(client.patch(f"{API}/entities/urn:x:none/attrs",
                         json={"speed": {"type": "Property", "value": 1}}), 404,
            "ResourceNotFound")
    problem(client.patch(f"{API}/entities/{BUS}/attrs", json={}), 400, "BadRequestData")


def test_partial_attribute_update_keeps_other_members(client):
    client.post(f"{API}/entities", json=vehicle(1, speed=10))
    done = client.patch(f"{API}/entities/{BUS}/attrs/speed", json={"value": 33})
    assert done.status_code == 204, done.text
    speed = client.get(f"{API}/entities/{BUS}").json()["speed"]
    assert speed == {"type": "Property", "value": 33, "unitCode": "KMH"}
    problem(client.patch(f"{API}/entities/{BUS}/attrs/colour", json={"value": 1}), 404,
            "ResourceNotFound")


def test_multi_attribute_instances_and_their_deletion(client):
    entity = vehicle(1)
    entity["temperature"] = [
        {"type": "Property", "value": 20, "datasetId": "urn:ngsi-ld:Dataset:engine"},
        {"type": "Property", "value": 5},
    ]
    client.post(f"{API}/entities", json=entity)
    got = client.get(f"{API}/entities/{BUS}").json()["temperature"]
    assert {i.get("datasetId") for i in got} == {"urn:ngsi-ld:Dataset:engine", None}

    gone = client.delete(f"{API}/entities/{BUS}/attrs/temperature",
                         params={"datasetId": "urn:ngsi-ld:Dataset:engine"})
    assert gone.status_code == 204
    assert client.get(f"{API}/entities/{BUS}").json()["temperature"] == \
        {"type": "Property", "value": 5}
    problem(client.delete(f"{API}/entities/{BUS}/attrs/temperature",
                          params={"datasetId": "urn:ngsi-ld:Dataset:engine"}), 404,
            "ResourceNotFound")
    assert client.delete(f"{API}/entities/{BUS}/attrs/temperature",
                         params={"deleteAll": "true"}).status_code == 204
    assert "temperature" not in client.get(f"{API}/entities/{BUS}").json()
    problem(client.delete(f"{API}/entities/{BUS}/attrs/speed", params={"deleteAll": "maybe"}),
            400, "BadRequestData")


def test_merge_entity_adds_and_overwrites(client):
    client.post(f"{API}/entities", json=vehicle(1, speed=10))
    merged = client.patch(f"{API}/entities/{BUS}",
                          json={"speed": {"type": "Property", "value": 11},
                                "status": {"type": "Property", "value": "inService"}})
    assert merged.status_code == 204
    entity = client.get(f"{API}/entities/{BUS}", params={"options": "keyValues"}).json()
    assert (entity["speed"], entity["status"]) == (11, "inService")


def test_delete_entity(client):
    client.post(f"{API}/entities", json=vehicle(1))
    assert client.delete(f"{API}/entities/{BUS}").status_code == 204
    problem(client.get(f"{API}/entities/{BUS}"), 404, "ResourceNotFound")
    problem(client.delete(f"{API}/entities/{BUS}"), 404, "ResourceNotFound")


def test_geojson_feature_and_collection(client):
    client.post(f"{API}/entities", json=vehicle(1, lon=8.5, lat=47.4))
    client.post(f"{API}/entities", json=vehicle(2, lon=8.6, lat=47.5))
    geo = {"Accept": "application/geo+json"}
    feature = client.get(f"{API}/entities/{BUS}", headers=geo)
    assert feature.headers["content-type"] == "application/geo+json"
    assert feature.json()["type"] == "Feature"
    assert feature.json()["geometry"] == {"type": "Point", "coordinates": [8.5, 47.4]}
    assert feature.json()["properties"]["type"] == "Vehicle"
    collection = client.get(f"{API}/entities", params={"type": "Vehicle",
                                                       "options": "keyValues"}, headers=geo)
    features = collection.json()["features"]
    assert collection.json()["type"] == "FeatureCollection"
    assert [f["id"] for f in features] == [BUS, "urn:ngsi-ld:Vehicle:2"]
    assert features[1]["properties"]["speed"] == 30.0
    # geometryProperty picks another GeoProperty; an entity without it has no geometry
    none = client.get(f"{API}/entities/{BUS}", params={"geometryProperty": "area"},
                      headers=geo)
    assert none.json()["geometry"] is None


def test_json_ld_response_carries_context_and_406_for_others(client):
    client.post(f"{API}/entities", json=vehicle(1))
    ld = client.get(f"{API}/entities/{BUS}", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"] == "application/ld+json"
    assert ld.json()["@context"] == \
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
    assert "link" not in ld.headers
    listed = client.get(f"{API}/entities", params={"type": "Vehicle"},
                        headers={"Accept": "application/ld+json"}).json()
    assert all("@context" in e for e in listed)
    body = problem(client.get(f"{API}/entities/{BUS}", headers={"Accept": "application/xml"}),
                   406, "NotAcceptable")
    assert "application/xml" in body["detail"]
    preferred = client.get(f"{API}/entities/{BUS}",
                           headers={"Accept": "text/html;q=1, application/ld+json;q=0.5"})
    assert preferred.headers["content-type"] == "application/ld+json"
