"""The ground-motion pages in a real browser: points coloured by velocity with a legend,
a point's series with its fitted model, the metro line's chainage profile and the
levelling comparison.

The module's server has the subsidence demo (:func:`build_subsidence_demo`) on a small
product (40 x 40 pixels, 60 epochs) written by the app's own demo function beside the
database, where the builder finds and reuses it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import TENANT, cityos, serve_cityos

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SIDE = 40
METRO = "urn:ngsi-ld:LinearAsset:subsidence-demo-metro-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory, front_end_libraries):
    """``cityos serve`` on a database holding the (small) subsidence demo."""
    from cityos.apps.subsidence.demo import build_subsidence_demo, demo_directory, demo_options
    from cityos.apps.subsidence.fit import fit_store
    from cityos.apps.subsidence.points import PointStore
    from cityos.apps.subsidence.products import read_mintpy
    from cityos.apps.subsidence.synthetic import write_demo_product
    from cityos.core.store.sqlite import SqliteStore

    workdir = tmp_path_factory.mktemp("e2e-subsidence")
    database = workdir / "e2e.db"
    store = SqliteStore(str(database))
    try:
        directory = demo_directory(store)
        demo = write_demo_product(directory / "product",
                                  **{**demo_options(), "points_side": SIDE, "n_buildings": 12})
        fit_store(PointStore.create(directory / "points", read_mintpy(demo.timeseries)))
        build_subsidence_demo(store, TENANT, datetime.now(UTC))
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}
    env["CITYOS_DATABASE_URL"] = f"sqlite:///{database}"
    keys = {role: cityos("keys", "create", "--tenant", TENANT, "--role", role, "--name",
                         f"e2e {role}", env=env).strip() for role in ("viewer", "operator")}
    with serve_cityos(workdir, env, keys) as server:
        yield server


def open_app_page(open_page, server, name: str, role: str = "viewer"):
    page = open_page(width=1400, height=1000)
    # signed in as the dashboard signs in (its session in sessionStorage): app pages
    # take no key from the URL
    page.goto(f"{server.url}/health")
    page.evaluate("([key, tenant]) => sessionStorage.setItem('cityos.session', "
                  "JSON.stringify({key, tenant}))", [server.keys[role], TENANT])
    page.goto(f"{server.url}/apps/subsidence/pages/{name}")
    page.wait_for_selector("body[data-loaded=true]", timeout=20000)
    return page


def test_the_ground_page_colours_points_by_velocity(open_page, server, screenshots):
    page = open_app_page(open_page, server, "ground")
    with server.client("viewer") as api:
        points = api.get("/apps/subsidence/points").json()["points"]
    # every point of the demo area (the area's corners are rounded to 1e-6 degrees, so a
    # few edge pixels may fall outside it)
    assert int(page.locator("#map").get_attribute("data-points")) == len(points)
    assert len(points) > 0.95 * SIDE ** 2
    # one canvas-drawn marker per point; the legend has the eight classes of the scale
    legend = page.locator("#legend span")
    assert legend.count() == 8
    assert legend.first.evaluate("e => getComputedStyle(e).backgroundColor") == \
        "rgb(103, 0, 31)"                                     # #67001f, sinking fastest
    assert "mm/yr" in page.locator("#legend").inner_text()
    velocities = [p["velocity_mm_yr"] for p in points]
    assert min(velocities) < -20 and max(velocities) > -2    # red bowls, pale stable ground
    page.screenshot(path=screenshots / "subsidence-ground.png")


def test_clicking_a_point_shows_its_series_and_model(open_page, server):
    page = open_app_page(open_page, server, "ground")
    with server.client("viewer") as api:
        points = api.get("/apps/subsidence/points").json()["points"]
        deepest = min(points, key=lambda p: p["velocity_mm_yr"])
        series = api.get(f"/apps/subsidence/points/{deepest['id']}/series").json()
    # click the deepest point's marker where Leaflet drew it (canvas hit test)
    x, y = page.evaluate("([lat, lon]) => window.cityosGround.pixelOf(lat, lon)",
                         [deepest["lat"], deepest["lon"]])
    page.locator("#map").click(position={"x": x, "y": y})
    page.wait_for_selector(f"body[data-series='{deepest['id']}']", timeout=10000)
    title = page.locator("#point-title").inner_text()
    # the vertical velocity, as the map's colours and the series
    assert series["component"] == "vertical"
    assert f"{series['fitted']['velocity_vertical_mm_yr']:.1f} mm/yr (vertical)" in title
    legend = page.locator("#chart .u-legend").inner_text()
    assert "displacement (mm)" in legend and "model (mm)" in legend
    assert len(series["model_mm"]) == len(series["displacement_mm"]) == 60
    assert page.locator("#chart canvas").count() == 1


def test_the_profile_page_shows_the_metro_chainage(open_page, server, screenshots):
    page = open_app_page(open_page, server, "profile")
    with server.client("viewer") as api:
        profile = api.get(f"/apps/subsidence/assets/{METRO}/profile").json()
    assert page.locator("#asset").input_value() == METRO
    assert int(page.locator("body").get_attribute("data-bins")) == len(profile["count"]) > 10
    assert page.locator("#rate canvas").count() == 1
    assert page.locator("#cumulative canvas").count() == 1
    assert "km" in page.locator("#status").inner_text()
    assert min(v for v in profile["rate_mm_yr"] if v is not None) < -10   # the trough
    page.screenshot(path=screenshots / "subsidence-profile.png")


def test_the_levelling_page_shows_the_comparison(open_page, server, screenshots):
    page = open_app_page(open_page, server, "levelling")
    with server.client("viewer") as api:
        latest = api.get("/apps/subsidence/levelling").json()
    o = latest["overall"]
    assert int(page.locator("#overall").get_attribute("data-n")) == o["n"] > 0
    row = page.locator("#overall tr").nth(1).inner_text()
    assert f"{o['mae_mm']:.2f}" in row and f"{o['rmse_mm']:.2f}" in row
    assert page.locator("#benchmarks tr").count() == len(latest["benchmarks"]) + 1
    assert page.locator("#scatter canvas").count() == 1
    page.screenshot(path=screenshots / "subsidence-levelling.png")
