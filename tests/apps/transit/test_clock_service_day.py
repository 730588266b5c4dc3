"""The stop board read at the process clock's "now", on a service day past 24:00.

The clock is pinned (the ``clock`` fixture, :mod:`cityos.core.clock`) to 01:30 local
on the calendar day after the service day of an overnight trip (20:00-28:30), so the
rows due after midnight belong to the previous service day. ``.ci/clock-matrix``
runs this module under several machine clocks and time zones: its answers must not
move.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cityos.apps.transit.live import LiveFleet
from cityos.apps.transit.models import service_day_origin
from cityos.apps.transit.prediction import ArrivalPredictor
from cityos.core.clock import now
from tests.apps.transit.test_gtfs_rt_live import DAY, long_distance_feed

pytestmark = pytest.mark.clock

TZ = "Asia/Vientiane"  # the long-distance feed's agency_timezone (UTC+7)


@pytest.fixture(scope="module")
def overnight(tmp_path_factory):
    return long_distance_feed(tmp_path_factory.mktemp("overnight"))


def test_after_midnight_the_board_shows_the_previous_service_days_night_trip(
        overnight, clock):
    after_midnight = datetime.combine(DAY + timedelta(days=1), datetime.min.time(),
                                      ZoneInfo(TZ)).replace(hour=1, minute=30)
    clock.set(after_midnight)
    fleet = LiveFleet(overnight, ArrivalPredictor())
    rows = fleet.stop_board("S3", now())
    night = [row for row in rows if row.trip_id == "NIGHT"]
    assert len(night) == 1
    # 26:20:00 of the service day DAY: 02:20 on the next calendar day
    assert night[0].scheduled_t == service_day_origin(DAY, TZ) + 26 * 3600 + 20 * 60
    assert datetime.fromtimestamp(night[0].scheduled_t, ZoneInfo(TZ)).strftime(
        "%Y-%m-%d %H:%M") == "2025-03-06 02:20"
    assert not night[0].live


def test_before_the_night_trip_leaves_its_arrival_is_the_same_day(overnight, clock):
    clock.set(datetime.combine(DAY, datetime.min.time(), ZoneInfo(TZ)).replace(hour=20))
    rows = LiveFleet(overnight, ArrivalPredictor()).stop_board("S1", now())
    night = [row for row in rows if row.trip_id == "NIGHT"]
    assert [row.scheduled_t for row in night] == [
        service_day_origin(DAY, TZ) + 22 * 3600 + 10 * 60]
