"""The stop board in a real browser: live and scheduled arrivals, in English and Japanese.

The module's server has the demo city's feed (``cityos demo --no-serve``) and runs on
a pinned clock (:data:`tests.conftest.PINNED_INSTANT`, a Monday 07:30 in the demo
city); the five minutes of simulated buses before that instant are posted through
the HTTP ingest path, so the board has the same live predictions whatever the
machine's clock, time zone or day of the week.
"""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cityos.apps.transit.sim import ping_observation, replay_window
from cityos.apps.transit.synthetic import demo_feed
from tests.conftest import PINNED_INSTANT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.clock]

VEHICLES = 3
LEAD_S = 300.0


def _first_live(board: dict) -> dict | None:
    return next((row for row in board["arrivals"] if row.get("live")), None)


@pytest.fixture(scope="module")
def live_stop(server) -> str:
    """Post the buses of the five minutes before the pinned instant; return the first
    stop (by id) whose first live row is due in 7 to 45 minutes."""
    feed = demo_feed()
    trace, start_t, shift_s = replay_window(feed, PINNED_INSTANT)
    assert (start_t, shift_s) == (PINNED_INSTANT.timestamp(), 0.0), \
        "the pinned morning is within the day's service: the buses run on the clock"
    recent = [p for p in trace.pings if start_t - LEAD_S <= p.t < start_t]
    vehicles = sorted({p.vehicle_id for p in recent})[:VEHICLES]
    bodies = [{**ping_observation(p, shift_s), "id": f"urn:ngsi-ld:Vehicle:{p.vehicle_id}",
               "type": "Vehicle"} for p in recent if p.vehicle_id in vehicles]
    assert len(vehicles) == VEHICLES, "the simulated morning has buses out"
    last_seen = {v: round(max(p.t for p in recent if p.vehicle_id == v)) for v in vehicles}
    with server.client("operator") as api:
        for start in range(0, len(bodies), 1000):
            api.post("/apps/ingest/observations",
                     json=bodies[start:start + 1000]).raise_for_status()
    from google.transit import gtfs_realtime_pb2 as rt

    def feed_of(api, name: str) -> rt.FeedMessage:
        message = rt.FeedMessage()
        message.ParseFromString(api.get(f"/apps/transit/gtfs-rt/{name}").content)
        return message

    with server.client("viewer") as api:
        # wait until the service has every posted ping (each bus at its last one)
        deadline = time.monotonic() + 60
        while {e.vehicle.vehicle.id: e.vehicle.timestamp for e in
               feed_of(api, "vehicle-positions").entity} != last_seen:
            if time.monotonic() > deadline:
                pytest.fail("the posted observations did not reach the vehicle positions")
            time.sleep(0.2)
        # the board leaves out a trip's last stop (buses only set down there)
        stops = sorted({u.stop_id for e in feed_of(api, "trip-updates").entity
                        for u in e.trip_update.stop_time_update[1:-1]})
        for stop_id in stops:
            board = api.get(f"/apps/transit/stops/{stop_id}/arrivals").json()
            first = _first_live(board)
            # well inside the hour, whatever seconds the set-up took
            if first is not None and 7 <= first["minutes"] <= 45:
                return stop_id
    pytest.fail(f"no stop of {stops} has a live row due within the hour")


def test_stop_board_shows_live_arrivals(open_page, server, live_stop, screenshots,
                                        display_link):
    page = open_page(width=1280, height=720, pause_clock=True)
    link = display_link(f"transit-stop:{live_stop}")
    with page.expect_response(lambda r: r.url.endswith(f"/stops/{live_stop}/arrivals")
                              and r.status == 200) as answer:
        page.goto(link)
    board = answer.value.json()  # what the page drew: its clock is paused, no refresh
    page.wait_for_selector('#rows tr[data-live="true"]', timeout=15000)
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#stop-name").inner_text() == demo_feed().stops[live_stop].name
    live = page.locator('#rows tr[data-live="true"]').first
    assert live.locator(".kind").inner_text() == "Live"
    expected = _first_live(board)
    assert 1 <= expected["minutes"] < 60  # due within the hour: "N min", not a clock time
    assert live.get_attribute("data-trip") == expected["trip_id"]
    due = live.locator(".due").evaluate("cell => cell.firstChild.textContent")
    assert due == f"{expected['minutes']} min"
    # the board's clock is the page's (pinned) time in the city's zone, not the machine's
    shown = datetime.fromtimestamp(page.evaluate("Date.now()") / 1000,
                                   ZoneInfo(board["timezone"]))
    assert board["timezone"] == "Asia/Kuala_Lumpur"
    assert page.locator("#clock").inner_text() == shown.strftime("%I:%M %p")  # "en": 12 h
    assert shown.date() == PINNED_INSTANT.date()
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
