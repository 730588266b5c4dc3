"""The operations-centre dashboard in a real browser (Debian's Chromium, headless).

One ``cityos serve`` per module with the demo city plus the entities seeded here;
each test opens its own signed-in page. The ``open_page`` fixture fails a test on
any request to a host other than the server and on any console error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cityos.core.alerts import alert_entity
from cityos.core.store import open_store
from cityos.demo import CITY_CENTRE, build_demo_city, demo_anchor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VEHICLE = "urn:ngsi-ld:Vehicle:e2e:tram-1"
SENSOR_HISTORY = "urn:ngsi-ld:WaterObserved:e2e:s1"
SENSOR_LIVE = "urn:ngsi-ld:WaterObserved:e2e:s2"
ZONE = "urn:ngsi-ld:FloodZone:e2e:zone-1"
OTHER_TENANT_VEHICLE = "urn:ngsi-ld:Vehicle:e2e:other-1"
#: (minutes before now, depth in cm) of the history sensor: 7 in the last day, 3 in
#: the last hour.
HISTORY = [(23 * 60, 3.0), (20 * 60, 4.0), (5 * 60, 8.0), (3 * 60, 12.0), (50, 18.0),
           (30, 24.0), (10, 27.0)]
LOW_DEPTH_RGB, HIGH_DEPTH_RGB = "rgb(72, 202, 228)", "rgb(230, 57, 70)"  # layer colours


def _point(d_lon: float, d_lat: float) -> dict:
    return {"type": "Point", "coordinates": [CITY_CENTRE[0] + d_lon, CITY_CENTRE[1] + d_lat]}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def city(server, tmp_path_factory):
    """Seed the test's own entities through the NGSI-LD API; return their ids.

    Readings are stamped on the server's (pinned) clock, which is the clock its history
    windows and audit trail read."""
    now = server.now()
    with server.client("operator") as api:
        for entity in (
            {"id": VEHICLE, "type": "Vehicle", "name": {"type": "Property", "value": "Tram 1"},
             "location": {"type": "GeoProperty", "value": _point(0.004, 0.006)}},
            {"id": SENSOR_HISTORY, "type": "WaterObserved",
             "name": {"type": "Property", "value": "E2E sensor 1"},
             "location": {"type": "GeoProperty", "value": _point(-0.006, -0.004)}},
            {"id": SENSOR_LIVE, "type": "WaterObserved",
             "name": {"type": "Property", "value": "E2E sensor 2"},
             "depth": {"type": "Property", "value": 5.0, "unitCode": "CMT"},
             "location": {"type": "GeoProperty", "value": _point(-0.010, 0.002)}},
            {"id": ZONE, "type": "FloodZone", "depth": {"type": "Property", "value": 35.0},
             "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[
                 [CITY_CENTRE[0] - 0.004, CITY_CENTRE[1] - 0.008],
                 [CITY_CENTRE[0] + 0.002, CITY_CENTRE[1] - 0.008],
                 [CITY_CENTRE[0] + 0.002, CITY_CENTRE[1] - 0.005],
                 [CITY_CENTRE[0] - 0.004, CITY_CENTRE[1] - 0.008]]]}}},
        ):
            api.post("/ngsi-ld/v1/entities", json=entity).raise_for_status()
        readings = [{"type": "Property", "value": depth, "unitCode": "CMT",
                     "observedAt": _iso(now - timedelta(minutes=minutes))}
                    for minutes, depth in HISTORY]
        api.post(f"/ngsi-ld/v1/temporal/entities/{SENSOR_HISTORY}/attrs",
                 json={"depth": readings}).raise_for_status()
    with server.client("other", tenant="other") as api:
        api.post("/ngsi-ld/v1/entities", json={
            "id": OTHER_TENANT_VEHICLE, "type": "Vehicle",
            "location": {"type": "GeoProperty", "value": _point(0.001, 0.001)}},
        ).raise_for_status()
    # every app's demo entities with a location are on the map: build the demo city
    # once more in a store of its own and take those (ids do not depend on the time)
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('demo-city') / 'demo.db'}")
    try:
        build_demo_city(store, "default", demo_anchor(now))
        demo_ids = [r.id for r in store.scan("default") if "location" in r.entity]
    finally:
        store.close()
    return {"demo": demo_ids, "seeded": [VEHICLE, SENSOR_HISTORY, SENSOR_LIVE, ZONE]}


def marker(page, entity_id: str):
    return page.locator(f'[data-entity-id="{entity_id}"]')


def test_map_shows_the_seeded_entities_of_the_tenant_only(open_page, sign_in, server, city,
                                                           screenshots):
    page = open_page()
    sign_in(page, "viewer")
    with server.client("viewer") as api:
        alerts = [a["id"] for a in api.get("/ngsi-ld/v1/entities", params={
            "type": "Alert", "limit": 1000}).json() if "location" in a]
    on_map = set(page.evaluate("[...window.cityos.map.items.keys()]"))
    assert on_map == set(city["demo"]) | set(city["seeded"]) | set(alerts)
    assert OTHER_TENANT_VEHICLE not in on_map
    for point in (VEHICLE, SENSOR_HISTORY, SENSOR_LIVE, "urn:ngsi-ld:GtfsStop:demo-city:S001"):
        assert marker(page, point).count() == 1
    assert page.locator('[data-layer="Vehicle"] .layer-count').inner_text() == "2"
    assert page.locator('[data-layer="FloodZone"] .layer-title').inner_text() == "FloodZone"
    assert page.locator('[data-layer="WaterObserved"] .legend li').count() == 4
    page.screenshot(path=screenshots / "dashboard-map.png")


def test_an_api_update_moves_and_recolours_within_3_s(open_page, sign_in, server, city):
    page = open_page()
    sign_in(page, "viewer")
    before = marker(page, VEHICLE).bounding_box()
    assert marker(page, SENSOR_LIVE).evaluate("e => getComputedStyle(e).backgroundColor") \
        == LOW_DEPTH_RGB
    with server.client("operator") as api:
        api.patch(f"/ngsi-ld/v1/entities/{VEHICLE}/attrs", json={
            "location": {"type": "GeoProperty", "value": _point(0.009, 0.006)}},
        ).raise_for_status()
        page.wait_for_function(
            """([id, x]) => {
                const el = document.querySelector(`[data-entity-id="${id}"]`);
                return el && el.getBoundingClientRect().x > x + 20;
            }""", arg=[VEHICLE, before["x"]], timeout=3000)
        api.patch(f"/ngsi-ld/v1/entities/{SENSOR_LIVE}/attrs", json={
            "depth": {"type": "Property", "value": 45.0, "unitCode": "CMT"}},
        ).raise_for_status()
        page.wait_for_function(
            """([id, rgb]) => {
                const el = document.querySelector(`[data-entity-id="${id}"]`);
                return el && getComputedStyle(el).backgroundColor === rgb;
            }""", arg=[SENSOR_LIVE, HIGH_DEPTH_RGB], timeout=3000)


def test_clicking_an_entity_opens_its_panel_with_a_history_chart(open_page, sign_in, city,
                                                                 screenshots):
    page = open_page()
    sign_in(page, "viewer")
    marker(page, SENSOR_HISTORY).click()
    page.wait_for_selector("#panel:not([hidden])")
    page.wait_for_selector("#chart canvas")
    assert page.locator("#panel-title").inner_text() == "E2E sensor 1"
    # the flood watch adds depthQuality and depthUsable beside depth: take depth's own row
    depth_row = page.locator("#panel-attrs tr").filter(
        has=page.get_by_text("depth", exact=True))
    assert "27" in depth_row.inner_text() and "cm" in depth_row.inner_text()
    page.wait_for_selector('#chart[data-points="7"]', timeout=5000)
    page.screenshot(path=screenshots / "dashboard-panel.png")
    page.click('[data-range="1h"]')
    page.wait_for_selector('#chart[data-points="3"]', timeout=5000)
    assert page.locator('[data-range="1h"]').get_attribute("aria-pressed") == "true"


def test_alerts_appear_live_and_only_an_operator_can_handle_them(open_page, sign_in, server,
                                                                 city, screenshots):
    viewer = open_page()
    sign_in(viewer, "viewer")
    operator = open_page()
    sign_in(operator, "operator", "Ops Aiko")
    alert_id = "urn:ngsi-ld:Alert:e2e:flood-1"
    with server.client("operator") as api:
        api.post("/ngsi-ld/v1/entities", json=alert_entity(
            alert_id, category="weather", sub_category="flood", severity="critical",
            description="E2E: water over the road at sensor 2",
            location=_point(-0.010, 0.002), alert_source=SENSOR_LIVE,
            # a minute before the server's instant: server.now() runs a second or so
            # ahead of the server, and the trail is ordered by the instants it records
            issued_at=server.now() - timedelta(minutes=1))).raise_for_status()
    item = f'.alert-item[data-alert-id="{alert_id}"]'
    viewer.wait_for_selector(item, timeout=3000)
    viewer.wait_for_selector("#critical-banner:not([hidden])", timeout=3000)
    assert "water over the road" in viewer.locator(item).inner_text()
    assert viewer.locator(f"{item} [data-act=acknowledge]").count() == 0
    with server.client("viewer") as api:
        refused = api.post(f"/web/api/alerts/{alert_id}/acknowledge", json={"comment": "no"})
    assert refused.status_code == 403

    operator.wait_for_selector(item, timeout=3000)
    operator.click(f"{item} [data-act=acknowledge]")
    operator.fill(f"{item} textarea", "Crew dispatched")
    operator.click(f"{item} form [type=submit]")
    operator.wait_for_selector(f'{item}[data-status="acknowledged"]', timeout=3000)
    viewer.wait_for_selector(f'{item}[data-status="acknowledged"]', timeout=3000)
    operator.screenshot(path=screenshots / "dashboard-alert.png")
    operator.click(f"{item} [data-act=resolve]")
    operator.fill(f"{item} textarea", "Road reopened")
    operator.click(f"{item} form [type=submit]")
    operator.wait_for_selector(item, state="detached", timeout=3000)  # resolved: hidden

    with server.client("viewer") as api:
        trail = api.get(f"/web/api/alerts/{alert_id}/audit").json()
        current = api.get(f"/ngsi-ld/v1/entities/{alert_id}", params={
            "options": "keyValues"}).json()
    assert [(s["status"], s["actor"], s["comment"]) for s in trail] == [
        ("open", "", ""), ("acknowledged", "Ops Aiko", "Crew dispatched"),
        ("resolved", "Ops Aiko", "Road reopened")]
    assert trail[1]["keyName"] == "e2e operator"
    assert current["status"] == "resolved"


def test_switching_to_japanese_changes_the_interface(open_page, sign_in, city, screenshots):
    page = open_page()
    sign_in(page, "viewer")
    page.select_option("#language", "ja")
    page.wait_for_function("() => document.documentElement.lang === 'ja'")  # a function: CSP
    assert page.locator("#layers-title").inner_text() == "地図レイヤー"
    assert page.locator("#alerts-title").inner_text() == "アラート"
    assert page.locator('[data-layer="Vehicle"] .layer-title').inner_text() == "車両"
    assert page.locator("#signout").inner_text() == "サインアウト"
    page.screenshot(path=screenshots / "dashboard-ja.png")


def test_a_laptop_screen_keeps_every_part_in_view(open_page, sign_in, city):
    page = open_page(1366, 768)
    sign_in(page, "viewer")
    for selector in ("#layer-list", "#map", "#alerts", "#signout", "#language"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1366 + 1
    page.focus("#signout")  # the last control of the top bar; the sidebar comes next
    for _ in range(30):  # the layer toggles are reachable and work from the keyboard
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.type") == "Vehicle":
            break
    else:
        pytest.fail("the Vehicle layer toggle was not reached with Tab")
    page.keyboard.press("Space")
    marker(page, VEHICLE).wait_for(state="detached", timeout=3000)


def test_the_guard_catches_a_request_that_leaves_the_machine(open_page, sign_in, city):
    """The no-internet check is not vacuous: a request elsewhere is caught and refused."""
    page = open_page()
    sign_in(page, "viewer")
    guard = open_page.guards[-1]
    outcome = page.evaluate("""() => fetch("http://tiles.example.org/1/1/1.png")
        .then(() => "fetched", () => "refused")""")
    assert outcome == "refused"
    # the Content-Security-Policy (connect-src 'self') refuses it before it leaves
    assert guard.foreign_requests == []
    assert any("Content Security Policy" in e for e in guard.console_errors)
    # what the policy does not govern, a navigation, the guard catches
    with pytest.raises(Exception, match="net::ERR"):
        page.goto("http://tiles.example.org/1/1/1.png")
    assert guard.foreign_requests == ["http://tiles.example.org/1/1/1.png"]
    guard.foreign_requests.clear()
    guard.console_errors.clear()
