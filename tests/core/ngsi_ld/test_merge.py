"""Fragments written into stored entities (merge, update, append, partial update,
replace attribute, batch merge, purge), on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from cityos.core.errors import BadRequestData, ResourceNotFound
from cityos.core.ngsi_ld import merge
from cityos.core.ngsi_ld.purge import purge
from cityos.core.store.base import EntityQuery

CITY = "tallinn"
NULL = "urn:ngsi-ld:null"
TOWER = "urn:ngsi-ld:Building:tower"


def building(**attrs) -> dict:
    body = {"id": TOWER, "type": "Building",
            "name": {"type": "Property", "value": "Eiffel Tower"},
            "address": {"type": "Property", "unitCode": "ADR",
                        "value": {"street": "Champ de Mars", "city": "Paris",
                                  "country": "France"}},
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}}
    body.update(attrs)
    return body


def test_merge_patches_values_keeps_members_and_deletes_nulls(store):
    store.create_entity(CITY, building())
    merge.write_fragment(store, CITY, TOWER, {
        "type": "Landmark",
        "address": {"type": "Property", "value": {"street": "Avenue Anatole", "country": NULL}},
        "locatedAt": {"type": "Relationship", "object": NULL},
        "height": {"type": "Property", "value": 330}}, "merge")
    entity = store.get_entity(CITY, TOWER)
    assert entity["type"] == ["Building", "Landmark"]
    assert entity["address"] == {"type": "Property", "unitCode": "ADR",
                                 "value": {"street": "Avenue Anatole", "city": "Paris"}}
    assert "locatedAt" not in entity
    assert entity["height"] == {"type": "Property", "value": 330}
    assert entity["name"]["value"] == "Eiffel Tower"


def test_merge_null_deletes_only_the_named_instance(store):
    store.create_entity(CITY, building(name=[
        {"type": "Property", "value": "Eiffel Tower"},
        {"type": "Property", "value": "La dame de fer", "datasetId": "urn:ngsi-ld:Dataset:fr"}]))
    merge.write_fragment(store, CITY, TOWER, {"name": {
        "type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:fr"}}, "merge")
    assert store.get_entity(CITY, TOWER)["name"] == {"type": "Property",
                                                     "value": "Eiffel Tower"}
    merge.write_fragment(store, CITY, TOWER, {"street": {
        "type": "LanguageProperty", "languageMap": {"@none": NULL}}}, "merge")
    assert "street" not in store.get_entity(CITY, TOWER)


def test_update_deletes_with_null_and_reports_missing(store):
    store.create_entity(CITY, building())
    result = merge.write_fragment(store, CITY, TOWER, {
        "name": {"type": "Property", "value": NULL},
        "height": {"type": "Property", "value": 330}}, "update")
    assert result.updated == ["name"]
    assert [n["attributeName"] for n in result.not_updated] == ["height"]
    entity = store.get_entity(CITY, TOWER)
    assert "name" not in entity and "height" not in entity


def test_append_no_overwrite_keeps_and_unions_scope(store):
    store.create_entity(CITY, building(scope="/Paris"))
    result = merge.write_fragment(store, CITY, TOWER, {
        "name": {"type": "Property", "value": "other"}, "scope": "/France"}, "append",
        no_overwrite=True)
    assert [n["attributeName"] for n in result.not_updated] == ["name"]
    entity = store.get_entity(CITY, TOWER)
    assert entity["name"]["value"] == "Eiffel Tower"
    assert entity["scope"] == ["/Paris", "/France"]


def test_partial_update_null_deletes_and_nested_null_is_refused(store):
    store.create_entity(CITY, building())
    with pytest.raises(BadRequestData, match="address.value"):
        merge.patch_attribute(store, CITY, TOWER, "address", {"value": {"country": NULL}})
    assert store.get_entity(CITY, TOWER)["address"]["value"]["country"] == "France"
    merge.patch_attribute(store, CITY, TOWER, "locatedAt", {"object": NULL})
    assert "locatedAt" not in store.get_entity(CITY, TOWER)
    with pytest.raises(ResourceNotFound):
        merge.patch_attribute(store, CITY, TOWER, "locatedAt", {"object": "urn:x:y"})


def test_replace_attribute_needs_the_instance(store):
    store.create_entity(CITY, building())
    merge.replace_attribute(store, CITY, TOWER, "locatedAt",
                            {"type": "Property", "value": "Paris"})
    assert store.get_entity(CITY, TOWER)["locatedAt"] == {"type": "Property",
                                                          "value": "Paris"}
    with pytest.raises(ResourceNotFound, match="height"):
        merge.replace_attribute(store, CITY, TOWER, "height",
                                {"type": "Property", "value": 1})


def test_batch_merge_fails_missing_entities_alone(store):
    store.create_entity(CITY, building())
    result = merge.merge_entities(store, CITY, [
        (TOWER, {"height": {"type": "Property", "value": 330}}),
        ("urn:ngsi-ld:Building:none", {"height": {"type": "Property", "value": 1}})])
    assert result.success == [TOWER]
    assert [e["entityId"] for e in result.errors] == ["urn:ngsi-ld:Building:none"]
    assert result.errors[0]["error"]["type"].endswith("/ResourceNotFound")
    assert store.get_entity(CITY, TOWER)["height"]["value"] == 330


def test_purge_deletes_drops_and_keeps(store):
    store.create_entity(CITY, building())
    store.create_entity(CITY, building(id="urn:ngsi-ld:Building:arc"))
    store.create_entity(CITY, {"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle",
                               "name": {"type": "Property", "value": "bus"}})
    assert purge(store, CITY, EntityQuery(types=["Building"], limit=100),
                 drop=["name"]) == 2
    assert "name" not in store.get_entity(CITY, TOWER)
    purge(store, CITY, EntityQuery(ids=[TOWER], types=["Building"], limit=100),
          keep=["address"])
    assert sorted(store.get_entity(CITY, TOWER)) == ["address", "id", "type"]
    assert purge(store, CITY, EntityQuery(types=["Building"], limit=100)) == 2
    with pytest.raises(ResourceNotFound):
        store.get_entity(CITY, TOWER)
    assert store.get_entity(CITY, "urn:ngsi-ld:Vehicle:1")["name"]["value"] == "bus"
