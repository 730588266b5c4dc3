"""The dashboard's server side: layers, catalogues, base map, features, alerts, keys, SSE."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from cityos.config import Settings
from cityos.core.alerts import (
    AlertStateConflict,
    alert_audit_trail,
    alert_entity,
    alert_status,
    handle_alert,
)
from cityos.core.events import EntityEvent, InProcessBus
from cityos.core.tenancy import create_key
from cityos.server import create_app
from cityos.web import i18n
from cityos.web.basemap import demo_basemap
from cityos.web.layers import (
    ColorSteps,
    LayerSpec,
    fallback_layer,
    layer_for,
    register_layer,
    unregister_layer,
)
from cityos.web.stream import TenantEventStream

POINT = {"type": "Point", "coordinates": [101.70, 3.15]}


@pytest.fixture
def app_and_keys(sqlite_store):
    app = create_app(Settings(database_url="sqlite://", default_tenant="north"),
                     store=sqlite_store)
    keys = {role: create_key(sqlite_store, "north", role, f"{role} key")[0]
            for role in ("viewer", "operator", "admin")}
    keys["south"] = create_key(sqlite_store, "south", "admin", "south admin")[0]
    return app, keys, sqlite_store


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------- layers
def test_color_steps_classes_values_like_the_browser():
    steps = ColorSteps("depth", (10.0, 30.0), ("#a", "#b", "#c"), "cm")
    assert [steps.color_of(v) for v in (0, 9.9, 10, 29.9, 30, 99)] == \
        ["#a", "#a", "#b", "#b", "#c", "#c"]
    with pytest.raises(ValueError, match="3 colours need 2 thresholds"):
        ColorSteps("depth", (10.0,), ("#a", "#b", "#c"))
    with pytest.raises(ValueError, match="ascend"):
        ColorSteps("depth", (30.0, 10.0), ("#a", "#b", "#c"))


def test_an_app_registration_overrides_the_core_default_whatever_the_order():
    from cityos.web.core_layers import register_core_layers

    mine = LayerSpec("Vehicle", {"en": "Trams"}, color="#123456")
    register_layer(mine)
    try:
        register_core_layers()
        assert layer_for("Vehicle") == mine
    finally:
        unregister_layer("Vehicle")
    assert layer_for("Vehicle").title["en"] == "Vehicles"  # the core default again


def test_an_unregistered_type_gets_a_stable_colour():
    assert fallback_layer("Beehive").color == fallback_layer("Beehive").color
    assert layer_for("Beehive").title == {"en": "Beehive"}
    with pytest.raises(ValueError, match="'en'"):
        LayerSpec("Beehive", {"ja": "巣箱"})
    with pytest.raises(ValueError, match="marker"):
        LayerSpec("Beehive", {"en": "Hives"}, marker="star")


# --------------------------------------------------------------- catalogues
def test_japanese_is_complete_and_every_catalogue_has_the_english_keys():
    english = i18n.load_catalogue("en")
    for language in i18n.available_languages():
        messages = i18n.load_catalogue(language["code"])
        assert set(messages) <= set(english), language["code"]
    assert i18n.missing_keys("ja") == []
    codes = {lang["code"]: lang["complete"] for lang in i18n.available_languages()}
    assert codes["en"] and codes["ja"]


def test_placeholders_survive_translation():
    english, japanese = i18n.load_catalogue("en"), i18n.load_catalogue("ja")
    import re

    for key, text in english.items():
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", japanese[key])), key


# ----------------------------------------------------------------- base map
def test_the_base_map_is_deterministic_and_has_every_kind():
    first = json.dumps(demo_basemap(), sort_keys=True)
    demo_basemap.cache_clear()
    assert json.dumps(demo_basemap(), sort_keys=True) == first
    kinds = {f["properties"]["kind"] for f in demo_basemap()["features"]}
    assert kinds == {"boundary", "water", "park", "road", "building"}
    types = {f["geometry"]["type"] for f in demo_basemap()["features"]}
    assert types <= {"LineString", "MultiLineString", "Polygon", "MultiPolygon"}


def test_buildings_stay_out_of_the_river():
    from shapely.geometry import shape

    features = demo_basemap()["features"]
    water = [shape(f["geometry"]) for f in features if f["properties"]["kind"] == "water"]
    buildings = [shape(f["geometry"]) for f in features if f["properties"]["kind"] == "building"]
    assert len(buildings) > 300
    assert not any(b.intersects(w) for b in buildings for w in water)


# ---------------------------------------------------------------- HTTP side
def test_config_and_page_need_no_key(app_and_keys):
    app, _, _ = app_and_keys
    with TestClient(app) as client:
        config = client.get("/web/api/config").json()
        assert config["tile_url"] is None
        assert {"Alert", "Vehicle", "WaterObserved"} <= {
            layer["entity_type"] for layer in config["layers"]}
        page = client.get("/")
        assert page.status_code == 200 and "leaflet.js" in page.text
        assert client.get("/web/vendor/leaflet/leaflet.js").status_code == 200
        assert client.get("/web/locales/ja.json").json()["alerts.title"] == "アラート"
        assert client.get("/web/locales/xx.json").status_code == 404


def test_an_online_deployment_names_its_tile_server(sqlite_store):
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    app = create_app(Settings(database_url="sqlite://", tile_url=url), store=sqlite_store)
    with TestClient(app) as client:
        assert client.get("/web/api/config").json()["tile_url"] == url


def test_a_missing_front_end_install_gives_a_clear_page(app_and_keys, monkeypatch):
    from cityos.web import api

    monkeypatch.setattr(api, "node_modules_dir", lambda: None)
    app, _, _ = app_and_keys
    with TestClient(app) as client:
        page = client.get("/")
    assert page.status_code == 503
    assert "npm ci" in page.text and "not installed" in page.text


def test_features_are_the_callers_tenant_only(app_and_keys):
    app, keys, store = app_and_keys
    store.create_entity("north", {"id": "urn:ngsi-ld:Vehicle:n1", "type": "Vehicle",
                                  "speed": {"type": "Property", "value": 30},
                                  "location": {"type": "GeoProperty", "value": POINT}})
    store.create_entity("north", {"id": "urn:ngsi-ld:Device:unplaced", "type": "Device",
                                  "name": {"type": "Property", "value": "no location"}})
    store.create_entity("south", {"id": "urn:ngsi-ld:Vehicle:s1", "type": "Vehicle",
                                  "location": {"type": "GeoProperty", "value": POINT}})
    with TestClient(app) as client:
        assert client.get("/web/api/features").status_code == 401
        north = client.get("/web/api/features", headers=auth(keys["viewer"])).json()
        south = client.get("/web/api/features", headers={
            **auth(keys["south"]), "NGSILD-Tenant": "south"}).json()
        refused = client.get("/web/api/features", headers={
            **auth(keys["viewer"]), "NGSILD-Tenant": "south"})
    assert [f["id"] for f in north["features"]] == ["urn:ngsi-ld:Vehicle:n1"]
    assert north["features"][0]["properties"] == {"type": "Vehicle", "speed": 30}
    assert [f["id"] for f in south["features"]] == ["urn:ngsi-ld:Vehicle:s1"]
    assert refused.status_code == 403


def test_me_tells_the_role(app_and_keys):
    app, keys, _ = app_and_keys
    with TestClient(app) as client:
        me = client.get("/web/api/me", headers=auth(keys["operator"])).json()
    assert me["tenant"] == "north" and me["role"] == "operator"
    assert me["canAcknowledge"] and not me["canManageKeys"]


# ------------------------------------------------------------------- alerts
def test_acknowledge_then_resolve_is_recorded_with_who_and_why(app_and_keys):
    app, keys, store = app_and_keys
    alert_id = "urn:ngsi-ld:Alert:a1"
    store.create_entity("north", alert_entity(alert_id, category="weather", severity="high",
                                              description="Water over the road",
                                              location=POINT))
    with TestClient(app) as client:
        viewer = client.post(f"/web/api/alerts/{alert_id}/acknowledge",
                             headers=auth(keys["viewer"]), json={"comment": "seen"})
        assert viewer.status_code == 403
        done = client.post(f"/web/api/alerts/{alert_id}/acknowledge",
                           headers=auth(keys["operator"]),
                           json={"comment": "Crew on the way", "actor": "Siti"})
        assert done.status_code == 200 and done.json()["status"] == "acknowledged"
        again = client.post(f"/web/api/alerts/{alert_id}/acknowledge",
                            headers=auth(keys["operator"]), json={})
        assert again.status_code == 409
        assert "is acknowledged" in again.json()["detail"]
        client.post(f"/web/api/alerts/{alert_id}/resolve", headers=auth(keys["operator"]),
                    json={"comment": "Pumped out"}).raise_for_status()
        trail = client.get(f"/web/api/alerts/{alert_id}/audit",
                           headers=auth(keys["viewer"])).json()
        bad = client.post(f"/web/api/alerts/{alert_id}/resolve",
                          headers=auth(keys["operator"]), content=b"[1]")
    assert [(s["status"], s["actor"], s["comment"]) for s in trail] == [
        ("open", "", ""), ("acknowledged", "Siti", "Crew on the way"),
        ("resolved", "operator key", "Pumped out")]  # no name typed: the key's name
    assert bad.status_code == 400 and "JSON object" in bad.json()["detail"]
    assert alert_status(store.get_entity("north", alert_id)) == "resolved"


def test_alert_actions_name_what_is_wrong(sqlite_store):
    with pytest.raises(Exception, match="severity: 'urgent'"):
        alert_entity("urn:ngsi-ld:Alert:x", category="c", severity="urgent", description="d")
    sqlite_store.create_entity("t", {"id": "urn:ngsi-ld:Vehicle:v", "type": "Vehicle"})
    with pytest.raises(Exception, match="is not an Alert"):
        handle_alert(sqlite_store, "t", "urn:ngsi-ld:Vehicle:v", "resolve", actor="a",
                     comment="", key_id="k")
    sqlite_store.create_entity("t", alert_entity("urn:ngsi-ld:Alert:y", category="c",
                                                 severity="low", description="d"))
    with pytest.raises(Exception, match="comment: longer than 2000"):
        handle_alert(sqlite_store, "t", "urn:ngsi-ld:Alert:y", "resolve", actor="a",
                     comment="x" * 2001, key_id="k")
    handle_alert(sqlite_store, "t", "urn:ngsi-ld:Alert:y", "resolve", actor="a", comment="",
                 key_id="k")
    with pytest.raises(AlertStateConflict):
        handle_alert(sqlite_store, "t", "urn:ngsi-ld:Alert:y", "acknowledge", actor="a",
                     comment="", key_id="k")
    assert [s["status"] for s in alert_audit_trail(sqlite_store, "t", "urn:ngsi-ld:Alert:y")] \
        == ["open", "resolved"]


def test_an_alert_without_status_counts_as_open():
    assert alert_status({"id": "urn:x", "type": "Alert"}) == "open"


# --------------------------------------------------------------------- keys
def test_an_admin_manages_the_keys_of_its_own_tenant(app_and_keys):
    app, keys, _ = app_and_keys
    with TestClient(app) as client:
        assert client.get("/web/api/keys", headers=auth(keys["operator"])).status_code == 403
        created = client.post("/web/api/keys", headers=auth(keys["admin"]),
                              json={"role": "viewer", "name": "wall screen"})
        assert created.status_code == 201
        token = created.json()["token"]
        assert client.get("/web/api/me", headers=auth(token)).json()["role"] == "viewer"
        listed = client.get("/web/api/keys", headers=auth(keys["admin"])).json()
        assert {k["name"] for k in listed} == {"viewer key", "operator key", "admin key",
                                               "wall screen"}
        south_key = [k for k in client.get("/web/api/keys", headers={
            **auth(keys["south"]), "NGSILD-Tenant": "south"}).json()][0]["key_id"]
        refused = client.post(f"/web/api/keys/{south_key}/revoke", headers=auth(keys["admin"]))
        assert refused.status_code == 404
        client.post(f"/web/api/keys/{created.json()['key_id']}/revoke",
                    headers=auth(keys["admin"])).raise_for_status()
        assert client.get("/web/api/me", headers=auth(token)).status_code == 401
        bad = client.post("/web/api/keys", headers=auth(keys["admin"]), json={"role": "boss"})
        assert bad.status_code == 400 and "role" in bad.json()["detail"]


# ----------------------------------------------------------------- live SSE
def test_the_stream_carries_its_tenants_events_only():
    async def scenario() -> list[bytes]:
        bus = InProcessBus()
        stream = TenantEventStream(bus, "north")
        messages = stream.messages(heartbeat_s=5.0)
        hello = await anext(messages)
        entity = {"id": "urn:ngsi-ld:Vehicle:v", "type": "Vehicle",
                  "location": {"type": "GeoProperty", "value": POINT}}
        bus.publish(EntityEvent("south", "updated", "urn:ngsi-ld:Vehicle:s", "Vehicle",
                                ["location"], entity))
        bus.publish(EntityEvent("north", "updated", "urn:ngsi-ld:Vehicle:v", "Vehicle",
                                ["location"], entity))
        chunk = await asyncio.wait_for(anext(messages), 2.0)
        await messages.aclose()
        bus.publish(EntityEvent("north", "deleted", "urn:ngsi-ld:Vehicle:v", "Vehicle"))
        return [hello, chunk]

    hello, chunk = asyncio.run(scenario())
    assert b"event: hello" in hello and b'"tenant":"north"' in hello
    event, data = chunk.decode().strip().split("\n")
    assert event == "event: entity"
    message = json.loads(data.removeprefix("data: "))
    assert message["id"] == "urn:ngsi-ld:Vehicle:v"
    assert message["feature"]["geometry"] == POINT


def test_a_client_that_falls_behind_is_told_to_resync():
    async def scenario() -> bytes:
        bus = InProcessBus()
        stream = TenantEventStream(bus, "north", max_pending=3)
        messages = stream.messages()
        await anext(messages)
        for index in range(10):
            bus.publish(EntityEvent("north", "updated", f"urn:x:{index}", "Thing", ["a"],
                                    {"id": f"urn:x:{index}", "type": "Thing"}))
        await asyncio.sleep(0)  # let the loop take the hand-overs
        chunk = await anext(messages)
        await messages.aclose()
        return chunk

    assert asyncio.run(scenario()).startswith(b"event: resync")


# ---------------------------------------------------------------- demo feed
def test_a_demo_bus_drives_round_its_loop_at_the_set_speed():
    from pyproj import Geod

    from cityos.web.demo_feed import RouteWalker, bus_fragment

    square = [(101.69, 3.14), (101.70, 3.14), (101.70, 3.15), (101.69, 3.15), (101.69, 3.14)]
    walker = RouteWalker(square)
    lon, lat, heading = walker.advance(500.0)
    assert abs(Geod(ellps="WGS84").inv(101.69, 3.14, lon, lat)[2] - 500.0) < 1.0
    assert abs(heading - 90.0) < 0.5  # the first side runs east
    lon, lat, _ = walker.advance(walker.total_m - 500.0)  # once round: back at the start
    assert (round(lon, 6), round(lat, 6)) == (101.69, 3.14)
    fragment = bus_fragment("bus-9", "Bus 9", lon, lat, 90.0)
    assert fragment["location"]["value"]["coordinates"] == [101.69, 3.14]
    assert fragment["speed"]["unitCode"] == "KMH"


def test_app_views_reach_the_dashboard_config(app_and_keys):
    from cityos.web.views import ViewSpec, register_view, unregister_view

    app, _, _ = app_and_keys
    register_view(ViewSpec("test-report", {"en": "Report"}, "/apps/test/report", order=99))
    try:
        with TestClient(app) as client:
            views = client.get("/web/api/config").json()["views"]
        ids = [v["view_id"] for v in views]
        assert "transit-analytics" in ids  # registered by the transit app's web module
        assert ids[-1] == "test-report"  # highest order last
        assert views[-1]["url"] == "/apps/test/report"
    finally:
        unregister_view("test-report")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"view_id": "", "title": {"en": "x"}, "url": "/a"}, "view_id"),
    ({"view_id": "v", "title": {"ja": "x"}, "url": "/a"}, "title"),
    ({"view_id": "v", "title": {"en": "x"}, "url": "https://example.org/a"}, "url"),
    ({"view_id": "v", "title": {"en": "x"}, "url": "//example.org/a"}, "url"),
    ({"view_id": "v", "title": {"en": "x"}, "url": "/a", "role": "root"}, "role"),
])
def test_a_bad_view_names_its_field(kwargs, field):
    from cityos.web.views import ViewSpec

    with pytest.raises(ValueError, match=field):
        ViewSpec(**kwargs)
