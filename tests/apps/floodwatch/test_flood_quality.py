"""Flood-sensor quality checks: each flag on a crafted series, offline sweep, batch = online."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityos.apps.floodwatch.quality import (
    FLAGS,
    QualityChecker,
    QualityError,
    SensorProfile,
    check_series,
    offline_sensors,
)

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DEPTH = SensorProfile.for_kind("depth")


def run(values, profile=DEPTH, times=None, battery=None):
    """Feed a series to one checker; return the final verdicts in time order."""
    checker = QualityChecker(profile)
    times = [T0 + 60.0 * i for i in range(len(values))] if times is None else times
    battery = [None] * len(values) if battery is None else battery
    finals = []
    for t, value, level in zip(times, values, battery, strict=True):
        finals.extend(checker.check(t, value, level).settled())
    last = checker.flush()
    if last is not None:
        finals.append(last)
    return finals


def flags_of(finals):
    return [v.flags for v in finals]


# ------------------------------------------------------------------------ profiles
def test_profiles_have_defaults_per_kind_and_rain_range_follows_the_interval():
    assert (DEPTH.units, DEPTH.min_value, DEPTH.max_value, DEPTH.gap_s) == ("cm", -5.0, 300.0,
                                                                            300.0)
    rain = SensorProfile.for_kind("rain")
    assert rain.units == "mm" and rain.max_value == pytest.approx(500.0 / 60.0)
    assert math.isinf(rain.spike_threshold) and math.isinf(rain.max_rate_per_min)
    assert SensorProfile.for_kind("rain", interval_s=300).max_value == pytest.approx(500 / 12)
    assert SensorProfile.for_kind("weather").stuck_resting_max is None
    assert SensorProfile.for_kind("depth", max_value=150).max_value == 150


@pytest.mark.parametrize("kind, overrides, field", [
    ("puddle", {}, "kind"),
    ("depth", {"min_value": 50.0, "max_value": 10.0}, "max_value"),
    ("depth", {"interval_s": 0}, "interval_s"),
    ("depth", {"max_rate_per_min": -1.0}, "max_rate_per_min"),
    ("depth", {"spike_threshold": math.nan}, "spike_threshold"),
    ("depth", {"stuck_count": 1}, "stuck_count"),
    ("depth", {"stuck_tolerance": -0.1}, "stuck_tolerance"),
    ("depth", {"offline_after": 0}, "offline_after"),
    ("depth", {"battery_units": "A"}, "battery_units"),
    ("depth", {"battery_units": "%", "battery_low": 120.0}, "battery_low"),
    ("depth", {"units": ""}, "units"),
    ("depth", {"colour": "blue"}, "colour"),
])
def test_bad_profile_fields_are_named(kind, overrides, field):
    with pytest.raises(QualityError) as caught:
        SensorProfile.for_kind(kind, **overrides)
    assert caught.value.field == field and isinstance(caught.value, ValueError)


def test_replace_revalidates_the_profile():
    with pytest.raises(QualityError, match="offline_after"):
        dataclasses.replace(DEPTH, offline_after=-2)


# ------------------------------------------------------------------------ each flag
def test_range_flags_out_of_range_and_non_finite_values():
    finals = run([5.0, -10.0, 400.0, math.nan, math.inf, 6.0])
    assert flags_of(finals) == [(), ("range",), ("range",), ("range",), ("range",), ()]
    assert [v.usable for v in finals] == [True, False, False, False, False, True]
    assert finals[1].cleaned is None and finals[5].cleaned == 6.0


def test_rate_compares_with_the_last_usable_reading_and_accepts_a_real_shift_in_time():
    # 10 cm/min allowed: 5 -> 30 is 25 cm; allowance 10, 20, 30 cm after 1, 2, 3 min
    finals = run([5.0, 30.0, 30.0, 30.0, 31.0])
    assert flags_of(finals) == [(), ("rate",), ("rate",), (), ()]
    # a real rise at 8 cm/min passes untouched
    assert all(v.usable for v in run([2.0 + 8.0 * i for i in range(8)]))


def test_rate_allowance_never_shrinks_below_one_interval():
    # a burst of readings 10 s apart: 6 cm in 10 s is within one interval's 10 cm
    times = [T0, T0 + 10, T0 + 20]
    assert flags_of(run([5.0, 11.0, 12.0], times=times)) == [(), (), ()]
    assert flags_of(run([5.0, 16.0, 12.0], times=times))[1] == ("rate",)


def test_a_single_reading_spike_is_held_then_flagged_and_cleaned_to_the_median():
    checker = QualityChecker(DEPTH)
    first = checker.check(T0, 5.0)
    spike = checker.check(T0 + 60, 50.0)
    assert first.usable and spike.pending and not spike.usable and spike.cleaned is None
    back = checker.check(T0 + 120, 6.0)
    assert back.pending  # its predecessor is the spike, 44 cm away: one reading more
    assert back.revised.flags == ("rate", "spike") and back.revised.cleaned == 6.0
    assert not back.revised.usable
    after = checker.check(T0 + 180, 6.5)
    assert [v.t for v in after.settled()] == [T0 + 120, T0 + 180]
    assert all(v.usable for v in after.settled())


def test_spike_is_median_of_three_a_sustained_step_or_a_dip_is_judged_right():
    no_rate = SensorProfile.for_kind("depth", max_rate_per_min=math.inf)
    assert flags_of(run([5.0, 5.0, 50.0, 50.0, 50.0], no_rate)) == [()] * 5
    assert flags_of(run([20.0, 20.0, 4.0, 21.0, 20.0], no_rate)) == [
        (), (), ("spike",), (), ()]
    # a rise that keeps going (5, 20, 35) is not a spike: 20 is the median
    assert flags_of(run([5.0, 20.0, 35.0], no_rate)) == [(), (), ()]
    # a suspect with no return seen (end of the series) is not a spike
    assert flags_of(run([5.0, 5.0, 50.0], no_rate)) == [(), (), ()]


def test_spike_neighbours_do_not_reach_across_a_gap():
    no_rate = SensorProfile.for_kind("depth", max_rate_per_min=math.inf)
    times = [T0, T0 + 60, T0 + 120, T0 + 2000, T0 + 2060]
    finals = run([5.0, 5.0, 50.0, 5.0, 5.0], no_rate, times=times)
    assert flags_of(finals) == [(), (), (), ("gap",), ()]


def test_stuck_fires_on_a_constant_non_zero_reading_but_never_on_a_dry_zero_baseline():
    finals = run([17.3] * 40)
    stuck = [i for i, v in enumerate(finals) if "stuck" in v.flags]
    assert stuck == list(range(29, 40))  # from the 30th identical reading on
    assert all(not v.usable for v in finals[29:]) and all(v.usable for v in finals[:29])
    assert all(v.flags == () for v in run([0.0] * 500))  # dry road
    assert all(v.flags == () for v in run([0.4, 0.5] * 250))  # dry road with an offset
    rain = SensorProfile.for_kind("rain")
    assert all(v.flags == () for v in run([0.0] * 500, rain))  # dry gauge
    assert [i for i, v in enumerate(run([0.2] * 70, rain)) if v.flags] == list(range(59, 70))
    # a weather sensor has no resting state: a constant zero is stuck
    weather = SensorProfile.for_kind("weather", stuck_count=10)
    assert sum("stuck" in v.flags for v in run([0.0] * 12, weather)) == 3


def test_stuck_tolerance_catches_a_sensor_that_only_jitters():
    jitter = SensorProfile.for_kind("depth", stuck_count=5, stuck_tolerance=0.1)
    values = [12.0, 12.05, 12.0, 12.1, 12.05, 12.0, 13.0, 12.5]
    assert [("stuck" in v.flags) for v in run(values, jitter)] == [
        False, False, False, False, True, True, False, False]


def test_gap_marks_the_reading_after_more_than_offline_after_intervals():
    times = [T0, T0 + 60, T0 + 360, T0 + 661, T0 + 721]  # 300 s silence, then 301 s
    finals = run([5.0, 5.5, 6.0, 6.5, 6.5], times=times)
    assert flags_of(finals) == [(), (), (), ("gap",), ()]
    assert finals[3].usable


def test_offline_sweep_lists_silent_sensors_without_a_reading_arriving():
    quiet, chatty, never, unknown = (QualityChecker(DEPTH),
                                     QualityChecker(DEPTH),
                                     QualityChecker(DEPTH, expected_from=T0),
                                     QualityChecker(DEPTH))
    quiet.check(T0, 3.0)
    chatty.check(T0, 3.0)
    chatty.check(T0 + 240, 3.1)
    checkers = {"quiet": quiet, "chatty": chatty, "never": never, "unknown": unknown}
    assert offline_sensors(checkers, T0 + 300) == []
    assert offline_sensors(checkers, T0 + 301) == ["never", "quiet"]
    assert offline_sensors(checkers, T0 + 541) == ["chatty", "never", "quiet"]
    assert quiet.offline_since() == T0 + 300 and unknown.offline_since() is None
    with pytest.raises(QualityError, match="now"):
        offline_sensors(checkers, math.nan)


def test_low_battery_is_a_maintenance_flag_and_keeps_the_reading_usable():
    finals = run([5.0, 5.0, 5.0, 5.0], battery=[3.6, 3.2, None, math.nan])
    assert flags_of(finals) == [(), ("low-battery",), (), ()]
    assert all(v.usable for v in finals)
    percent = SensorProfile.for_kind("depth", battery_units="%", battery_low=15.0)
    assert flags_of(run([5.0, 5.0], percent, battery=[16, 14])) == [(), ("low-battery",)]


def test_duplicate_and_out_of_order_readings_are_dropped_without_touching_the_state():
    checker = QualityChecker(DEPTH)
    assert checker.check(T0, 5.0).usable
    assert checker.check(T0 + 60, 6.0).usable
    dup = checker.check(T0 + 60, 90.0)
    late = checker.check(T0 + 30, 90.0)
    assert (dup.flags, dup.usable, late.flags, late.usable) == (
        ("duplicate",), False, ("out-of-order",), False)
    # the wild dropped values left no trace: the next reading is judged against 6.0
    nxt = checker.check(T0 + 120, 6.5)
    assert nxt.flags == () and nxt.usable and checker.last_t == T0 + 120


@pytest.mark.parametrize("args, field", [
    ((math.nan, 5.0), "t"), (("noon", 5.0), "t"), ((T0, "deep"), "value"),
    ((T0, True), "value"), ((T0, 5.0, "full"), "battery")])
def test_bad_reading_inputs_are_named(args, field):
    with pytest.raises(QualityError) as caught:
        QualityChecker(DEPTH).check(*args)
    assert caught.value.field == field


# ------------------------------------------------------------------------ batch
def test_check_series_flags_a_crafted_series_and_counts_them():
    t = T0 + 60.0 * np.arange(12)
    t[5] = t[4]  # duplicate
    t[6] = t[3]  # out of order
    t[9:] += 600  # gap before index 9
    depth = np.array([5, 5, 50, 5, 5, 9, 9, 400, 5, 5, 5.5, 6])
    battery = np.array([3.6] * 11 + [3.0])
    got = check_series(t, depth, DEPTH, battery)
    assert got.flags[2] == ("rate", "spike") and got.cleaned[2] == 5.0
    assert got.flags[5] == ("duplicate",) and got.flags[6] == ("out-of-order",)
    assert got.flags[7] == ("range",) and got.flags[9] == ("gap",)
    assert got.flags[11] == ("low-battery",)
    assert got.counts() == {"out-of-order": 1, "duplicate": 1, "range": 1, "rate": 1,
                            "spike": 1, "gap": 1, "low-battery": 1}
    assert got.usable.tolist() == [True, True, False, True, True, False, False, False,
                                   True, True, True, True]
    assert np.isnan(got.cleaned[7]) and got.flag_mask("gap").tolist() == [
        i == 9 for i in range(12)]


@pytest.mark.parametrize("kwargs, field", [
    ({"t": [1.0, 2.0], "values": [1.0]}, "values"),
    ({"t": [[1.0, 2.0]], "values": [[1.0, 2.0]]}, "t"),
    ({"t": [1.0, math.nan], "values": [1.0, 2.0]}, "t"),
    ({"t": [1.0, 2.0], "values": [1.0, 2.0], "battery": [3.0]}, "battery"),
    ({"t": [1.0, 2.0], "values": ["a", "b"]}, "values"),
])
def test_check_series_names_bad_arrays(kwargs, field):
    with pytest.raises(QualityError) as caught:
        check_series(profile=DEPTH, **kwargs)
    assert caught.value.field == field


def assert_same_as_online(t, values, battery, profile):
    """Online verdicts, matched to arrival indices (a pending reading is settled by a
    later one, or by the final flush), equal the batch ones."""
    batch = check_series(t, values, profile, battery)
    checker = QualityChecker(profile)
    online, held = {}, None
    for i, (ti, vi, bi) in enumerate(zip(t, values, battery, strict=True)):
        verdict = checker.check(ti, vi, None if math.isnan(bi) else bi)
        if verdict.revised is not None:
            online[held], held = verdict.revised, None
        if verdict.pending:
            held = i
        else:
            online[i] = verdict
    if held is not None:
        online[held] = checker.flush()
    assert sorted(online) == list(range(len(t)))
    for i, verdict in online.items():
        assert batch.flags[i] == verdict.flags, i
        assert bool(batch.usable[i]) == verdict.usable, i
        if verdict.cleaned is None:
            assert math.isnan(batch.cleaned[i]), i
        else:
            assert batch.cleaned[i] == verdict.cleaned, i


readings = st.lists(
    st.tuples(st.sampled_from([0.0, 1.0, 60.0, 60.0, 60.0, 60.0, -30.0, 700.0]),
              st.one_of(st.sampled_from([0.0, 0.0, 5.0, 5.0, 12.0, 40.0, 400.0, math.nan]),
                        st.floats(-8.0, 60.0)),
              st.sampled_from([3.6, 3.1, math.nan])),
    min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(readings, st.sampled_from([0, 3]), st.sampled_from([0.0, 0.5]))
def test_batch_and_online_give_identical_flags(rows, stuck_count, tolerance):
    profile = SensorProfile.for_kind("depth", stuck_count=stuck_count,
                                     stuck_tolerance=tolerance, offline_after=2)
    t = T0 + np.cumsum([step for step, _, _ in rows])
    values = np.array([value for _, value, _ in rows])
    battery = np.array([level for _, _, level in rows])
    assert_same_as_online(t.tolist(), values.tolist(), battery.tolist(), profile)


def test_batch_and_online_agree_on_a_long_noisy_storm_series():
    rng = np.random.default_rng(7)
    n = 5000
    t = T0 + 60.0 * np.arange(n) + rng.integers(-2, 3, n)
    t[rng.choice(n, 40)] += 900  # late readings
    truth = np.clip(25 * np.sin(np.arange(n) / 300.0), 0, None)
    depth = np.round(truth + rng.normal(0, 0.8, n), 1)
    depth[rng.choice(n, 60)] = rng.uniform(40, 120, 60)  # spikes
    depth[rng.choice(n, 20)] = np.nan
    depth[3000:3040] = 17.3  # stuck
    battery = np.where(rng.random(n) < 0.05, 3.1, 3.7)
    assert_same_as_online(t.tolist(), depth.tolist(), battery.tolist(), DEPTH)
    got = check_series(t, depth, DEPTH, battery)
    assert set(got.counts()) == set(FLAGS) - {"offline"}
