"""Speed limits per road segment and road class, and speeding judged against them."""

from __future__ import annotations

import pytest
from pyproj import Geod

from cityos.apps.transit.driving import monitor_driving
from cityos.apps.transit.models import Ping
from cityos.apps.transit.speed_limits import (
    RoadLimitError,
    RoadSpeedLimits,
    segment_from_entity,
)
from cityos.core.store import open_store

GEOD = Geod(ellps="WGS84")
LAT0, LON0 = 3.1400, 101.6900
T0 = 1_767_600_000.0
KMH = 1 / 3.6


def east(metres: float) -> tuple[float, float]:
    """(lon, lat) ``metres`` east of the origin."""
    lon, lat, _ = GEOD.fwd(LON0, LAT0, 90.0, metres)
    return lon, lat


def road(entity_id, start_m, end_m, *, offset_m=0.0, **attributes) -> dict:
    """A keyValues RoadSegment along the east-west street, ``offset_m`` north of it."""
    coordinates = []
    for metres in (start_m, end_m):
        lon, lat = east(metres)
        lon, lat, _ = GEOD.fwd(lon, lat, 0.0, offset_m)
        coordinates.append([lon, lat])
    return {"id": entity_id, "type": "RoadSegment",
            "location": {"type": "LineString", "coordinates": coordinates}, **attributes}


SCHOOL_ZONE = road("urn:ngsi-ld:RoadSegment:school", 400, 800, maximumAllowedSpeed=30)
AVENUE = road("urn:ngsi-ld:RoadSegment:avenue", 0, 400, roadClass="primary")
SIDE_STREET = road("urn:ngsi-ld:RoadSegment:side", 800, 1200, category=["residential"])


def test_the_nearest_segment_gives_the_limit_and_the_default_applies_elsewhere():
    limits = RoadSpeedLimits.from_entities([SCHOOL_ZONE, AVENUE, SIDE_STREET], default_kmh=50)
    assert len(limits) == 3
    assert limits.limit_at(*reversed(east(600))) == 30.0  # maximumAllowedSpeed
    assert limits.limit_at(*reversed(east(200))) == 60.0  # class "primary"
    assert limits.limit_at(*reversed(east(1000))) == 30.0  # SDM category array
    lon, lat = east(600)
    lon, lat, _ = GEOD.fwd(lon, lat, 0.0, 20.0)  # 20 m off the centre line: still on it
    assert limits.limit_at(lat, lon) == 30.0
    lon, lat, _ = GEOD.fwd(lon, lat, 0.0, 40.0)  # 60 m off: another street
    assert limits.limit_at(lat, lon) == 50.0
    assert limits.segment_at(*reversed(east(600))).segment_id.endswith("school")


def test_a_parallel_service_road_loses_to_the_nearer_carriageway():
    service_road = road("urn:ngsi-ld:RoadSegment:service", 400, 800, offset_m=15.0,
                        roadClass="service")
    limits = RoadSpeedLimits.from_entities([SCHOOL_ZONE, service_road])
    lon, lat = east(600)
    service_lon, service_lat, _ = GEOD.fwd(lon, lat, 0.0, 12.0)  # 3 m from the service road
    assert limits.limit_at(lat, lon) == 30.0
    assert limits.limit_at(service_lat, service_lon) == 20.0


def test_segments_without_a_limit_or_known_class_are_left_out():
    unknown = road("urn:ngsi-ld:RoadSegment:x", 0, 100, roadClass="bridleway")
    assert segment_from_entity(unknown) is None
    assert len(RoadSpeedLimits.from_entities([unknown])) == 0
    assert RoadSpeedLimits([], default_kmh=None).limit_at(LAT0, LON0) is None


@pytest.mark.parametrize(("entity", "field"), [
    ({"id": "r1", "location": {"type": "Point", "coordinates": [LON0, LAT0]},
      "maximumAllowedSpeed": 30}, "location"),
    ({**SCHOOL_ZONE, "maximumAllowedSpeed": -30}, "maximumAllowedSpeed"),
    ({**SCHOOL_ZONE, "maximumAllowedSpeed": "fast"}, "maximumAllowedSpeed"),
    ({"id": "r2", "location": {"type": "LineString", "coordinates": [[LON0, LAT0]]},
      "maximumAllowedSpeed": 30}, "location"),
])
def test_a_bad_segment_names_the_entity_and_field(entity, field):
    with pytest.raises(RoadLimitError, match=f"{entity['id']}: {field}"):
        segment_from_entity(entity)


def test_normalized_entities_are_read_too():
    normalized = {"id": "urn:ngsi-ld:RoadSegment:n", "type": "RoadSegment",
                  "location": {"type": "GeoProperty", "value": SCHOOL_ZONE["location"]},
                  "maximumAllowedSpeed": {"type": "Property", "value": 40}}
    assert segment_from_entity(normalized).limit_kmh == 40.0


def drive_east(speed_kmh: float, metres: float, *, t0: float = T0) -> list[Ping]:
    """1 Hz pings of a bus driving east at a steady speed from the origin."""
    step = speed_kmh * KMH
    return [Ping("BUS1", t0 + k, *reversed(east(k * step)), speed_mps=step, bearing_deg=90.0,
                 driver_id="D1")
            for k in range(int(metres / step) + 1)]


def test_speeding_is_judged_on_the_school_zone_only():
    limits = RoadSpeedLimits.from_entities([SCHOOL_ZONE, AVENUE], default_kmh=50)
    pings = drive_east(45.0, 1200.0)  # 45 km/h all the way: fine on the avenue and after
    record = monitor_driving(pings, speed_limit_kmh=limits)
    speeding = [e for e in record.events if e.kind == "speeding"]
    assert len(speeding) == 1
    event = speeding[0]
    assert event.magnitude == pytest.approx(15.0, abs=0.01)  # 45 in a 30 zone
    assert "limit is 30 km/h" in event.detail
    # the zone is 400 m long: 32 s at 12.5 m/s, within a ping and the 25 m snapping reach
    assert event.end_t - event.t == pytest.approx(400 / (45 * KMH), abs=5.0)
    start_m = (event.t - T0) * 45 * KMH
    assert start_m == pytest.approx(400.0, abs=30.0)


def test_the_service_reads_the_tenants_road_segments(tmp_path):
    from cityos.apps.transit.service import DEFAULT_SPEED_LIMIT_KMH, TransitService

    store = open_store(f"sqlite:///{tmp_path / 'roads.db'}")
    store.create_entity("city", {"id": SCHOOL_ZONE["id"], "type": "RoadSegment",
                                 "location": {"type": "GeoProperty",
                                              "value": SCHOOL_ZONE["location"]},
                                 "maximumAllowedSpeed": {"type": "Property", "value": 30}})
    store.create_entity("city", {"id": "urn:ngsi-ld:RoadSegment:broken", "type": "RoadSegment",
                                 "location": {"type": "GeoProperty", "value": {
                                     "type": "Point", "coordinates": [LON0, LAT0]}},
                                 "maximumAllowedSpeed": {"type": "Property", "value": 30}})
    limits = TransitService(store).road_limits("city")
    assert len(limits) == 1  # the broken one is logged and left out
    assert limits.limit_at(*reversed(east(600))) == 30.0
    assert limits.limit_at(LAT0 + 0.01, LON0) == DEFAULT_SPEED_LIMIT_KMH
    assert len(TransitService(store).road_limits("another-city")) == 0


def test_a_zone_drawn_over_its_road_wins_with_the_lower_limit():
    whole_road = road("urn:ngsi-ld:RoadSegment:whole", 0, 1200, maximumAllowedSpeed=50)
    limits = RoadSpeedLimits.from_entities([whole_road, SCHOOL_ZONE])
    assert limits.limit_at(*reversed(east(600))) == 30.0
    assert limits.limit_at(*reversed(east(200))) == 50.0
    assert limits.limit_at(*reversed(east(1000))) == 50.0
    # the order of registration does not matter
    assert RoadSpeedLimits.from_entities([SCHOOL_ZONE, whole_road]).limit_at(
        *reversed(east(600))) == 30.0


def test_segments_of_different_lengths_index_together():
    bent = {**AVENUE, "id": "urn:ngsi-ld:RoadSegment:bent", "location": {
        "type": "LineString", "coordinates": [list(east(0)), list(east(100)), list(east(200))]}}
    limits = RoadSpeedLimits.from_entities([SCHOOL_ZONE, bent])
    assert limits.limit_at(*reversed(east(150))) == 60.0
