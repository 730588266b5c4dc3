"""Flood event analytics on crafted records whose answers are worked out by hand below."""

from __future__ import annotations

import math
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from scipy import stats

from cityos.apps.floodwatch.events import (
    EventDataError,
    FloodEvent,
    correlation,
    flood_events,
    rain_events,
    site_event_table,
    traffic_impact,
)

T0 = 1_718_000_000.0  # any epoch second: the record's origin
STEP = 300.0  # 5-min gauge


def gauge(dry_h: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """5-min gauge: 2, 4, 6 mm ending at +5/+10/+15 min; then ``dry_h`` of dry time before
    1, 3 mm; then 7 h of dry time before a lone 5 mm reading."""
    t = T0 + STEP * np.arange(1, n + 1)
    rain = np.zeros(n)
    rain[[0, 1, 2]] = [2.0, 4.0, 6.0]  # interval (T0, T0+900]
    k = 3 + round(dry_h * 3600 / STEP)  # first wet interval starts dry_h after T0+900
    rain[[k, k + 1]] = [1.0, 3.0]
    m = k + 2 + round(7 * 3600 / STEP)
    rain[m] = 5.0
    return t, rain


# ====================================================================== rain events
@pytest.mark.parametrize(("dry_h", "split"), [(5.0, False), (7.0, True), (6.0, True)])
def test_inter_event_dry_time_of_six_hours(dry_h, split):
    t, rain = gauge(dry_h)
    events = rain_events(t, rain, min_dry_s=6 * 3600)
    assert len(events) == (3 if split else 2)
    assert events[0].start == T0 and events[0].total_mm == pytest.approx(12.0 if split else 16.0)
    assert events[-1].total_mm == pytest.approx(5.0)  # the lone reading after 7 h dry


def test_totals_peaks_and_window_by_hand():
    t, rain = gauge(5.0)
    first, last = rain_events(t, rain)  # 6 h rule merges the 5 h dry spell
    assert (first.start, first.end) == (T0, T0 + 900 + 5 * 3600 + 600)
    assert first.duration_s == 900 + 5 * 3600 + 600
    assert first.total_mm == pytest.approx(16.0)
    assert first.peak_mm_h == pytest.approx(6.0 / 300 * 3600)  # 72 mm/h
    assert first.peak_t == T0 + 900
    assert first.peak_window_mm_h == pytest.approx((4.0 + 6.0) / 600 * 3600)  # 60 mm/h
    assert first.readings == 3 + 60 + 2 and first.missing_s == 0.0
    assert last.total_mm == pytest.approx(5.0) and last.duration_s == 300
    assert last.peak_window_mm_h == pytest.approx(5.0 / 600 * 3600)  # one reading in 10 min
    wide = rain_events(t, rain, window_s=900)[0]
    assert wide.peak_window_mm_h == pytest.approx(12.0 / 900 * 3600)  # 2+4+6 in 15 min


def test_small_events_dropped_after_splitting():
    t, rain = gauge(7.0)
    events = rain_events(t, rain, min_total_mm=5.5)
    assert [e.total_mm for e in events] == pytest.approx([12.0])  # 4 mm and 5 mm left out


def test_nan_readings_are_gaps_not_zeros():
    t, rain = gauge(5.0)
    rain[10:40] = np.nan  # gauge out for 2.5 h inside the merged event
    first = rain_events(t, rain)[0]
    assert first.total_mm == pytest.approx(16.0)
    assert first.missing_s == pytest.approx(30 * STEP)
    assert first.readings == 65 - 30
    # Missing rows (only the wet readings kept) give the same events with the interval given.
    wet = rain > 0
    again = rain_events(t[wet], rain[wet], interval_s=STEP)
    assert [(e.start, e.end, e.total_mm) for e in again] == [
        (e.start, e.end, e.total_mm) for e in rain_events(*gauge(5.0))]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"t": [3.0, 2.0, 1.0], "rain_mm": [0, 1, 0]}, "t[1]"),
    ({"t": [1.0, 2.0], "rain_mm": [0, 1, 0]}, "rain_mm"),
    ({"t": [300.0, 600.0], "rain_mm": [0, -1]}, "rain_mm[1]"),
    ({"t": [300.0, 600.0], "rain_mm": [0, np.inf]}, "rain_mm[1]"),
    ({"t": [300.0, np.nan], "rain_mm": [0, 1]}, "t[1]"),
    ({"t": [300.0, 600.0], "rain_mm": [0, 1], "window_s": 450}, "window_s"),
    ({"t": [300.0, 600.0], "rain_mm": [0, 1], "min_dry_s": 0}, "min_dry_s"),
])
def test_rain_input_errors_name_the_field(kwargs, field):
    with pytest.raises(EventDataError, match="^" + re.escape(field)):
        rain_events(**kwargs)


# ===================================================================== flood events
def ramp(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Rising 1 cm/min from 0 at T0 to 40 cm at T0+40 min, falling 0.5 cm/min to 0;
    read every 7 min from T0+1 min, so no reading falls on a threshold or the peak."""
    t = T0 + 60 + 420 * np.arange(n)
    minutes = (t - T0) / 60
    depth = np.where(minutes <= 40, minutes, np.maximum(40 - 0.5 * (minutes - 40), 0.0))
    return t, depth


def test_flood_crossings_interpolated_exactly_on_a_ramp():
    t, depth = ramp()
    (flood,) = flood_events(t, depth, threshold_cm=10)
    assert flood.start == pytest.approx(T0 + 600)  # 10 cm at +10 min
    assert flood.end == pytest.approx(T0 + 100 * 60)  # back to 10 cm at +40+60 min
    assert flood.duration_s == pytest.approx(90 * 60)
    assert flood.peak_depth_cm == pytest.approx(38.5)  # reading at +43 min
    assert flood.peak_t == T0 + 43 * 60
    assert flood.readings == 13  # +15, +22, ... +99 min


def test_short_dips_merge_and_gaps_split():
    t = T0 + 300 * np.arange(20)
    depth = np.array([0, 15, 15, 15, 5, 5, 15, 15, 0, 0, 0, 0, 0, 15, 15, np.nan, 15, 15, 0, 0],
                     dtype=float)
    # dip at readings 4-5: crossings at 3.5 and 5.5 steps -> 10 min below; the NaN at
    # reading 15 leaves 10 min between the last and the next reading above
    assert len(flood_events(t, depth, min_gap_s=900)) == 2
    assert len(flood_events(t, depth, min_gap_s=300)) == 4
    # The NaN at reading 15 is a gap: the run breaks there, without interpolation.
    split = flood_events(t, depth, min_gap_s=0)
    assert split[-2].end == t[14] and split[-1].start == t[16]
    merged = flood_events(t, depth, min_gap_s=900)
    assert merged[0].start == pytest.approx(t[0] + 300 * 2 / 3)  # 0 -> 15 cm, 10 cm at 2/3
    assert merged[0].end == pytest.approx(t[7] + 150)  # 15 -> 0 cm crosses 10 at 1/3
    assert merged[1].duration_s == pytest.approx(300 * (17 + 1 / 3 - 12 - 2 / 3))
    assert merged[1].readings == 4
    assert len(flood_events(t, depth, min_gap_s=900, min_duration_s=1800)) == 1


def test_flood_input_errors():
    with pytest.raises(EventDataError, match="^depth_cm: length 2 differs from t length 3"):
        flood_events([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(EventDataError, match="^threshold_cm"):
        flood_events([1.0, 2.0], [1.0, 2.0], threshold_cm=math.nan)


# ========================================================== rain -> flood per event
def test_time_to_each_threshold_on_a_crafted_ramp():
    depth_t, depth = ramp()
    rain_t = T0 + STEP * np.arange(1, 200)
    rain = np.zeros(rain_t.size)
    rain[:6] = 5.0  # 30 mm in the first half hour, starting at T0
    (row,) = site_event_table("PP-017", rain_t, rain, depth_t, depth, levels_cm=(10, 20, 30, 40))
    assert row.site_id == "PP-017" and row.event == 1
    assert row.rain_start == T0 and row.rain_total_mm == pytest.approx(30.0)
    assert row.time_to_cm[10.0] == pytest.approx(600)
    assert row.time_to_cm[20.0] == pytest.approx(1200)
    assert row.time_to_cm[30.0] == pytest.approx(1800)
    assert row.time_to_cm[40.0] is None  # the peak reading is 38.5 cm
    assert row.flood_duration_s == pytest.approx(5400)
    assert row.peak_depth_cm == pytest.approx(38.5) and row.peak_depth_t == T0 + 43 * 60


def test_response_window_stops_at_the_next_event():
    depth_t, depth = ramp(120)
    rain_t = T0 + STEP * np.arange(1, 400)
    rain = np.zeros(rain_t.size)
    rain[:6] = 5.0
    rain[84] = 2.0  # interval starts at T0 + 7 h: a second event, 6.5 h dry after the first
    rows = site_event_table("s", rain_t, rain, depth_t, depth, response_s=24 * 3600)
    assert rows[0].window_end == T0 + 7 * 3600
    assert rows[1].time_to_cm[10.0] is None and rows[1].flood_duration_s == 0.0
    assert rows[1].peak_depth_cm == 0.0 and rows[1].depth_readings > 0
    with pytest.raises(EventDataError, match="^rain_t"):
        site_event_table("s", rain_t[::-1], rain, depth_t, depth)
    with pytest.raises(EventDataError, match="^depth_t"):
        site_event_table("s", rain_t, rain, depth_t[::-1], depth)


# ====================================================================== correlation
def test_correlation_matches_scipy():
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 10.0, 40)
    y = 0.05 * x + rng.normal(0, 0.6, 40)
    c = correlation(x, y)
    ref_p, ref_s = stats.pearsonr(x, y), stats.spearmanr(x, y)
    assert c.n == 40
    assert c.pearson_r == pytest.approx(ref_p.statistic)
    assert c.pearson_p == pytest.approx(ref_p.pvalue)
    assert c.pearson_ci == pytest.approx(tuple(ref_p.confidence_interval(0.95)))
    assert c.spearman_rho == pytest.approx(ref_s.statistic)
    assert c.spearman_p == pytest.approx(ref_s.pvalue)
    slope, intercept = np.polyfit(x, y, 1)
    assert (c.slope, c.intercept) == pytest.approx((slope, intercept))


def test_fisher_interval_by_hand():
    # x, y with r = 0.5 exactly: y = 0.5 x + sqrt(0.75) e, x and e centred, orthonormal.
    n = 28
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.normal(size=(n, 2))]))
    x, e = q[:, 1], q[:, 2]
    c = correlation(x, 0.5 * x + math.sqrt(0.75) * e)
    assert c.pearson_r == pytest.approx(0.5)
    z, se = math.atanh(0.5), 1 / 5  # se = 1/sqrt(28 - 3)
    assert c.pearson_ci == pytest.approx((math.tanh(z - 1.959964 * se),
                                          math.tanh(z + 1.959964 * se)), abs=1e-6)
    rho = c.spearman_rho
    se_bw = math.sqrt((1 + rho**2 / 2) / 25)
    assert c.spearman_ci == pytest.approx((math.tanh(math.atanh(rho) - 1.959964 * se_bw),
                                           math.tanh(math.atanh(rho) + 1.959964 * se_bw)),
                                          abs=1e-6)


def test_intervals_cover_the_true_correlation_about_95_percent():
    rho, n, reps = 0.6, 30, 200
    rho_s = 6 / math.pi * math.asin(rho / 2)  # Spearman's rho of a bivariate normal
    cover_p = cover_s = 0
    for seed in range(reps):
        xy = np.random.default_rng(seed).multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
        c = correlation(xy[:, 0], xy[:, 1])
        cover_p += c.pearson_ci[0] <= rho <= c.pearson_ci[1]
        cover_s += c.spearman_ci[0] <= rho_s <= c.spearman_ci[1]
    assert 0.90 <= cover_p / reps <= 0.99
    assert 0.90 <= cover_s / reps <= 0.99


def test_correlation_input_errors_and_nan_pairs():
    with pytest.raises(EventDataError, match="at least 4"):
        correlation([1, 2, 3], [2, 1, 3])
    with pytest.raises(EventDataError, match="at least 4"):  # NaN pairs do not count
        correlation([1, 2, 3, np.nan, 5], [2, 1, 3, 4, np.nan])
    with pytest.raises(EventDataError, match="^y: all values are equal"):
        correlation([1, 2, 3, 4], [0, 0, 0, 0])
    with pytest.raises(EventDataError, match="^y: length 3 differs"):
        correlation([1, 2, 3, 4], [1, 2, 3])
    c = correlation([1, 2, 3, 4, 5, np.nan], [1, 3, 2, 5, 4, 9])
    assert c.n == 5 and c.spearman_rho == pytest.approx(0.8)


# =================================================================== traffic impact
TZ = ZoneInfo("Asia/Phnom_Penh")  # UTC+7


def local(*args) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()


def traffic_month():
    """15-min counts, Mon 2024-06-03 to Sun 2024-07-07, evening peak; a flood on Wednesday
    2024-06-19 18:00-19:00 keeps 10% of traffic; rain on Wednesday 2024-06-12 halves it."""
    start = local(2024, 6, 3)
    t = start + 900 * np.arange(1, 35 * 96 + 1)
    hour = ((t - 450 - start) % 86400) // 3600
    profile = np.select([hour < 5, (hour >= 7) & (hour < 9), (hour >= 17) & (hour < 20)],
                        [20.0, 300.0, 400.0], 120.0)
    volume = profile * (1 + np.random.default_rng(3).normal(0, 0.03, t.size))
    flood = (local(2024, 6, 19, 18), local(2024, 6, 19, 19))
    volume[(t - 450 >= flood[0]) & (t - 450 <= flood[1])] *= 0.1
    rainy = (t - 450 >= local(2024, 6, 12)) & (t - 450 < local(2024, 6, 13))
    volume[rainy] *= 0.5
    rain_t = start + 3600 * np.arange(1, 35 * 24 + 1)
    rain_mm = np.zeros(rain_t.size)
    rain_mm[np.searchsorted(rain_t, local(2024, 6, 12, 15))] = 3.0
    night_flood = FloodEvent(local(2024, 6, 22, 3), local(2024, 6, 22, 4), 3600, 14.0,
                             local(2024, 6, 22, 3, 30), 10.0, 12)  # Saturday, no drop
    return t, volume, rain_t, rain_mm, [flood, night_flood]


def test_ninety_percent_loss_at_evening_peak():
    t, volume, rain_t, rain_mm, floods = traffic_month()
    result = traffic_impact(floods, t, volume, rain_t=rain_t, rain_mm=rain_mm)
    evening, night = result.events
    assert evening.weekday == "Wednesday"
    assert evening.readings_in_flood == 4 and evening.readings_used == 4
    assert evening.change_pct == pytest.approx(-90.0, abs=1.0)
    # Other Wednesdays, less the rainy one and the flood day itself.
    assert evening.dry_days == ("2024-06-05", "2024-06-26", "2024-07-03")
    assert night.weekday == "Saturday" and night.change_pct == pytest.approx(0.0, abs=5.0)
    assert "2024-06-22" not in night.dry_days and len(night.dry_days) == 4
    by_hour = {h.hour: h for h in result.by_hour}
    assert set(by_hour) == {3, 18}
    assert by_hour[18].change_pct == pytest.approx(-90.0, abs=1.0)
    assert by_hour[18].expected_vehicles == pytest.approx(1600, rel=0.03)


def test_without_rain_record_the_rainy_day_counts_as_dry():
    t, volume, _, _, floods = traffic_month()
    evening = traffic_impact(floods[:1], t, volume).events[0]
    assert "2024-06-12" in evening.dry_days
    # expectation (1 + 1 + 1 + 0.5) / 4 of the profile: 0.1 / 0.875 - 1 = -88.6 %
    assert evening.change_pct == pytest.approx(-88.6, abs=0.5)


def test_missing_counts_are_left_out_not_zero():
    t, volume, rain_t, rain_mm, floods = traffic_month()
    volume[np.searchsorted(t, local(2024, 6, 19, 18, 30))] = np.nan  # in the flood
    volume[np.searchsorted(t, local(2024, 6, 26, 18, 45))] = np.nan  # on a dry day
    evening = traffic_impact(floods[:1], t, volume, rain_t=rain_t, rain_mm=rain_mm).events[0]
    assert evening.readings_in_flood == 4 and evening.readings_used == 3
    assert evening.change_pct == pytest.approx(-90.0, abs=1.0)


def test_traffic_input_errors():
    t, volume, rain_t, rain_mm, floods = traffic_month()
    with pytest.raises(EventDataError, match="^tz"):
        traffic_impact(floods, t, volume, tz="Mars/Olympus")
    with pytest.raises(EventDataError, match="^traffic_volume: length"):
        traffic_impact(floods, t, volume[:-1])
    with pytest.raises(EventDataError, match=r"^flood_events\[0\]"):
        traffic_impact([(2.0, 1.0)], t, volume)
    with pytest.raises(EventDataError, match="^rain_t, rain_mm"):
        traffic_impact(floods, t, volume, rain_t=rain_t)
