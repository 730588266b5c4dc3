"""The subsidence API in the real app: points limited to the caller's areas, series with
the model, assets with risk, profile, levelling, metering, roles."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cityos.apps.subsidence.customers import publish_product, refresh_customers, set_area
from cityos.config import Settings
from cityos.core.store import open_store
from cityos.core.tenancy import create_key
from cityos.server import create_app
from tests.apps.subsidence.test_subsidence_customers import building, polygon
from tests.apps.subsidence.test_subsidence_levelling import (
    DAYS,
    START,
    make_store,
    metric_to_lonlat,
)


@pytest.fixture
def city(tmp_path):
    xy = [(50, 50), (70, 50), (1050, 1050), (1070, 1050)]
    lon, lat = metric_to_lonlat([p[0] for p in xy], [p[1] for p in xy])
    velocity = np.array([-15.0, -15.0, -3.0, -3.0])
    disp = velocity[:, None] * DAYS[None, :] / 365.25 + 2.0 * np.sin(
        2 * np.pi * DAYS / 365.25)[None, :]
    points = make_store(tmp_path / "points", lon, lat, disp, fit={
        "velocity_mm_yr": velocity, "acceleration_mm_yr2": np.zeros(4),
        "trend_change": np.zeros(4, bool)})
    url = f"sqlite:///{tmp_path / 'city.db'}"
    store = open_store(url)
    publish_product(store, points.directory)
    set_area(store, "railway", "rail-aoi", "Rail", polygon(0, 0, 200))
    set_area(store, "insurer", "ins-aoi", "Insurer", polygon(1000, 1000, 200))
    line_lon, line_lat = metric_to_lonlat([0.0, 200.0], [60.0, 60.0])
    store.upsert_entities("railway", [building("depot", 40, 40, 40), {
        "id": "urn:ngsi-ld:LinearAsset:line-1", "type": "LinearAsset",
        "location": {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [
            [float(line_lon[0]), float(line_lat[0])], [float(line_lon[1]), float(line_lat[1])]]}}}])
    store.upsert_entities("insurer", [building("tower", 1040, 1040, 40)])
    refresh_customers(points, store)
    keys = {"rail": create_key(store, "railway", "operator")[0],
            "rail-viewer": create_key(store, "railway", "viewer")[0],
            "insurer": create_key(store, "insurer", "viewer")[0],
            "platform": create_key(store, "*", "admin")[0]}
    app = create_app(Settings(database_url=url), store)
    with TestClient(app) as client:
        yield {"client": client, "keys": keys, "ids": np.asarray(points.ids),
               "lon": lon, "lat": lat}


def call(city, method, path, key="rail", tenant=None, headers=None, **kwargs):
    headers = {"Authorization": f"Bearer {city['keys'][key]}", **(headers or {})}
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return city["client"].request(method, f"/apps/subsidence{path}", headers=headers, **kwargs)


def test_each_customer_sees_only_the_points_of_its_areas(city):
    whole = "100,-10,110,10"
    rail = call(city, "GET", f"/points?bbox={whole}").json()
    insurer = call(city, "GET", f"/points?bbox={whole}", key="insurer").json()
    assert sorted(p["id"] for p in rail["points"]) == ["0", "1"]
    assert sorted(p["id"] for p in insurer["points"]) == ["2", "3"]
    assert rail["points"][0]["velocity_mm_yr"] == pytest.approx(-15.0)
    # the insurer's point does not exist for the railway, even by id
    assert call(city, "GET", "/points/2/series").status_code == 404
    assert call(city, "GET", "/points/2/series", key="insurer").status_code == 200
    # nor do the insurer's buildings
    assert [b["id"] for b in call(city, "GET", "/buildings").json()] == [
        "urn:ngsi-ld:Building:depot"]
    # a customer key cannot read another tenant
    assert call(city, "GET", "/points", key="insurer", tenant="railway").status_code == 403


def test_a_series_comes_with_the_fitted_model(city):
    body = call(city, "GET", "/points/0/series").json()
    assert body["dates"][0] == str(START)
    series = np.array(body["displacement_mm"])
    model = np.array(body["model_mm"])
    # the series is exactly linear + annual: the model reproduces it
    assert np.max(np.abs(series - model)) < 1e-3
    assert body["fitted"]["velocity_mm_yr"] == pytest.approx(-15.0)


def test_assets_profile_levelling_and_usage(city):
    (depot,) = call(city, "GET", "/buildings").json()
    assert depot["riskClass"] == "high" and depot["subsidenceRate"] == pytest.approx(-15.0)
    (line,) = call(city, "GET", "/assets").json()
    profile = call(city, "GET", "/assets/line-1/profile?buffer_m=30&bin_m=100").json()
    assert profile["points"] == 2 and profile["count"] == [2, 0]  # x = 50 and 70 m
    csv = "id,lon,lat,date,displacement_mm\n" + "\n".join(
        f"B,{city['lon'][0]:.7f},{city['lat'][0]:.7f},{START + np.timedelta64(int(d), 'D')},"
        f"{-15.0 * d / 365.25 + 2.0 * np.sin(2 * np.pi * d / 365.25):.4f}" for d in (0, 120, 240))
    assert call(city, "POST", "/levelling", key="rail-viewer", content=csv).status_code == 403
    posted = call(city, "POST", "/levelling?radius_m=10", content=csv,
                  headers={"Content-Type": "text/csv"})
    assert posted.status_code == 200, posted.text
    assert posted.json()["overall"]["rmse_mm"] == pytest.approx(0.0, abs=1e-3)
    assert call(city, "GET", "/levelling").json()["overall"]["n"] == 2
    bad = call(city, "POST", "/levelling", content="id,lon\n")
    assert bad.status_code == 400 and "levelling.csv:1" in bad.json()["detail"]
    usage = {u["endpoint"]: u["count"] for u in call(city, "GET", "/usage").json()}
    assert usage["buildings"] == 1 and usage["assets"] == 1 and usage["profile"] == 1
    assert usage["levelling"] == 1 and usage["levelling-compare"] == 2
    assert call(city, "GET", "/usage?all=true").status_code == 403
    everyone = call(city, "GET", "/usage?all=true", key="platform", tenant="railway").json()
    assert {u["tenant"] for u in everyone} == {"railway"}


def test_only_the_platform_sets_areas(city):
    body = {"id": "more", "polygon": polygon(0, 0, 5000)}
    assert call(city, "POST", "/areas", json=body).status_code == 403
    made = call(city, "POST", "/areas", key="platform", tenant="railway", json=body)
    assert made.status_code == 201
    assert len(call(city, "GET", "/areas").json()) == 2


def test_the_pages_are_served(city):
    for page in ("ground", "profile", "levelling"):
        response = city["client"].get(f"/apps/subsidence/pages/{page}")
        module = f"/apps/subsidence/static/{page}.js"
        assert response.status_code == 200 and f'src="{module}"' in response.text
        # the page's module signs in with the dashboard's session and calls the API
        script = city["client"].get(module)
        assert script.status_code == 200
        assert '"/web/static/js/sign-in.js"' in script.text
        assert '"/web/static/js/app-page.js"' in script.text
