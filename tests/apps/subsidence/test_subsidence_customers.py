"""One product, many customers: areas of interest, asset summaries, alerts, metering,
isolation."""

from __future__ import annotations

import numpy as np
import pytest

from cityos.apps.subsidence.customers import (
    allowed_rows,
    areas_of,
    meter,
    refresh_customers,
    set_area,
    usage,
)
from cityos.core.store.sqlite import SqliteStore
from tests.apps.subsidence.test_subsidence_levelling import DAYS, make_store, metric_to_lonlat


def polygon(x0, y0, side):
    xs, ys = metric_to_lonlat([x0, x0 + side, x0 + side, x0, x0],
                              [y0, y0, y0 + side, y0 + side, y0])
    ring = [[float(a), float(b)] for a, b in zip(xs, ys, strict=True)]
    return {"type": "Polygon", "coordinates": [ring]}


def building(local, x0, y0, side):
    return {"id": f"urn:ngsi-ld:Building:{local}", "type": "Building",
            "name": {"type": "Property", "value": local},
            "location": {"type": "GeoProperty", "value": polygon(x0, y0, side)}}


@pytest.fixture
def city(tmp_path):
    # railway's area: 0..200 m; insurer's area: 1000..1200 m. A sinking block in each.
    xy = [(50, 50), (70, 50), (1050, 1050), (1070, 1050), (600, 600)]
    lon, lat = metric_to_lonlat([p[0] for p in xy], [p[1] for p in xy])
    velocity = np.array([-15.0, -15.0, -3.0, -3.0, -40.0])
    disp = velocity[:, None] * DAYS[None, :] / 365.25
    points = make_store(tmp_path / "points", lon, lat, disp,
                        fit={"velocity_mm_yr": velocity,
                             "acceleration_mm_yr2": np.array([0.1, 0.1, -5.0, -5.0, 0.0]),
                             "trend_change": np.zeros(5, bool)})
    store = SqliteStore(str(tmp_path / "city.db"))
    set_area(store, "railway", "rail-aoi", "Rail corridor", polygon(0, 0, 200),
             rate_threshold_mm_yr=10.0, acceleration_threshold_mm_yr2=2.0)
    set_area(store, "insurer", "ins-aoi", "Insured district", polygon(1000, 1000, 200),
             rate_threshold_mm_yr=10.0, acceleration_threshold_mm_yr2=2.0)
    store.upsert_entities("railway", [building("depot", 40, 40, 40)])
    store.upsert_entities("insurer", [building("tower", 1040, 1040, 40),
                                      building("outside", 580, 580, 40)])
    yield points, store
    store.close()


def test_each_customer_sees_only_its_areas(city):
    points, store = city
    ids = np.asarray(points.ids)
    rail = ids[allowed_rows(points, areas_of(store, "railway"))]
    insurer = ids[allowed_rows(points, areas_of(store, "insurer"))]
    assert sorted(rail.tolist()) == [0, 1] and sorted(insurer.tolist()) == [2, 3]
    assert areas_of(store, "nobody") == []


def test_refresh_writes_summaries_and_raises_alerts_once(city):
    points, store = city
    results = refresh_customers(points, store)
    assert set(results) == {"railway", "insurer"}
    depot = store.get_entity("railway", "urn:ngsi-ld:Building:depot")
    assert depot["subsidenceRate"]["value"] == pytest.approx(-15.0)
    assert depot["riskClass"]["value"] == "high"
    assert depot["lastAcquisition"]["value"] == "2020-12-26"
    assert depot["subsidenceExceeded"]["value"] == ["rate"]
    (rail_alert,) = results["railway"].alerts
    alert = store.get_entity("railway", rail_alert)
    assert alert["type"] == "Alert" and "sinking at 15.0 mm/yr" in alert["description"]["value"]
    # the insurer's tower sinks slowly but accelerates: an acceleration alert only
    (ins_alert,) = results["insurer"].alerts
    assert "-acceleration-tower-" in ins_alert
    tower = store.get_entity("insurer", "urn:ngsi-ld:Building:tower")
    assert tower["rateClass"]["value"] == "slow"
    # a building outside the insurer's areas is not analysed (its -40 mm/yr point is not
    # the insurer's to see)
    outside = store.get_entity("insurer", "urn:ngsi-ld:Building:outside")
    assert "subsidenceRate" not in outside
    # the railway never receives the insurer's alerts, nor the other way round
    railway_alerts = [r.id for r in store.scan("railway", types=["Alert"])]
    assert railway_alerts == [rail_alert]
    # the same acquisition again: still over the thresholds, no new alert
    again = refresh_customers(points, store)
    assert again["railway"].alerts == [] and again["insurer"].alerts == []


def test_usage_is_metered_per_tenant_and_endpoint(city):
    _, store = city
    for _ in range(3):
        meter(store, "railway", "points")
    meter(store, "railway", "buildings")
    meter(store, "insurer", "points")
    rows = usage(store)
    assert [(r["tenant"], r["endpoint"], r["count"]) for r in rows] == [
        ("insurer", "points", 1), ("railway", "buildings", 1), ("railway", "points", 3)]
    assert [r["count"] for r in usage(store, "insurer")] == [1]
    assert sum(rows[-1]["months"].values()) == 3


def test_an_area_must_be_a_polygon(city):
    from cityos.core.errors import BadRequestData

    _, store = city
    with pytest.raises(BadRequestData, match="polygon"):
        set_area(store, "railway", "x", "x", {"type": "Point", "coordinates": [0, 0]})
    with pytest.raises(BadRequestData, match="rateThreshold"):
        set_area(store, "railway", "x", "x", polygon(0, 0, 10), rate_threshold_mm_yr=-1)
