"""A synthetic sinking metropolis with known truth, written the way InSAR processors do.

The city (:class:`DemoCity`) is laid out around a centre, by default the demo city's
:data:`cityos.appkit.demo.CITY_CENTRE` (101.6958 E, 3.1466 N), over 0.25 x 0.20 degrees (about
28 x 22 km) at ``scale`` 1; ``scale`` shrinks or grows the layout (positions, extent,
bowl widths) about the centre. Its ground moves vertically only:

* three subsidence bowls from groundwater extraction, Gaussian in plan: -100 mm/yr at the
  centre of the northern one (sigma 2.5 km at scale 1), -60 mm/yr east (2 km), -35 mm/yr
  west (1.5 km);
* a seasonal aquifer signal ``A sin(2 pi t + phi)`` (``t`` years on the uniform clock of
  :func:`~cityos.apps.subsidence.fit.decimal_years`), ``A`` 1 mm far from the bowls up
  to 5 mm at their centres, the ground lowest in the late dry season;
* a construction trough along a metro line: from the onset date (by default the
  acquisition 55 % into the series) the ground within a few hundred metres of the line
  sinks at -40 mm/yr at the line, Gaussian across it (sigma 250 m): a change of trend;
* a stable area (a bedrock outcrop in the south-east, radius 1.5 km at scale 1) where
  the ground does not move at all; the motion above rises smoothly to its full value
  over the 1 km around it.

:func:`write_demo_product` writes it as a geocoded MintPy product of Sentinel-1
(C-band, wavelength 55.5 mm, descending, heading -168 deg, incidence 33-43 deg from
west to east, 12-day repeat): LOS = vertical x cos(incidence), positive towards the
satellite; plus, per epoch, spatially correlated atmospheric delay (a Gaussian random
field, correlation length ``atmosphere_km``, standard deviation ``atmosphere_mm``),
white noise (``noise_mm``), both zero at the reference date (the first), then every
series referred to the mean series of the pixels of the stable area (so the noise of
the reference area is in every series, its motion is zero); and a few unwrapping
errors: small patches whose series jump by +-lambda/2 (27.7 mm, one phase cycle) from
some epoch on.

Beside it: ``levelling.csv`` (benchmarks surveyed every six months, height noise
``levelling_noise_mm`` per survey), ``settlement_markers.csv`` (monthly construction
monitoring along the line from just before the onset), ``buildings.geojson`` (footprints,
a sixth of them on bowl flanks and a sixth beside the line, where the ground tilts),
``metro_line.geojson``; :func:`write_egms_csv` writes the same product as EGMS point CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cityos.appkit.demo import CITY_CENTRE

from .fit import decimal_years, fit_series
from .products import SENTINEL1_WAVELENGTH_M

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0
#: Half the extent of the city at scale 1 (degrees of longitude, latitude).
HALF_SPAN_DEG = (0.125, 0.10)
#: Where the onset of the construction trough falls in the series by default.
TROUGH_ONSET_FRACTION = 0.55


@dataclass(frozen=True)
class Bowl:
    """A Gaussian subsidence bowl."""

    lon: float
    lat: float
    rate_mm_yr: float
    sigma_m: float


@dataclass
class DemoCity:
    """The noise-free vertical motion of the synthetic city (the truth).

    Parameters
    ----------
    centre : (lon, lat)
        Centre of the city; the layout below is in degrees from it.
    scale : float
        Multiplies the layout's offsets, the extent, the bowls' widths and the stable
        area (not the trough, an engineering feature of its own width).
    bowl_width : float
        Multiplies the bowls' widths further (narrower bowls leave more stable ground).
    bowl_layout : tuple of (d_lon, d_lat, rate_mm_yr, sigma_m)
    line_layout : tuple of (d_lon, d_lat)
        Vertices of the metro line.
    stable_layout : (d_lon, d_lat)
        Centre of the stable area; ``stable_radius_m`` (no motion inside) and
        ``stable_margin_m`` (the motion tapers in over it) at scale 1.
    trough_onset : datetime64, optional
        Start of the construction trough; None: set from the acquisition dates by
        :func:`write_demo_product` (:meth:`with_onset`).
    """

    centre: tuple[float, float] = CITY_CENTRE
    scale: float = 1.0
    bowl_width: float = 1.0
    bowl_layout: tuple[tuple[float, float, float, float], ...] = (
        (-0.025, 0.065, -100.0, 2500.0), (0.065, 0.020, -60.0, 2000.0),
        (-0.080, -0.035, -35.0, 1500.0))
    line_layout: tuple[tuple[float, float], ...] = ((-0.003, 0.085), (0.001, 0.030),
                                                    (-0.007, -0.020), (-0.025, -0.088))
    stable_layout: tuple[float, float] = (0.095, -0.070)
    stable_radius_m: float = 1500.0
    stable_margin_m: float = 1000.0
    trough_peak_mm_yr: float = -40.0
    trough_sigma_m: float = 250.0
    trough_onset: np.datetime64 | None = None
    seasonal_base_mm: float = 1.0
    seasonal_bowl_mm: float = 4.0
    seasonal_phase_rad: float = 0.6

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale: {self.scale!r} must be positive")
        lon0, lat0 = (float(v) for v in self.centre)
        if not (-180.0 <= lon0 <= 180.0 and -80.0 <= lat0 <= 80.0):
            raise ValueError(f"centre: {self.centre!r} is not a (lon, lat) in degrees "
                             "(latitude within 80 degrees)")
        s = float(self.scale)
        self.bowls = tuple(Bowl(lon0 + s * a, lat0 + s * b, rate, s * self.bowl_width * sigma)
                           for a, b, rate, sigma in self.bowl_layout)
        self.metro_line = tuple((lon0 + s * a, lat0 + s * b) for a, b in self.line_layout)
        self.stable_centre = (lon0 + s * self.stable_layout[0],
                              lat0 + s * self.stable_layout[1])
        self.west, self.east = lon0 - s * HALF_SPAN_DEG[0], lon0 + s * HALF_SPAN_DEG[0]
        self.south, self.north = lat0 - s * HALF_SPAN_DEG[1], lat0 + s * HALF_SPAN_DEG[1]
        if self.trough_onset is not None:
            self.trough_onset = np.datetime64(self.trough_onset, "D")

    def with_onset(self, dates) -> DemoCity:
        """This city with the trough's onset on the acquisition
        :data:`TROUGH_ONSET_FRACTION` into ``dates`` when it has none."""
        if self.trough_onset is not None:
            return self
        dates = np.asarray(dates, dtype="datetime64[D]")
        if dates.size == 0:
            raise ValueError("dates: empty; the trough's onset needs acquisitions")
        onset = dates[int(round(TROUGH_ONSET_FRACTION * (dates.size - 1)))]
        return dataclasses.replace(self, trough_onset=onset)

    @property
    def metres_per_deg_lon(self) -> float:
        return M_PER_DEG_LON_EQ * math.cos(math.radians(self.centre[1]))

    def _xy(self, lon, lat):
        x = (np.asarray(lon, dtype=np.float64) - self.centre[0]) * self.metres_per_deg_lon
        y = (np.asarray(lat, dtype=np.float64) - self.centre[1]) * M_PER_DEG_LAT
        return x, y

    def stability(self, lon, lat) -> np.ndarray:
        """Factor on all motion: 0 in the stable area, rising smoothly (smoothstep) to 1
        over the margin around it."""
        x, y = self._xy(lon, lat)
        sx, sy = self._xy(*self.stable_centre)
        d = np.hypot(x - sx, y - sy)
        u = np.clip((d - self.scale * self.stable_radius_m)
                    / (self.scale * self.stable_margin_m), 0.0, 1.0)
        return u * u * (3.0 - 2.0 * u)

    def bowl_shape(self, lon, lat) -> np.ndarray:
        """Sum of the bowls' unit Gaussians (0-1 at a centre)."""
        x, y = self._xy(lon, lat)
        total = np.zeros(np.broadcast(x, y).shape)
        for b in self.bowls:
            bx, by = self._xy(b.lon, b.lat)
            total += np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * b.sigma_m ** 2))
        return total

    def bowl_velocity_mm_yr(self, lon, lat) -> np.ndarray:
        """Long-term vertical rate of the bowls (mm/yr, negative down)."""
        x, y = self._xy(lon, lat)
        total = np.zeros(np.broadcast(x, y).shape)
        for b in self.bowls:
            bx, by = self._xy(b.lon, b.lat)
            total += b.rate_mm_yr * np.exp(-((x - bx) ** 2 + (y - by) ** 2)
                                           / (2 * b.sigma_m ** 2))
        return total * self.stability(lon, lat)

    def distance_to_line_m(self, lon, lat) -> np.ndarray:
        """Distance to the metro line (local metric plane of the city)."""
        x, y = self._xy(lon, lat)
        best = np.full(np.broadcast(x, y).shape, np.inf)
        pts = [self._xy(a, b) for a, b in self.metro_line]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
            dx, dy = x1 - x0, y1 - y0
            s = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
            best = np.minimum(best, np.hypot(x - x0 - s * dx, y - y0 - s * dy))
        return best

    def trough_rate_mm_yr(self, lon, lat) -> np.ndarray:
        """Vertical rate of the construction trough after its onset."""
        d = self.distance_to_line_m(lon, lat)
        return (self.trough_peak_mm_yr * np.exp(-d ** 2 / (2 * self.trough_sigma_m ** 2))
                * self.stability(lon, lat))

    def seasonal_amplitude_mm(self, lon, lat) -> np.ndarray:
        """Amplitude of the annual aquifer signal (mm)."""
        return (self.seasonal_base_mm + self.seasonal_bowl_mm * np.minimum(
            1.0, self.bowl_shape(lon, lat))) * self.stability(lon, lat)

    def vertical_mm(self, lon, lat, dates, since=None) -> np.ndarray:
        """Noise-free vertical displacement (mm) at points and dates, zero at ``since``
        (the first date by default).

        Parameters
        ----------
        lon, lat : array_like
            Points (k of them).
        dates : array of datetime64
            At least one date unless ``since`` is given.
        since : datetime64, optional

        Returns
        -------
        ndarray, shape (k, n_dates)
        """
        if self.trough_onset is None:
            raise ValueError("trough_onset: not set (DemoCity.with_onset(dates) sets it)")
        dates = np.atleast_1d(np.asarray(dates, dtype="datetime64[D]"))
        lon, lat = np.atleast_1d(lon), np.atleast_1d(lat)
        if dates.size == 0:
            if since is None:
                raise ValueError("dates: empty and no 'since' date to refer to")
            return np.zeros((lon.size, 0))
        since = dates[0] if since is None else np.datetime64(since, "D")
        onset = decimal_years(np.array([self.trough_onset]))[0]
        base = decimal_years(np.array([since]))[0]
        bowl = self.bowl_velocity_mm_yr(lon, lat)[:, None]
        amplitude = self.seasonal_amplitude_mm(lon, lat)[:, None]
        trough = self.trough_rate_mm_yr(lon, lat)[:, None]

        def at(d):
            t = decimal_years(d)
            return (bowl * (t - base)[None, :]
                    + amplitude * np.sin(2 * np.pi * t + self.seasonal_phase_rad)[None, :]
                    + trough * np.maximum(0.0, t - onset)[None, :])

        return at(dates) - at(np.array([since]))


@dataclass
class DemoTruth:
    """What the demo product should give back, per pixel (rows, cols) or per point.

    The velocities are those of the ground itself: the product is referred to the
    stable area (``reference_area``), which does not move.
    """

    lon: np.ndarray
    lat: np.ndarray
    incidence_deg: np.ndarray
    velocity_vertical_mm_yr: np.ndarray      # bowls
    velocity_los_mm_yr: np.ndarray
    seasonal_amplitude_mm: np.ndarray
    trough_rate_mm_yr: np.ndarray            # after the onset, vertical
    trough_onset: np.datetime64
    unwrap_error: np.ndarray                 # bool, pixels with a lambda/2 jump
    reference_pixel: tuple[int, int]         # (row, col), the stable area's centre
    dates: np.ndarray
    city: DemoCity = field(repr=False)
    reference_area: np.ndarray | None = None  # bool, pixels averaged as the reference


@dataclass
class DemoProduct:
    """Paths of the demo files and the truth behind them."""

    directory: Path
    timeseries: Path
    geometry: Path
    velocity: Path
    levelling: Path
    settlement_markers: Path
    buildings: Path
    metro_line: Path
    truth: DemoTruth


# ------------------------------------------------------------------ MintPy layout
def mintpy_attributes(rows: int, cols: int, dates, *, x_first: float, y_first: float,
                      x_step: float, y_step: float, ref_yx=(0, 0),
                      orbit: str = "DESCENDING", heading_deg: float = -168.0,
                      wavelength_m: float = SENTINEL1_WAVELENGTH_M) -> dict:
    """Root attributes of a geocoded MintPy ``timeseries.h5`` (ROI_PAC names)."""
    d = [str(x).replace("-", "") for x in np.asarray(dates, dtype="datetime64[D]")]
    return {
        "FILE_TYPE": "timeseries", "DATA_TYPE": "float32", "UNIT": "m", "PROCESSOR": "isce",
        "LENGTH": str(rows), "WIDTH": str(cols), "FILE_LENGTH": str(rows),
        "X_FIRST": repr(float(x_first)), "Y_FIRST": repr(float(y_first)),
        "X_STEP": repr(float(x_step)), "Y_STEP": repr(float(y_step)),
        "X_UNIT": "degrees", "Y_UNIT": "degrees", "EPSG": "4326",
        "REF_DATE": d[0], "START_DATE": d[0], "END_DATE": d[-1],
        "REF_Y": str(int(ref_yx[0])), "REF_X": str(int(ref_yx[1])),
        "REF_LAT": repr(float(y_first + (ref_yx[0] + 0.5) * y_step)),
        "REF_LON": repr(float(x_first + (ref_yx[1] + 0.5) * x_step)),
        "WAVELENGTH": repr(float(wavelength_m)), "ORBIT_DIRECTION": orbit,
        "HEADING": repr(float(heading_deg)), "PLATFORM": "Sen", "CENTER_LINE_UTC": "81000.0",
        "ALOOKS": "1", "RLOOKS": "1", "ANTENNA_SIDE": "-1",
    }


def write_mintpy_timeseries(path, dates, displacement_m, attrs: dict, *,
                            shape: tuple[int, int] | None = None,
                            bperp=None, block_rows: int = 100) -> Path:
    """Write a MintPy ``timeseries.h5``.

    Parameters
    ----------
    path : path
    dates : array of datetime64
    displacement_m : ndarray (n_dates, rows, cols) or callable
        Metres; or ``f(r0, r1) -> (n_dates, r1 - r0, cols)`` writing row blocks (then
        give ``shape``), so a large file never needs its cube in memory.
    attrs : dict
        Root attributes (:func:`mintpy_attributes`).
    shape : (rows, cols), optional
    bperp : array, optional
        Perpendicular baselines (m), zeros by default.
    block_rows : int
        Rows per block when ``displacement_m`` is a callable.

    Returns
    -------
    Path
    """
    path = Path(path)
    dates = np.asarray(dates, dtype="datetime64[D]")
    n = len(dates)
    if callable(displacement_m):
        rows, cols = shape
    else:
        _, rows, cols = displacement_m.shape
    with h5py.File(path, "w") as h5:
        h5.create_dataset("date", data=np.array([str(d).replace("-", "") for d in dates],
                                                dtype="S8"))
        h5.create_dataset("bperp", data=np.zeros(n, np.float32) if bperp is None
                          else np.asarray(bperp, np.float32))
        if callable(displacement_m):
            ds = h5.create_dataset("timeseries", shape=(n, rows, cols), dtype=np.float32,
                                   chunks=(n, min(rows, 10), cols))
            for r0 in range(0, rows, block_rows):
                r1 = min(rows, r0 + block_rows)
                ds[:, r0:r1, :] = displacement_m(r0, r1)
        else:
            h5.create_dataset("timeseries", data=np.asarray(displacement_m, np.float32))
        for k, v in attrs.items():
            h5.attrs[k] = v
    return path


def write_mintpy_geometry(path, attrs: dict, *, height, incidence_deg, latitude=None,
                          longitude=None, azimuth_deg=None) -> Path:
    """Write ``geometryGeo.h5`` (or, with latitude/longitude, ``geometryRadar.h5``)."""
    path = Path(path)
    geo = dict(attrs)
    geo["FILE_TYPE"] = "geometry"
    for k in ("REF_DATE", "START_DATE", "END_DATE", "UNIT"):
        geo.pop(k, None)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("height", data=np.asarray(height, np.float32))
        h5.create_dataset("incidenceAngle", data=np.asarray(incidence_deg, np.float32))
        if azimuth_deg is not None:
            h5.create_dataset("azimuthAngle", data=np.asarray(azimuth_deg, np.float32))
        if latitude is not None:
            h5.create_dataset("latitude", data=np.asarray(latitude, np.float32))
            h5.create_dataset("longitude", data=np.asarray(longitude, np.float32))
        shape = np.shape(height)
        h5.create_dataset("shadowMask", data=np.zeros(shape, bool))
        h5.create_dataset("waterMask", data=np.ones(shape, bool))
        for k, v in geo.items():
            h5.attrs[k] = v
    return path


def write_mintpy_velocity(path, attrs: dict, velocity_m_yr, velocity_std_m_yr) -> Path:
    """Write a MintPy ``velocity.h5`` (``velocity``, ``velocityStd`` in m/yr)."""
    path = Path(path)
    vel = dict(attrs)
    vel.update({"FILE_TYPE": "velocity", "UNIT": "m/year",
                "DATE12": f"{attrs.get('START_DATE')}_{attrs.get('END_DATE')}"})
    with h5py.File(path, "w") as h5:
        h5.create_dataset("velocity", data=np.asarray(velocity_m_yr, np.float32))
        h5.create_dataset("velocityStd", data=np.asarray(velocity_std_m_yr, np.float32))
        for k, v in vel.items():
            h5.attrs[k] = v
    return path


def write_geotiff_stack(path, dates, displacement_m, *, west: float, north: float,
                        x_step: float, y_step: float, crs: str = "EPSG:4326",
                        dates_in: str = "description", unit: str = "m",
                        nodata: float | None = None) -> Path:
    """Write a displacement stack as a GeoTIFF, one float32 band per date.

    Parameters
    ----------
    dates_in : {"description", "tag", "dataset_tag"}
        Where each band's date goes: the band description, a band tag ``DATE``, or one
        dataset tag ``DATES``.
    """
    import rasterio
    from rasterio.transform import from_origin

    path = Path(path)
    cube = np.asarray(displacement_m, np.float32)
    n, rows, cols = cube.shape
    text = [str(d).replace("-", "") for d in np.asarray(dates, dtype="datetime64[D]")]
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": n,
               "dtype": "float32", "crs": crs, "nodata": nodata,
               "transform": from_origin(west, north, x_step, abs(y_step))}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube)
        dst.update_tags(UNIT=unit)
        if dates_in == "dataset_tag":
            dst.update_tags(DATES=",".join(text))
        for b, d in enumerate(text, start=1):
            if dates_in == "description":
                dst.set_band_description(b, d)
            elif dates_in == "tag":
                dst.update_tags(b, DATE=d)
    return path


# ------------------------------------------------------------------- noise
def _field_filter(shape, step_m, length_m: float) -> np.ndarray:
    rows, cols = shape
    step_y, step_x = (step_m, step_m) if np.isscalar(step_m) else step_m
    ky = np.fft.fftfreq(rows, d=step_y)[:, None]
    kx = np.fft.rfftfreq(cols, d=step_x)[None, :]
    filt = np.exp(-2 * (np.pi * length_m) ** 2 * (kx ** 2 + ky ** 2))
    filt[0, 0] = 0.0                                          # zero mean
    return filt


def gaussian_random_field(rng, shape, step_m, length_m: float) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field: white noise filtered in the
    Fourier domain by ``exp(-2 pi^2 L^2 k^2)``, its mean removed.

    On an unbounded grid its covariance would be ``exp(-r^2 / (4 L^2))``; here it is
    periodic over the grid (as an FFT makes it) and without the mean:
    :func:`gaussian_field_correlation` gives it exactly.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (rows, cols)
    step_m : float or (float, float)
        Pixel size in metres, or (row step, column step).
    length_m : float
        Correlation length ``L``.
    """
    white = rng.standard_normal(shape)
    field_ = np.fft.irfft2(np.fft.rfft2(white) * _field_filter(shape, step_m, length_m),
                           s=shape)
    return field_ / (field_.std() or 1.0)


def gaussian_field_correlation(shape, step_m, length_m: float) -> np.ndarray:
    """Correlation of :func:`gaussian_random_field` by lag: element ``[dr, dc]`` is the
    correlation of two pixels ``dr`` rows and ``dc`` columns apart (modulo the grid).

    Returns
    -------
    ndarray, shape ``shape``
    """
    filt = _field_filter(shape, step_m, length_m)
    cov = np.fft.irfft2(filt ** 2, s=shape)
    return cov / cov[0, 0]


# ------------------------------------------------------------------- the demo
def demo_dates(n_dates: int, start: str = "2019-01-06", repeat_days: int = 12) -> np.ndarray:
    """Sentinel-1-like acquisition dates."""
    return np.datetime64(start, "D") + np.arange(n_dates) * np.timedelta64(repeat_days, "D")


def write_demo_product(directory, *, points_side: int = 200, n_dates: int = 100,
                       seed: int = 7, atmosphere_mm: float = 2.0, atmosphere_km: float = 3.0,
                       noise_mm: float = 1.5, unwrap_patches: int = 4,
                       levelling_noise_mm: float = 1.0, n_benchmarks: int = 36,
                       n_buildings: int = 300, building_scale: float = 1.0,
                       centre: tuple[float, float] | None = None, scale: float = 1.0,
                       city: DemoCity | None = None) -> DemoProduct:
    """Write the synthetic metropolitan product and its ground truth files.

    Parameters
    ----------
    directory : path
        Created if needed.
    points_side : int
        Pixels per side of the geocoded grid (the city is 0.25 x 0.20 degrees at
        ``scale`` 1).
    n_dates : int
        Acquisitions, every 12 days from 2019-01-06 (at least 6).
    seed : int
        Everything random follows from it.
    atmosphere_mm, atmosphere_km : float
        Standard deviation and correlation length of the atmospheric delay per epoch.
    noise_mm : float
        White noise per pixel and epoch.
    unwrap_patches : int
        Patches with a +-lambda/2 unwrapping jump.
    levelling_noise_mm : float
        Noise of each levelled height.
    n_benchmarks, n_buildings : int
    building_scale : float
        Multiplies the footprints' sides (12-40 m by 15-90 m at 1).
    centre : (lon, lat), optional
        Where the city lies; default :data:`cityos.appkit.demo.CITY_CENTRE`.
    scale : float
        Size of the city's layout (1: 28 x 22 km; see :class:`DemoCity`).
    city : DemoCity, optional
        The whole truth model (then ``centre`` and ``scale`` are not used); its trough
        onset, when None, is set from the dates.

    Returns
    -------
    DemoProduct
    """
    if n_dates < 6:
        raise ValueError(f"n_dates: {n_dates} is too few (the fit needs at least 6)")
    if points_side < 2:
        raise ValueError(f"points_side: {points_side} must be at least 2")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dates = demo_dates(n_dates)
    if city is None:
        city = DemoCity(centre=CITY_CENTRE if centre is None else tuple(centre), scale=scale)
    city = city.with_onset(dates)
    rows = cols = int(points_side)
    x_step = (city.east - city.west) / cols
    y_step = -(city.north - city.south) / rows
    col_idx, row_idx = np.meshgrid(np.arange(cols), np.arange(rows))
    lon = city.west + (col_idx + 0.5) * x_step
    lat = city.north + (row_idx + 0.5) * y_step
    incidence = 33.0 + 10.0 * (col_idx + 0.5) / cols
    height = (5.0 + 20.0 * (1 - (lat - city.south) / (city.north - city.south))
              + rng.normal(0, 1, lon.shape))
    cos_inc = np.cos(np.deg2rad(incidence))

    # reference: the pixels of the stable area (no motion), else the one nearest to it
    ref_area = city.stability(lon, lat) == 0.0
    sx, sy = city.stable_centre
    ref = np.unravel_index(int(np.argmin((lon - sx) ** 2 + (lat - sy) ** 2)), lon.shape)
    ref = (int(ref[0]), int(ref[1]))
    ref_area[ref] = True
    vertical = city.vertical_mm(lon.ravel(), lat.ravel(), dates).reshape(rows, cols, n_dates)
    los = vertical * cos_inc[:, :, None]                     # mm

    step_m = (abs(y_step) * M_PER_DEG_LAT, x_step * city.metres_per_deg_lon)
    noise = np.empty((n_dates, rows, cols))
    for i in range(n_dates):
        noise[i] = atmosphere_mm * gaussian_random_field(rng, (rows, cols), step_m,
                                                         atmosphere_km * 1000.0)
        noise[i] += rng.normal(0, noise_mm, (rows, cols))
    noise -= noise[0]                                        # zero at the reference date
    cube = np.moveaxis(los, 2, 0) + noise                    # (n, rows, cols) mm

    # unwrapping errors: +-lambda/2 from a random epoch on, in small patches
    half = SENTINEL1_WAVELENGTH_M * 1000.0 / 2
    unwrap = np.zeros((rows, cols), bool)
    for _ in range(unwrap_patches):
        r0, c0 = rng.integers(min(5, rows // 2), max(rows - 5, rows // 2 + 1)), \
            rng.integers(min(5, cols // 2), max(cols - 5, cols // 2 + 1))
        radius = rng.uniform(1.5, 3.5)
        patch = ((row_idx - r0) ** 2 + (col_idx - c0) ** 2 <= radius ** 2) & ~ref_area
        start = int(rng.integers(n_dates // 5, 4 * n_dates // 5))
        cube[start:, patch] += rng.choice([-1.0, 1.0]) * half
        unwrap |= patch
    cube -= cube[:, ref_area].mean(axis=1)[:, None, None]    # refer to the stable area

    attrs = mintpy_attributes(rows, cols, dates, x_first=city.west, y_first=city.north,
                              x_step=x_step, y_step=y_step, ref_yx=ref)
    ts_path = write_mintpy_timeseries(directory / "timeseries.h5", dates,
                                      (cube / 1000.0).astype(np.float32), attrs,
                                      bperp=rng.normal(0, 80, n_dates))
    geo_path = write_mintpy_geometry(directory / "geometryGeo.h5", attrs, height=height,
                                     incidence_deg=incidence,
                                     azimuth_deg=np.full(lon.shape, 90.0 - (-168.0) - 360.0))
    # velocity.h5 as MintPy's timeseries2velocity writes it (linear, residue-based std)
    flat = cube.reshape(n_dates, -1).T
    lin = fit_series(dates, flat, seasonal=False, acceleration=False, trend_change=False,
                     time_axis="decimal_year")
    vel_path = write_mintpy_velocity(
        directory / "velocity.h5", {**attrs, "FILE_TYPE": "velocity"},
        (lin["velocity_mm_yr"] / 1000.0).reshape(rows, cols),
        (lin["velocity_se"] / 1000.0).reshape(rows, cols))

    v_vert = city.bowl_velocity_mm_yr(lon, lat)
    truth = DemoTruth(
        lon=lon, lat=lat, incidence_deg=incidence, velocity_vertical_mm_yr=v_vert,
        velocity_los_mm_yr=v_vert * cos_inc,
        seasonal_amplitude_mm=city.seasonal_amplitude_mm(lon, lat),
        trough_rate_mm_yr=city.trough_rate_mm_yr(lon, lat), trough_onset=city.trough_onset,
        unwrap_error=unwrap, reference_pixel=ref, dates=dates, city=city,
        reference_area=ref_area)

    lev = _write_levelling(directory / "levelling.csv", city, dates, rng, n_benchmarks,
                           levelling_noise_mm)
    markers = _write_markers(directory / "settlement_markers.csv", city, dates, rng)
    line = _write_metro_line(directory / "metro_line.geojson", city)
    buildings = _write_buildings(directory / "buildings.geojson", city, rng, n_buildings,
                                 building_scale)
    return DemoProduct(directory, ts_path, geo_path, vel_path, lev, markers, buildings, line,
                       truth)


def _write_levelling(path, city: DemoCity, dates, rng, n, noise_mm) -> Path:
    """Benchmarks: a third beside the metro line, the rest anywhere; surveyed every six
    months from the first acquisition. ``displacement_mm`` is the levelled height minus
    the first survey's (so it carries two surveys' noise)."""
    along = n // 3
    s = rng.uniform(0, 1, along)
    line = np.array(city.metro_line)
    seg = np.minimum((s * (len(line) - 1)).astype(int), len(line) - 2)
    frac = s * (len(line) - 1) - seg
    spread = 0.0015 * city.scale
    lon_l = line[seg, 0] + frac * (line[seg + 1, 0] - line[seg, 0]) + rng.normal(0, spread, along)
    lat_l = line[seg, 1] + frac * (line[seg + 1, 1] - line[seg, 1]) + rng.normal(0, spread, along)
    margin = 0.01 * city.scale
    lon = np.concatenate([lon_l, rng.uniform(city.west + margin, city.east - margin, n - along)])
    lat = np.concatenate([lat_l, rng.uniform(city.south + margin, city.north - margin,
                                             n - along)])
    surveys = np.arange(dates[0], dates[-1] + 1, np.timedelta64(182, "D"))
    true = city.vertical_mm(lon, lat, surveys)                 # zero at the first survey
    base = rng.uniform(2.0, 25.0, n)
    heights = base[:, None] + (true + rng.normal(0, noise_mm, true.shape)) / 1000.0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "lon", "lat", "date", "height_m", "displacement_mm"])
        for i in range(n):
            for j, d in enumerate(surveys):
                w.writerow([f"BM{i + 1:03d}", f"{lon[i]:.6f}", f"{lat[i]:.6f}", str(d),
                            f"{heights[i, j]:.4f}",
                            f"{(heights[i, j] - heights[i, 0]) * 1000.0:.1f}"])
    return Path(path)


def _write_markers(path, city: DemoCity, dates, rng) -> Path:
    """Construction settlement markers on the line, read monthly from a month before
    the onset; ``displacement_mm`` vertical (negative = settlement), 0.5 mm noise."""
    line = np.array(city.metro_line)
    s = np.linspace(0.05, 0.95, 12)
    seg = np.minimum((s * (len(line) - 1)).astype(int), len(line) - 2)
    frac = s * (len(line) - 1) - seg
    lon = line[seg, 0] + frac * (line[seg + 1, 0] - line[seg, 0])
    lat = line[seg, 1] + frac * (line[seg + 1, 1] - line[seg, 1])
    first = city.trough_onset - np.timedelta64(30, "D")
    readings = np.arange(first, dates[-1] + 1, np.timedelta64(30, "D"))
    true = city.vertical_mm(lon, lat, readings)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["marker_id", "lon", "lat", "date", "displacement_mm"])
        for i in range(len(lon)):
            for j, d in enumerate(readings):
                value = 0.0 if j == 0 else true[i, j] + rng.normal(0, 0.5)
                w.writerow([f"SM{i + 1:02d}", f"{lon[i]:.6f}", f"{lat[i]:.6f}", str(d),
                            f"{value:.1f}"])
    return Path(path)


def _write_metro_line(path, city: DemoCity) -> Path:
    feature = {"type": "Feature", "properties": {"id": "metro-1", "name": "Metro line 1",
                                                 "kind": "rail", "construction_start":
                                                 str(city.trough_onset)},
               "geometry": {"type": "LineString",
                            "coordinates": [list(p) for p in city.metro_line]}}
    Path(path).write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return Path(path)


def _write_buildings(path, city: DemoCity, rng, n: int, size_scale: float = 1.0) -> Path:
    """Rectangular footprints (12-40 m by 15-90 m times ``size_scale``); a sixth placed
    on bowl flanks (1-1.5 sigma from a centre, where the rate changes fastest), a sixth
    100-400 m from the metro line, the rest anywhere."""
    m_lon = city.metres_per_deg_lon
    centres = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            b = city.bowls[rng.integers(len(city.bowls))]
            r, a = b.sigma_m * rng.uniform(1.0, 1.5), rng.uniform(0, 2 * np.pi)
            centres.append((b.lon + r * math.cos(a) / m_lon, b.lat + r * math.sin(a)
                            / M_PER_DEG_LAT))
        elif kind == 3:
            line = np.array(city.metro_line)
            k = rng.integers(len(line) - 1)
            f = rng.uniform()
            off = rng.uniform(100, 400) * rng.choice([-1, 1])
            centres.append((line[k, 0] + f * (line[k + 1, 0] - line[k, 0]) + off / m_lon,
                            line[k, 1] + f * (line[k + 1, 1] - line[k, 1])))
        else:
            margin = 0.005 * city.scale
            centres.append((rng.uniform(city.west + margin, city.east - margin),
                            rng.uniform(city.south + margin, city.north - margin)))
    features = []
    uses = ("residential", "commercial", "industrial", "public")
    for i, (clon, clat) in enumerate(centres):
        w = rng.uniform(12, 40) * size_scale
        length = rng.uniform(15, 90) * size_scale
        ang = rng.uniform(0, np.pi)
        corners = [(-length / 2, -w / 2), (length / 2, -w / 2), (length / 2, w / 2),
                   (-length / 2, w / 2)]
        ring = []
        for x, y in corners:
            xr = x * math.cos(ang) - y * math.sin(ang)
            yr = x * math.sin(ang) + y * math.cos(ang)
            ring.append([round(clon + xr / m_lon, 7), round(clat + yr / M_PER_DEG_LAT, 7)])
        ring.append(ring[0])
        levels = int(rng.integers(1, 30))
        features.append({"type": "Feature",
                         "properties": {"id": f"B{i + 1:04d}", "use": uses[i % 4],
                                        "levels": levels, "height_m": round(levels * 3.2, 1)},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    Path(path).write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return Path(path)


# ------------------------------------------------------------------- EGMS layout
EGMS_HEAD = ["pid", "mp_type", "latitude", "longitude", "easting", "northing", "height",
             "height_wgs84", "line", "pixel", "rmse", "temporal_coherence",
             "amplitude_dispersion", "incidence_angle", "track_angle", "los_east",
             "los_north", "los_up", "mean_velocity", "mean_velocity_std", "acceleration",
             "acceleration_std", "seasonality", "seasonality_std"]
EGMS_ORTHO_HEAD = ["pid", "easting", "northing", "height", "mean_velocity",
                   "mean_velocity_std", "acceleration", "acceleration_std", "seasonality",
                   "seasonality_std"]


def write_egms_csv(path, demo: DemoProduct, *, step: int = 2, layout: str = "calibrated",
                   transform: Callable | None = None) -> Path:
    """Write the demo product as an EGMS point CSV (every ``step``-th pixel each way).

    Parameters
    ----------
    path : path
    demo : DemoProduct
    step : int
        Subsampling of the grid.
    layout : {"calibrated", "ortho"}
        ``"calibrated"``: the Basic/Calibrated header (LOS, lat/lon and EPSG:3035
        easting/northing); ``"ortho"``: the Ortho header (easting/northing only), the
        series made vertical by ``los / cos(incidence)``.

    Returns
    -------
    Path
    """
    from pyproj import Transformer

    from .fit import los_to_vertical, los_unit_vector

    with h5py.File(demo.timeseries, "r") as h5:
        cube = h5["timeseries"][:, ::step, ::step] * 1000.0
        heading = float(h5.attrs["HEADING"])
    with h5py.File(demo.geometry, "r") as g:
        height = g["height"][::step, ::step]
        inc = g["incidenceAngle"][::step, ::step]
    t = demo.truth
    lon, lat = t.lon[::step, ::step].ravel(), t.lat[::step, ::step].ravel()
    n_dates, r, c = cube.shape
    series = cube.reshape(n_dates, -1).T
    inc_f = inc.ravel().astype(np.float64)
    if layout == "ortho":
        series = los_to_vertical(series, inc_f[:, None])
    fit = fit_series(t.dates, series, trend_change=False)
    east, north = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(
        lon, lat)
    ue, un, uu = los_unit_vector(inc_f, heading)
    rr, cc = np.divmod(np.arange(len(lon)), c)
    date_cols = [str(d).replace("-", "") for d in t.dates]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow((EGMS_HEAD if layout != "ortho" else EGMS_ORTHO_HEAD) + date_cols)
        for i in range(len(lon)):
            pid = f"DEMO{rr[i] * step:04d}{cc[i] * step:04d}"
            stats = [f"{fit['velocity_mm_yr'][i]:.2f}", f"{fit['velocity_se'][i]:.2f}",
                     f"{fit['acceleration_mm_yr2'][i]:.2f}", f"{fit['acceleration_se'][i]:.2f}",
                     f"{fit['seasonal_amplitude_mm'][i]:.2f}", "0.5"]
            if layout == "ortho":
                head = [pid, f"{east[i]:.1f}", f"{north[i]:.1f}", f"{height.ravel()[i]:.1f}"]
            else:
                head = [pid, "DS", f"{lat[i]:.7f}", f"{lon[i]:.7f}", f"{east[i]:.1f}",
                        f"{north[i]:.1f}", f"{height.ravel()[i]:.1f}",
                        f"{height.ravel()[i] + 20:.1f}", str(rr[i] * step), str(cc[i] * step),
                        f"{fit['rms_mm'][i]:.2f}", f"{fit['coherence'][i]:.3f}", "0.2",
                        f"{inc_f[i]:.2f}", f"{heading:.2f}", f"{ue[i]:.4f}", f"{un[i]:.4f}",
                        f"{uu[i]:.4f}"]
            w.writerow(head + stats + [f"{v:.1f}" for v in series[i]])
    return Path(path)
