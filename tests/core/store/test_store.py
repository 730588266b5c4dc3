"""The context store suite: every test runs on SQLite and on PostgreSQL + PostGIS.

Known answers only: each test builds a small city (vehicles, sensors, a few
observations at fixed instants) and checks exactly what the store gives back.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from cityos.core.errors import AlreadyExists, BadRequestData, ResourceNotFound
from cityos.core.store.base import EntityQuery, TemporalQuery
from cityos.core.timefmt import now_utc, to_micros

CITY = "tallinn"
OTHER_CITY = "tartu"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def vehicle(number: int, speed: float = 30.0, **attrs) -> dict:
    body = {"id": f"urn:ngsi-ld:Vehicle:bus-{number:03d}", "type": "Vehicle",
            "speed": {"type": "Property", "value": speed, "unitCode": "KMH"}}
    body.update(attrs)
    return body


def point(lon: float, lat: float) -> dict:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def prop(value, **extra) -> dict:
    return {"type": "Property", "value": value, **extra}


def ids_of(result) -> list[str]:
    return [record.id for record in result.entities]


def query(store, tenant=CITY, **kwargs):
    return store.query_entities(tenant, EntityQuery(**kwargs))


def history_of(store, entity_id, attrs=None, tenant=CITY):
    return store.history(tenant, entity_id, attrs, None, None, None)


# ------------------------------------------------------------------ entity CRUD
def test_create_then_get_returns_the_canonical_entity_with_system_times(store):
    before = to_micros(now_utc())
    created = store.create_entity(CITY, vehicle(1, 42.5, name=prop("Line 7"),
                                                route={"type": "Relationship",
                                                       "object": "urn:ngsi-ld:Route:7"}))
    assert created["id"] == "urn:ngsi-ld:Vehicle:bus-001"
    assert created["speed"] == {"type": "Property", "value": 42.5, "unitCode": "KMH"}
    assert created["route"] == {"type": "Relationship", "object": "urn:ngsi-ld:Route:7"}
    record = store.get_record(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert record.entity == created
    assert list(record.entity)[:2] == ["id", "type"]
    assert before <= record.created_us == record.modified_us <= to_micros(now_utc())


def test_create_an_existing_id_is_already_exists(store):
    store.create_entity(CITY, vehicle(1))
    with pytest.raises(AlreadyExists, match="bus-001"):
        store.create_entity(CITY, vehicle(1, 99.0))
    assert store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")["speed"]["value"] == 30.0


def test_get_delete_replace_a_missing_entity_is_resource_not_found(store):
    missing = "urn:ngsi-ld:Vehicle:ghost"
    with pytest.raises(ResourceNotFound, match="ghost"):
        store.get_entity(CITY, missing)
    with pytest.raises(ResourceNotFound, match="ghost"):
        store.delete_entity(CITY, missing)
    with pytest.raises(ResourceNotFound, match="ghost"):
        store.replace_entity(CITY, missing, {"type": "Vehicle", "speed": prop(1)})
    with pytest.raises(ResourceNotFound):
        store.append_attributes(CITY, missing, {"speed": prop(1)})


def test_invalid_entity_is_bad_request_naming_the_field(store):
    with pytest.raises(BadRequestData, match="id"):
        store.create_entity(CITY, {"id": "not a uri", "type": "Vehicle"})
    with pytest.raises(BadRequestData, match="speed"):
        store.create_entity(CITY, {"id": "urn:x:1", "type": "Vehicle", "speed": 3})
    assert query(store, types=["Vehicle"], count=True).count == 0


def test_replace_drops_old_attributes_and_keeps_created_at(store):
    store.create_entity(CITY, vehicle(1, name=prop("Line 7")))
    created = store.get_record(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    store.replace_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001", {"heading": prop(270)})
    record = store.get_record(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert record.entity == {"id": "urn:ngsi-ld:Vehicle:bus-001", "type": "Vehicle",
                             "heading": prop(270)}
    assert record.created_us == created.created_us
    assert record.modified_us >= created.modified_us


def test_delete_removes_the_entity_but_keeps_its_history(store):
    store.create_entity(CITY, vehicle(1))
    store.delete_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    with pytest.raises(ResourceNotFound):
        store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert [r.attribute for r in history_of(store, "urn:ngsi-ld:Vehicle:bus-001")] == ["speed"]
    store.create_entity(CITY, vehicle(1, 5.0))  # the id is free again
    assert store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")["speed"]["value"] == 5.0


# ------------------------------------------------------------------ attributes
def test_append_adds_and_overwrites_attributes(store):
    store.create_entity(CITY, vehicle(1))
    result = store.append_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001",
                                     {"speed": prop(50.0), "heading": prop(90)})
    assert sorted(result.updated) == ["heading", "speed"]
    assert result.not_updated == []
    entity = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert entity["speed"] == prop(50.0)  # overwritten whole: the unitCode went too
    assert entity["heading"] == prop(90)


def test_append_with_no_overwrite_keeps_existing_attributes(store):
    store.create_entity(CITY, vehicle(1))
    result = store.append_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001",
                                     {"speed": prop(50.0), "heading": prop(90)},
                                     no_overwrite=True)
    assert result.updated == ["heading"]
    assert [n["attributeName"] for n in result.not_updated] == ["speed"]
    entity = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert entity["speed"]["value"] == 30.0
    assert entity["heading"] == prop(90)


def test_update_writes_only_existing_attributes(store):
    store.create_entity(CITY, vehicle(1))
    result = store.update_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001",
                                     {"speed": prop(12.0), "heading": prop(90)})
    assert result.updated == ["speed"]
    assert [n["attributeName"] for n in result.not_updated] == ["heading"]
    entity = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert entity["speed"] == prop(12.0)
    assert "heading" not in entity


def test_update_that_writes_nothing_leaves_modified_at_alone(store):
    store.create_entity(CITY, vehicle(1))
    before = store.get_record(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    result = store.update_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001",
                                     {"heading": prop(90)})
    assert result.updated == []
    assert store.get_record(CITY, "urn:ngsi-ld:Vehicle:bus-001") == before


def test_patch_attribute_merges_the_fragment_into_the_instance(store):
    store.create_entity(CITY, vehicle(1, route={"type": "Relationship",
                                                "object": "urn:ngsi-ld:Route:7"}))
    store.patch_attribute(CITY, "urn:ngsi-ld:Vehicle:bus-001", "speed", {"value": 55.0})
    store.patch_attribute(CITY, "urn:ngsi-ld:Vehicle:bus-001", "route",
                          {"value": "urn:ngsi-ld:Route:9"})
    entity = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert entity["speed"] == {"type": "Property", "value": 55.0, "unitCode": "KMH"}
    assert entity["route"] == {"type": "Relationship", "object": "urn:ngsi-ld:Route:9"}
    with pytest.raises(ResourceNotFound, match="heading"):
        store.patch_attribute(CITY, "urn:ngsi-ld:Vehicle:bus-001", "heading", {"value": 1})
    with pytest.raises(ResourceNotFound, match="urn:ngsi-ld:Dataset:gps"):
        store.patch_attribute(CITY, "urn:ngsi-ld:Vehicle:bus-001", "speed",
                              {"value": 1, "datasetId": "urn:ngsi-ld:Dataset:gps"})
    with pytest.raises(ResourceNotFound):
        store.patch_attribute(CITY, "urn:ngsi-ld:Vehicle:ghost", "speed", {"value": 1})


def test_multi_attribute_instances_merge_by_dataset_id(store):
    gps, can = "urn:ngsi-ld:Dataset:gps", "urn:ngsi-ld:Dataset:canbus"
    store.create_entity(CITY, vehicle(1, speed=None) | {
        "speed": [prop(30.0), prop(31.0, datasetId=gps)]})
    store.append_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001", {
        "speed": [prop(33.0, datasetId=gps), prop(29.5, datasetId=can)]})
    speed = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")["speed"]
    by_dataset = {i.get("datasetId", "@none"): i["value"] for i in speed}
    assert by_dataset == {"@none": 30.0, gps: 33.0, can: 29.5}
    # update touches only the named instance
    store.update_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001",
                            {"speed": prop(40.0, datasetId=can)})
    speed = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")["speed"]
    assert {i.get("datasetId", "@none"): i["value"] for i in speed} == {
        "@none": 30.0, gps: 33.0, can: 40.0}
    store.patch_attribute(CITY, "urn:ngsi-ld:Vehicle:bus-001", "speed",
                          {"value": 34.0, "datasetId": gps})
    speed = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")["speed"]
    assert {i.get("datasetId", "@none"): i["value"] for i in speed}[gps] == 34.0


def test_delete_attribute_default_instance_dataset_instance_and_all(store):
    gps = "urn:ngsi-ld:Dataset:gps"
    store.create_entity(CITY, vehicle(1, heading=prop(90)) | {
        "speed": [prop(30.0), prop(31.0, datasetId=gps)]})
    entity_id = "urn:ngsi-ld:Vehicle:bus-001"
    store.delete_attribute(CITY, entity_id, "speed", dataset_id=gps)
    assert store.get_entity(CITY, entity_id)["speed"] == prop(30.0)
    with pytest.raises(ResourceNotFound, match="urn:ngsi-ld:Dataset:gps"):
        store.delete_attribute(CITY, entity_id, "speed", dataset_id=gps)
    store.delete_attribute(CITY, entity_id, "speed")
    assert "speed" not in store.get_entity(CITY, entity_id)
    with pytest.raises(ResourceNotFound, match="speed"):
        store.delete_attribute(CITY, entity_id, "speed")
    store.append_attributes(CITY, entity_id, {"speed": [prop(1.0), prop(2.0, datasetId=gps)]})
    store.delete_attribute(CITY, entity_id, "speed", delete_all=True)
    assert sorted(store.get_entity(CITY, entity_id)) == ["heading", "id", "type"]


# ------------------------------------------------------------------ batches
def test_batch_create_reports_each_entity(store):
    store.create_entity(CITY, vehicle(2))
    result = store.create_entities(CITY, [
        vehicle(1), vehicle(2), {"id": "bad id", "type": "Vehicle"}, vehicle(3), vehicle(3)])
    assert result.success == ["urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-003"]
    errors = {(e["entityId"], e["error"]["type"].rsplit("/", 1)[-1]) for e in result.errors}
    assert errors == {("urn:ngsi-ld:Vehicle:bus-002", "AlreadyExists"),
                      ("bad id", "BadRequestData"),
                      ("urn:ngsi-ld:Vehicle:bus-003", "AlreadyExists")}
    assert len(result.errors) == 3
    assert ids_of(query(store, types=["Vehicle"])) == [
        "urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-002",
        "urn:ngsi-ld:Vehicle:bus-003"]


def test_batch_upsert_replaces_or_merges(store):
    store.create_entity(CITY, vehicle(1, heading=prop(90)))
    result = store.upsert_entities(CITY, [vehicle(1, 10.0), vehicle(2, 20.0)])
    assert result.success == ["urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-002"]
    assert result.errors == []
    replaced = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert "heading" not in replaced and replaced["speed"]["value"] == 10.0

    store.append_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001", {"heading": prop(180)})
    result = store.upsert_entities(CITY, [vehicle(1, 11.0), vehicle(3, 33.0)], replace=False)
    assert result.errors == []
    merged = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-001")
    assert merged["heading"] == prop(180) and merged["speed"]["value"] == 11.0
    assert store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-003")["speed"]["value"] == 33.0


def test_batch_update_and_delete_report_missing_entities(store):
    store.create_entities(CITY, [vehicle(1), vehicle(2)])
    result = store.update_entities(CITY, [
        {"id": "urn:ngsi-ld:Vehicle:bus-001", "speed": prop(1.0)},
        {"id": "urn:ngsi-ld:Vehicle:bus-009", "speed": prop(9.0)}])
    assert result.success == ["urn:ngsi-ld:Vehicle:bus-001"]
    assert [(e["entityId"], e["error"]["status"]) for e in result.errors] == [
        ("urn:ngsi-ld:Vehicle:bus-009", 404)]
    result = store.update_entities(CITY, [
        {"id": "urn:ngsi-ld:Vehicle:bus-002", "speed": prop(2.0), "heading": prop(5)}],
        no_overwrite=True)
    entity = store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-002")
    assert entity["speed"]["value"] == 30.0 and entity["heading"] == prop(5)

    result = store.delete_entities(CITY, ["urn:ngsi-ld:Vehicle:bus-001",
                                          "urn:ngsi-ld:Vehicle:bus-009"])
    assert result.success == ["urn:ngsi-ld:Vehicle:bus-001"]
    assert [e["entityId"] for e in result.errors] == ["urn:ngsi-ld:Vehicle:bus-009"]
    assert ids_of(query(store)) == ["urn:ngsi-ld:Vehicle:bus-002"]


def test_a_thousand_entity_batch_is_stored_whole(store):
    fleet = [vehicle(n, float(n), observed=prop(n, observedAt=iso(T0))) for n in range(1000)]
    result = store.upsert_entities(CITY, fleet)
    assert len(result.success) == 1000 and result.errors == []
    assert query(store, types=["Vehicle"], count=True, limit=1).count == 1000
    assert store.get_entity(CITY, "urn:ngsi-ld:Vehicle:bus-999")["speed"]["value"] == 999.0
    rows = store.history(CITY, "urn:ngsi-ld:Vehicle:bus-500", ["observed"], None, None, None)
    assert [(r.observed_us, r.number) for r in rows] == [(to_micros(T0), 500.0)]


# ------------------------------------------------------------------ queries
def test_query_by_type_finds_multi_type_entities_once(store):
    store.create_entities(CITY, [
        vehicle(1),
        {"id": "urn:ngsi-ld:Sensor:s1", "type": ["Device", "WaterObserved"],
         "level": prop(1.2)},
        {"id": "urn:ngsi-ld:Sensor:s2", "type": "Device", "level": prop(0.4)}])
    assert ids_of(query(store, types=["WaterObserved"])) == ["urn:ngsi-ld:Sensor:s1"]
    assert ids_of(query(store, types=["Device"])) == ["urn:ngsi-ld:Sensor:s1",
                                                      "urn:ngsi-ld:Sensor:s2"]
    assert ids_of(query(store, types=["Device", "WaterObserved", "Vehicle"])) == [
        "urn:ngsi-ld:Sensor:s1", "urn:ngsi-ld:Sensor:s2", "urn:ngsi-ld:Vehicle:bus-001"]
    assert ids_of(query(store, types=["Building"])) == []
    store.append_attributes(CITY, "urn:ngsi-ld:Sensor:s2",
                            {"type": "WaterObserved", "level": prop(0.5)})
    assert ids_of(query(store, types=["WaterObserved"])) == ["urn:ngsi-ld:Sensor:s1",
                                                             "urn:ngsi-ld:Sensor:s2"]


def test_query_by_ids_and_id_pattern(store):
    store.create_entities(CITY, [vehicle(n) for n in range(1, 13)])
    assert ids_of(query(store, ids=["urn:ngsi-ld:Vehicle:bus-012",
                                    "urn:ngsi-ld:Vehicle:bus-003", "urn:x:none"])) == [
        "urn:ngsi-ld:Vehicle:bus-003", "urn:ngsi-ld:Vehicle:bus-012"]
    assert ids_of(query(store, id_pattern=r"urn:ngsi-ld:Vehicle:bus-01\d")) == [
        "urn:ngsi-ld:Vehicle:bus-010", "urn:ngsi-ld:Vehicle:bus-011",
        "urn:ngsi-ld:Vehicle:bus-012"]
    assert ids_of(query(store, ids=[])) == []


def test_results_are_in_id_order_by_code_point(store):
    names = ["urn:x:b", "urn:x:B", "urn:x:a", "urn:x:_", "urn:x:A10", "urn:x:A9"]
    store.create_entities(CITY, [{"id": n, "type": "Thing"} for n in names])
    assert ids_of(query(store, limit=100)) == sorted(names)


def test_pagination_with_limit_offset_and_count(store):
    store.create_entities(CITY, [vehicle(n) for n in range(25)])
    page = query(store, types=["Vehicle"], limit=10, offset=20, count=True)
    assert ids_of(page) == [f"urn:ngsi-ld:Vehicle:bus-{n:03d}" for n in range(20, 25)]
    assert page.count == 25
    page = query(store, types=["Vehicle"], limit=3, offset=4)
    assert ids_of(page) == [f"urn:ngsi-ld:Vehicle:bus-{n:03d}" for n in range(4, 7)]
    assert page.count is None
    assert ids_of(query(store, limit=5, offset=30)) == []


def test_query_with_q(store):
    store.create_entities(CITY, [
        vehicle(1, 10.0, name=prop("Line 7")), vehicle(2, 55.0, name=prop("Line 9")),
        vehicle(3, 80.0, name=prop("Line 7"))])
    assert ids_of(query(store, q="speed>50")) == ["urn:ngsi-ld:Vehicle:bus-002",
                                                  "urn:ngsi-ld:Vehicle:bus-003"]
    assert ids_of(query(store, q="speed==50..60")) == ["urn:ngsi-ld:Vehicle:bus-002"]
    assert ids_of(query(store, q='name=="Line 7";speed<50')) == [
        "urn:ngsi-ld:Vehicle:bus-001"]
    assert ids_of(query(store, q="speed<20|speed>70", count=True)) == [
        "urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-003"]


# Tallinn old town and a stop 8 km away
TOWN_HALL = (24.7453, 59.4372)
PIRITA = (24.8350, 59.4700)


def _city_with_locations(store):
    store.create_entities(CITY, [
        vehicle(1, location=point(*TOWN_HALL)),
        vehicle(2, location=point(TOWN_HALL[0] + 0.01, TOWN_HALL[1])),  # ~570 m east
        vehicle(3, location=point(*PIRITA)),
        vehicle(4)])  # no location


def test_query_near_a_point(store):
    _city_with_locations(store)
    near = query(store, geo={"georel": "near;maxDistance==1000", "geometry": "Point",
                             "coordinates": list(TOWN_HALL)})
    assert ids_of(near) == ["urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-002"]
    far = query(store, geo={"georel": "near;minDistance==1000", "geometry": "Point",
                            "coordinates": list(TOWN_HALL)})
    assert ids_of(far) == ["urn:ngsi-ld:Vehicle:bus-003"]


def test_query_within_a_polygon(store):
    _city_with_locations(store)
    old_town = [[[24.73, 59.43], [24.76, 59.43], [24.76, 59.445], [24.73, 59.445],
                 [24.73, 59.43]]]
    within = query(store, geo={"georel": "within", "geometry": "Polygon",
                               "coordinates": old_town})
    assert ids_of(within) == ["urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-002"]


def test_scan_bbox_prefilter_uses_the_location(store):
    _city_with_locations(store)
    box = (24.70, 59.40, 24.80, 59.45)
    found = [r.id for r in store.scan(CITY, bbox=box)]
    assert found == ["urn:ngsi-ld:Vehicle:bus-001", "urn:ngsi-ld:Vehicle:bus-002"]
    store.append_attributes(CITY, "urn:ngsi-ld:Vehicle:bus-001",
                            {"location": point(*PIRITA)})  # the bus moved away
    assert [r.id for r in store.scan(CITY, bbox=box)] == ["urn:ngsi-ld:Vehicle:bus-002"]
    assert [r.id for r in store.scan(CITY, bbox=box, types=["Device"])] == []


# ------------------------------------------------------------------ history
def test_history_rows_carry_observed_at_or_the_write_time(store):
    observed = iso(T0)
    before = to_micros(now_utc())
    store.create_entity(CITY, vehicle(1, heading=prop(90, observedAt=observed)))
    after = to_micros(now_utc())
    rows = {r.attribute: r for r in history_of(store, "urn:ngsi-ld:Vehicle:bus-001")}
    assert sorted(rows) == ["heading", "speed"]
    heading, speed = rows["heading"], rows["speed"]
    assert heading.observed_us == to_micros(T0)
    assert heading.instance == prop(90, observedAt=observed)
    assert heading.number == 90.0 and heading.dataset_id == "@none"
    assert heading.entity_type == "Vehicle"
    assert before <= speed.observed_us <= after  # no observedAt: the time of the write
    assert speed.instance["observedAt"].endswith("Z")
    assert speed.instance["value"] == 30.0 and speed.instance["unitCode"] == "KMH"


def test_history_keeps_non_numeric_values_and_dataset_ids(store):
    gps = "urn:ngsi-ld:Dataset:gps"
    store.create_entity(CITY, vehicle(1, speed=None) | {
        "speed": [prop(30.0, observedAt=iso(T0)), prop(31.0, datasetId=gps,
                                                        observedAt=iso(T0))],
        "status": prop("inService", observedAt=iso(T0))})
    rows = history_of(store, "urn:ngsi-ld:Vehicle:bus-001")
    assert [(r.attribute, r.dataset_id, r.number) for r in rows] == [
        ("speed", "@none", 30.0), ("speed", gps, 31.0), ("status", "@none", None)]


def test_the_same_observation_twice_is_stored_once(store):
    reading = {"id": "urn:ngsi-ld:WaterObserved:w1", "type": "WaterObserved",
               "level": prop(1.25, observedAt=iso(T0))}
    store.upsert_entities(CITY, [reading])
    store.upsert_entities(CITY, [reading])  # the broker redelivered it
    store.upsert_entities(CITY, [reading], replace=False)
    rows = history_of(store, "urn:ngsi-ld:WaterObserved:w1")
    assert [(r.observed_us, r.number) for r in rows] == [(to_micros(T0), 1.25)]


def _hour_of_levels(store, entity_id="urn:ngsi-ld:WaterObserved:w1"):
    """60 readings, one a minute from T0; reading k has level k / 10."""
    store.create_entity(CITY, {"id": entity_id, "type": "WaterObserved",
                               "level": prop(0.0, observedAt=iso(T0))})
    for k in range(1, 60):
        store.update_attributes(CITY, entity_id, {
            "level": prop(k / 10, observedAt=iso(T0 + timedelta(minutes=k)))})


def _levels(result, entity_id="urn:ngsi-ld:WaterObserved:w1"):
    [temporal] = [t for t in result if t["id"] == entity_id]
    return [round(i["value"] * 10) for i in temporal.get("level", [])]


def test_temporal_query_time_relations_and_last_n(store):
    _hour_of_levels(store)
    everything = store.temporal_query(CITY, TemporalQuery(
        entity=EntityQuery(types=["WaterObserved"])))
    assert _levels(everything) == list(range(60))
    before = store.temporal_query(CITY, TemporalQuery(
        timerel="before", time_at=T0 + timedelta(minutes=10)))
    assert _levels(before) == list(range(10))
    after = store.temporal_query(CITY, TemporalQuery(
        timerel="after", time_at=T0 + timedelta(minutes=55)))
    assert _levels(after) == [55, 56, 57, 58, 59]
    between = store.temporal_query(CITY, TemporalQuery(
        timerel="between", time_at=T0 + timedelta(minutes=20),
        end_time_at=T0 + timedelta(minutes=25)))
    assert _levels(between) == [20, 21, 22, 23, 24]
    last = store.temporal_query(CITY, TemporalQuery(last_n=3))
    assert _levels(last) == [57, 58, 59]
    last_between = store.temporal_query(CITY, TemporalQuery(
        timerel="between", time_at=T0 + timedelta(minutes=20),
        end_time_at=T0 + timedelta(minutes=30), last_n=4))
    assert _levels(last_between) == [26, 27, 28, 29]
    times = [i["observedAt"] for i in last_between[0]["level"]]
    assert times == [iso(T0 + timedelta(minutes=m)) for m in (26, 27, 28, 29)]


def test_temporal_query_filters_attributes_and_last_n_per_dataset(store):
    gps = "urn:ngsi-ld:Dataset:gps"
    entity_id = "urn:ngsi-ld:Vehicle:bus-001"
    store.create_entity(CITY, vehicle(1, speed=None) | {
        "speed": [prop(0.0, observedAt=iso(T0)), prop(100.0, datasetId=gps,
                                                       observedAt=iso(T0))],
        "heading": prop(0, observedAt=iso(T0))})
    for k in range(1, 5):
        moment = iso(T0 + timedelta(minutes=k))
        store.update_attributes(CITY, entity_id, {
            "speed": [prop(float(k), observedAt=moment),
                      prop(100.0 + k, datasetId=gps, observedAt=moment)],
            "heading": prop(k * 10, observedAt=moment)})
    rows = store.history(CITY, entity_id, ["speed"], None, None, 2)
    assert [(r.dataset_id, r.number) for r in rows] == [
        ("@none", 3.0), ("@none", 4.0), (gps, 103.0), (gps, 104.0)]
    [temporal] = store.temporal_query(CITY, TemporalQuery(
        entity=EntityQuery(ids=[entity_id]), attrs=["heading"], last_n=2))
    assert sorted(temporal) == ["heading", "id", "type"]
    assert [i["value"] for i in temporal["heading"]] == [30, 40]


def test_temporal_window_rejects_bad_relations(store):
    with pytest.raises(BadRequestData, match="timerel"):
        store.temporal_query(CITY, TemporalQuery(timerel="during", time_at=T0))
    with pytest.raises(BadRequestData, match="endTimeAt"):
        store.temporal_query(CITY, TemporalQuery(timerel="between", time_at=T0))


def test_delete_history_removes_rows_of_one_entity(store):
    _hour_of_levels(store)
    store.create_entity(CITY, vehicle(1))
    assert store.delete_history(CITY, "urn:ngsi-ld:WaterObserved:w1") == 60
    assert history_of(store, "urn:ngsi-ld:WaterObserved:w1") == []
    assert len(history_of(store, "urn:ngsi-ld:Vehicle:bus-001")) == 1
    assert store.delete_history(CITY, "urn:ngsi-ld:WaterObserved:w1") == 0


# ------------------------------------------------------------------ tenants
def test_tenants_are_isolated(store):
    store.create_entity(CITY, vehicle(1, heading=prop(90, observedAt=iso(T0))))
    store.put_document(CITY, "subscription", "sub-1", {"id": "sub-1"})
    entity_id = "urn:ngsi-ld:Vehicle:bus-001"
    with pytest.raises(ResourceNotFound):
        store.get_entity(OTHER_CITY, entity_id)
    assert ids_of(query(store, OTHER_CITY, types=["Vehicle"])) == []
    assert query(store, OTHER_CITY, count=True).count == 0
    assert store.history(OTHER_CITY, entity_id, None, None, None, None) == []
    assert store.temporal_query(OTHER_CITY, TemporalQuery()) == []
    assert store.get_document(OTHER_CITY, "subscription", "sub-1") is None
    assert store.list_documents(OTHER_CITY, "subscription") == []
    assert store.entity_types_summary(OTHER_CITY) == {}
    with pytest.raises(ResourceNotFound):
        store.append_attributes(OTHER_CITY, entity_id, {"speed": prop(1.0)})
    with pytest.raises(ResourceNotFound):
        store.delete_entity(OTHER_CITY, entity_id)
    assert store.delete_history(OTHER_CITY, entity_id) == 0
    assert not store.delete_document(OTHER_CITY, "subscription", "sub-1")

    # the same id in the other tenant is a different entity
    store.create_entity(OTHER_CITY, vehicle(1, 99.0))
    assert store.get_entity(CITY, entity_id)["speed"]["value"] == 30.0
    assert store.get_entity(OTHER_CITY, entity_id)["speed"]["value"] == 99.0
    assert len(history_of(store, entity_id)) == 2
    assert store.get_document(CITY, "subscription", "sub-1") == {"id": "sub-1"}
    assert store.tenants() == sorted([CITY, OTHER_CITY])


# ------------------------------------------------------------------ documents
def test_documents_crud(store):
    assert store.get_document(CITY, "apikey", "k1") is None
    store.put_document(CITY, "apikey", "k2", {"role": "viewer", "n": 2})
    store.put_document(CITY, "apikey", "k1", {"role": "admin", "n": 1})
    store.put_document(CITY, "subscription", "s1", {"q": "speed>5"})
    assert store.get_document(CITY, "apikey", "k2") == {"role": "viewer", "n": 2}
    assert [d["n"] for d in store.list_documents(CITY, "apikey")] == [2, 1]  # oldest first
    store.put_document(CITY, "apikey", "k2", {"role": "operator", "n": 2})  # stays first
    assert store.list_documents(CITY, "apikey") == [{"role": "operator", "n": 2},
                                                    {"role": "admin", "n": 1}]
    assert store.list_documents(CITY, "apikey", limit=1, offset=1) == [
        {"role": "admin", "n": 1}]
    assert store.delete_document(CITY, "apikey", "k2") is True
    assert store.delete_document(CITY, "apikey", "k2") is False
    assert store.list_documents(CITY, "apikey") == [{"role": "admin", "n": 1}]
    assert store.list_documents(CITY, "subscription") == [{"q": "speed>5"}]


# ------------------------------------------------------------------ events
def test_events_name_the_changed_attributes(store):
    seen = []
    store.events.subscribe(seen.append)
    entity_id = "urn:ngsi-ld:Vehicle:bus-001"
    store.create_entity(CITY, vehicle(1, heading=prop(90)))
    store.update_attributes(CITY, entity_id, {"speed": prop(5.0), "colour": prop("red")})
    store.update_attributes(CITY, entity_id, {"colour": prop("red")})  # nothing written
    store.append_attributes(CITY, entity_id, {"heading": prop(180)})
    store.delete_attribute(CITY, entity_id, "heading")
    store.delete_entity(CITY, entity_id)
    assert [(e.tenant, e.kind, e.entity_id, sorted(e.changed)) for e in seen] == [
        (CITY, "created", entity_id, ["heading", "speed"]),
        (CITY, "updated", entity_id, ["speed"]),
        (CITY, "updated", entity_id, ["heading"]),
        (CITY, "updated", entity_id, ["heading"]),
        (CITY, "deleted", entity_id, ["speed"]),
    ]
    assert seen[1].entity["speed"]["value"] == 5.0
    assert "heading" not in seen[3].entity
    assert seen[-1].entity is None and seen[-1].entity_type == "Vehicle"


def test_batch_events_only_for_successes(store):
    seen = []
    store.events.subscribe(seen.append)
    store.create_entity(CITY, vehicle(1))
    seen.clear()
    store.create_entities(CITY, [vehicle(1), vehicle(2)])
    assert [(e.kind, e.entity_id) for e in seen] == [("created", "urn:ngsi-ld:Vehicle:bus-002")]


# ------------------------------------------------------------------ discovery
def test_entity_types_summary(store):
    store.create_entities(CITY, [
        vehicle(1, location=point(*TOWN_HALL)), vehicle(2),
        {"id": "urn:ngsi-ld:Sensor:s1", "type": ["Device", "WaterObserved"],
         "level": prop(1.2), "controlledBy": {"type": "Relationship",
                                              "object": "urn:ngsi-ld:Org:city"}}])
    summary = store.entity_types_summary(CITY)
    assert sorted(summary) == ["Device", "Vehicle", "WaterObserved"]
    assert summary["Vehicle"]["count"] == 2
    assert summary["Vehicle"]["attributes"] == {"speed": {"Property"},
                                                "location": {"GeoProperty"}}
    assert summary["Device"]["count"] == summary["WaterObserved"]["count"] == 1
    assert summary["Device"]["attributes"] == {"level": {"Property"},
                                               "controlledBy": {"Relationship"}}


# ------------------------------------------------------------------ concurrency
def test_concurrent_read_modify_write_serialises(store):
    """Two workers each add 1 to a counter 25 times: no increment is lost."""
    from cityos.core.store.base import StoredEntity

    store.create_entity(CITY, {"id": "urn:x:counter", "type": "Counter", "n": prop(0)})
    start = threading.Barrier(2)
    failures = []

    def worker():
        try:
            start.wait()
            for _ in range(25):
                with store.transaction(CITY) as tx:
                    record = tx.read(["urn:x:counter"])["urn:x:counter"]
                    entity = dict(record.entity, n=prop(record.entity["n"]["value"] + 1))
                    tx.put(StoredEntity(entity, record.created_us, record.modified_us + 1),
                           created=False)
        except Exception as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert store.get_entity(CITY, "urn:x:counter")["n"]["value"] == 50


def test_concurrent_creation_of_one_id_succeeds_once(store):
    start = threading.Barrier(4)
    outcomes = []

    def worker(speed):
        start.wait()
        result = store.create_entities(CITY, [vehicle(1, speed)])
        outcomes.append((bool(result.success),
                         [e["error"]["status"] for e in result.errors]))

    threads = [threading.Thread(target=worker, args=(float(n),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [(False, [409])] * 3 + [(True, [])]
    assert query(store, count=True).count == 1


# ------------------------------------------------------------------ PostgreSQL specifics
@pytest.mark.postgres
def test_open_store_by_url_gives_the_postgis_backend(postgres_url):
    from cityos.core.store import open_store

    opened = open_store(postgres_url)
    try:
        assert opened.backend == "postgresql"
    finally:
        opened.close()


@pytest.mark.postgres
def test_postgres_schema_has_the_spatial_type_and_time_indexes(postgres_url):
    import psycopg

    from cityos.core.store.postgres import PostgresStore

    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        indexes = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    assert "USING gist (location)" in indexes["entities_location"]
    assert "USING gin (types)" in indexes["entities_types"]
    assert "USING brin (observed_us)" in indexes["history_observed_brin"]
    assert indexes["history_series_time"].startswith("CREATE UNIQUE INDEX")
    assert "(tenant, entity_id, attribute, dataset_id, observed_us)" in \
        indexes["history_series_time"]


@pytest.mark.postgres
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_postgres_location_column_follows_the_geoproperty(store, postgres_url):
    import psycopg

    gps = "urn:ngsi-ld:Dataset:gps"
    store.create_entities(CITY, [
        vehicle(1, location=point(*TOWN_HALL)),
        vehicle(2, location=[point(*TOWN_HALL), dict(point(*PIRITA), datasetId=gps)]),
        vehicle(3)])
    with psycopg.connect(postgres_url) as conn:
        shapes = dict(conn.execute(
            "SELECT id, ST_AsText(location) FROM entities WHERE tenant = %s", (CITY,)))
    assert shapes == {
        "urn:ngsi-ld:Vehicle:bus-001": "POINT(24.7453 59.4372)",
        "urn:ngsi-ld:Vehicle:bus-002":
            "GEOMETRYCOLLECTION(POINT(24.7453 59.4372),POINT(24.835 59.47))",
        "urn:ngsi-ld:Vehicle:bus-003": None}
    # either instance of a multi-instance location passes the prefilter
    pirita_box = (24.83, 59.46, 24.84, 59.48)
    assert [r.id for r in store.scan(CITY, bbox=pirita_box)] == [
        "urn:ngsi-ld:Vehicle:bus-002"]


@pytest.mark.postgres
def test_opening_several_postgres_stores_on_one_new_database_at_once(postgres_url):
    """Several API workers start together on a new database: all of them open."""
    import psycopg

    from cityos.core.store import open_store

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA fresh")
    url = postgres_url + "?options=-csearch_path%3Dfresh,public"
    start = threading.Barrier(3)
    opened, failures = [], []

    def worker():
        start.wait()
        try:
            opened.append(open_store(url))
        except Exception as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in opened:
        each.close()
    try:
        assert failures == [] and len(opened) == 3
        with psycopg.connect(url) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'fresh'")}
        assert tables == {"entities", "history", "documents"}
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA fresh CASCADE")


@pytest.mark.postgres
def test_unreachable_postgres_is_a_clear_error():
    from cityos.core.store.postgres import PostgresStore

    with pytest.raises(RuntimeError, match="127.0.0.1:1/nowhere.*cannot connect"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere")
