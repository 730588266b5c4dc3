"""The temporal API: history by time range, lastN, simplified and aggregated forms."""

from __future__ import annotations

import pytest
from ngsi_helpers import API, problem

TEMPORAL = f"{API}/temporal/entities"
GAUGE = "urn:ngsi-ld:WaterObserved:gauge-1"
# river level at 00:00, 00:20, 00:40, 01:10, 01:50 on 5 January 2026
READINGS = [("00:00", 1.0), ("00:20", 2.0), ("00:40", 3.0), ("01:10", 4.0), ("01:50", 5.0)]


def at(clock: str) -> str:
    return f"2026-01-05T{clock}:00.000000Z"


@pytest.fixture
def gauge(client):
    """A water gauge whose level history holds READINGS, posted out of order."""
    instances = [{"type": "Property", "value": value, "unitCode": "MTR",
                  "observedAt": at(clock)} for clock, value in reversed(READINGS)]
    created = client.post(TEMPORAL, json={"id": GAUGE, "type": "WaterObserved",
                                          "level": instances})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{TEMPORAL}/{GAUGE}"
    return client


def levels(response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    body = response.json()
    item = body[0] if isinstance(body, list) else body
    return [(i["observedAt"][11:16], i["value"]) for i in item.get("level", [])]


def test_create_records_history_and_leaves_the_latest_as_current(gauge):
    assert levels(gauge.get(f"{TEMPORAL}/{GAUGE}")) == READINGS
    current = gauge.get(f"{API}/entities/{GAUGE}").json()
    assert current["level"] == {"type": "Property", "value": 5.0, "unitCode": "MTR",
                                "observedAt": at("01:50")}


def test_posting_again_appends_and_answers_204(gauge):
    again = gauge.post(TEMPORAL, json={"id": GAUGE, "type": "WaterObserved", "level": {
        "type": "Property", "value": 6.0, "observedAt": at("02:30")}})
    assert again.status_code == 204
    assert levels(gauge.get(f"{TEMPORAL}/{GAUGE}"))[-1] == ("02:30", 6.0)


def test_time_relations(gauge):
    def window(**params):
        return levels(gauge.get(f"{TEMPORAL}/{GAUGE}", params=params))

    assert window(timerel="before", timeAt=at("00:40")) == READINGS[:2]
    assert window(timerel="after", timeAt=at("00:40")) == READINGS[2:]
    assert window(timerel="between", timeAt=at("00:20"), endTimeAt=at("01:10")) == \
        READINGS[1:3]
    assert window(lastN="2") == READINGS[3:]
    assert window(timerel="before", timeAt=at("01:00"), lastN="1") == READINGS[2:3]


def test_temporal_values(gauge):
    body = gauge.get(f"{TEMPORAL}/{GAUGE}", params={"options": "temporalValues"}).json()
    assert body == {"id": GAUGE, "type": "WaterObserved", "level": {
        "type": "Property", "values": [[value, at(clock)] for clock, value in READINGS]}}


def test_hourly_aggregation_aligned_to_time_at(gauge):
    body = gauge.get(f"{TEMPORAL}/{GAUGE}", params={
        "options": "aggregatedValues", "aggrMethods": "totalCount,sum,avg,min,max",
        "aggrPeriodDuration": "PT1H", "timerel": "between", "timeAt": at("00:00"),
        "endTimeAt": at("02:00")}).json()
    hour0, hour1 = (at("00:00"), at("01:00")), (at("01:00"), at("02:00"))
    assert body["level"] == {
        "type": "Property",
        "totalCount": [[3, *hour0], [2, *hour1]],
        "sum": [[6.0, *hour0], [9.0, *hour1]],
        "avg": [[2.0, *hour0], [4.5, *hour1]],
        "min": [[1.0, *hour0], [4.0, *hour1]],
        "max": [[3.0, *hour0], [5.0, *hour1]],
    }


def test_aggregation_buckets_start_at_time_at_else_at_the_first_instance(gauge):
    body = gauge.get(f"{TEMPORAL}/{GAUGE}", params={
        "options": "aggregatedValues", "aggrMethods": "avg",
        "aggrPeriodDuration": "PT30M", "timerel": "after", "timeAt": at("00:10")}).json()
    # after 00:10, in 30-minute buckets from 00:10: 00:20 | 00:40 | 01:10 | 01:50
    assert body["level"]["avg"] == [[2.0, at("00:10"), at("00:40")],
                                    [3.0, at("00:40"), at("01:10")],
                                    [4.0, at("01:10"), at("01:40")],
                                    [5.0, at("01:40"), at("02:10")]]
    first = gauge.get(f"{TEMPORAL}/{GAUGE}", params={
        "options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "PT50M",
        "lastN": "4"}).json()
    # the last 4 instances, in 50-minute buckets from 00:20: 00:20, 00:40 | 01:10, 01:50
    assert first["level"]["sum"] == [[5.0, at("00:20"), at("01:10")],
                                     [9.0, at("01:10"), at("02:00")]]
    whole = gauge.get(f"{TEMPORAL}/{GAUGE}", params={
        "options": "aggregatedValues", "aggrMethods": "max"}).json()
    assert whole["level"]["max"] == [[5.0, at("00:00"), at("01:50")]]


def test_query_many_entities(gauge):
    gauge.post(TEMPORAL, json={"id": "urn:ngsi-ld:WaterObserved:gauge-2",
                               "type": "WaterObserved",
                               "level": {"type": "Property", "value": 9.0,
                                         "observedAt": at("00:30")}})
    gauge.post(f"{API}/entities", json={"id": "urn:ngsi-ld:Building:b", "type": "Building"})
    listed = gauge.get(TEMPORAL, params={"type": "WaterObserved", "timerel": "before",
                                         "timeAt": at("00:35"), "count": "true"})
    assert listed.headers["NGSILD-Results-Count"] == "2"
    assert [(e["id"], len(e["level"])) for e in listed.json()] == [
        (GAUGE, 2), ("urn:ngsi-ld:WaterObserved:gauge-2", 1)]
    by_q = gauge.get(TEMPORAL, params={"q": "level>6", "attrs": "level"}).json()
    assert [e["id"] for e in by_q] == ["urn:ngsi-ld:WaterObserved:gauge-2"]
    problem(gauge.get(TEMPORAL), 400, "BadRequestData")


def test_history_of_updates_through_the_entity_api(client):
    client.post(f"{API}/entities", json={"id": GAUGE, "type": "WaterObserved", "level": {
        "type": "Property", "value": 1.0, "observedAt": at("00:00")}})
    for clock, value in READINGS[1:]:
        done = client.patch(f"{API}/entities/{GAUGE}/attrs", json={"level": {
            "type": "Property", "value": value, "observedAt": at(clock)}})
        assert done.status_code == 204
    assert [v for _, v in levels(client.get(f"{TEMPORAL}/{GAUGE}"))] == \
        [v for _, v in READINGS]


def test_append_attributes_to_a_temporal_entity(gauge):
    added = gauge.post(f"{TEMPORAL}/{GAUGE}/attrs", json={"flow": [
        {"type": "Property", "value": 12, "observedAt": at("00:05")},
        {"type": "Property", "value": 14, "observedAt": at("00:15")}]})
    assert added.status_code == 204
    body = gauge.get(f"{TEMPORAL}/{GAUGE}", params={"attrs": "flow",
                                                    "options": "temporalValues"}).json()
    assert body == {"id": GAUGE, "type": "WaterObserved", "flow": {
        "type": "Property", "values": [[12, at("00:05")], [14, at("00:15")]]}}
    problem(gauge.post(f"{TEMPORAL}/urn:x:none/attrs", json={"flow": {
        "type": "Property", "value": 1}}), 404, "ResourceNotFound")


def test_delete_history(gauge):
    assert gauge.delete(f"{TEMPORAL}/{GAUGE}").status_code == 204
    assert gauge.get(f"{TEMPORAL}/{GAUGE}").json() == {"id": GAUGE, "type": "WaterObserved"}
    assert gauge.get(f"{API}/entities/{GAUGE}").status_code == 200  # the entity stays
    problem(gauge.delete(f"{TEMPORAL}/urn:x:none"), 404, "ResourceNotFound")
    problem(gauge.get(f"{TEMPORAL}/urn:x:none"), 404, "ResourceNotFound")


@pytest.mark.parametrize(("params", "detail"), [
    ({"timerel": "before", "timeAt": "yesterday"},
     "timeAt: 'yesterday' is not an ISO 8601 date-time"),
    ({"timerel": "before"}, "timeAt is required with timerel"),
    ({"timeAt": at("00:00")}, "timerel is required with timeAt"),
    ({"timerel": "during", "timeAt": at("00:00")},
     "timerel: 'during' is not one of before, after, between"),
    ({"timerel": "between", "timeAt": at("01:00"), "endTimeAt": at("00:00")},
     "endTimeAt must be later than timeAt"),
    ({"lastN": "0"}, "lastN: 0 is less than 1"),
    ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1M"},
     "aggrPeriodDuration: 'P1M' uses years or months"),
    ({"options": "aggregatedValues", "aggrMethods": "mean"}, "aggrMethods: 'mean' is not"),
    ({"aggrMethods": "avg"}, "aggrMethods and aggrPeriodDuration need"),
    ({"timeproperty": "modifiedAt"}, "timeproperty: 'modifiedAt' is not supported"),
])
def test_temporal_parameter_errors(gauge, params, detail):
    body = problem(gauge.get(f"{TEMPORAL}/{GAUGE}", params=params), 400, "BadRequestData")
    assert body["detail"].startswith(detail), body["detail"]


def test_temporal_create_checks_every_instance_before_writing(client):
    body = problem(client.post(TEMPORAL, json={"id": GAUGE, "type": "WaterObserved", "level": [
        {"type": "Property", "value": 1.0, "observedAt": at("00:00")},
        {"type": "Property", "value": 2.0, "observedAt": "noon"}]}), 400, "BadRequestData")
    assert body["detail"] == "level.observedAt: 'noon' is not an ISO 8601 date-time"
    problem(client.get(f"{API}/entities/{GAUGE}"), 404, "ResourceNotFound")
