"""The core's live demo feed: two buses driving round the demo city, and one alert.

Listed in :data:`cityos.demo.CORE_SIMULATORS`, so ``cityos demo`` shows things
moving on the dashboard before any app adds its own simulator. It writes through
the NGSI-LD HTTP API with the demo's key, the same way a gateway would: every two
seconds each bus moves along its loop (``location``, ``speed``, ``heading``); after a
few seconds the flood sensor's reading raises a critical ``Alert``.
"""

from __future__ import annotations

import logging
import time

import httpx
from pyproj import Geod

from cityos.core.alerts import alert_entity
from cityos.core.timefmt import format_datetime, now_utc
from cityos.demo import DemoContext
from cityos.web.basemap import demo_bus_routes

log = logging.getLogger(__name__)

TICK_S = 2.0
BUS_SPEED_KMH = 45.0
ALERT_AFTER_S = 8.0
BUSES = (("bus-101", "Bus 101", 0), ("bus-102", "Bus 102", 1))
FLOOD_SENSOR = "urn:ngsi-ld:WaterObserved:demo-city:flood-01"
_GEOD = Geod(ellps="WGS84")


class RouteWalker:
    """A position moving at constant speed round a closed loop of (lon, lat) points."""

    def __init__(self, loop: list[tuple[float, float]], start_fraction: float = 0.0):
        self.points = loop
        self.lengths_m = [_GEOD.inv(a[0], a[1], b[0], b[1])[2]
                          for a, b in zip(loop, loop[1:], strict=False)]
        self.total_m = sum(self.lengths_m)
        self.travelled_m = start_fraction * self.total_m

    def advance(self, metres: float) -> tuple[float, float, float]:
        """Move on by ``metres``; return ``(lon, lat, heading in degrees)``."""
        self.travelled_m = (self.travelled_m + metres) % self.total_m
        left = self.travelled_m
        for index, length in enumerate(self.lengths_m):
            if left <= length or index == len(self.lengths_m) - 1:
                a, b = self.points[index], self.points[index + 1]
                share = left / length if length else 0.0
                lon = a[0] + (b[0] - a[0]) * share
                lat = a[1] + (b[1] - a[1]) * share
                heading = _GEOD.inv(a[0], a[1], b[0], b[1])[0] % 360.0
                return lon, lat, heading
            left -= length
        raise AssertionError("unreachable: the loop has segments")


def bus_fragment(local_id: str, name: str, lon: float, lat: float, heading: float) -> dict:
    """The update of one bus (normalised NGSI-LD, with observedAt)."""
    observed = format_datetime(now_utc())
    return {
        "id": f"urn:ngsi-ld:Vehicle:demo-city:{local_id}", "type": "Vehicle",
        "name": {"type": "Property", "value": name},
        "vehicleType": {"type": "Property", "value": "bus"},
        "serviceStatus": {"type": "Property", "value": "onRoute"},
        "location": {"type": "GeoProperty", "observedAt": observed,
                     "value": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}},
        "speed": {"type": "Property", "value": BUS_SPEED_KMH, "unitCode": "KMH",
                  "observedAt": observed},
        "heading": {"type": "Property", "value": round(heading, 1), "unitCode": "DD",
                    "observedAt": observed},
    }


def flood_alert(client: httpx.Client) -> dict | None:
    """The sample alert about the flood sensor, from its current reading (None when
    the sensor is not there)."""
    response = client.get(f"/ngsi-ld/v1/entities/{FLOOD_SENSOR}",
                          params={"options": "keyValues"})
    if response.status_code != 200:
        return None
    sensor = response.json()
    depth, threshold = sensor.get("depth"), sensor.get("alertThreshold", 30)
    hour = now_utc().strftime("%Y%m%d%H")
    return alert_entity(
        f"urn:ngsi-ld:Alert:demo-city:flood-01-{hour}", category="weather",
        sub_category="flood", severity="critical",
        description=f"Water {depth} cm deep at the River Bridge underpass "
                    f"(alert threshold {threshold} cm): close the underpass",
        location=sensor.get("location"), alert_source=FLOOD_SENSOR)


def _wait_for_server(client: httpx.Client, demo: DemoContext) -> bool:
    while not demo.stop.is_set():
        try:
            if client.get("/health").status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        demo.stop.wait(0.5)
    return False


def run_alert_feed(demo: DemoContext) -> None:
    """Only raise the sample alert (when an app's simulator drives the buses)."""
    run_demo_feed(demo, buses=())


def run_demo_feed(demo: DemoContext, buses=BUSES) -> None:
    """Drive the buses and raise the sample alert until ``demo.stop`` is set."""
    headers = {"Authorization": f"Bearer {demo.api_key}", "NGSILD-Tenant": demo.tenant}
    with httpx.Client(base_url=demo.base_url, headers=headers, timeout=10.0) as client:
        if not _wait_for_server(client, demo):
            return
        routes = demo_bus_routes()
        walkers = [RouteWalker(routes[index % len(routes)], 0.1 * index)
                   for _, _, index in buses]
        started = time.monotonic()
        alert_raised = False
        step_m = BUS_SPEED_KMH / 3.6 * TICK_S
        while not demo.stop.is_set():
            fragments = []
            for (local_id, name, _), walker in zip(buses, walkers, strict=True):
                fragments.append(bus_fragment(local_id, name, *walker.advance(step_m)))
            try:
                if fragments:
                    client.post("/ngsi-ld/v1/entityOperations/upsert",
                                params={"options": "update"}, json=fragments).raise_for_status()
                if not alert_raised and time.monotonic() - started >= ALERT_AFTER_S:
                    alert = flood_alert(client)
                    if alert is not None:
                        response = client.post("/ngsi-ld/v1/entities", json=alert)
                        if response.status_code not in (201, 409):  # 409: raised this hour
                            response.raise_for_status()
                    alert_raised = True
            except httpx.ConnectError as error:  # the server is stopping
                log.debug("demo feed: %s", error)
            except httpx.HTTPError as error:
                log.warning("demo feed: %s", error)
            demo.stop.wait(TICK_S)

