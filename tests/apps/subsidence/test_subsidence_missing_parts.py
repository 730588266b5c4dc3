"""Every subsidence command that takes a product or a point store, on products missing
each optional part: it succeeds (with a warning naming what is missing) or ends with a
one-line ``error: ...`` and a non-zero exit, never a traceback.

The products are small files in the real layouts (MintPy HDF5 written with h5py, EGMS
CSV, GeoTIFF), with a known line-of-sight rate per column of pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cityos.apps.subsidence.cli import app
from cityos.apps.subsidence.points import PointStore
from cityos.apps.subsidence.synthetic import (
    demo_dates,
    mintpy_attributes,
    write_geotiff_stack,
    write_mintpy_geometry,
    write_mintpy_timeseries,
)

runner = CliRunner()
ROWS, COLS = 6, 5
DATES = demo_dates(60)                                   # two years, every 12 days
YEARS = (DATES - DATES[0]).astype(np.float64) / 365.25
#: line-of-sight rate of a pixel in column c, mm/yr (towards the satellite positive)
LOS_RATE = -(4.0 + np.arange(COLS))
DATE_NAMES = [str(d).replace("-", "") for d in DATES]


def los_cube_m() -> np.ndarray:
    """(n_dates, rows, cols) LOS displacement in metres: the column's rate plus 0.3 mm
    of seeded noise."""
    rate = np.broadcast_to(LOS_RATE, (ROWS, COLS))
    cube = YEARS[:, None, None] * rate[None] / 1000.0
    noise = np.random.default_rng(3).normal(0.0, 0.0003, cube.shape)
    return (cube + noise).astype(np.float32)


def attributes(**drop_or_set) -> dict:
    attrs = mintpy_attributes(ROWS, COLS, DATES, x_first=106.7, y_first=-6.1, x_step=0.01,
                              y_step=-0.01)
    for key, value in drop_or_set.items():
        if value is None:
            attrs.pop(key, None)
        else:
            attrs[key] = value
    return attrs


def mintpy(folder: Path, *, drop_datasets=(), **attrs) -> Path:
    """A MintPy ``timeseries.h5`` alone in ``folder`` (no geometry beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_mintpy_timeseries(folder / "timeseries.h5", DATES, los_cube_m(),
                                   attributes(**attrs))
    if drop_datasets:
        with h5py.File(path, "a") as h5:
            for name in drop_datasets:
                del h5[name]
    return path


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    # a traceback would be an exception other than the SystemExit typer.Exit raises
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{args}: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    return result


def fitted_los(store: Path) -> np.ndarray:
    """The stored LOS velocity of each point, by column of the grid (ids row * cols + c)."""
    points = PointStore.open(store)
    columns = np.asarray(points.ids, dtype=np.int64) % COLS
    velocity = np.asarray(points.fitted()["velocity_mm_yr"], dtype=np.float64)
    return np.array([velocity[columns == c].mean() for c in range(COLS)])


# ------------------------------------------------------------ the product
def test_a_mintpy_product_without_geometry_is_fitted_in_line_of_sight(tmp_path):
    product = mintpy(tmp_path / "mintpy")
    store = tmp_path / "points"
    imported = invoke("import", product, "--store", store)
    assert imported.exit_code == 0, imported.output
    assert "30 points, 60 epochs" in imported.stdout
    fitted = invoke("fit", "--store", store)
    assert fitted.exit_code == 0, fitted.output
    # the import's warning says what would give vertical motion, on one line of stderr
    warning = [line for line in imported.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    for name in ("geometryGeo.h5", "geometryRadar.h5", "incidenceAngle", "INCIDENCE_ANGLE",
                 "--incidence DEG"):
        assert name in warning[0]
    assert "line-of-sight velocity" in fitted.stdout
    warning = [line for line in fitted.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "vertical" in warning[0] and "east-west" in warning[0]
    assert "--incidence DEG" in warning[0] and "geometryGeo.h5" in warning[0]
    # the LOS results are stored: the known rate of every column
    np.testing.assert_allclose(fitted_los(store), LOS_RATE, atol=0.3)
    columns = PointStore.open(store).fitted()
    assert "velocity_vertical_mm_yr" not in columns
    assert np.isfinite(columns["velocity_se"]).all()


def test_the_fit_summary_gives_the_line_of_sight_range(tmp_path):
    store = tmp_path / "points"
    invoke("import", mintpy(tmp_path / "mintpy"), "--store", store)
    out = invoke("fit", "--store", store).stdout
    low, high = (float(v) for v in
                 out.split("line-of-sight velocity ")[1].split(" mm/yr")[0].split(" .. "))
    assert low == pytest.approx(LOS_RATE.min(), abs=0.5)
    assert high == pytest.approx(LOS_RATE.max(), abs=0.5)


def test_fit_incidence_gives_vertical_from_line_of_sight(tmp_path):
    store = tmp_path / "points"
    invoke("import", mintpy(tmp_path / "mintpy"), "--store", store)
    result = invoke("fit", "--store", store, "--incidence", "39")
    assert result.exit_code == 0, result.output
    assert "vertical velocity" in result.stdout and "warning" not in result.stderr
    points = PointStore.open(store)
    fitted = points.fitted()
    los = np.asarray(fitted["velocity_mm_yr"])
    np.testing.assert_allclose(fitted["velocity_vertical_mm_yr"],
                               los / np.cos(np.deg2rad(39.0)), rtol=1e-6)
    np.testing.assert_allclose(points.incidence_deg, 39.0)
    # the store now knows its incidence: a second fit needs no option
    again = invoke("fit", "--store", store)
    assert "vertical velocity" in again.stdout and "warning" not in again.stderr


def test_import_incidence_fills_the_missing_angle(tmp_path):
    store = tmp_path / "points"
    result = invoke("import", mintpy(tmp_path / "mintpy"), "--store", store,
                    "--incidence", "35.5")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    np.testing.assert_allclose(PointStore.open(store).incidence_deg, 35.5)
    out = invoke("fit", "--store", store).stdout
    assert "vertical velocity" in out


def test_the_incidence_attribute_stands_in_for_a_geometry_file(tmp_path):
    store = tmp_path / "points"
    result = invoke("import", mintpy(tmp_path / "mintpy", INCIDENCE_ANGLE="37.0"),
                    "--store", store)
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
    invoke("fit", "--store", store)
    fitted = PointStore.open(store).fitted()
    np.testing.assert_allclose(fitted["velocity_vertical_mm_yr"],
                               np.asarray(fitted["velocity_mm_yr"]) / np.cos(np.deg2rad(37.0)),
                               rtol=1e-6)


@pytest.mark.parametrize("value", ["90", "-1", "nan"])
def test_an_impossible_incidence_is_refused(tmp_path, value):
    store = tmp_path / "points"
    result = invoke("import", mintpy(tmp_path / "mintpy"), "--store", store,
                    "--incidence", value)
    assert result.exit_code == 2 and "--incidence" in result.stderr
    invoke("import", mintpy(tmp_path / "mintpy"), "--store", store)
    result = invoke("fit", "--store", store, "--incidence", value)
    assert result.exit_code == 2 and "--incidence" in result.stderr


# ---------------------------------------------------------- products that import
def _geometry_without_incidence(folder: Path) -> Path:
    path = mintpy(folder)
    geometry = write_mintpy_geometry(folder / "geometryGeo.h5", attributes(),
                                     height=np.zeros((ROWS, COLS)),
                                     incidence_deg=np.zeros((ROWS, COLS)))
    with h5py.File(geometry, "a") as h5:
        del h5["incidenceAngle"]
    return path


def _egms(folder: Path, head: list[str], cells) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "egms.csv"
    lines = [",".join(head + DATE_NAMES)]
    for i in range(COLS):
        series = YEARS * LOS_RATE[i]
        lines.append(",".join(cells(i) + [f"{v:.2f}" for v in series]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _tiff(folder: Path, dates_in: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_geotiff_stack(folder / "stack.tif", DATES, los_cube_m(), west=106.7,
                               north=-6.1, x_step=0.01, y_step=0.01, dates_in=dates_in)


IMPORTS = {
    "mintpy without a reference point": lambda d: mintpy(d, REF_Y=None, REF_X=None,
                                                         REF_LAT=None, REF_LON=None),
    "mintpy without a reference date": lambda d: mintpy(d, REF_DATE=None),
    "mintpy without bperp": lambda d: mintpy(d, drop_datasets=("bperp",)),
    "mintpy without orbit, heading, wavelength": lambda d: mintpy(
        d, ORBIT_DIRECTION=None, HEADING=None, WAVELENGTH=None),
    "mintpy with a geometry file without incidenceAngle": _geometry_without_incidence,
    "egms with only pid and lat/lon": lambda d: _egms(
        d, ["pid", "latitude", "longitude"], lambda i: [f"P{i}", f"{-6.1 + i * 1e-3}", "106.7"]),
    "egms with only pid and easting/northing": lambda d: _egms(
        d, ["pid", "easting", "northing"], lambda i: [f"P{i}", f"{6.0e6 + i * 10}", "3.0e6"]),
    "geotiff with dates in band tags": lambda d: _tiff(d, "tag"),
    "geotiff with dates in a dataset tag": lambda d: _tiff(d, "dataset_tag"),
}


@pytest.mark.parametrize("case", list(IMPORTS))
def test_a_product_missing_optional_parts_imports_and_fits_in_line_of_sight(tmp_path, case):
    product = IMPORTS[case](tmp_path / "product")
    store = tmp_path / "points"
    imported = invoke("import", product, "--store", store)
    assert imported.exit_code == 0, imported.output
    warning = [line for line in imported.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--incidence DEG" in warning[0]
    fitted = invoke("fit", "--store", store)
    assert fitted.exit_code == 0, fitted.output
    assert "line-of-sight velocity" in fitted.stdout
    points = PointStore.open(store)
    velocity = np.asarray(points.fitted()["velocity_mm_yr"], dtype=np.float64)
    assert np.isfinite(velocity).all()
    assert velocity.min() == pytest.approx(LOS_RATE.min(), abs=0.5)
    assert velocity.max() == pytest.approx(LOS_RATE.max(), abs=0.5)


@pytest.mark.parametrize("case", ["egms with only pid and lat/lon",
                                  "geotiff with dates in band tags"])
def test_incidence_gives_vertical_motion_for_every_format(tmp_path, case):
    store = tmp_path / "points"
    imported = invoke("import", IMPORTS[case](tmp_path / "product"), "--store", store,
                      "--incidence", "30")
    assert imported.exit_code == 0 and "warning" not in imported.stderr, imported.output
    fitted = invoke("fit", "--store", store)
    assert "vertical velocity" in fitted.stdout and "warning" not in fitted.stderr
    columns = PointStore.open(store).fitted()
    np.testing.assert_allclose(columns["velocity_vertical_mm_yr"],
                               np.asarray(columns["velocity_mm_yr"]) / np.cos(np.deg2rad(30)),
                               rtol=1e-6)


# ------------------------------------------------------ products that cannot import
def _write(name: str, content: bytes):
    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
        return folder / name
    return make


def _beside(name: str, content: bytes):
    def make(folder: Path) -> Path:
        path = mintpy(folder)
        (folder / name).write_bytes(content)
        return path
    return make


def _radar(folder: Path) -> Path:
    return mintpy(folder, X_FIRST=None, Y_FIRST=None, X_STEP=None, Y_STEP=None)


def _few_dates(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dates = DATES[:4]
    return write_mintpy_timeseries(folder / "timeseries.h5", dates, los_cube_m()[:4],
                                   attributes(REF_DATE=DATE_NAMES[0]))


REFUSED = {
    "an empty .h5": (_write("timeseries.h5", b""), "not an HDF5 file"),
    "an empty .csv": (_write("egms.csv", b""), "empty file"),
    "an empty .tif": (_write("stack.tif", b""), "not a readable raster"),
    "text named .h5": (_write("timeseries.h5", b"pid,lon\n"), "not an HDF5 file"),
    "an unknown format": (_write("product.dat", b"hello"), "unknown product format"),
    "an HDF5 file that is not MintPy": (
        lambda d: (d.mkdir(), h5py.File(d / "other.h5", "w").close(), d / "other.h5")[-1],
        "no dataset 'timeseries'"),
    "mintpy without dates": (lambda d: mintpy(d, drop_datasets=("date",)),
                             "no dataset 'date'"),
    "mintpy in radar coordinates without geometry": (_radar, "geometryRadar.h5"),
    "a damaged geometry file beside": (_beside("geometryGeo.h5", b"x"),
                                       "geometryGeo.h5: not an HDF5 file"),
    "a damaged velocity file beside": (_beside("velocity.h5", b"x"),
                                       "velocity.h5: not an HDF5 file"),
    "egms without pid": (lambda d: _egms(d, ["latitude", "longitude"],
                                         lambda i: [f"{-6.1 + i * 1e-3}", "106.7"]),
                         "no 'pid' column"),
    "egms without coordinates": (lambda d: _egms(d, ["pid"], lambda i: [f"P{i}"]),
                                 "'latitude'/'longitude' or 'easting'/'northing'"),
    "egms with a header only": (_write("egms.csv", ("pid,latitude,longitude,"
                                                    + ",".join(DATE_NAMES) + "\n").encode()),
                                "no point with data in every epoch"),
    "geotiff without band dates": (lambda d: _tiff(d, "none"), "band 1 has no date"),
    "a directory without timeseries.h5": (lambda d: (d.mkdir(), d)[-1],
                                          "directory without a MintPy timeseries.h5"),
    "a missing file": (lambda d: d / "timeseries.h5", "no such file"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_product_that_cannot_be_read_gives_a_one_line_error(tmp_path, case):
    make, message = REFUSED[case]
    product = make(tmp_path / "product")
    result = invoke("import", product, "--store", tmp_path / "points")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr
    assert result.stdout == ""


def test_a_geometry_option_that_is_not_hdf5_names_the_file(tmp_path):
    bad = tmp_path / "geometry.h5"
    bad.write_text("not hdf5")
    result = invoke("import", mintpy(tmp_path / "mintpy"), "--store", tmp_path / "points",
                    "--geometry", bad)
    assert result.exit_code == 2 and f"error: {bad}: not an HDF5 file" in result.stderr


def test_a_product_with_too_few_dates_for_the_model_fails_the_fit_cleanly(tmp_path):
    store = tmp_path / "points"
    assert invoke("import", _few_dates(tmp_path / "mintpy"), "--store", store).exit_code == 0
    result = invoke("fit", "--store", store)
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert "4 dates cannot fit" in result.stderr


# --------------------------------------------------------- stores, damaged or LOS
def test_fit_on_a_directory_that_is_not_a_store(tmp_path):
    result = invoke("fit", "--store", tmp_path)
    assert result.exit_code == 2 and "not a point store (no meta.json)" in result.stderr


def test_fit_on_a_store_with_damaged_metadata(tmp_path):
    store = tmp_path / "points"
    invoke("import", mintpy(tmp_path / "mintpy"), "--store", store)
    (store / "meta.json").write_text("{not json")
    result = invoke("fit", "--store", store)
    assert result.exit_code == 2 and "meta.json" in result.stderr


@pytest.fixture
def los_store(tmp_path) -> Path:
    """A fitted store of a MintPy product without incidence, and levelling benchmarks
    over it."""
    store = tmp_path / "points"
    invoke("import", mintpy(tmp_path / "mintpy"), "--store", store)
    invoke("fit", "--store", store)
    return store


def _levelling(path: Path) -> Path:
    lines = ["id,lon,lat,date,displacement_mm"]
    for k in range(0, len(DATES), 10):
        lines.append(f"B1,106.705,-6.105,{DATES[k]},{LOS_RATE[0] * YEARS[k]:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_levelling_on_a_line_of_sight_store_says_what_it_needs(los_store, tmp_path):
    result = invoke("compare-levelling", _levelling(tmp_path / "levelling.csv"), "--store",
                    los_store, "--radius", "2000")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "--incidence DEG" in result.stderr


def test_the_report_of_a_line_of_sight_store_is_written(los_store, tmp_path):
    page = tmp_path / "report.html"
    result = invoke("report", "--store", los_store, "--html", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "line of sight" in html and "data:image/png;base64," in html


def test_the_report_with_levelling_on_a_line_of_sight_store_fails_cleanly(los_store,
                                                                          tmp_path):
    result = invoke("report", "--store", los_store, "--html", tmp_path / "r.html",
                    "--levelling", _levelling(tmp_path / "levelling.csv"))
    assert result.exit_code != 0 and result.stderr.startswith("error: ")
    assert "--incidence DEG" in result.stderr and not (tmp_path / "r.html").exists()


def test_publish_of_a_line_of_sight_store_serves_it(los_store, tmp_path):
    url = f"sqlite:///{tmp_path / 'city.db'}"
    result = invoke("publish", "--store", los_store, "--database-url", url)
    assert result.exit_code == 0, result.output
    warning = result.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ")
    assert "--incidence DEG" in warning[0] and "assets and alerts not refreshed" in warning[0]


def test_the_store_records_that_it_has_no_incidence(los_store):
    meta = json.loads((los_store / "meta.json").read_text())
    assert meta["fitted"] is True and meta["incidence"] is False


# ----------------------------------------------------------------- the API
@pytest.mark.parametrize("incidence", [None, 40.0])
def test_the_api_shows_line_of_sight_where_there_is_no_vertical(tmp_path, incidence):
    from fastapi.testclient import TestClient

    from cityos.apps.subsidence.customers import publish_product, set_area
    from cityos.config import Settings
    from cityos.core.store import open_store
    from cityos.core.tenancy import create_key
    from cityos.server import create_app
    from tests.apps.subsidence.test_subsidence_customers import polygon
    from tests.apps.subsidence.test_subsidence_levelling import DAYS, make_store, metric_to_lonlat

    lon, lat = metric_to_lonlat([50.0, 70.0], [50.0, 50.0])
    los_rate = np.array([-12.0, -6.0])
    points = make_store(tmp_path / "points", lon, lat,
                        los_rate[:, None] * DAYS[None, :] / 365.25, kind="los",
                        incidence_deg=incidence, fit={"velocity_mm_yr": los_rate})
    url = f"sqlite:///{tmp_path / 'city.db'}"
    store = open_store(url)
    publish_product(store, points.directory)
    set_area(store, "railway", "aoi", "Rail", polygon(0, 0, 200))
    key = create_key(store, "railway", "viewer")[0]
    scale = 1.0 if incidence is None else 1.0 / np.cos(np.deg2rad(incidence))
    component = "los" if incidence is None else "vertical"
    with TestClient(create_app(Settings(database_url=url), store)) as client:
        def get(path):
            response = client.get(f"/apps/subsidence{path}",
                                  headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.text
            return response.json()

        assert get("/product")["component"] == component
        listed = get("/points")
        assert listed["component"] == component
        shown = {p["id"]: p["velocity_mm_yr"] for p in listed["points"]}
        assert shown == {"0": pytest.approx(-12.0 * scale, abs=1e-3),
                         "1": pytest.approx(-6.0 * scale, abs=1e-3)}
        series = get("/points/0/series")
        assert series["component"] == component
        np.testing.assert_allclose(series["displacement_mm"], -12.0 * scale * DAYS / 365.25,
                                   atol=1e-3)


def test_import_and_fit_report_their_progress_on_stderr(tmp_path):
    store = tmp_path / "points"
    imported = invoke("import", mintpy(tmp_path / "mintpy", INCIDENCE_ANGLE="37.0"),
                      "--store", store)
    assert imported.stderr.splitlines() == ["import timeseries.h5: 30/30 points (100%)"]
    assert imported.stdout.count("\n") == 1          # the result only
    fitted = invoke("fit", "--store", store)
    assert fitted.stderr.splitlines() == ["fit points: 30/30 points (100%)"]
    assert fitted.stdout.count("\n") == 1
