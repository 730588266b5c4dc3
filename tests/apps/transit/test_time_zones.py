"""The held-out evaluation's schedule baseline on feeds in other time zones.

Feeds built by :mod:`tests.apps.transit.city_feeds` (block ids unique within a route
only, a run past 24:00, blank first ``shape_dist_traveled``) in UTC+7, UTC-8 with a
daylight-saving change between the training and the test days, and UTC+13; and the
long-distance feed of the GTFS-realtime tests (a trip run hourly from one
``frequencies.txt`` row). Buses of the simulated days run near their timetable, so
the schedule baseline's error is minutes, not hours.
"""

from __future__ import annotations

from datetime import date

import pytest

from cityos.apps.transit.evaluation import HORIZON_BUCKETS, evaluate
from cityos.apps.transit.gtfs import read_feed
from cityos.apps.transit.models import service_day_origin
from cityos.apps.transit.synthetic import simulate_day
from tests.apps.transit.city_feeds import write_city_feed
from tests.apps.transit.test_gtfs_rt_live import long_distance_feed

#: (time zone, training days, test day); America/Los_Angeles moves to daylight time
#: on Sunday 2025-03-09, between the training days and the test day.
CASES = [
    ("Asia/Bangkok", [date(2025, 3, 6), date(2025, 3, 7)], date(2025, 3, 10)),
    ("America/Los_Angeles", [date(2025, 3, 6), date(2025, 3, 7)], date(2025, 3, 10)),
    ("Pacific/Tongatapu", [date(2025, 3, 6), date(2025, 3, 7)], date(2025, 3, 10)),
]


def test_the_los_angeles_days_straddle_a_daylight_saving_change():
    tz = "America/Los_Angeles"
    day_before, day_after = date(2025, 3, 7), date(2025, 3, 10)
    # 3 days between the service days' noons, one hour of it skipped
    gap = service_day_origin(day_after, tz) - service_day_origin(day_before, tz)
    assert gap == 3 * 86400 - 3600


@pytest.mark.parametrize(("timezone", "train", "test"), CASES, ids=[c[0] for c in CASES])
def test_schedule_baseline_is_minutes_off_in_any_time_zone(tmp_path, timezone, train, test):
    feed = read_feed(write_city_feed(tmp_path / "feed", timezone))
    trained = [simulate_day(feed, day, "normal", seed=1) for day in train]
    report = evaluate(feed, trained, [simulate_day(feed, test, "normal", seed=1)])
    for bucket in HORIZON_BUCKETS[:3]:
        schedule = report.mae("schedule", bucket)
        # the simulated buses keep to the timetable within a few minutes
        assert 30 < schedule < 600, (bucket, schedule)
        assert report.p90_s["schedule"][HORIZON_BUCKETS.index(bucket)] < 1500
        assert report.mae("model", bucket) < schedule
    assert report.score("schedule") > 0.25


def test_schedule_baseline_of_a_frequency_based_trip_is_its_own_run(tmp_path):
    feed = long_distance_feed(tmp_path / "laos")  # Asia/Vientiane, UTC+7
    days = [date(2025, 3, 3), date(2025, 3, 4)]
    report = evaluate(feed, [simulate_day(feed, days[0], "normal", seed=0)],
                      [simulate_day(feed, days[1], "normal", seed=0)])
    for bucket in HORIZON_BUCKETS:
        # the template leaves at 06:00, the runs every hour to 17:00: scored against
        # the template, the later runs would be hours "late"; against their own
        # timetable they are as late as the simulated roads make them (80 km legs)
        assert report.mae("schedule", bucket) < 3600, bucket


def test_runs_of_trips_without_times_are_counted_not_scored(tmp_path):
    from tests.apps.transit.test_synthetic import UNTIMED_DAY, UNTIMED_FEED

    for name, text in UNTIMED_FEED.items():
        (tmp_path / name).write_text(text)
    # Asia/Brunei: a trip without any time (run every 30 min) and one whose end stops
    # have none: the predictor has no timetable for them (it raised before)
    feed = read_feed(tmp_path)
    day = simulate_day(feed, UNTIMED_DAY, "normal", seed=0)
    report = evaluate(feed, [day], [simulate_day(feed, UNTIMED_DAY, "normal", seed=1)])
    assert report.predictions == 0
    assert "33 vehicle run(s) of trips without times in the feed were not scored" in \
        report.table()
