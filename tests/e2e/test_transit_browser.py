"""The stop board in a real browser: live and scheduled arrivals, in English and Japanese.

The module's server has the demo city's feed (``cityos demo --no-serve``); a few
minutes of simulated buses, moved to the present, are posted through the HTTP ingest
path so that the board has live predictions whatever the time of day.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from cityos.apps.transit.sim import ping_observation, replay_window
from cityos.apps.transit.synthetic import demo_feed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VEHICLES = 3
LEAD_S = 300.0


@pytest.fixture(scope="module")
def live_stop(server) -> str:
    """Post a few minutes of buses ending now; return a stop with a live prediction."""
    feed = demo_feed()
    trace, start_t, shift_s = replay_window(feed, datetime.now(UTC))
    recent = [p for p in trace.pings if start_t - LEAD_S <= p.t < start_t]
    vehicles = sorted({p.vehicle_id for p in recent})[:VEHICLES]
    bodies = [{**ping_observation(p, shift_s), "id": f"urn:ngsi-ld:Vehicle:{p.vehicle_id}",
               "type": "Vehicle"} for p in recent if p.vehicle_id in vehicles]
    assert bodies, "the simulated day has buses out"
    with server.client("operator") as api:
        for start in range(0, len(bodies), 1000):
            api.post("/apps/ingest/observations",
                     json=bodies[start:start + 1000]).raise_for_status()
    from google.transit import gtfs_realtime_pb2 as rt

    deadline = time.monotonic() + 60
    with server.client("viewer") as api:
        while time.monotonic() < deadline:
            message = rt.FeedMessage()
            message.ParseFromString(api.get("/apps/transit/gtfs-rt/trip-updates").content)
            for entity in message.entity:
                # the board leaves out a trip's last stop (buses only set down there)
                # and rows already passed: take a stop whose board has a live row
                for update in entity.trip_update.stop_time_update[1:-1]:
                    board = api.get(f"/apps/transit/stops/{update.stop_id}/arrivals")
                    if board.status_code == 200 and any(
                            row.get("live") for row in board.json()["arrivals"]):
                        return update.stop_id
            time.sleep(0.5)
    pytest.fail("no trip updates came out of the posted observations")


def test_stop_board_shows_live_arrivals(open_page, server, live_stop, screenshots,
                                        display_link):
    page = open_page(width=1280, height=720)
    page.goto(display_link(f"transit-stop:{live_stop}"))
    page.wait_for_selector('#rows tr[data-live="true"]', timeout=15000)
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#stop-name").inner_text() == demo_feed().stops[live_stop].name
    live = page.locator('#rows tr[data-live="true"] .kind').first.inner_text()
    assert live == "Live"
    due = page.locator('#rows tr[data-live="true"] .due').first.inner_text()
    assert "min" in due or "Now" in due
    scheduled = page.locator('#rows tr[data-live="false"] .kind')
    if scheduled.count():
        assert scheduled.first.inner_text() == "Scheduled"
    page.screenshot(path=screenshots / "stop-board-en.png")


def test_stop_board_speaks_japanese(open_page, server, live_stop, display_link):
    page = open_page(width=1280, height=720, locale="ja-JP")
    page.goto(display_link(f"transit-stop:{live_stop}"))
    page.wait_for_selector('#rows tr[data-live="true"]', timeout=15000)
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("th").nth(1).inner_text() == "行先"
    assert page.locator('#rows tr[data-live="true"] .kind').first.inner_text() == "運行情報"


def test_stop_board_without_a_key_says_so(open_page, server, live_stop):
    page = open_page(width=1280, height=720)
    page.goto(f"{server.url}/apps/transit/stops/{live_stop}/board")
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('display link')",
        timeout=10000)
    assert page.locator("#board").is_hidden()


def test_dashboard_opens_the_analytics_view_with_charts(open_page, server, live_stop,
                                                       sign_in, screenshots):
    page = open_page(width=1600, height=1000)
    sign_in(page, "operator")
    page.click('#views [data-view="transit-analytics"]')
    frame = page.frame_locator("#view-frame")
    frame.locator("body[data-loaded=true]").wait_for(timeout=20000)
    # the posted buses reached stops today: the charts have hours and the tables rows
    with server.client("viewer") as api:
        expected = api.get("/apps/transit/analytics/on-time", params={"by": "hour"}).json()
    assert expected["rows"], "the posted buses produced observed arrivals"
    chart = frame.locator("#chart-ontime")
    assert chart.get_attribute("data-points") == str(len(expected["rows"]))
    assert frame.locator("#chart-ontime canvas").count() == 1
    assert frame.locator("#chart-fleet canvas").count() == 1
    assert int(frame.locator("#table-ontime").get_attribute("data-rows")) >= 1
    assert "/" in frame.locator("#service .kpi .value").first.inner_text()
    page.screenshot(path=screenshots / "transit-analytics.png")


def test_operator_publishes_a_service_alert_from_the_dashboard(open_page, server, live_stop,
                                                              sign_in):
    from google.transit import gtfs_realtime_pb2 as rt

    page = open_page(width=1600, height=1000)
    sign_in(page, "operator")
    page.click('#views [data-view="transit-analytics"]')
    frame = page.frame_locator("#view-frame")
    frame.locator("body[data-loaded=true]").wait_for(timeout=20000)
    route_id = next(iter(demo_feed().routes))
    frame.locator("#alert-header").fill("Road works on Jalan Merdeka")
    frame.locator("#alert-effect").select_option("DETOUR")
    frame.locator("#alert-routes").fill(route_id)
    frame.locator("#alert-submit").click()
    row = frame.locator("#table-alerts tbody tr", has_text="Road works on Jalan Merdeka")
    row.wait_for(timeout=10000)

    with server.client("viewer") as api:
        message = rt.FeedMessage()
        message.ParseFromString(api.get("/apps/transit/gtfs-rt/alerts").content)
    published = [e.alert for e in message.entity
                 if e.alert.header_text.translation[0].text == "Road works on Jalan Merdeka"]
    assert len(published) == 1
    assert rt.Alert.Effect.Name(published[0].effect) == "DETOUR"
    assert [i.route_id for i in published[0].informed_entity] == [route_id]

    row.locator("[data-withdraw]").click()
    row.wait_for(state="detached", timeout=10000)
    with server.client("viewer") as api:
        message = rt.FeedMessage()
        message.ParseFromString(api.get("/apps/transit/gtfs-rt/alerts").content)
    assert all(e.alert.header_text.translation[0].text != "Road works on Jalan Merdeka"
               for e in message.entity)


def test_a_viewer_sees_the_alert_desk_read_only(open_page, server, live_stop, sign_in):
    page = open_page(width=1600, height=1000)
    sign_in(page, "viewer")
    page.click('#views [data-view="transit-analytics"]')
    frame = page.frame_locator("#view-frame")
    frame.locator("body[data-loaded=true]").wait_for(timeout=20000)
    assert frame.locator("body").get_attribute("data-role") == "viewer"
    assert frame.locator("#alert-submit").is_disabled()
    assert frame.locator("#alert-header").is_disabled()
    assert frame.locator("#alert-message").inner_text() == (
        "Publishing alerts needs an operator key.")
    # the API refuses a viewer whatever the page shows
    with server.client("viewer") as api:
        refused = api.post("/apps/transit/alerts", json={"header": "Not allowed"})
    assert refused.status_code == 403
