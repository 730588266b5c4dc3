"""``cityos transit sim`` picks a day to drive, moves it to the present, and says why
when there is nothing to drive.

The feed (written by :mod:`tests.apps.transit.city_feeds`, ``America/Los_Angeles``)
is shaped like the Salem one: its calendar ran out in 2016 except one weekday service
that runs to 2023. The clock is pinned (:mod:`cityos.core.clock`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityos.apps.transit.cli import app as transit_app
from cityos.apps.transit.gtfs import read_feed
from cityos.apps.transit.models import service_day_origin
from cityos.apps.transit.sim import NothingToRun, plan_replay, run_feed, service_day_like
from cityos.core.clock import FixedClock, use_clock
from tests.apps.transit.city_feeds import write_city_feed

TZ = "America/Los_Angeles"
SUNDAY_2026 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)  # 10:00 in Salem
WEDNESDAY_2026 = datetime(2026, 12, 9, 16, 0, tzinfo=UTC)  # 08:00 in Salem


def mostly_expired_feed(folder: Path) -> Path:
    """The city feed running every day of 2016 (but Christmas), and one trip of a
    weekday service that runs to 2023."""
    write_city_feed(folder, TZ, service_years=(2016, 2016))
    calendar = (folder / "calendar.txt").read_text(encoding="utf-8")
    calendar = calendar.replace("WK,1,1,1,1,1,0,0,", "WK,1,1,1,1,1,1,1,")
    calendar += "LONG,1,1,1,1,1,0,0,20160101,20231231\r\n"
    (folder / "calendar.txt").write_text(calendar, encoding="utf-8", newline="")
    trips = (folder / "trips.txt").read_text(encoding="utf-8")
    (folder / "trips.txt").write_text(trips.replace("A,WK,A0-0360,", "A,LONG,A0-0360,"),
                                      encoding="utf-8", newline="")
    return folder


@pytest.fixture(scope="module")
def salem(tmp_path_factory) -> Path:
    return mostly_expired_feed(tmp_path_factory.mktemp("salem") / "salem")


def test_a_day_like_today_is_found_years_before_the_last_calendar_end(salem):
    feed = read_feed(salem)
    # the 2023 service runs no Sunday; the others' last Sunday is 2016-12-18
    # (2016-12-25 is removed): far more than 60 weeks before 2023
    assert service_day_like(feed, date(2026, 12, 6)) == date(2016, 12, 18)
    assert service_day_like(feed, date(2026, 12, 9)) == date(2023, 12, 27)


def test_an_expired_feed_is_replayed_at_the_present_time_of_day(salem):
    feed = read_feed(salem)
    plan = plan_replay(feed, SUNDAY_2026, scenario="normal")
    assert plan.day == date(2016, 12, 18)
    assert "no service today (2026-12-06, a Sunday)" in plan.note
    assert "its calendar runs from 2010-01-01 to 2023-12-31" in plan.note
    # 10:00 on the replayed day, moved to now
    assert plan.start_t == service_day_origin(plan.day, TZ) + 10 * 3600
    assert plan.start_t + plan.shift_s == SUNDAY_2026.timestamp()
    sent = []
    run_feed(feed, lambda ping, shift_s: sent.append(ping.t + shift_s), speedup=1e7,
             trace=plan.trace, start_t=plan.start_t, shift_s=plan.shift_s)
    assert sent and min(sent) >= SUNDAY_2026.timestamp() - 300  # late deliveries
    assert max(sent) < SUNDAY_2026.timestamp() + 16 * 3600  # the rest of the day


def test_a_start_time_and_a_day_are_replayed_from_now(salem):
    feed = read_feed(salem)
    plan = plan_replay(feed, WEDNESDAY_2026, day=date(2016, 3, 2), start_local_s=23 * 3600,
                       scenario="normal")
    assert plan.start_t == service_day_origin(date(2016, 3, 2), TZ) + 23 * 3600
    assert plan.shift_s == WEDNESDAY_2026.timestamp() - plan.start_t
    with pytest.raises(NothingToRun, match=r"after --start 25:30:00: the last bus reports "
                                           r"at 24:"):
        plan_replay(feed, WEDNESDAY_2026, day=date(2016, 3, 2), start_local_s=25 * 3600 + 1800)


def test_sim_says_why_when_no_bus_runs_and_exits_non_zero(salem, tmp_path):
    runner = CliRunner()
    args = ["sim", str(salem), "--mqtt-url", "mqtt://127.0.0.1:1", "--dropped-list",
            str(tmp_path / "d.csv")]
    with use_clock(FixedClock(SUNDAY_2026)):
        result = runner.invoke(transit_app, [*args, "--day", "2016-12-25"])
    assert result.exit_code == 1
    assert "salem: no trip runs on 2016-12-25 (a Sunday): its calendar runs from " \
           "2010-01-01 to 2023-12-31" in result.output
    with use_clock(FixedClock(SUNDAY_2026)):
        result = runner.invoke(transit_app, [*args, "--day", "2019-06-09"])
    assert result.exit_code == 1 and "no trip runs on 2019-06-09 (a Sunday)" in result.output
    result = runner.invoke(transit_app, [*args, "--day", "June 9"])
    assert result.exit_code == 2 and "--day" in result.output
    result = runner.invoke(transit_app, [*args, "--start", "7h30"])
    assert result.exit_code == 2 and "--start" in result.output


def test_a_feed_with_no_service_on_that_weekday_says_so(tmp_path):
    folder = write_city_feed(tmp_path / "weekdays", TZ, service_years=(2016, 2016))
    with pytest.raises(NothingToRun, match=r"no service today \(2026-12-06, a Sunday\) nor "
                                           r"on any Sunday of the feed: its calendar runs "
                                           r"from 2010-01-01 to 2016-12-31; give --day"):
        plan_replay(read_feed(folder), SUNDAY_2026)


@pytest.mark.mqtt
def test_sim_publishes_a_past_day_stamped_from_now_through_a_real_broker(salem, tmp_path):
    import signal
    import threading

    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.core.ingest.brokers import PrivateBroker, wait_until

    broker = PrivateBroker(tmp_path / "broker").start()
    received: list[dict] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-days-test")
    client.on_connect = lambda c, *_: c.subscribe("cityos/salem/Vehicle/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, message: received.append(orjson.loads(message.payload))
    host, port = broker.url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    try:
        assert subscribed.wait(15)
        with use_clock(FixedClock(WEDNESDAY_2026)):
            # the last run of 2016-03-02, from 24:15 (it reaches its end at 24:20:40)
            result = CliRunner().invoke(transit_app, [
                "sim", str(salem), "--mqtt-url", broker.url, "--tenant", "salem",
                "--day", "2016-03-02", "--start", "24:15:00", "--speedup", "200",
                "--dropped-list", str(tmp_path / "d.csv")])
        assert result.exit_code == 0, result.output
        published = int(result.output.split(" pings published")[0].split()[-1])
        assert published > 5
        wait_until(lambda: len(received) >= published, timeout_s=30, what="every ping")
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop(signal.SIGKILL)
    stamps = sorted(datetime.fromisoformat(r["observedAt"].replace("Z", "+00:00"))
                    for r in received)
    # stamped from now on: what is left of the runs (running late), not 2016's times
    assert stamps[0] >= WEDNESDAY_2026 and (stamps[-1] - WEDNESDAY_2026).total_seconds() < 1800
    assert {r["tripId"] for r in received} == {"A0-1430", "B0-1430"}
