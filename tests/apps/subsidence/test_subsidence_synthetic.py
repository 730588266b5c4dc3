"""The demo product goes through the same importer a real file uses, and the fit gives
back its known truth.

Noise levels of this test: atmospheric delay 1.5 mm per epoch (correlation length 3 km),
white noise 1.0 mm, 100 epochs 12 days apart (3.3 years), 100 x 100 pixels; the series
are referred to the stable area (no motion), so its noise is in every series too. Unwrapping-error pixels
(truth mask; a lambda/2 jump is invisible to the temporal coherence) are masked out of
the accuracy figures, and the construction trough is scored separately (its truth is a
change of trend, not one velocity)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cityos.apps.subsidence.fit import fit_series, fit_store
from cityos.apps.subsidence.points import PointStore
from cityos.apps.subsidence.products import open_product, read_egms_csv
from cityos.apps.subsidence.synthetic import write_demo_product, write_egms_csv


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    demo = write_demo_product(directory, points_side=100, n_dates=100, seed=11,
                              atmosphere_mm=1.5, noise_mm=1.0)
    store = PointStore.create(directory / "store", open_product(demo.timeseries))
    fit_store(store)
    return demo, PointStore.open(directory / "store")


def test_demo_velocities_recover_the_truth(demo):
    demo, store = demo
    t = demo.truth
    ids = store.ids
    fitted = store.fitted()
    assert store.n_points == 100 * 100                 # nothing dropped, reference kept
    clean = ~t.unwrap_error.ravel()[ids]
    trough = np.abs(t.trough_rate_mm_yr.ravel()[ids])
    outside = clean & (trough < 0.2)
    assert outside.sum() > 8000
    error = fitted["velocity_mm_yr"] - t.velocity_los_mm_yr.ravel()[ids]
    rmse = np.sqrt(np.mean(error[outside] ** 2))
    assert rmse < 0.5, rmse
    vertical = fitted["velocity_vertical_mm_yr"] - t.velocity_vertical_mm_yr.ravel()[ids]
    assert np.sqrt(np.mean(vertical[outside] ** 2)) < 0.6
    # the bowls are there: -100 mm/yr vertical at the deepest point, within 1 mm/yr
    deepest = np.argmin(fitted["velocity_vertical_mm_yr"][outside])
    assert t.velocity_vertical_mm_yr.ravel()[ids][outside][deepest] < -95
    # seasonal amplitude (LOS) within 1 mm RMS
    cos = np.cos(np.deg2rad(t.incidence_deg.ravel()[ids]))
    amp = fitted["seasonal_amplitude_mm"] - t.seasonal_amplitude_mm.ravel()[ids] * cos
    assert np.sqrt(np.mean(amp[outside] ** 2)) < 1.0
    # the unwrapping errors are real: unmasked they spoil those pixels
    assert np.sqrt(np.mean(error[~clean] ** 2)) > 1.0


def test_demo_trough_is_a_trend_change_at_the_construction_start(demo):
    demo, store = demo
    t = demo.truth
    ids = store.ids
    fitted = store.fitted()
    clean = ~t.unwrap_error.ravel()[ids]
    trough = np.abs(t.trough_rate_mm_yr.ravel()[ids])
    core = clean & (trough > 20)
    assert core.sum() > 50
    assert fitted["trend_change"][core].mean() > 0.95
    offsets = (fitted["break_date"][core & fitted["trend_change"]] - t.trough_onset).astype(int)
    assert abs(np.median(offsets)) <= 36
    quiet = clean & (trough < 0.01)
    assert fitted["trend_change"][quiet].mean() < 0.02


def test_demo_levelling_markers_and_layers(demo):
    demo, _ = demo
    city, dates = demo.truth.city, demo.truth.dates
    with open(demo.levelling) as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"id", "lon", "lat", "date", "height_m", "displacement_mm"}
    ids = sorted({r["id"] for r in rows})
    assert len(ids) == 36
    errors = []
    for r in rows:
        if r["date"] == str(dates[0]):
            assert float(r["displacement_mm"]) == 0.0
            continue
        truth = city.vertical_mm(float(r["lon"]), float(r["lat"]),
                                 np.array([dates[0], np.datetime64(r["date"])]))[0, 1]
        errors.append(float(r["displacement_mm"]) - truth)
    # the first survey is on the first acquisition; two surveys' noise (1 mm each), the
    # first survey's shared by all later readings of a benchmark (mean: 1 / sqrt(36) sd)
    assert np.std(errors) == pytest.approx(np.sqrt(2) * 1.0, rel=0.25)
    assert abs(np.mean(errors)) < 0.6
    with open(demo.settlement_markers) as f:
        markers = list(csv.DictReader(f))
    last = [m for m in markers if m["date"] == max(m["date"] for m in markers)]
    assert len(last) == 12 and all(float(m["displacement_mm"]) < -30 for m in last)
    buildings = json.loads(demo.buildings.read_text())["features"]
    assert len(buildings) == 300
    assert all(f["geometry"]["coordinates"][0][0] == f["geometry"]["coordinates"][0][-1]
               for f in buildings)
    line = json.loads(demo.metro_line.read_text())["features"][0]
    assert line["geometry"]["type"] == "LineString"


def test_egms_layout_of_the_demo_reads_back_the_same_series(demo, tmp_path):
    demo, store = demo
    path = write_egms_csv(tmp_path / "egms.csv", demo, step=4)
    product = read_egms_csv(path)
    assert product.kind == "los" and product.heading_deg == pytest.approx(-168.0)
    chunk = next(product.chunks(10_000))
    rows = np.array([int(p[4:8]) for p in chunk.ids])
    cols = np.array([int(p[8:12]) for p in chunk.ids])
    assert len(chunk) == 25 * 25
    np.testing.assert_allclose(chunk.lon, demo.truth.lon[rows, cols], atol=1e-7)
    ours = fit_series(product.dates, chunk.displacement_mm, trend_change=False)
    row_of = {int(i): k for k, i in enumerate(store.ids)}
    fitted = store.fitted()["velocity_mm_yr"][[row_of[r * 100 + c] for r, c in zip(rows, cols,
                                                                                  strict=True)]]
    # the CSV rounds the series to 0.1 mm (sd 0.029 mm): velocity sd 0.003 mm/yr over 100
    # epochs, the largest of 625 within about 4.5 sd
    np.testing.assert_allclose(ours["velocity_mm_yr"], fitted, atol=0.015)
    np.testing.assert_allclose(chunk.velocity_mm_yr, fitted, atol=0.01)
    ortho = write_egms_csv(tmp_path / "EGMS_L3_demo_U.csv", demo, step=4, layout="ortho")
    vertical = open_product(ortho)
    assert vertical.kind == "vertical"
    series = next(vertical.chunks(10_000)).displacement_mm
    cos = np.cos(np.deg2rad(demo.truth.incidence_deg[rows, cols]))
    np.testing.assert_allclose(series * cos[:, None], chunk.displacement_mm, atol=0.1)
