"""The flood watch API in a real app: registration, sites, quality, pumps commanded by
an operator through a real broker and acknowledged by a pump controller, roles."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cityos.config import Settings
from cityos.core.store import open_store
from cityos.core.tenancy import create_key
from cityos.core.timefmt import format_datetime
from cityos.server import create_app
from tests.apps.floodwatch.test_flood_commands import FakePumpController, pump_entity
from tests.core.ingest.brokers import PrivateBroker

pytestmark = pytest.mark.mqtt

TENANT = "city"
PUMP = "urn:ngsi-ld:Pump:pump-1"


@pytest.fixture
def city(tmp_path):
    broker = PrivateBroker(tmp_path / "broker").start()
    url = f"sqlite:///{tmp_path / 'city.db'}"
    store = open_store(url)
    store.create_entity(TENANT, pump_entity(PUMP))
    keys = {role: create_key(store, TENANT, role)[0] for role in ("viewer", "operator")}
    app = create_app(Settings(database_url=url, mqtt_url=broker.url,
                              mqtt_client_id="cityos-flood-api-test"), store)
    with TestClient(app) as client:
        yield {"client": client, "store": store, "keys": keys, "broker": broker}
    broker.stop(signal.SIGKILL)


def call(city, method: str, path: str, role: str = "operator", **kwargs):
    headers = {"Authorization": f"Bearer {city['keys'][role]}", "NGSILD-Tenant": TENANT}
    return city["client"].request(method, f"/apps/floodwatch{path}", headers=headers, **kwargs)


def test_register_a_site_read_it_back_and_refuse_a_bad_one(city):
    created = call(city, "POST", "/sites", json={
        "id": "underpass", "name": "Underpass", "lon": 101.69, "lat": 3.14,
        "alertLevels": [15, 25, 40], "pumps": ["pump-1"]})
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "urn:ngsi-ld:WaterObserved:underpass"
    bad = call(city, "POST", "/sites", json={"id": "x", "lon": 101.69, "lat": 95})
    assert bad.status_code == 400 and "lat" in bad.json()["detail"]
    assert call(city, "POST", "/sites", role="viewer",
                json={"id": "y", "lon": 1, "lat": 1}).status_code == 403
    stamp = format_datetime(datetime.now(UTC))
    city["store"].upsert_entities(TENANT, [{
        "id": "urn:ngsi-ld:WaterObserved:underpass", "type": "WaterObserved",
        "depth": {"type": "Property", "value": 18.0, "observedAt": stamp}}], replace=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        site = call(city, "GET", "/sites", role="viewer").json()[0]
        if site["floodLevel"] == 1:
            break
        time.sleep(0.1)
    assert site["alertLevels"] == [15, 25, 40]
    assert site["floodLevel"] == 1 and site["floodLevelName"] == "watch"
    assert site["depth"]["value"] == 18.0


def test_an_operator_switches_a_pump_and_the_controller_acknowledges(city):
    controller = FakePumpController(city["broker"].url, tenant=TENANT,
                                    answer=lambda command: ("OK", "running"))
    try:
        deadline = time.monotonic() + 15
        while True:  # the commander connects in the background at start-up
            sent = call(city, "POST", "/pumps/pump-1/commands", json={"switch": "on"})
            if sent.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sent.status_code == 202, sent.text
        command = sent.json()
        assert command["switch"] == "on" and command["reason"].startswith("operator ")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = call(city, "GET", "/pumps/pump-1/commands", role="viewer").json()
            if listed and listed[0]["status"] == "OK":
                break
            time.sleep(0.1)
        assert listed[0]["id"] == command["id"] and listed[0]["status"] == "OK"
        pump = call(city, "GET", "/pumps", role="viewer").json()[0]
        assert pump["command"]["status"] == "OK" and pump["command"]["switch"] == "on"
        assert controller.received[0][1]["switch"] == "on"
    finally:
        controller.close()
    refused = call(city, "POST", "/pumps/pump-1/commands", json={"switch": "sideways"})
    assert refused.status_code == 400 and "switch" in refused.json()["detail"]
    assert call(city, "POST", "/pumps/nope/commands",
                json={"switch": "on"}).status_code == 404
    assert call(city, "POST", "/pumps/pump-1/commands", role="viewer",
                json={"switch": "on"}).status_code == 403
