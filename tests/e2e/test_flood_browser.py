"""The flood watch view in a real browser: sites by alert level with nowcasts and
quality flags, pumps, the event report; in English and Japanese.

The module's server has the demo city (``cityos demo --no-serve``: six flood sensors
with two days of history, gauges and pumps). An operator registers one more site and a
storm's readings are posted to it through the HTTP ingest path, so that it crosses its
watch and warning levels now. A site of its own keeps the test apart from the demo's
history, whose storms fall at fixed clock times: a demo site may still be above its
danger level, on its way down, when the test runs.
"""

from __future__ import annotations

import time
from datetime import UTC, timedelta

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SITE_NAME = "Lebuh Pasar Besar underpass"
REGISTRATION = {"id": "e2e-pasar", "name": SITE_NAME, "lon": 101.6975, "lat": 3.1470,
                "alertLevels": [10, 20, 30]}
SITE = "urn:ngsi-ld:WaterObserved:e2e-pasar"


@pytest.fixture(scope="module")
def flooded(server) -> str:
    """Register a site, post a rising water level to it; wait for the service's level."""
    now = server.now().astimezone(UTC).replace(microsecond=0)  # the server's pinned clock
    depths = [2.0, 5.0, 9.0, 12.0, 16.0, 21.0, 24.0, 26.0]
    bodies = [{"id": SITE, "type": "WaterObserved", "depth": depth,
               "observedAt": (now - timedelta(seconds=30 * (len(depths) - k))).isoformat()
               .replace("+00:00", "Z")} for k, depth in enumerate(depths)]
    with server.client("operator") as api:
        assert api.post("/apps/floodwatch/sites", json=REGISTRATION).json()["id"] == SITE
        api.post("/apps/ingest/observations", json=bodies).raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sites = api.get("/apps/floodwatch/sites").json()
            if any(s["id"] == SITE and s["floodLevel"] == 2 for s in sites):
                return SITE
            time.sleep(0.3)
    pytest.fail("the flood watch did not raise the site's level")


def open_view(page, sign_in, role: str):
    sign_in(page, role)
    page.click('#views [data-view="floodwatch"]')
    frame = page.frame_locator("#view-frame")
    frame.locator("body[data-loaded=true]").wait_for(timeout=20000)
    return frame


def test_the_flood_watch_view_lists_sites_by_level(open_page, server, flooded, sign_in,
                                                  screenshots):
    page = open_page(width=1600, height=1000)
    frame = open_view(page, sign_in, "operator")
    rows = frame.locator("#sites tbody tr")
    levels = [int(v) for v in rows.locator(".level").evaluate_all(
        "cells => cells.map(c => c.dataset.level)")]
    assert levels == sorted(levels, reverse=True)  # the most flooded sites lead
    row = frame.locator(f'#sites tbody tr[data-site="{SITE}"]')
    assert row.locator(".level").get_attribute("data-level") == "2"
    assert row.locator(".level").inner_text() == "warning"
    assert "26.0 cm" in row.inner_text()
    with server.client("viewer") as api:
        expected = len(api.get("/apps/floodwatch/sites").json())
        pumps = len(api.get("/apps/floodwatch/pumps").json())
    assert int(frame.locator("#sites").get_attribute("data-rows")) == expected
    assert int(frame.locator("#pumps").get_attribute("data-rows")) == pumps == 3
    assert frame.locator("#pumps button[data-switch=on]").first.is_enabled()
    page.screenshot(path=screenshots / "flood-watch.png")


def test_the_flood_alert_is_on_the_dashboard(open_page, server, flooded, sign_in):
    page = open_page(width=1600, height=1000)
    sign_in(page, "viewer")
    feed = page.locator("#alert-feed")
    feed.get_by_text(SITE_NAME, exact=False).first.wait_for(timeout=15000)


def test_a_viewer_cannot_switch_pumps_and_reads_the_report(open_page, server, flooded,
                                                            sign_in):
    page = open_page(width=1600, height=1000)
    frame = open_view(page, sign_in, "viewer")
    assert frame.locator("#pumps button[data-switch=on]").first.is_disabled()
    frame.locator("#report-button").click()
    frame.locator("body[data-report=shown]").wait_for(timeout=60000)
    report = frame.frame_locator("#report")
    assert report.locator("h1").first.inner_text()
    assert report.locator("img").count() >= 1


def test_the_view_speaks_japanese(open_page, server, flooded, sign_in):
    page = open_page(width=1600, height=1000, locale="ja-JP")
    frame = open_view(page, sign_in, "viewer")
    assert frame.locator("h1").inner_text() == "冠水監視"
    level = frame.locator(f'#sites tr[data-site="{SITE}"] .level')
    assert level.inner_text() == "警戒"
