"""Flood-depth alerts: levels with hysteresis and hold times, rate of rise, quality gating."""

from __future__ import annotations

import math

import pytest

from cityos.apps.floodwatch.alerting import (
    SEVERITIES,
    AlertError,
    AlertLevel,
    AlertLevels,
    AlertTracker,
)
from cityos.apps.floodwatch.quality import QualityChecker, SensorProfile

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
NO_RATE = AlertLevels(rate_of_rise_cm_per_10min=None)


def feed(tracker, depths, usable=None, step_s=60.0):
    """Feed depths one minute apart; return (minute, event) pairs."""
    usable = [True] * len(depths) if usable is None else usable
    return [(i, event) for i, (depth, ok) in enumerate(zip(depths, usable, strict=True))
            for event in tracker.update(T0 + step_s * i, depth, ok)]


# noise around 20 cm: crosses the warning level five times (up, down, up, down, up ...)
AROUND_20 = ([2.0, 6.0, 11.0, 15.0, 18.0]
             + [20.5, 19.2, 21.0, 18.6, 20.3, 19.5, 21.4, 19.0, 20.8, 19.9, 19.4]
             + [16.0, 12.0, 9.0, 7.0, 5.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])


def test_noise_around_20_cm_raises_the_warning_once_and_the_all_clear_once_at_the_end():
    ups = sum(1 for a, b in zip(AROUND_20, AROUND_20[1:], strict=False) if a < 20 <= b)
    assert ups == 5
    events = feed(AlertTracker(NO_RATE), AROUND_20)
    kinds = [(e.kind, e.level_name) for _, e in events]
    assert kinds.count(("level", "warning")) == 1
    assert [k for k, _ in kinds].count("all-clear") == 1 and kinds[-1][0] == "all-clear"
    assert kinds == [("level", "advisory"), ("level", "warning"), ("lowered", "advisory"),
                     ("all-clear", None)]
    # the all-clear waits 5 min below 8 cm (10 - 2): 7.0 cm at minute 19 -> minute 24
    assert events[-1][0] == 24 and events[-1][1].t == T0 + 24 * 60


def test_without_hysteresis_the_same_noise_would_flap():
    flappy = AlertLevels(hysteresis_cm=0.0, clear_after_s=0.0, rate_of_rise_cm_per_10min=None)
    events = feed(AlertTracker(flappy), AROUND_20)
    assert sum(e.kind == "level" and e.level_name == "warning" for _, e in events) == 5


def test_a_spike_flagged_by_quality_never_raises_an_alert():
    depths = [5.0, 5.2, 5.1, 50.0, 5.2, 5.3, 5.1, 5.0]
    checker, tracker, events = QualityChecker(SensorProfile.for_kind("depth")), \
        AlertTracker(), []
    for i, depth in enumerate(depths):
        for final in checker.check(T0 + 60 * i, depth).settled():
            events += tracker.update(final.t, final.value, final.usable)
    assert events == [] and tracker.level == -1
    # fed straight in, the same spike raises the top level at once
    raw = feed(AlertTracker(), depths)
    assert ("level", "danger") in [(e.kind, e.level_name) for _, e in raw]


def test_unusable_readings_neither_raise_nor_clear():
    tracker = AlertTracker(AlertLevels(clear_after_s=0.0))
    assert tracker.update(T0, 80.0, False) == [] and tracker.level == -1
    assert [e.level_name for e in tracker.update(T0 + 60, 25.0, True)] == ["warning"]
    assert tracker.update(T0 + 120, 0.0, False) == [] and tracker.level_name == "warning"
    # an unusable reading may be anything, even out of order or not a number
    assert tracker.update(T0 - 999, math.nan, False) == []
    assert [e.kind for e in tracker.update(T0 + 180, 0.0, True)] == ["all-clear"]


def test_a_jump_raises_only_the_highest_level_and_the_way_down_is_reported():
    tracker = AlertTracker(AlertLevels(clear_after_s=0.0, rate_of_rise_cm_per_10min=None),
                           place="River Bridge underpass")
    events = feed(tracker, [5.0, 35.0, 33.0, 27.0, 25.0, 17.0, 9.0, 7.0])
    got = [(i, e.kind, e.level, e.level_name, e.severity) for i, e in events]
    assert got == [(1, "level", 2, "danger", "critical"),
                   (3, "lowered", 1, "warning", "informational"),
                   (5, "lowered", 0, "advisory", "informational"),
                   (7, "all-clear", -1, None, "informational")]
    first = events[0][1]
    assert first.depth_cm == 35.0 and "River Bridge underpass" in first.message
    assert "35.0 cm" in first.message and "danger" in first.message


def test_raise_after_s_ignores_a_short_excursion_and_raises_a_sustained_one_on_time():
    levels = AlertLevels(raise_after_s=120.0, rate_of_rise_cm_per_10min=None)
    # 12 cm for 2 readings (60 s) then back: nothing; then 12 cm from minute 4 on
    events = feed(AlertTracker(levels), [5.0, 12.0, 12.0, 5.0, 12.0, 12.0, 12.0, 12.0])
    assert [(i, e.level_name) for i, e in events] == [(6, "advisory")]


def test_clear_after_s_restarts_when_the_water_comes_back_up():
    levels = AlertLevels(clear_after_s=180.0, rate_of_rise_cm_per_10min=None)
    # below 8 cm at minutes 2-3, back to 9 (no clear, not a new raise), then below from 5
    events = feed(AlertTracker(levels), [12.0, 11.0, 6.0, 6.0, 9.0, 6.0, 6.0, 6.0, 6.0])
    assert [(i, e.kind) for i, e in events] == [(0, "level"), (8, "all-clear")]


def test_rate_of_rise_is_the_least_squares_slope_and_rearms_after_the_rise_stops():
    # 1 cm/min = 10 cm per 10 min from minute 0 to 12, flat to 24, then 0.8 cm/min again
    depths = ([0.5 + i for i in range(13)] + [12.5] * 12
              + [12.5 + 0.8 * (i + 1) for i in range(10)])
    events = [(i, e) for i, e in feed(AlertTracker(), depths) if e.kind == "rate-of-rise"]
    # first: a full half window of the 1 cm/min rise; second: the window of minutes 20-30
    # is 5 flat readings then 6 rising 0.8 cm/min, slope 0.8 * 70 / 110 cm/min
    assert [i for i, _ in events] == [5, 30]
    assert events[0][1].rate_cm_per_10min == pytest.approx(10.0)
    assert events[1][1].rate_cm_per_10min == pytest.approx(10 * 0.8 * 70 / 110)
    assert events[0][1].severity == "high" and "10.0 cm per 10 min" in events[0][1].message
    # a pause shorter than the window never brings the slope to zero: no re-arming
    paused = [0.5 + i for i in range(13)] + [12.5] * 8 + [12.5 + i for i in range(1, 11)]
    assert sum(e.kind == "rate-of-rise" for _, e in feed(AlertTracker(), paused)) == 1
    # a slow rise (4 cm per 10 min) stays quiet
    slow = [0.4 * i for i in range(40)]
    assert not [e for _, e in feed(AlertTracker(), slow) if e.kind == "rate-of-rise"]


def test_rate_of_rise_uses_usable_readings_only():
    depths = [1.0 + 0.2 * i for i in range(20)]  # 2 cm per 10 min: no alert
    usable = [True] * 20
    for i in range(3, 20, 3):  # unusable wild readings in between change nothing
        depths[i], usable[i] = 90.0, False
    assert feed(AlertTracker(), depths, usable) == []


def test_severities_are_the_platforms():
    from cityos.core.alerts import SEVERITIES as PLATFORM

    assert SEVERITIES == PLATFORM
    assert [level.severity for level in AlertLevels().levels] == [
        "informational", "high", "critical"]


@pytest.mark.parametrize("make, field", [
    (lambda: AlertLevels(levels=(AlertLevel("a", 20, "high"), AlertLevel("b", 10, "low"))),
     "levels"),
    (lambda: AlertLevels(levels=(AlertLevel("a", 10, "high"), AlertLevel("a", 20, "low"))),
     "levels"),
    (lambda: AlertLevels(levels=()), "levels"),
    (lambda: AlertLevel("a", 10, "warning"), "severity"),
    (lambda: AlertLevel("", 10, "high"), "name"),
    (lambda: AlertLevel("a", math.inf, "high"), "depth_cm"),
    (lambda: AlertLevels(hysteresis_cm=10.0), "hysteresis_cm"),
    (lambda: AlertLevels(clear_after_s=-1.0), "clear_after_s"),
    (lambda: AlertLevels(rate_of_rise_cm_per_10min=0.0), "rate_of_rise_cm_per_10min"),
    (lambda: AlertLevels(rate_min_readings=1), "rate_min_readings"),
    (lambda: AlertLevels(all_clear_severity="green"), "all_clear_severity"),
    (lambda: AlertTracker(place=""), "place"),
])
def test_bad_settings_are_named(make, field):
    with pytest.raises(AlertError) as caught:
        make()
    assert caught.value.field == field and isinstance(caught.value, ValueError)


def test_bad_usable_readings_are_named():
    tracker = AlertTracker()
    tracker.update(T0, 5.0, True)
    with pytest.raises(AlertError, match="^t: must be after"):
        tracker.update(T0, 6.0, True)
    with pytest.raises(AlertError, match="^depth_cm"):
        tracker.update(T0 + 60, math.nan, True)
    with pytest.raises(AlertError, match="^depth_cm"):
        tracker.update(T0 + 60, "deep", True)
