"""GET /entities queries and the /types and /attributes discovery endpoints."""

from __future__ import annotations

import pytest
from ngsi_helpers import API, problem, vehicle

ZURICH = (8.54, 47.37)


@pytest.fixture
def fleet(client):
    """Five vehicles along a street, two buildings, one sensor without a location."""
    entities = [vehicle(n, speed=10.0 * n, lon=ZURICH[0] + 0.01 * n, lat=ZURICH[1])
                for n in range(1, 6)]
    entities[0]["status"] = {"type": "Property", "value": "inService"}
    entities[1]["status"] = {"type": "Property", "value": "parked"}
    entities += [
        {"id": "urn:ngsi-ld:Building:a", "type": "Building",
         "name": {"type": "Property", "value": "Town hall"},
         "location": {"type": "GeoProperty", "value": {
             "type": "Polygon", "coordinates": [[[8.50, 47.30], [8.60, 47.30], [8.60, 47.40],
                                                 [8.50, 47.40], [8.50, 47.30]]]}}},
        {"id": "urn:ngsi-ld:Building:b", "type": "Building",
         "name": {"type": "Property", "value": "Depot"}},
        {"id": "urn:ngsi-ld:Device:s1", "type": ["Device", "Sensor"],
         "battery": {"type": "Property", "value": 0.9}},
    ]
    assert client.post(f"{API}/entityOperations/create", json=entities).status_code == 201
    return client


def found(client, **params) -> list[str]:
    response = client.get(f"{API}/entities", params=params)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()]


def v(*numbers: int) -> list[str]:
    return [f"urn:ngsi-ld:Vehicle:{n}" for n in numbers]


def test_by_type_id_and_id_pattern(fleet):
    assert found(fleet, type="Vehicle") == v(1, 2, 3, 4, 5)
    assert found(fleet, type="Building,Sensor") == [
        "urn:ngsi-ld:Building:a", "urn:ngsi-ld:Building:b", "urn:ngsi-ld:Device:s1"]
    assert found(fleet, type="Building|Device") == found(fleet, type="Building,Sensor")
    assert found(fleet, type="Vehicle", id=",".join(v(4, 2))) == v(2, 4)
    assert found(fleet, idPattern=r".*Vehicle:[13]$") == v(1, 3)
    assert found(fleet, type="Vehicle", id=v(1)[0]) == v(1)


def test_q_filters(fleet):
    assert found(fleet, type="Vehicle", q="speed>25") == v(3, 4, 5)
    assert found(fleet, type="Vehicle", q="speed==20..40;status!=\"parked\"") == []
    assert found(fleet, type="Vehicle", q="speed==20..40") == v(2, 3, 4)
    assert found(fleet, q='status=="inService"|speed>=50') == v(1, 5)
    assert found(fleet, q="(speed<15|speed>45);location") == v(1, 5)
    assert found(fleet, q='name~="(?i)town"') == ["urn:ngsi-ld:Building:a"]
    assert found(fleet, q="speed.unitCode==\"KMH\";speed<=20") == v(1, 2)


def test_geo_queries(fleet):
    point = f"[{ZURICH[0]},{ZURICH[1]}]"
    # vehicle n is 0.01 * n degrees of longitude east: about 754 m each at 47.37 N
    assert found(fleet, type="Vehicle", georel="near;maxDistance==1600", geometry="Point",
                 coordinates=point) == v(1, 2)
    assert found(fleet, type="Vehicle", georel="near;minDistance==3000", geometry="Point",
                 coordinates=point) == v(4, 5)
    box = "[[[8.545,47.36],[8.575,47.36],[8.575,47.38],[8.545,47.38],[8.545,47.36]]]"
    assert found(fleet, georel="within", geometry="Polygon", coordinates=box) == v(1, 2, 3)
    assert found(fleet, type="Building", georel="intersects", geometry="Point",
                 coordinates="[8.55,47.35]") == ["urn:ngsi-ld:Building:a"]


def test_attrs_selects_and_projects(fleet):
    listed = fleet.get(f"{API}/entities", params={"attrs": "status,battery"}).json()
    assert [e["id"] for e in listed] == ["urn:ngsi-ld:Device:s1", *v(1, 2)]
    assert all(set(e) <= {"id", "type", "status", "battery"} for e in listed)


def test_pagination_and_count(fleet):
    assert found(fleet, type="Vehicle", limit=2) == v(1, 2)
    assert found(fleet, type="Vehicle", limit=2, offset=2) == v(3, 4)
    counted = fleet.get(f"{API}/entities", params={"type": "Vehicle", "limit": 1,
                                                   "count": "true"})
    assert counted.headers["NGSILD-Results-Count"] == "5"
    assert len(counted.json()) == 1
    only_count = fleet.get(f"{API}/entities", params={"type": "Vehicle", "limit": 0,
                                                      "options": "count"})
    assert only_count.json() == [] and only_count.headers["NGSILD-Results-Count"] == "5"
    problem(fleet.get(f"{API}/entities", params={"type": "Vehicle", "limit": 0}), 400,
            "BadRequestData")


def test_default_limit_applies(make_app):
    from ngsi_helpers import TestClient, keyed

    app = make_app(default_query_limit=3)
    with TestClient(app) as client:
        client.headers.update(keyed(app))
        client.post(f"{API}/entityOperations/create",
                    json=[vehicle(n) for n in range(1, 6)])
        assert len(client.get(f"{API}/entities", params={"type": "Vehicle"}).json()) == 3


def test_query_needs_a_filter(fleet):
    body = problem(fleet.get(f"{API}/entities"), 400, "BadRequestData")
    assert body["detail"] == ("a query needs at least one of type, attrs, q or a geo-query "
                              "(or local=true); system attributes alone do not count")


def test_query_parameter_errors(fleet):
    body = problem(fleet.get(f"{API}/entities", params={"idPattern": "(unclosed"}), 400,
                   "BadRequestData")
    assert body["detail"].startswith("idPattern: '(unclosed' is not a regular expression")
    body = problem(fleet.get(f"{API}/entities", params={"id": "bus-1"}), 400,
                   "BadRequestData")
    assert body["detail"] == "id: 'bus-1' is not a URI"
    body = problem(fleet.get(f"{API}/entities", params={"type": "Vehicle", "offset": "-1"}),
                   400, "BadRequestData")
    assert body["detail"] == "offset: -1 is less than 0"
    body = problem(fleet.get(f"{API}/entities", params={"type": "A;;B"}), 400,
                   "BadRequestData")
    assert body["detail"] == "type: unexpected ';' at position 2 in 'A;;B'"
    body = problem(fleet.get(f"{API}/entities", params={"type": "Vehicle",
                                                        "georel": "within"}),
                   400, "BadRequestData")
    assert body["detail"].startswith("geometry is required for a geo-query")


def test_sys_attrs_in_queries(fleet):
    listed = fleet.get(f"{API}/entities", params={"type": "Building",
                                                  "options": "sysAttrs,keyValues"}).json()
    assert all("createdAt" in e and "modifiedAt" in e for e in listed)
    assert listed[0]["name"] == "Town hall"


# ------------------------------------------------------------------ discovery
def test_types(fleet):
    listed = fleet.get(f"{API}/types").json()
    assert listed["type"] == "EntityTypeList"
    assert listed["id"].startswith("urn:ngsi-ld:EntityTypeList:")
    assert listed["typeList"] == ["Building", "Device", "Sensor", "Vehicle"]
    details = fleet.get(f"{API}/types", params={"details": "true"}).json()
    vehicle_type = next(t for t in details if t["typeName"] == "Vehicle")
    assert vehicle_type == {"id": "https://uri.etsi.org/ngsi-ld/default-context/Vehicle",
                            "type": "EntityType", "typeName": "Vehicle",
                            "attributeNames": ["location", "speed", "status"]}


def test_type_info(fleet):
    info = fleet.get(f"{API}/types/Vehicle").json()
    assert info["type"] == "EntityTypeInfo" and info["entityCount"] == 5
    assert info["attributeDetails"] == [
        {"id": "https://uri.etsi.org/ngsi-ld/location", "type": "Attribute",
         "attributeName": "location", "attributeTypes": ["GeoProperty"]},
        {"id": "https://uri.etsi.org/ngsi-ld/default-context/speed", "type": "Attribute",
         "attributeName": "speed", "attributeTypes": ["Property"]},
        # status is a term of the core context (a subscription's status), so its IRI is
        # the core one, as in every NGSI-LD broker
        {"id": "https://uri.etsi.org/ngsi-ld/status", "type": "Attribute",
         "attributeName": "status", "attributeTypes": ["Property"]},
    ]
    body = problem(fleet.get(f"{API}/types/Tram"), 404, "ResourceNotFound")
    assert body["detail"] == "entity type Tram does not exist"


def test_attributes(fleet):
    listed = fleet.get(f"{API}/attributes").json()
    assert listed["type"] == "AttributeList"
    assert listed["attributeList"] == ["battery", "location", "name", "speed", "status"]
    details = fleet.get(f"{API}/attributes", params={"details": "true"}).json()
    location = next(a for a in details if a["attributeName"] == "location")
    assert location["typeNames"] == ["Building", "Vehicle"]
    info = fleet.get(f"{API}/attributes/status").json()
    assert info == {"id": "https://uri.etsi.org/ngsi-ld/status",
                    "type": "Attribute", "attributeName": "status", "attributeCount": 2,
                    "attributeTypes": ["Property"], "typeNames": ["Vehicle"]}
    problem(fleet.get(f"{API}/attributes/colour"), 404, "ResourceNotFound")
