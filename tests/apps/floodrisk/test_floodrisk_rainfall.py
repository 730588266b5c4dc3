"""Design rainfall: IDF curves (table, fitted, Mononobe) and hyetographs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cityos.apps.floodrisk.rainfall import (
    Hyetograph,
    IDFCurve,
    IDFError,
    alternating_block,
    chicago,
    demo_idf,
    design_storm,
    idf_from_config,
)

TALBOT = IDFCurve.from_parameters(a=2400.0, b=15.0, m=0.18, form="talbot")
SHERMAN = IDFCurve.from_parameters(a=1500.0, b=10.0, n=0.8, m=0.2)

DURATIONS = [10, 30, 60, 120, 360]
PERIODS = [2, 10, 100]
TABLE = [[120, 160, 220], [70, 95, 130], [45, 62, 85], [28, 38, 52], [11, 15, 21]]


def max_window(values: np.ndarray, k: int) -> float:
    return float(np.convolve(values, np.ones(k), mode="valid").max())


def test_sherman_and_talbot_values_by_hand():
    assert SHERMAN.intensity(20, 10) == pytest.approx(1500 * 10**0.2 / 30**0.8)
    assert TALBOT.intensity(45, 5) == pytest.approx(2400 * 5**0.18 / 60)
    assert SHERMAN.depth(60, 10) == pytest.approx(SHERMAN.intensity(60, 10))  # 1 h


def test_table_interpolates_log_log_in_duration_and_log_in_return_period():
    idf = IDFCurve.from_table(DURATIONS, PERIODS, TABLE)
    assert idf.intensity(30, 10) == pytest.approx(95)
    # geometric mean duration -> geometric mean intensity (straight line in log-log)
    assert idf.intensity(math.sqrt(30 * 60), 2) == pytest.approx(math.sqrt(70 * 45))
    # geometric mean return period -> arithmetic mean intensity (straight line in log T)
    assert idf.intensity(60, math.sqrt(10 * 100)) == pytest.approx((62 + 85) / 2)
    # power-law extrapolation below the first duration follows the first segment
    slope = math.log(70 / 120) / math.log(3)
    assert idf.intensity(5, 2) == pytest.approx(120 * 0.5**slope)
    with pytest.raises(IDFError, match="outside the table"):
        idf.intensity(60, 200)


@pytest.mark.parametrize(
    ("row", "col", "value", "rule"),
    [(2, 1, 99.0, "fall with duration"), (1, 2, 90.0, "rise with return period"),
     (3, 0, -1.0, "positive"), (4, 0, 7.0, "depth")],
)
def test_table_rejects_bad_cells_by_name(row, col, value, rule):
    table = [list(r) for r in TABLE]
    table[row][col] = value
    with pytest.raises(IDFError, match=rule) as err:
        IDFCurve.from_table(DURATIONS, PERIODS, table, source="idf.csv")
    assert f"duration {DURATIONS[row]} min, T {PERIODS[col]} yr" in str(err.value)
    assert "idf.csv" in str(err.value)


def test_csv_table_and_bad_line(tmp_path):
    good = tmp_path / "idf.csv"
    good.write_text("duration_min,2,10,100\n" + "\n".join(
        ",".join(str(v) for v in [d, *r]) for d, r in zip(DURATIONS, TABLE, strict=True)))
    assert IDFCurve.from_csv(good).intensity(360, 100) == pytest.approx(21)
    bad = tmp_path / "bad.csv"
    bad.write_text("duration_min,2,10\n10,100,120\n30,60,x\n")
    with pytest.raises(IDFError, match=r"bad.csv: line 3"):
        IDFCurve.from_csv(bad)


def test_mononobe_relation():
    idf = IDFCurve.from_mononobe({2: 100.0, 100: 250.0})
    assert idf.intensity(60, 2) == pytest.approx(100 / 24 * 24 ** (2 / 3))
    assert idf.depth(24 * 60, 100) == pytest.approx(250.0)
    # R24 is linear in log T
    assert idf.depth(24 * 60, math.sqrt(200)) == pytest.approx(175.0)


@pytest.mark.parametrize("peak", [0.5, 0.25, 0.0, 1.0])
@pytest.mark.parametrize("idf", [TALBOT, IDFCurve.from_table(DURATIONS, PERIODS, TABLE)])
def test_alternating_block_windows_hold_idf_depths(idf, peak):
    step, duration, T = 10.0, 360.0, 10
    hyeto = alternating_block(idf, T, duration, step, peak_position=peak)
    blocks = hyeto.depths_mm()
    assert blocks.size == 36
    assert hyeto.depth_mm() == pytest.approx(idf.depth(duration, T), rel=1e-12)
    peak_index = min(int(peak * 36), 35)
    assert np.argmax(blocks) == peak_index
    for k in range(1, 37):
        # the densest k-block window is the one around the peak and holds D(k * step)
        assert max_window(blocks, k) == pytest.approx(idf.depth(k * step, T), rel=1e-9)


def test_chicago_windows_around_the_peak_hold_idf_depths():
    T, duration, r = 25, 100.0, 0.4
    hyeto = chicago(SHERMAN, T, duration, 1.0, peak_position=r)
    depths = hyeto.depths_mm()
    assert hyeto.depth_mm() == pytest.approx(SHERMAN.depth(duration, T), rel=1e-12)
    peak_edge = 40  # r * duration in 1-min blocks
    for j in range(1, 11):  # window 4j min before, 6j min after the peak
        window = depths[peak_edge - 4 * j: peak_edge + 6 * j].sum()
        assert window == pytest.approx(SHERMAN.depth(10 * j, T), rel=1e-9)


def test_chicago_matches_keifer_chu_instantaneous_intensity():
    a, b, n, m, T, r = 1500.0, 10.0, 0.8, 0.2, 10, 0.5
    hyeto = chicago(SHERMAN, T, 120.0, 0.25, peak_position=r)
    mid_min = (hyeto.edges_s[:-1] + hyeto.edges_s[1:]) / 120.0
    tb = np.abs(mid_min - 60.0) / r  # both sides are symmetric for r = 0.5
    analytic = a * T**m * ((1 - n) * tb + b) / (tb + b) ** (n + 1)
    assert np.allclose(hyeto.intensity_mm_h, analytic, rtol=2e-3)


def test_demo_idf_and_design_storm_from_config(tmp_path):
    idf = demo_idf()
    assert "illustrative" in idf.source
    assert idf.depth(1440, 50) == pytest.approx(224.0)
    cfg = {"idf": "demo", "hyetograph": "chicago", "duration_min": 180, "step_min": 10}
    storm = design_storm(cfg, 50)
    assert storm.depth_mm() == pytest.approx(idf.depth(180, 50))
    assert storm.duration_s == 180 * 60
    params = idf_from_config({"parameters": {"form": "talbot", "a": 2400, "b": 15, "m": 0.18}})
    assert params.intensity(45, 5) == pytest.approx(TALBOT.intensity(45, 5))
    with pytest.raises(IDFError, match="rainfall.idf.parameters: missing a"):
        idf_from_config({"parameters": {"b": 1}})
    with pytest.raises(IDFError, match="rainfall.hyetograph"):
        design_storm({**cfg, "hyetograph": "scs"}, 10)


def test_bad_storm_requests_and_hyetograph_checks():
    with pytest.raises(IDFError, match="whole number"):
        alternating_block(TALBOT, 10, 100, 15)
    with pytest.raises(IDFError, match="must increase"):
        Hyetograph(np.array([0.0, 10.0, 5.0]), np.array([1.0, 1.0]))
    with pytest.raises(IDFError, match=">= 0"):
        Hyetograph(np.array([0.0, 10.0]), np.array([-1.0]))
    h = Hyetograph(np.array([0.0, 1800.0, 3600.0]), np.array([10.0, 30.0]))
    assert h.depth_mm() == pytest.approx(20.0)
    assert h.rate_at(2000) == 30.0 and h.rate_at(4000) == 0.0
