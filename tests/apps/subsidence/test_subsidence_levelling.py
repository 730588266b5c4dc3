"""Levelling comparison: benchmarks CSV, pairing, common epochs, hand-computed statistics.

Also holds :func:`make_store`, a real PointStore built from arrays (used by the other
subsidence test files of this directory).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from cityos.apps.subsidence.assets import utm_crs
from cityos.apps.subsidence.levelling import (
    LevellingFormatError,
    compare_levelling,
    difference_stats,
    parse_levelling_csv,
    read_levelling_csv,
    render_levelling_html,
)
from cityos.apps.subsidence.points import PointStore
from cityos.apps.subsidence.products import PointChunk, Product

LON0, LAT0 = 101.70, 3.14
START = np.datetime64("2020-01-01")
DAYS = np.arange(0, 361, 12)
DATES = START + DAYS.astype("timedelta64[D]")


def metric_to_lonlat(x_m, y_m, lon0: float = LON0, lat0: float = LAT0):
    """Positions ``x_m`` east and ``y_m`` north of (lon0, lat0) in its UTM zone."""
    to_utm = Transformer.from_crs("EPSG:4326", utm_crs(lon0, lat0), always_xy=True)
    back = Transformer.from_crs(utm_crs(lon0, lat0), "EPSG:4326", always_xy=True)
    x0, y0 = to_utm.transform(lon0, lat0)
    return back.transform(np.asarray(x_m, float) + x0, np.asarray(y_m, float) + y0)


def make_store(directory: Path, lon, lat, displacement_mm, *, dates=DATES, kind="vertical",
               incidence_deg=None, fit: dict | None = None) -> PointStore:
    """A PointStore of the given points (ids 0..n-1 in the order given).

    ``fit`` (column -> values in the order given) is written as the fitted columns.
    """
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    disp = np.asarray(displacement_mm, np.float32)
    n = lon.size
    inc = np.full(n, np.nan, np.float32) if incidence_deg is None else \
        np.broadcast_to(np.asarray(incidence_deg, np.float32), (n,)).copy()

    def reader(size):
        yield PointChunk(np.arange(n, dtype=np.int64), lon, lat, np.zeros(n, np.float32), inc,
                         disp)

    product = Product(Path(directory) / "arrays", "egms", np.asarray(dates, "datetime64[D]"),
                      None, "EPSG:4326", n, kind, None, incidence_deg is not None, None, None,
                      _reader=reader)
    store = PointStore.create(directory, product)
    if fit:
        order = np.asarray(store.ids, dtype=np.int64)  # row -> input index
        store.write_fit({k: np.asarray(v)[order] for k, v in fit.items()})
    return store


def linear(rate_mm_yr: float, days=DAYS) -> np.ndarray:
    return rate_mm_yr * np.asarray(days, float) / 365.25


CSV = """id,lon,lat,date,displacement_mm
{rows}"""


def bench_rows(name, lon, lat, days, values):
    return "\n".join(f"{name},{lon:.7f},{lat:.7f},{START + np.timedelta64(int(d), 'D')},{v:.4f}"
                     for d, v in zip(days, values, strict=True))


@pytest.fixture
def site(tmp_path):
    """Two points 30 m either side of benchmark B1, sinking 36.525 mm/yr (0.1 mm/day),
    with constant offsets of +1 and +3 mm (which the re-referencing removes)."""
    lon, lat = metric_to_lonlat([-30.0, 30.0, 5000.0], [0.0, 0.0, 0.0])
    truth = -0.1 * DAYS
    disp = np.vstack([truth + 1.0, truth + 3.0, np.zeros_like(truth)])
    return make_store(tmp_path / "store", lon, lat, disp)


def test_known_levelling_errors_give_known_statistics(site, tmp_path):
    # levelling = truth + e, e = 0, +1, -1, +2 mm at days 0, 125, 245, 355 (between epochs:
    # the linear InSAR series interpolates exactly); difference = InSAR - levelling = -e
    days = np.array([0, 125, 245, 355])
    errors = np.array([0.0, 1.0, -1.0, 2.0])
    levelled = -0.1 * days + errors + 7.0  # any datum
    path = tmp_path / "levelling.csv"
    path.write_text(CSV.format(rows="\n".join([
        bench_rows("B1", LON0, LAT0, days, levelled),
        bench_rows("FAR", LON0 + 0.2, LAT0, days, levelled)])))
    comparison = compare_levelling(site, read_levelling_csv(path), radius_m=100.0)
    b1, far = comparison.benchmarks
    assert b1.n_points == 2 and b1.stats.n == 3
    assert b1.stats.mean_mm == pytest.approx(-2.0 / 3.0, abs=1e-4)
    assert b1.stats.mae_mm == pytest.approx(4.0 / 3.0, abs=1e-4)
    assert b1.stats.rmse_mm == pytest.approx(math.sqrt(2.0), abs=1e-4)
    assert b1.stats.max_abs_mm == pytest.approx(2.0, abs=1e-4)
    # InSAR -12.5, -24.5, -35.5 against levelling -11.5, -25.5, -33.5 (by hand: deviations
    # (11.67, -0.33, -11.33) and (12, -2, -10): r = 254 / sqrt(264.67 * 248) = 0.99142)
    assert b1.insar_mm[1:] == pytest.approx([-12.5, -24.5, -35.5], abs=1e-3)
    assert b1.stats.correlation == pytest.approx(0.99142, abs=1e-4)
    assert far.stats is None and far.n_points == 0 and "100 m" in far.reason
    assert comparison.overall.n == 3
    assert comparison.overall.rmse_mm == pytest.approx(math.sqrt(2.0), abs=1e-4)
    page = render_levelling_html(comparison)
    assert page.count("data:image/png;base64,") == 2 and "B1" in page


def test_only_epochs_inside_the_insar_period_are_compared(site):
    # a levelling before the first acquisition is dropped; the series is re-referenced to
    # the first common epoch (day 0 here), so its +50 mm jump before the period is ignored
    text = CSV.format(rows=bench_rows("B1", LON0, LAT0, [-30, 0, 180, 360],
                                      [50.0, 0.0, -18.0 - 0.5, -36.0 + 0.5]))
    (result,) = compare_levelling(site, parse_levelling_csv(text)).benchmarks
    assert [str(d) for d in result.dates] == ["2020-01-01", "2020-06-29", "2020-12-26"]
    assert result.stats.n == 2
    assert result.stats.mean_mm == pytest.approx(0.0, abs=1e-4)
    assert result.stats.rmse_mm == pytest.approx(0.5, abs=1e-4)


def test_a_line_of_sight_product_is_turned_vertical(tmp_path):
    lon, lat = metric_to_lonlat([10.0], [0.0])
    truth = -0.1 * DAYS
    store = make_store(tmp_path / "los", lon, lat, [truth * math.cos(math.radians(40.0))],
                       kind="los", incidence_deg=40.0)
    text = CSV.format(rows=bench_rows("B", LON0, LAT0, [0, 120, 240, 360], -0.1 * np.array(
        [0, 120, 240, 360])))
    comparison = compare_levelling(store, parse_levelling_csv(text), radius_m=50)
    assert comparison.overall.n == 3
    assert comparison.overall.max_abs_mm == pytest.approx(0.0, abs=1e-3)
    assert comparison.kind == "los" and comparison.notes


def test_heights_in_metres_become_millimetres():
    text = "id,lon,lat,date,height_m\nA,101.7,3.14,2020-01-01,12.3450\nA,101.7,3.14,2020-03-01,12.3405\n"
    (bench,) = parse_levelling_csv(text)
    assert bench.displacement_mm == pytest.approx([0.0, -4.5])
    both = "id,lon,lat,date,height_m,displacement_mm\nA,101.7,3.14,2020-01-01,12.3,5\n" \
           "A,101.7,3.14,2020-03-01,12.1,3\n"
    (bench,) = parse_levelling_csv(both)  # displacement_mm wins
    assert bench.displacement_mm == pytest.approx([0.0, -2.0])


@pytest.mark.parametrize(("text", "expected"), [
    ("id,lon,lat,date\n", "levelling.csv:1: a value column is missing"),
    ("id,lon,date,height_m\n", "levelling.csv:1: column 'lat' is missing"),
    ("id,lon,lat,date,height_m\nA,101.7,3.1,2020-01-01,1\nA,101.7,93.1,2020-02-01,1\n",
     "levelling.csv:3: lat: 93.1 is outside -90..90"),
    ("id,lon,lat,date,height_m\nA,101.7,3.1,2020-01-01,x\n", "levelling.csv:2: height_m: 'x'"),
    ("id,lon,lat,date,height_m\nA,101.7,3.1,2020-13-01,1\n", "levelling.csv:2: date:"),
    ("id,lon,lat,date,height_m\nA,101.7,3.1,2020-01-01,1\nA,101.7,3.1,2020-01-01,2\n",
     "levelling.csv:3: date: benchmark A was levelled on 2020-01-01 already (line 2)"),
    ("benchmark,id,lon,lat,date,height_m\n", "say the same"),
])
def test_bad_files_name_the_line_and_field(text, expected):
    with pytest.raises(LevellingFormatError) as error:
        parse_levelling_csv(text)
    assert expected in str(error.value)


def test_difference_statistics_by_hand():
    stats = difference_stats([1.0, 2.0, 3.0, 4.0], [1.5, 1.5, 3.5, 2.0])
    # differences -0.5, 0.5, -0.5, 2.0
    assert stats.n == 4
    assert stats.mean_mm == pytest.approx(0.375)
    assert stats.mae_mm == pytest.approx(0.875)
    assert stats.rmse_mm == pytest.approx(math.sqrt(4.75 / 4))
    assert stats.max_abs_mm == pytest.approx(2.0)
    assert math.isnan(difference_stats([1.0, 2.0], [1.0, 3.0]).correlation)
