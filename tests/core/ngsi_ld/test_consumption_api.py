"""Retrieve and query entities to ETSI GS CIM 009: parameter checks, projections,
representations, languages, linked entities, ordering, pagination, scopes."""

from __future__ import annotations

import pytest
from ngsi_helpers import API, problem, vehicle

OPS = f"{API}/entityOperations"
BUILDING = "urn:ngsi-ld:Building:b1"
CITY = "urn:ngsi-ld:City:paris"
COUNTRY = "urn:ngsi-ld:Country:fr"


@pytest.fixture
def town(client):
    """A building located in a city located in a country, and two vehicles."""
    entities = [
        {"id": BUILDING, "type": "Building",
         "name": {"type": "Property", "value": "Eiffel Tower"},
         "street": {"type": "LanguageProperty",
                    "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}},
         "locatedAt": {"type": "Relationship", "object": CITY},
         "location": [{"type": "GeoProperty",
                       "value": {"type": "Point", "coordinates": [9.0, 9.0]},
                       "datasetId": "urn:ngsi-ld:Dataset:gps"},
                      {"type": "GeoProperty",
                       "value": {"type": "Point", "coordinates": [1.0, 2.0]}}]},
        {"id": CITY, "type": "City", "name": {"type": "Property", "value": "Paris"},
         "isInCountry": {"type": "Relationship", "object": COUNTRY}},
        {"id": COUNTRY, "type": "Country", "name": {"type": "Property", "value": "France"},
         "description": {"type": "Property", "value": "a country"}},
        vehicle(1, speed=80.0, lon=8.01, lat=40.01, brand={"type": "Property",
                                                            "value": "Zebra"}),
        vehicle(2, speed=120.0, lon=10.0, lat=45.0, brand={"type": "Property",
                                                            "value": "Ähre"}),
    ]
    response = client.post(f"{OPS}/create", json=entities)
    assert response.status_code == 201, response.text
    return client


def get(client, path: str, **params):
    response = client.get(f"{API}{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


# =============================================================== parameter checks
@pytest.mark.parametrize("path, params", [
    ("/entities", {"type": "Vehicle", "colour": "red"}),
    (f"/entities/{BUILDING}", {"limit": "5"}),
    ("/types/Building", {"details": "true"}),
    ("/attributes", {"limit": "5"}),
    ("/attributes/name", {"details": "true"}),
])
def test_an_undefined_query_parameter_is_invalid_request(town, path, params):
    body = problem(town.get(f"{API}{path}", params=params), 400, "InvalidRequest")
    assert "not a query parameter of this operation" in body["detail"]


@pytest.mark.parametrize("params", [{"format": "compact"}, {"options": "keyValues,bogus"},
                                    {"format": "keyValues", "options": "bogus"}])
def test_an_undefined_options_or_format_value_is_invalid_request(town, params):
    problem(town.get(f"{API}/entities/{BUILDING}", params=params), 400, "InvalidRequest")


@pytest.mark.parametrize("params, detail", [
    ({"pick": "name", "omit": "name"}, "pick, omit: 'name' is in both"),
    ({"pick": "name", "attrs": "name"}, "attrs: cannot be combined with pick or omit"),
    ({"pick": "id;name"}, "pick: unexpected ';' at position 2 in 'id;name'"),
    ({"pick": "id,locatedAt{name"}, "pick: the brace after 'locatedAt' is not closed in "
                                    "'id,locatedAt{name'"),
    ({"pick": "id,,name"}, "pick: a member name is expected at position 3 of 'id,,name', "
                           "found ','"),
    ({"pick": "locatedAt{}"}, "pick: a member name is expected at position 10 of "
                              "'locatedAt{}', found '}'"),
    ({"pick": "locatedAt{{name}"}, "pick: a member name is expected at position 10 of "
                                   "'locatedAt{{name}', found '{'"),
    ({"pick": "locatedAt{name}"}, "pick: a nested projection addresses linked entities, "
                                  "which needs join=inline or join=flat"),
    ({"pick": "locatedAt{isInCountry{name}}", "join": "inline", "joinLevel": "1"},
     "pick: the projection reaches 2 linked entities deep, more than joinLevel=1"),
    ({"join": "inline", "joinLevel": "0"}, "joinLevel: 0 is not a positive integer"),
    ({"geometryProperty": "location"}, "geometryProperty: only allowed with Accept: "
                                       "application/geo+json"),
])
def test_malformed_projection_and_join_parameters_are_bad_request_data(town, params, detail):
    body = problem(town.get(f"{API}/entities/{BUILDING}", params=params), 400,
                   "BadRequestData")
    assert body["detail"] == detail


@pytest.mark.parametrize("params, detail", [
    ({"id": BUILDING}, "a query needs at least one of type, attrs, q or a geo-query (or "
                       "local=true); system attributes alone do not count"),
    ({"attrs": "createdAt"}, "a query needs at least one of type, attrs, q or a geo-query "
                             "(or local=true); system attributes alone do not count"),
    ({"attrs": "id,type"}, "attrs: 'id' is an entity member, not an attribute"),
    ({"type": "Vehicle", "georel": "near;maxDistance==0", "geometry": "Point",
      "coordinates": "[8,40]"}, "georel: maxDistance must be a positive number of metres, "
                                "got '0'"),
    ({"type": "Vehicle", "georel": "near;maxDistance==5;minDistance==1",
      "geometry": "Point", "coordinates": "[8,40]"},
     "georel: near takes exactly one of maxDistance==<metres> or minDistance==<metres>, "
     "got 'near;maxDistance==5;minDistance==1'"),
    ({"type": "Vehicle", "orderBy": "location;dist-asc"},
     "orderFrom: distance ordering (dist-asc, dist-desc) needs the coordinates of the "
     "reference geometry"),
    ({"type": "Vehicle", "orderBy": "brand", "collation": "!!nope"},
     "collation: '!!nope' is not a BCP 47 language tag"),
    ({"type": "*", "local": "false"}, "type: '*' (every type) cannot be combined with "
                                      "local=false"),
    ({"type": "Vehicle", "csf": "))bad(("}, None),
])
def test_query_parameter_errors_are_bad_request_data(town, params, detail):
    body = problem(town.get(f"{API}/entities", params=params), 400, "BadRequestData")
    if detail is not None:
        assert body["detail"] == detail


@pytest.mark.parametrize("query, detail", [
    ({"entities": [{"id": BUILDING}]},
     "entities[0].type: the type of the selector is required (a string)"),
    ({"entities": []}, "entities: must be a non-empty array of {type, id, idPattern}"),
    ({"entities": [{"type": "Vehicle"}], "attrs": []},
     "attrs: an empty list of attributes is not allowed"),
    ({"entities": [{"type": "Vehicle"}], "join": "inline", "joinLevel": 0},
     "joinLevel: 0 is not a positive integer"),
    ({"entities": [{"type": "Vehicle"}],
      "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}},
     "temporalQ: only the temporal query (clause 5.7.4) takes a temporal query"),
    ({"entities": [{"type": "Vehicle"}], "ordering": {"orderBy": ["id;asc"],
                                                       "geometry": 5}}, None),
])
def test_query_object_errors(town, query, detail):
    body = problem(town.post(f"{OPS}/query", json={"type": "Query", **query}), 400,
                   "BadRequestData")
    if detail is not None:
        assert body["detail"] == detail


def test_a_non_uri_entity_id_in_the_path_is_bad_request_data(town):
    problem(town.get(f"{API}/entities/thisisaninvaliduri"), 400, "BadRequestData")


def test_retrieve_with_attrs_the_entity_lacks_is_not_found(town):
    problem(town.get(f"{API}/entities/{BUILDING}", params={"attrs": "colour"}), 404,
            "ResourceNotFound")


# ==================================================================== projections
def test_pick_and_omit_on_retrieve(town):
    assert get(town, f"/entities/{BUILDING}", pick="name") == {
        "name": {"type": "Property", "value": "Eiffel Tower"}}
    assert get(town, f"/entities/{BUILDING}", pick="id|name") == get(
        town, f"/entities/{BUILDING}", pick="id,name") == {
        "id": BUILDING, "name": {"type": "Property", "value": "Eiffel Tower"}}
    assert set(get(town, f"/entities/{BUILDING}", omit="type,name")) == {
        "id", "street", "locatedAt", "location"}
    problem(town.get(f"{API}/entities/{BUILDING}", params={"pick": "unknown"}), 404,
            "ResourceNotFound")


def test_pick_on_a_query_keeps_only_entities_having_a_picked_attribute(town):
    assert get(town, "/entities", type="Vehicle,City", pick="speed") == [
        {"speed": {"type": "Property", "value": 80.0, "unitCode": "KMH"}},
        {"speed": {"type": "Property", "value": 120.0, "unitCode": "KMH"}}]
    assert get(town, "/entities", type="City,Country", pick="id") == [{"id": CITY},
                                                                       {"id": COUNTRY}]


# ================================================================ representations
def test_concise_representation(town):
    got = get(town, f"/entities/{CITY}", options="concise")
    assert got == {"id": CITY, "type": "City", "name": "Paris",
                   "isInCountry": {"object": COUNTRY}}


def test_lang_serves_the_best_language_as_a_property(town):
    def street(**params):
        return get(town, f"/entities/{BUILDING}", attrs="street", **params)["street"]
    assert street(lang="fr") == {"type": "Property", "value": "Grand Place", "lang": "fr"}
    assert street(lang="fr;q=0.2,nl;q=0.9")["lang"] == "nl"
    assert street(lang="NL-be")["lang"] == "nl"
    assert street(lang="pt")["lang"] == "fr"  # no match: any language
    assert street(lang="*", options="keyValues") == "Grand Place"
    assert street() == {"type": "LanguageProperty",
                        "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}}


def test_dataset_id_selects_instances(town):
    got = get(town, f"/entities/{BUILDING}", datasetId="urn:ngsi-ld:Dataset:gps")
    assert got == {"id": BUILDING, "type": "Building",
                   "location": {"type": "GeoProperty",
                                "value": {"type": "Point", "coordinates": [9.0, 9.0]},
                                "datasetId": "urn:ngsi-ld:Dataset:gps"}}
    assert set(get(town, f"/entities/{BUILDING}", datasetId="@none")) == {
        "id", "type", "name", "street", "locatedAt", "location"}


def test_geojson_carries_the_context_and_the_default_instance_geometry(town):
    response = town.get(f"{API}/entities/{BUILDING}", params={"options": "keyValues"},
                        headers={"Accept": "application/geo+json"})
    assert response.status_code == 200, response.text
    feature = response.json()
    assert feature["geometry"] == {"type": "Point", "coordinates": [1.0, 2.0]}
    assert feature["@context"] == \
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
    listed = town.post(f"{OPS}/query", json={"type": "Query",
                                             "entities": [{"type": "City"}]},
                       headers={"Accept": "application/geo+json"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["type"] == "FeatureCollection"
    assert "@context" in listed.json()


# ================================================================ linked entities
def test_inline_join_two_levels_with_a_nested_pick(town):
    got = get(town, f"/entities/{BUILDING}", join="inline", joinLevel="2",
              pick="id,locatedAt{id,name,isInCountry{id,description}}")
    assert got == {"id": BUILDING, "locatedAt": {
        "type": "Relationship", "object": CITY, "entity": {
            "id": CITY, "name": {"type": "Property", "value": "Paris"},
            "isInCountry": {"type": "Relationship", "object": COUNTRY, "entity": {
                "id": COUNTRY,
                "description": {"type": "Property", "value": "a country"}}}}}}


def test_inline_join_simplified_replaces_the_object(town):
    got = get(town, f"/entities/{BUILDING}", join="inline", options="keyValues")
    assert got["locatedAt"] == {"id": CITY, "type": "City", "name": "Paris",
                                "isInCountry": COUNTRY}


def test_flat_join_lists_each_linked_entity_once(town):
    got = get(town, "/entities", type="Building", join="flat", joinLevel="2",
              omit="type,name,street,location,locatedAt{name}")
    assert got == [
        {"id": BUILDING, "locatedAt": {"type": "Relationship", "object": CITY}},
        {"id": CITY, "type": "City",
         "isInCountry": {"type": "Relationship", "object": COUNTRY}},
        {"id": COUNTRY, "type": "Country", "name": {"type": "Property", "value": "France"},
         "description": {"type": "Property", "value": "a country"}}]


# ================================================================ selection
def test_type_expressions_and_wildcard(client):
    client.post(f"{OPS}/create", json=[
        {"id": "urn:x:1", "type": ["Building", "Museum"]},
        {"id": "urn:x:2", "type": "Building"}, {"id": "urn:x:3", "type": "Park"}])

    def ids(**params):
        return [e["id"] for e in get(client, "/entities", **params)]
    assert ids(type="(Building;Museum)") == ["urn:x:1"]
    assert ids(type="(Building;Museum),Park") == ["urn:x:1", "urn:x:3"]
    assert ids(type="*") == ["urn:x:1", "urn:x:2", "urn:x:3"]
    assert ids(local="true") == ["urn:x:1", "urn:x:2", "urn:x:3"]


def test_scope_queries(client):
    client.post(f"{OPS}/create", json=[
        {"id": "urn:x:1", "type": "T", "scope": "/Madrid/Gardens/ParqueNorte"},
        {"id": "urn:x:2", "type": "T",
         "scope": ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]},
        {"id": "urn:x:3", "type": "T"}])

    def ids(scope_q):
        return [e["id"] for e in get(client, "/entities", type="T", scopeQ=scope_q)]
    assert ids("/Madrid/+/ParqueNorte") == ["urn:x:1", "urn:x:2"]
    assert ids("/CompanyA/#") == ["urn:x:2"]
    assert ids("/#") == ["urn:x:1", "urn:x:2"]
    assert ids("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC") == ["urn:x:2"]
    assert ids("/Madrid") == []


def test_selector_ids_win_over_the_id_pattern(town):
    found = town.post(f"{OPS}/query", json={"type": "Query", "entities": [{
        "type": "Vehicle", "id": ["urn:ngsi-ld:Vehicle:1"],
        "idPattern": ".*Vehicle:2$"}]})
    assert [e["id"] for e in found.json()] == ["urn:ngsi-ld:Vehicle:1"]


def test_a_self_intersecting_polygon_is_stored_and_queried(client):
    bowtie = {"type": "Polygon", "coordinates": [[[8.5, 47.3], [8.6, 47.4], [8.6, 47.3],
                                                  [8.5, 47.4], [8.5, 47.3]]]}
    created = client.post(f"{API}/entities", json={
        "id": "urn:x:area", "type": "Area", "location": {"type": "GeoProperty",
                                                         "value": bowtie}})
    assert created.status_code == 201, created.text
    within = get(client, "/entities", type="Area", georel="intersects", geometry="Point",
                 coordinates="[8.52,47.35]")
    assert [e["id"] for e in within] == ["urn:x:area"]


# ================================================================ ordering, pages
def test_order_by_value_direction_collation_and_distance(town):
    def ids(**params):
        return [e["id"] for e in get(town, "/entities", type="Vehicle", **params)]
    v1, v2 = "urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"
    assert ids(orderBy="speed;desc") == [v2, v1]
    assert ids(orderBy="brand") == [v1, v2]  # code points: Z before Ä
    assert ids(orderBy="brand", collation="de") == [v2, v1]  # Ä ranks with A
    assert ids(orderBy="location;dist-asc", orderFrom="[8,40]") == [v1, v2]
    assert ids(orderBy="location;dist-desc", orderFrom="[8,40]") == [v2, v1]
    assert ids(orderBy="nothing,id;desc") == [v2, v1]


def test_pages_carry_prev_and_next_links(client):
    client.post(f"{OPS}/create", json=[vehicle(n) for n in range(1, 4)])
    response = client.get(f"{API}/entities", params={"type": "Vehicle", "limit": 1,
                                                     "offset": 1, "count": "true"})
    assert response.headers["NGSILD-Results-Count"] == "3"
    links = [link.strip() for link in response.headers["Link"].split(",")
             if "json-ld#context" not in link]
    assert links == [
        '</ngsi-ld/v1/entities?count=true&limit=1&offset=0&type=Vehicle>; rel="prev";'
        'type="application/json"',
        '</ngsi-ld/v1/entities?count=true&limit=1&offset=2&type=Vehicle>; rel="next";'
        'type="application/json"']
    last = client.get(f"{API}/entities", params={"type": "Vehicle", "limit": 2,
                                                 "offset": 2})
    assert 'rel="next"' not in last.headers["Link"]


# ================================================================ discovery
def test_discovery_by_expanded_names(town):
    iri = "https://uri.etsi.org/ngsi-ld/default-context/Building"
    assert get(town, "/types/" + iri.replace("/", "%2F").replace(":", "%3A"))[
        "typeName"] == "Building"
    name_iri = "https://uri.etsi.org/ngsi-ld/default-context/name"
    assert get(town, "/attributes/" + name_iri.replace("/", "%2F"))[
        "attributeName"] == "name"


# ============================================================ attribute types
TYPED = {"id": "urn:ngsi-ld:Vehicle:typed", "type": "Vehicle",
         "speed": [{"type": "Property", "value": 55},
                   {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:Dataset:gps"}],
         "brandName": {"type": "LanguageProperty", "languageMap": {"en": "hi"}},
         "street": {"type": "JsonProperty", "json": {"a": 1}},
         "category": {"type": "VocabProperty", "vocab": "commercial"},
         "depths": {"type": "ListProperty", "valueList": [1.2, 3.4]},
         "parked": {"type": "Relationship", "object": "urn:ngsi-ld:Parking:1"},
         "route": {"type": "ListRelationship",
                   "objectList": ["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"]}}


def test_simplified_form_of_each_attribute_type(client):
    assert client.post(f"{API}/entities", json=TYPED).status_code == 201
    assert get(client, f"/entities/{TYPED['id']}", options="keyValues") == {
        "id": TYPED["id"], "type": "Vehicle",
        "speed": {"dataset": {"@none": 55, "urn:ngsi-ld:Dataset:gps": 11}},
        "brandName": {"languageMap": {"en": "hi"}}, "street": {"json": {"a": 1}},
        "category": {"vocab": "commercial"}, "depths": [1.2, 3.4],
        "parked": "urn:ngsi-ld:Parking:1", "route": ["urn:ngsi-ld:Road:1",
                                                     "urn:ngsi-ld:Road:2"]}


@pytest.mark.parametrize("attr, detail", [
    ({"type": "VocabProperty", "vocab": 5}, "v: 'vocab' must be a term or a list of terms"),
    ({"type": "ListProperty", "valueList": 5}, "v: 'valueList' must be an array"),
    ({"type": "ListRelationship", "objectList": ["no uri"]},
     "v: 'objectList' must be an array of URIs"),
    ({"type": "JsonProperty"}, "v: a JsonProperty needs a 'json'"),
    ({"type": "JsonProperty", "json": 5},
     "v: 'json' must be a JSON object or an array of objects"),
    ({"type": "JsonProperty", "json": {"a": 1}, "unitCode": "MTR"},
     "v: a JsonProperty has no unitCode (raw JSON is unitless)"),
    ({"type": "JsonProperty", "json": {"a": 1}, "value": 1},
     "v: a JsonProperty has no 'value' member"),
    ({"type": "ListProperty", "valueList": [1], "value": 3},
     "v: a ListProperty has no 'value' member"),
    ({"type": "Property", "value": 1, "valueList": [1, 2]},
     "v: a Property has no 'valueList' member"),
])
def test_typed_attributes_are_checked(client, attr, detail):
    body = problem(client.post(f"{API}/entities", json={"id": "urn:x:1", "type": "T",
                                                        "v": attr}), 400, "BadRequestData")
    assert body["detail"] == detail


def test_an_earlier_version_preference_reformats_newer_attribute_types(client):
    client.post(f"{API}/entities", json=TYPED)
    old = client.get(f"{API}/entities/{TYPED['id']}", headers={"Prefer": "ngsi-ld=1.5"})
    assert old.status_code == 203
    assert old.headers["Preference-Applied"] == "ngsi-ld=1.5"
    assert old.json()["category"] == {"type": "Property", "value": "commercial"}
    assert old.json()["route"]["type"] == "Relationship"
    native = client.get(f"{API}/entities/{TYPED['id']}", headers={"Prefer": "ngsi-ld=1.9"})
    assert native.status_code == 200
    assert native.headers["Preference-Applied"] == "ngsi-ld=1.9"
    assert native.json()["category"]["type"] == "VocabProperty"


@pytest.mark.parametrize("q, matches", [
    ('color[en]=="red"', True), ('color[en]=="rouge"', False),
    ('color[*]=="rouge"', True), ('color[*]!="red"', False), ('color[*]!="blue"', True),
    ('owner>"urn:a"', False), ('owner=="urn:b"', True),
    ('address[city]=="Berlin"', True), ('address[postcode]=="Berlin"', False),
])
def test_q_on_languages_relationships_and_compound_members(client, q, matches):
    client.post(f"{API}/entities", json={
        "id": "urn:x:1", "type": "T",
        "color": {"type": "LanguageProperty", "languageMap": {"fr": "rouge", "en": "red"}},
        "owner": {"type": "Relationship", "object": "urn:b"},
        "address": {"type": "Property", "value": {"city": "Berlin"}}})
    assert len(get(client, "/entities", type="T", q=q)) == (1 if matches else 0)


def test_a_q_term_on_a_linked_entity_needs_join(town):
    body = problem(town.get(f"{API}/entities", params={"type": "Building",
                                                       "q": 'locatedAt{name}=="Paris"'}),
                   400, "BadRequestData")
    assert body["detail"] == ("q: a term on a linked entity's attribute needs join=inline "
                              "or join=flat")
    body = problem(town.get(f"{API}/entities", params={
        "type": "Building", "join": "inline", "q": 'locatedAt{isInCountry{name}}=="France"'}),
        400, "BadRequestData")
    assert body["detail"] == ("q: a term reaches 2 linked entities deep, more than "
                              "joinLevel=1")


@pytest.mark.parametrize("q, found", [
    ('locatedAt{name}=="Paris"', [BUILDING]), ('locatedAt{name}=="Lyon"', []),
    ('locatedAt{City:name}=="Paris"', [BUILDING]), ('locatedAt{Town:name}=="Paris"', []),
    ('locatedAt{isInCountry{name}}=="France"', [BUILDING]),
])
def test_a_q_term_on_a_linked_entity_follows_the_relationship(town, q, found):
    got = get(town, "/entities", type="Building", q=q, join="inline", joinLevel="2",
              pick="id")
    assert [e["id"] for e in got] == found


@pytest.mark.parametrize("params", [{"entityMap": "true"}, {"expandValues": "category"}])
def test_features_cityos_does_not_implement_are_not_implemented(town, params):
    body = problem(town.get(f"{API}/entities/{BUILDING}", params=params), 501,
                   "NotImplemented")
    assert "docs/conformance.md" in body["detail"]


def test_a_linked_term_type_hint_in_a_clients_context(client):
    from cityos.core.ngsi_ld.context import register_context

    url = "https://example.org/linked-q-test.jsonld"
    register_context(url, {"@context": {"Site": "https://example.org/Site",
                                        "Town": "https://example.org/Town",
                                        "in": "https://example.org/in",
                                        "label": "https://example.org/label"}})
    link = {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; '
                    'type="application/ld+json"'}
    created = client.post(f"{OPS}/create", headers=link, json=[
        {"id": "urn:x:site", "type": "Site", "in": {"type": "Relationship",
                                                    "object": "urn:x:town"}},
        {"id": "urn:x:town", "type": "Town", "label": {"type": "Property", "value": "Oz"}}])
    assert created.status_code == 201, created.text

    def found(q):
        response = client.get(f"{API}/entities", headers=link, params={
            "type": "Site", "q": q, "join": "inline"})
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()]
    assert found('in{Town:label}=="Oz"') == ["urn:x:site"]
    assert found('in{Site:label}=="Oz"') == []
