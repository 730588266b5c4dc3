"""The ``cityos demo`` product: where it lies, its buildings, its levelling comparison.

The demo product (:func:`cityos.apps.subsidence.demo.demo_options`) has residual
atmosphere 1.0 mm per epoch (correlation length 3 km), white noise 1.5 mm, levelled
heights with 1.0 mm noise, 60 epochs, and is referred to the mean of the pixels of the
stable area. The levelling comparison's expected errors are derived below from these
noise levels; a reference that moved would add its motion to every difference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cityos.apps.subsidence import demo as subsidence_demo
from cityos.apps.subsidence.buildings import analyse_buildings, read_footprints
from cityos.apps.subsidence.fit import fit_store
from cityos.apps.subsidence.levelling import compare_levelling, read_levelling_csv
from cityos.apps.subsidence.points import PointStore
from cityos.apps.subsidence.products import read_mintpy
from cityos.apps.subsidence.synthetic import (
    M_PER_DEG_LAT,
    DemoCity,
    gaussian_field_correlation,
    write_demo_product,
)
from cityos.demo import CITY_CENTRE


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    directory = tmp_path_factory.mktemp("subsidence-demo")
    options = subsidence_demo.demo_options()
    demo = write_demo_product(directory / "product", **options)
    points = PointStore.create(directory / "points", read_mintpy(demo.timeseries))
    fit_store(points)
    return demo, PointStore.open(directory / "points"), options


def test_the_demo_lies_on_the_demo_city_and_can_be_moved(tmp_path):
    city = DemoCity()
    assert city.centre == CITY_CENTRE
    assert city.west < CITY_CENTRE[0] < city.east and city.south < CITY_CENTRE[1] < city.north
    assert city.east - city.west == pytest.approx(0.25)
    moved = write_demo_product(tmp_path, points_side=20, n_dates=12, n_buildings=3,
                               n_benchmarks=3, centre=(106.825, -6.18))
    assert moved.truth.lon.mean() == pytest.approx(106.825, abs=1e-9)
    assert moved.truth.lat.mean() == pytest.approx(-6.18, abs=1e-9)
    line = json.loads(moved.metro_line.read_text())["features"][0]["geometry"]["coordinates"]
    assert line[0] == pytest.approx([106.822, -6.095])
    with pytest.raises(ValueError, match="centre"):
        DemoCity(centre=(3.1, 101.7))


def test_a_short_series_writes_every_file(tmp_path):
    """48 acquisitions (1.5 years): the trough starts inside the series, 55 % into it."""
    demo = write_demo_product(tmp_path, points_side=30, n_dates=48, seed=3)
    t = demo.truth
    assert len(t.dates) == 48
    assert t.trough_onset == t.dates[26]                   # round(0.55 * 47)
    markers = demo.settlement_markers.read_text().splitlines()
    assert len(markers) > 12 and markers[0].startswith("marker_id")
    product = read_mintpy(demo.timeseries)
    assert len(product.dates) == 48
    with pytest.raises(ValueError, match="n_dates"):
        write_demo_product(tmp_path / "few", points_side=10, n_dates=5)


def test_the_reference_area_does_not_move(product):
    demo, points, _ = product
    t = demo.truth
    ref = t.reference_area
    assert ref.sum() > 100
    motion = t.city.vertical_mm(t.lon[ref], t.lat[ref], t.dates)
    assert np.abs(motion).max() == 0.0
    # the stored series of the reference area average to zero at every epoch
    rows = np.flatnonzero(np.isin(points.ids, np.flatnonzero(ref.ravel())))
    assert np.abs(points.displacement(rows).mean(axis=0)).max() < 1e-3


def test_demo_buildings_hold_points_and_spread_over_the_classes(product):
    demo, points, _ = product
    summaries = analyse_buildings(points, read_footprints(demo.buildings))
    counts = np.array([s.n_points for s in summaries])
    assert len(summaries) == subsidence_demo.DEMO_BUILDINGS
    assert np.median(counts) >= 4 and (counts >= 2).mean() > 0.9
    risk = [s.risk_class for s in summaries]
    assert risk.count("negligible") > len(risk) / 2          # most of the city is stable
    assert risk.count("high") >= 3 and (risk.count("low") + risk.count("medium")) >= 3


def test_demo_levelling_errors_are_those_of_the_noise(product):
    """Every difference InSAR - levelling at survey j (on day ``t`` between acquisitions
    a and a+1, weight w) is the truth's representativeness error (the mean of the paired
    pixels against the benchmark) plus noise of variance

        2 s_L^2 + c^2 ((1-w)^2 + w^2 + 1) [2 s_a^2 (1 - rho) + s_w^2 (1/k + 1/k_R)]

    (two levelled heights; the InSAR series at two epochs and at the first, each the
    difference of the paired pixels' and the reference area's noise; c the mean of
    1/cos(incidence), rho the atmosphere's correlation between benchmark and reference
    area, k and k_R the numbers of pixels averaged)."""
    demo, points, options = product
    t = demo.truth
    s_a, s_w, s_l = options["atmosphere_mm"], options["noise_mm"], options["levelling_noise_mm"]
    radius = subsidence_demo.DEMO_RADIUS_M
    comparison = compare_levelling(points, read_levelling_csv(demo.levelling), radius)
    assert len(comparison.compared) == 36

    city = t.city
    shape = t.lon.shape
    step = ((city.north - city.south) / shape[0] * M_PER_DEG_LAT,
            (city.east - city.west) / shape[1] * city.metres_per_deg_lon)
    correlation = gaussian_field_correlation(shape, step, 3000.0)   # atmosphere_km 3
    ref = t.reference_area.ravel()
    ref_rows, ref_cols = np.divmod(np.flatnonzero(ref), shape[1])
    k_ref = int(ref.sum())
    days = t.dates.astype(np.int64).astype(float)
    ids = np.asarray(points.ids)
    expected_sq, expected_abs, measured = [], [], []
    for bench in comparison.compared:
        rows = np.asarray(points.select_near(bench.lon, bench.lat, radius))
        pixels = ids[rows]
        if t.unwrap_error.ravel()[pixels].any():
            continue                                   # an unwrapping error: not noise
        k = len(rows)
        c = np.mean(1.0 / np.cos(np.deg2rad(t.incidence_deg.ravel()[pixels])))
        # correlation of the paired pixels' mean with the reference area's mean
        p_rows, p_cols = np.divmod(pixels, shape[1])
        rho = correlation[(p_rows[:, None] - ref_rows[None, :]) % shape[0],
                          (p_cols[:, None] - ref_cols[None, :]) % shape[1]].mean()
        v_d = 2 * s_a ** 2 * (1 - rho) + s_w ** 2 * (1 / k + 1 / k_ref)
        truth_px = city.vertical_mm(t.lon.ravel()[pixels], t.lat.ravel()[pixels], t.dates)
        survey = bench.dates.astype(np.int64).astype(float)
        insar_truth = np.array([np.interp(survey, days, s) for s in truth_px]).mean(axis=0)
        bench_truth = city.vertical_mm(bench.lon, bench.lat, bench.dates)[0]
        bias = (insar_truth - insar_truth[0]) - bench_truth
        for j in range(1, len(survey)):
            a = np.searchsorted(days, survey[j], side="right") - 1
            w = (survey[j] - days[a]) / 12.0
            var = 2 * s_l ** 2 + c ** 2 * ((1 - w) ** 2 + w ** 2 + 1) * v_d
            sd, b = math.sqrt(var), bias[j]
            expected_sq.append(b ** 2 + var)
            # mean of |N(b, sd^2)| (folded normal)
            expected_abs.append(sd * math.sqrt(2 / math.pi) * math.exp(-b * b / (2 * var))
                                + b * math.erf(b / (sd * math.sqrt(2))))
            measured.append(bench.insar_mm[j] - bench.levelling_mm[j])
    measured = np.array(measured)
    assert len(measured) >= 90
    rmse, mae = np.sqrt(np.mean(measured ** 2)), np.mean(np.abs(measured))
    expected_rmse, expected_mae = np.sqrt(np.mean(expected_sq)), np.mean(expected_abs)
    assert 1.0 < expected_mae < 3.0                    # as published along metro lines
    assert rmse == pytest.approx(expected_rmse, rel=0.25)
    assert mae == pytest.approx(expected_mae, rel=0.25)
    # pooled over all benchmarks (unwrapping errors included), as the demo reports it
    overall = comparison.overall
    assert 1.0 < overall.mae_mm < 3.0 and overall.correlation > 0.95
