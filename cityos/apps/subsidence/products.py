"""Readers for what InSAR processors write: MintPy HDF5, EGMS point CSV, GeoTIFF stacks.

Every reader returns a :class:`Product`: the dates, the reference, the geometry and a
:meth:`Product.chunks` iterator of :class:`PointChunk` blocks, so a product of ten
million points is never held in memory at once. Displacement is always handed out in
millimetres along the product's direction (``kind``: ``"los"`` for line of sight,
positive towards the satellite as MintPy and EGMS both define it, or ``"vertical"``,
positive up). Points with no data (NaN in any epoch, the fill value, masked) are
dropped as they are read.

Formats
-------
MintPy (Yunjun et al. 2019, https://github.com/insarlab/MintPy, ``docs/api/data_structure.md``)
    ``timeseries.h5``: datasets at the root, ``timeseries`` float32 ``(n_dates, rows,
    cols)`` cumulative displacement in metres, ``date`` ``|S8`` YYYYMMDD, ``bperp``;
    attributes ``FILE_TYPE=timeseries``, ``LENGTH``, ``WIDTH``, ``REF_DATE``,
    ``REF_Y``/``REF_X``, ``WAVELENGTH`` (m), ``ORBIT_DIRECTION``, ``HEADING`` (deg,
    clockwise from north) and, geocoded, ``X_FIRST``/``Y_FIRST`` (upper-left corner of
    the first pixel), ``X_STEP``/``Y_STEP``. ``geometryGeo.h5`` / ``geometryRadar.h5``:
    ``height`` (m), ``incidenceAngle`` (deg), ``latitude``/``longitude`` (deg, radar
    coordinates), ``azimuthAngle``, ``shadowMask``, ``waterMask``. ``velocity.h5``:
    ``velocity``/``velocityStd`` in m/yr.
EGMS (Copernicus European Ground Motion Service, Basic/Calibrated/Ortho point CSV)
    ``pid, mp_type, latitude, longitude, easting, northing, height, height_wgs84, line,
    pixel, rmse, temporal_coherence, amplitude_dispersion, incidence_angle, track_angle,
    los_east, los_north, los_up, mean_velocity, mean_velocity_std, acceleration,
    acceleration_std, seasonality, seasonality_std`` then one column per date named
    ``YYYYMMDD``; displacement in mm, velocity in mm/yr; easting/northing in EPSG:3035
    (the Ortho product has no latitude/longitude, and is vertical or east-west).
GeoTIFF stack
    One band per date; the date from the band description (``YYYYMMDD`` or
    ``YYYY-MM-DD``), else a band tag ``DATE``, else a dataset tag ``DATES`` (comma
    separated). Unit from the dataset tag ``UNIT`` (``m`` or ``mm``; metres when absent,
    as MintPy's ``save_gdal.py`` writes).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SENTINEL1_WAVELENGTH_M = 0.05546576  # C-band, 5.405 GHz
DATE_COLUMN = re.compile(r"^\d{8}$")
EGMS_CRS = "EPSG:3035"


class ProductError(ValueError):
    """A product file that cannot be read; the message names the file and the field."""


#: What gives each format's points an incidence angle (for the message when none does).
INCIDENCE_SOURCES = {
    "mintpy": "no geometryGeo.h5/geometryRadar.h5 with an 'incidenceAngle' dataset beside it "
              "(or given with --geometry FILE) and no INCIDENCE_ANGLE attribute",
    "egms": "no 'incidence_angle' column",
    "geotiff": "no incidence angle (a GeoTIFF stack carries none)",
}


def check_incidence(incidence_deg: float, where: str = "--incidence") -> float:
    """An incidence angle (degrees from vertical) as a float, or a ProductError.

    Parameters
    ----------
    incidence_deg : float
    where : str
        Names the value in the message (an option, a file and attribute).

    Returns
    -------
    float
    """
    try:
        angle = float(incidence_deg)
    except (TypeError, ValueError):
        raise ProductError(f"{where}: {incidence_deg!r} is not a number") from None
    if not (math.isfinite(angle) and 0.0 <= angle < 90.0):
        raise ProductError(f"{where}: {incidence_deg!r} is not an incidence angle in degrees "
                           "from vertical (0 <= DEG < 90)")
    return angle


def missing_incidence(format_: str, source) -> str:
    """Why a line-of-sight product gives no vertical motion.

    Parameters
    ----------
    format_ : str
        The product's format (``mintpy``, ``egms``, ``geotiff``).
    source : path
        The product file.

    Returns
    -------
    str
        ``"{source}: line of sight without an incidence angle (why)"``, for the caller
        to say what follows.
    """
    why = INCIDENCE_SOURCES.get(format_, "no incidence angle")
    return f"{source}: line of sight without an incidence angle ({why})"


@dataclass
class PointChunk:
    """A block of points of a product.

    Attributes
    ----------
    ids : ndarray
        Point ids: int64 (MintPy/GeoTIFF: ``row * width + col``) or str (EGMS ``pid``).
    lon, lat : ndarray of float64
        WGS84 degrees.
    height : ndarray of float32
        Height in metres (NaN where the product has none).
    incidence_deg : ndarray of float32
        Incidence angle from vertical at the point (NaN where unknown).
    displacement_mm : ndarray of float32, shape (k, n_dates)
        Cumulative displacement in millimetres.
    velocity_mm_yr : ndarray of float32 or None
        The velocity the product itself gives, if any.
    """

    ids: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    height: np.ndarray
    incidence_deg: np.ndarray
    displacement_mm: np.ndarray
    velocity_mm_yr: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lon)


@dataclass
class Product:
    """An InSAR displacement product, read lazily in chunks.

    Attributes
    ----------
    path : Path
        The file read.
    format : str
        ``"mintpy"``, ``"egms"`` or ``"geotiff"``.
    dates : ndarray of datetime64[D]
        Acquisition dates, increasing.
    reference_date : numpy.datetime64 or None
        The date the displacement is zero (``REF_DATE``).
    crs : str
        Coordinates handed out by :meth:`chunks`: always ``"EPSG:4326"`` (lon/lat).
    n_points : int
        Points in the file before those without data are dropped (an upper bound of
        what :meth:`chunks` yields; a pass over the data would be needed to know more).
    kind : str
        ``"los"`` (line of sight, + towards the satellite) or ``"vertical"`` (+ up),
        or ``"east"`` for an east-west product.
    heading_deg : float or None
        Satellite heading, degrees clockwise from north.
    incidence : bool
        Whether points carry an incidence angle.
    orbit : str or None
        ``"ascending"`` or ``"descending"``.
    wavelength_m : float or None
        Radar wavelength.
    reference_point : tuple or None
        ``(lon, lat)`` of the reference pixel, where the product names it.
    """

    path: Path
    format: str
    dates: np.ndarray
    reference_date: np.datetime64 | None
    crs: str
    n_points: int
    kind: str
    heading_deg: float | None
    incidence: bool
    orbit: str | None
    wavelength_m: float | None
    reference_point: tuple[float, float] | None = None
    _reader: Callable[[int], Iterator[PointChunk]] | None = field(default=None, repr=False)

    def chunks(self, size: int = 200_000) -> Iterator[PointChunk]:
        """Yield the points with data, about ``size`` at a time (row blocks for rasters).

        Parameters
        ----------
        size : int
            Target number of points per chunk.

        Yields
        ------
        PointChunk
        """
        if size < 1:
            raise ValueError(f"chunk size must be positive, got {size}")
        if self._reader is None:
            raise ProductError(f"{self.path}: product has no reader")
        yield from self._reader(size)

    @property
    def n_dates(self) -> int:
        return len(self.dates)


def with_incidence(product: Product, incidence_deg: float) -> Product:
    """The product with ``incidence_deg`` for every point it gives no incidence angle.

    Parameters
    ----------
    product : Product
    incidence_deg : float
        Degrees from vertical (a scene's centre angle, say); checked by
        :func:`check_incidence`.

    Returns
    -------
    Product
        A copy whose chunks carry the angle where the product's are NaN.
    """
    angle = np.float32(check_incidence(incidence_deg))
    inner = product._reader

    def reader(size: int) -> Iterator[PointChunk]:
        for chunk in inner(size):
            known = np.isfinite(chunk.incidence_deg)
            if not known.all():
                chunk.incidence_deg = np.where(known, chunk.incidence_deg, angle).astype(
                    np.float32)
            yield chunk

    return dataclasses.replace(product, incidence=True, _reader=reader)


def _open_h5(path: Path) -> h5py.File:
    """An HDF5 file opened for reading, or a ProductError naming it."""
    if not path.is_file():
        raise ProductError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ProductError(f"{path}: not an HDF5 file ({exc})") from None


# ------------------------------------------------------------------------- helpers
def parse_dates(values, where: str) -> np.ndarray:
    """YYYYMMDD (or YYYY-MM-DD) strings or bytes to datetime64[D]; errors name ``where``."""
    out = []
    for i, v in enumerate(values):
        s = v.decode() if isinstance(v, bytes | np.bytes_) else str(v)
        s = s.strip()
        if re.fullmatch(r"\d{8}(T\d+)?", s):
            s = f"{s[:4]}-{s[4:6]}-{s[6:8]}"
        try:
            out.append(np.datetime64(s[:10], "D"))
        except ValueError:
            raise ProductError(f"{where}[{i}]: not a date: {v!r}") from None
    dates = np.array(out, dtype="datetime64[D]")
    if len(dates) and np.any(np.diff(dates) <= np.timedelta64(0, "D")):
        raise ProductError(f"{where}: dates are not strictly increasing")
    return dates


def _attr(attrs, key, default=None):
    value = attrs.get(key, default)
    if isinstance(value, bytes | np.bytes_):
        value = value.decode()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    return value


def _float_attr(attrs, key) -> float | None:
    value = _attr(attrs, key)
    if value in (None, "", "None"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _orbit(value) -> str | None:
    if not value:
        return None
    v = str(value).strip().lower()
    if v.startswith("asc"):
        return "ascending"
    if v.startswith("desc") or v.startswith("dsc"):
        return "descending"
    return None


def _to_lonlat(x: np.ndarray, y: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = transformer.transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def _keep_rows(block: np.ndarray, ref_index: int | None = None,
               nodata: float | None = None) -> np.ndarray:
    """Points (rows of ``block``, shape (k, n_dates)) with data in every epoch.

    A point is dropped when any epoch is NaN or the fill value, or when every epoch is
    exactly zero (MintPy's no-data pixels), except the reference pixel ``ref_index``
    whose series is zero by construction.
    """
    keep = np.isfinite(block).all(axis=1)
    if nodata is not None and np.isfinite(nodata):
        keep &= ~(block == nodata).any(axis=1)
    zero = ~block.any(axis=1)
    if ref_index is not None and 0 <= ref_index < len(zero):
        zero[ref_index] = False
    return keep & ~zero


# -------------------------------------------------------------------------- MintPy
def _find_beside(path: Path, names: tuple[str, ...]) -> Path | None:
    for folder in (path.parent, path.parent / "inputs"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def read_mintpy(timeseries_h5, geometry_h5=None, *, mask=None, velocity_h5=None) -> Product:
    """Open a MintPy ``timeseries.h5``.

    Parameters
    ----------
    timeseries_h5 : path
        The time series file (``FILE_TYPE`` timeseries).
    geometry_h5 : path, optional
        ``geometryGeo.h5`` or ``geometryRadar.h5``; when omitted, looked for beside the
        file and in ``inputs/``. Radar-coordinate products need it for coordinates.
        Without its ``incidenceAngle`` the root attribute ``INCIDENCE_ANGLE`` (or
        ``CENTER_INCIDENCE_ANGLE``), one angle for the scene, is used; without either
        the points have no incidence angle (line of sight only, see
        :func:`with_incidence`).
    mask : path or ndarray of bool, optional
        Pixels to keep: a ``(rows, cols)`` boolean array or a MintPy mask file
        (``maskTempCoh.h5``, dataset ``mask``).
    velocity_h5 : path, optional
        MintPy ``velocity.h5``; its ``velocity`` (m/yr) is handed out with each chunk.
        Looked for beside the file when omitted.

    Returns
    -------
    Product
    """
    path = Path(timeseries_h5)
    with _open_h5(path) as h5:
        if "timeseries" not in h5:
            raise ProductError(f"{path}: no dataset 'timeseries' (is this a MintPy "
                               "timeseries file?)")
        if "date" not in h5:
            raise ProductError(f"{path}: no dataset 'date'")
        ts = h5["timeseries"]
        if ts.ndim != 3:
            raise ProductError(f"{path}: dataset 'timeseries' has shape {ts.shape}, "
                               "expected (n_dates, rows, cols)")
        n_dates, rows, cols = ts.shape
        dates = parse_dates(h5["date"][()], f"{path}:date")
        if len(dates) != n_dates:
            raise ProductError(f"{path}: dataset 'date' has {len(dates)} dates, "
                               f"'timeseries' {n_dates}")
        attrs = dict(h5.attrs)
    unit = str(_attr(attrs, "UNIT", "m")).strip().lower()
    if unit not in ("m", "mm"):
        raise ProductError(f"{path}: attribute UNIT={unit!r}: expected 'm' or 'mm'")
    scale = 1000.0 if unit == "m" else 1.0
    ref_date_attr = _attr(attrs, "REF_DATE")
    ref_date = parse_dates([ref_date_attr], f"{path}:REF_DATE")[0] if ref_date_attr else None
    ref_y, ref_x = _attr(attrs, "REF_Y"), _attr(attrs, "REF_X")
    ref_index = int(ref_y) * cols + int(ref_x) if ref_y is not None and ref_x is not None \
        else None

    geometry = Path(geometry_h5) if geometry_h5 is not None else _find_beside(
        path, ("geometryGeo.h5", "geometryRadar.h5"))
    geocoded = all(_float_attr(attrs, k) is not None
                   for k in ("X_FIRST", "Y_FIRST", "X_STEP", "Y_STEP"))
    geo_names: set[str] = set()
    if geometry is not None:
        with _open_h5(geometry) as g:
            geo_names = set(g.keys())
            for name in geo_names & {"height", "incidenceAngle", "latitude", "longitude"}:
                if g[name].shape != (rows, cols):
                    raise ProductError(f"{geometry}: dataset {name!r} has shape "
                                       f"{g[name].shape}, expected {(rows, cols)}")
    if not geocoded and not {"latitude", "longitude"} <= geo_names:
        raise ProductError(f"{path}: radar coordinates (no X_FIRST/Y_FIRST) and no "
                           "geometryRadar.h5 with 'latitude'/'longitude' datasets beside it "
                           "(give it with --geometry FILE)")
    # a scene-wide angle in the attributes stands in for a missing incidenceAngle dataset
    attr_incidence = None
    if "incidenceAngle" not in geo_names:
        for key in ("INCIDENCE_ANGLE", "CENTER_INCIDENCE_ANGLE"):
            if _attr(attrs, key) not in (None, "", "None"):
                attr_incidence = check_incidence(_attr(attrs, key), f"{path}: attribute {key}")
                break
    x_first, y_first = _float_attr(attrs, "X_FIRST"), _float_attr(attrs, "Y_FIRST")
    x_step, y_step = _float_attr(attrs, "X_STEP"), _float_attr(attrs, "Y_STEP")
    epsg = _attr(attrs, "EPSG")
    x_unit = str(_attr(attrs, "X_UNIT", "degrees")).lower()
    coord_crs = f"EPSG:{int(epsg)}" if epsg not in (None, "", "None") and \
        not x_unit.startswith("deg") else None

    keep_mask = None
    if mask is not None:
        if isinstance(mask, str | Path):
            with _open_h5(Path(mask)) as m:
                name = "mask" if "mask" in m else next(iter(m.keys()))
                keep_mask = np.asarray(m[name][()], dtype=bool)
        else:
            keep_mask = np.asarray(mask, dtype=bool)
        if keep_mask.shape != (rows, cols):
            raise ProductError(f"{mask if isinstance(mask, str | Path) else 'mask'}: shape "
                               f"{keep_mask.shape}, expected {(rows, cols)}")

    velocity = Path(velocity_h5) if velocity_h5 is not None else _find_beside(
        path, ("velocity.h5",))
    if velocity is not None:
        with _open_h5(velocity) as v:
            if "velocity" not in v:
                raise ProductError(f"{velocity}: no dataset 'velocity'")
            if v["velocity"].shape != (rows, cols):
                raise ProductError(f"{velocity}: dataset 'velocity' has shape "
                                   f"{v['velocity'].shape}, expected {(rows, cols)}")

    def reader(size: int) -> Iterator[PointChunk]:
        block_rows = max(1, size // cols)
        with h5py.File(path, "r") as h5, \
                (h5py.File(geometry, "r") if geometry is not None else _Null()) as g, \
                (h5py.File(velocity, "r") if velocity is not None else _Null()) as v:
            ts = h5["timeseries"]
            for r0 in range(0, rows, block_rows):
                r1 = min(rows, r0 + block_rows)
                cube = ts[:, r0:r1, :]
                block = cube.reshape(n_dates, -1).T  # (k, n_dates), a view
                ids = np.arange(r0 * cols, r1 * cols, dtype=np.int64)
                keep = _keep_rows(block, None if ref_index is None else ref_index - r0 * cols)
                if keep_mask is not None:
                    keep &= keep_mask[r0:r1].ravel()
                if not keep.any():
                    continue
                disp = np.ascontiguousarray(block[keep], dtype=np.float32)
                if scale != 1.0:
                    disp *= np.float32(scale)
                if geocoded:
                    rr, cc = np.divmod(ids[keep], cols)
                    x = x_first + (cc + 0.5) * x_step
                    y = y_first + (rr + 0.5) * y_step
                    lon, lat = (x, y) if coord_crs is None else _to_lonlat(x, y, coord_crs)
                else:
                    lon = g["longitude"][r0:r1].ravel()[keep].astype(np.float64)
                    lat = g["latitude"][r0:r1].ravel()[keep].astype(np.float64)
                n = int(keep.sum())
                height = g["height"][r0:r1].ravel()[keep].astype(np.float32) \
                    if "height" in geo_names else np.full(n, np.nan, np.float32)
                inc = g["incidenceAngle"][r0:r1].ravel()[keep].astype(np.float32) \
                    if "incidenceAngle" in geo_names else np.full(
                        n, np.nan if attr_incidence is None else attr_incidence, np.float32)
                vel = None
                if velocity is not None:
                    vel = v["velocity"][r0:r1].ravel()[keep].astype(np.float32) * 1000.0
                yield PointChunk(ids[keep], np.asarray(lon, np.float64),
                                 np.asarray(lat, np.float64), height, inc, disp, vel)

    ref_point = None
    if ref_y is not None and ref_x is not None and geocoded:
        ref_point = (x_first + (int(ref_x) + 0.5) * x_step, y_first + (int(ref_y) + 0.5) * y_step)
        if coord_crs is not None:
            lon, lat = _to_lonlat(np.array([ref_point[0]]), np.array([ref_point[1]]), coord_crs)
            ref_point = (float(lon[0]), float(lat[0]))
    return Product(path=path, format="mintpy", dates=dates, reference_date=ref_date,
                   crs="EPSG:4326", n_points=rows * cols, kind="los",
                   heading_deg=_float_attr(attrs, "HEADING"),
                   incidence="incidenceAngle" in geo_names or attr_incidence is not None,
                   orbit=_orbit(_attr(attrs, "ORBIT_DIRECTION")),
                   wavelength_m=_float_attr(attrs, "WAVELENGTH"),
                   reference_point=ref_point, _reader=reader)


class _Null:
    """A stand-in context manager for an optional file."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def read_mintpy_velocity(velocity_h5) -> dict[str, np.ndarray]:
    """Read MintPy ``velocity.h5``: ``velocity_mm_yr`` and ``velocity_std_mm_yr`` grids.

    Parameters
    ----------
    velocity_h5 : path

    Returns
    -------
    dict
        ``velocity_mm_yr``, ``velocity_std_mm_yr`` (NaN when absent), ``attrs``.
    """
    path = Path(velocity_h5)
    with _open_h5(path) as h5:
        if "velocity" not in h5:
            raise ProductError(f"{path}: no dataset 'velocity'")
        velocity = h5["velocity"][()].astype(np.float64) * 1000.0
        std = h5["velocityStd"][()].astype(np.float64) * 1000.0 if "velocityStd" in h5 \
            else np.full_like(velocity, np.nan)
        attrs = {k: _attr(h5.attrs, k) for k in h5.attrs}
    return {"velocity_mm_yr": velocity, "velocity_std_mm_yr": std, "attrs": attrs}


# ---------------------------------------------------------------------------- EGMS
def _egms_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = f.readline()
    if not line.strip():
        raise ProductError(f"{path}:1: empty file, expected the EGMS header")
    return [c.strip().strip('"') for c in line.rstrip("\r\n").split(",")]


def _arrow_error_line(message: str) -> int | None:
    m = re.search(r"Row #(\d+)", message)
    return int(m.group(1)) if m else None


def _first_bad_line(path: Path, index: int) -> int | None:
    """Line (1-based, header = 1) of the first non-numeric value in column ``index``;
    only run after the fast reader has failed, to name the line."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if line == 1 or index >= len(row) or not row[index].strip():
                continue
            try:
                float(row[index])
            except ValueError:
                return line
    return None


def read_egms_csv(path, *, crs: str = EGMS_CRS, kind: str | None = None) -> Product:
    """Open a point CSV in the European Ground Motion Service layout.

    Parameters
    ----------
    path : path
        The CSV (``pid``, coordinates, ``mean_velocity`` ..., one ``YYYYMMDD`` column
        per date, displacement in mm).
    crs : str
        CRS of ``easting``/``northing`` when there is no ``latitude``/``longitude``
        (EGMS: ETRS89-LAEA, EPSG:3035).
    kind : str, optional
        ``"los"``, ``"vertical"`` or ``"east"``; by default LOS, or for an Ortho file
        (no LOS geometry) vertical/east from the ``_U_``/``_E_`` in its name.

    Returns
    -------
    Product
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise ProductError(f"{path}: no such file")
    header = _egms_header(path)
    if "pid" not in header:
        raise ProductError(f"{path}:1: no 'pid' column (is this an EGMS point file?)")
    date_cols = [c for c in header if DATE_COLUMN.match(c)]
    if not date_cols:
        raise ProductError(f"{path}:1: no date columns named YYYYMMDD")
    dates = parse_dates(date_cols, f"{path}:1 date columns")
    lonlat = {"latitude", "longitude"} <= set(header)
    en = {"easting", "northing"} <= set(header)
    if not (lonlat or en):
        raise ProductError(f"{path}:1: needs 'latitude'/'longitude' or 'easting'/'northing'")
    coord_cols = ["longitude", "latitude"] if lonlat else ["easting", "northing"]
    optional = [c for c in ("height", "incidence_angle", "mean_velocity", "track_angle")
                if c in header]
    wanted = ["pid"] + coord_cols + optional + date_cols
    types = {c: pa.float64() for c in wanted}
    types["pid"] = pa.string()
    if kind is None:
        # EGMS Ortho (L3) files carry no LOS geometry; their name ends in _U_ or _E_
        kind = "los"
        parts = set(re.split(r"[_\-.]", path.stem.upper()))
        if "incidence_angle" not in header and "los_up" not in header:
            kind = "vertical" if "U" in parts else "east" if "E" in parts else "los"

    heading = None
    n_rows = 0
    with open(path, "rb") as f:
        n_rows = max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
                     - 1)

    def batches(block_size: int):
        try:
            reader = pacsv.open_csv(
                path, read_options=pacsv.ReadOptions(block_size=block_size),
                convert_options=pacsv.ConvertOptions(column_types=types,
                                                     include_columns=wanted,
                                                     strings_can_be_null=True))
            line = 1
            for batch in reader:
                yield line, batch
                line += batch.num_rows
        except pa.ArrowInvalid as exc:
            message = str(exc)
            column = re.search(r"column #(\d+)", message)
            index = int(column.group(1)) if column else None
            row = _arrow_error_line(message)
            if row is None and index is not None:
                row = _first_bad_line(path, index)
            where = f"{path}:{row}" if row is not None else str(path)
            name = f" column {header[index]!r}:" if index is not None and \
                index < len(header) else ""
            detail = message.splitlines()[0].split(": ", 1)[-1]
            raise ProductError(f"{where}:{name} {detail}") from None

    if "track_angle" in header:
        for _, batch in batches(1 << 16):
            values = batch.column("track_angle").to_numpy(zero_copy_only=False)
            finite = values[np.isfinite(values)]
            if len(finite):
                heading = float(np.median(finite))
            break

    def reader(size: int) -> Iterator[PointChunk]:
        row_bytes = 12 * (len(date_cols) + len(optional) + 3)
        pending: list = []
        held = 0
        for _, batch in batches(max(1 << 20, min(1 << 27, size * row_bytes))):
            pending.append(batch)
            held += batch.num_rows
            if held >= size:
                yield from _egms_chunks(pending, coord_cols, date_cols, lonlat, crs, size)
                pending, held = [], 0
        if pending:
            yield from _egms_chunks(pending, coord_cols, date_cols, lonlat, crs, size)

    return Product(path=path, format="egms", dates=dates, reference_date=dates[0],
                   crs="EPSG:4326", n_points=n_rows, kind=kind, heading_deg=heading,
                   incidence="incidence_angle" in header,
                   orbit=None, wavelength_m=SENTINEL1_WAVELENGTH_M, _reader=reader)


def _egms_chunks(batches, coord_cols, date_cols, lonlat, crs, size) -> Iterator[PointChunk]:
    import pyarrow as pa

    table = pa.Table.from_batches(batches)

    def col(name, dtype=np.float64):
        return table.column(name).to_numpy().astype(dtype) if name in table.column_names \
            else np.full(table.num_rows, np.nan, dtype)

    ids = np.asarray(table.column("pid").to_pylist(), dtype=object)
    x, y = col(coord_cols[0]), col(coord_cols[1])
    disp = np.empty((table.num_rows, len(date_cols)), dtype=np.float32)
    for j, name in enumerate(date_cols):
        disp[:, j] = table.column(name).to_numpy(zero_copy_only=False)
    keep = np.isfinite(disp).all(axis=1) & np.isfinite(x) & np.isfinite(y)
    keep &= np.array([i is not None for i in ids])
    if not lonlat:
        x, y = _to_lonlat(x, y, crs)
    height = col("height", np.float32)
    inc = col("incidence_angle", np.float32)
    vel = col("mean_velocity", np.float32) if "mean_velocity" in table.column_names else None
    idx = np.flatnonzero(keep)
    for a in range(0, len(idx), size):
        s = idx[a:a + size]
        yield PointChunk(ids[s].astype(str), x[s], y[s], height[s], inc[s], disp[s],
                         None if vel is None else vel[s])


# ------------------------------------------------------------------------- GeoTIFF
def _band_date(src, band: int) -> str | None:
    description = (src.descriptions[band - 1] or "").strip()
    if re.fullmatch(r"\d{8}|\d{4}-\d{2}-\d{2}", description):
        return description
    tags = {k.upper(): v for k, v in src.tags(band).items()}
    for key in ("DATE", "ACQUISITION_DATE"):
        if key in tags:
            return tags[key]
    return None


def read_geotiff_stack(path, *, unit: str | None = None, kind: str = "los") -> Product:
    """Open a GeoTIFF displacement stack, one band per date.

    Parameters
    ----------
    path : path
        The GeoTIFF.
    unit : {"m", "mm"}, optional
        Overrides the ``UNIT`` tag (metres when neither is given).
    kind : str
        ``"los"`` or ``"vertical"``.

    Returns
    -------
    Product
    """
    import rasterio
    from rasterio.windows import Window

    path = Path(path)
    if not path.is_file():
        raise ProductError(f"{path}: no such file")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(f"{path}: not a readable raster ({exc})") from None
    with src:
        band_dates = [_band_date(src, b) for b in range(1, src.count + 1)]
        tags = {k.upper(): v for k, v in src.tags().items()}
        if any(d is None for d in band_dates):
            listed = [d.strip() for d in tags.get("DATES", "").split(",") if d.strip()]
            if len(listed) != src.count:
                missing = band_dates.index(None) + 1
                raise ProductError(f"{path}: band {missing} has no date (band description "
                                   "YYYYMMDD, band tag DATE or dataset tag DATES)")
            band_dates = listed
        dates = parse_dates(band_dates, f"{path}: band dates")
        tag_unit = (unit or tags.get("UNIT") or tags.get("UNITS") or "m").strip().lower()
        if tag_unit in ("meters", "metres", "meter", "metre"):
            tag_unit = "m"
        if tag_unit in ("millimeters", "millimetres"):
            tag_unit = "mm"
        if tag_unit not in ("m", "mm"):
            raise ProductError(f"{path}: UNIT {tag_unit!r}: expected 'm' or 'mm'")
        scale = 1000.0 if tag_unit == "m" else 1.0
        rows, cols = src.height, src.width
        transform, crs, nodata = src.transform, src.crs, src.nodata
        ref_date = tags.get("REF_DATE")
        ref_y, ref_x = tags.get("REF_Y"), tags.get("REF_X")
        heading = _float_attr(tags, "HEADING")
        orbit = _orbit(tags.get("ORBIT_DIRECTION"))
        wavelength = _float_attr(tags, "WAVELENGTH")
    if crs is None:
        raise ProductError(f"{path}: no CRS")
    crs_text = crs.to_string()
    geographic = crs.is_geographic and crs.to_epsg() == 4326

    def reader(size: int) -> Iterator[PointChunk]:
        block_rows = max(1, size // cols)
        with rasterio.open(path) as src:
            for r0 in range(0, rows, block_rows):
                r1 = min(rows, r0 + block_rows)
                cube = src.read(window=Window(0, r0, cols, r1 - r0))
                block = cube.reshape(len(dates), -1).T
                ref_index = int(ref_y) * cols + int(ref_x) - r0 * cols \
                    if ref_y is not None and ref_x is not None else None
                keep = _keep_rows(block, ref_index, nodata=nodata)
                if not keep.any():
                    continue
                ids = np.arange(r0 * cols, r1 * cols, dtype=np.int64)[keep]
                rr, cc = np.divmod(ids, cols)
                x = transform.c + (cc + 0.5) * transform.a + (rr + 0.5) * transform.b
                y = transform.f + (cc + 0.5) * transform.d + (rr + 0.5) * transform.e
                lon, lat = (x, y) if geographic else _to_lonlat(x, y, crs_text)
                disp = np.ascontiguousarray(block[keep], dtype=np.float32) * np.float32(scale)
                n = len(ids)
                yield PointChunk(ids, np.asarray(lon, np.float64), np.asarray(lat, np.float64),
                                 np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32),
                                 disp, None)

    return Product(path=path, format="geotiff", dates=dates,
                   reference_date=parse_dates([ref_date], f"{path}:REF_DATE")[0]
                   if ref_date else None,
                   crs="EPSG:4326", n_points=rows * cols, kind=kind, heading_deg=heading,
                   incidence=False, orbit=orbit, wavelength_m=wavelength, _reader=reader)


# -------------------------------------------------------------------------- by kind
def open_product(path, **kw) -> Product:
    """Open any supported product, by content and extension.

    A directory is searched for ``timeseries.h5`` (MintPy). ``.h5``/``.he5`` files are
    MintPy, ``.csv`` EGMS, ``.tif``/``.tiff`` GeoTIFF stacks.

    Parameters
    ----------
    path : path
    **kw
        Passed to the reader.

    Returns
    -------
    Product
    """
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "timeseries.h5", path / "mintpy" / "timeseries.h5"):
            if candidate.is_file():
                return read_mintpy(candidate, **kw)
        raise ProductError(f"{path}: directory without a MintPy timeseries.h5")
    if not path.is_file():
        raise ProductError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(8)
    suffix = path.suffix.lower()
    if magic.startswith(b"\x89HDF") or suffix in (".h5", ".he5", ".hdf5"):
        return read_mintpy(path, **kw)
    if magic[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") or \
            suffix in (".tif", ".tiff"):
        return read_geotiff_stack(path, **kw)
    if suffix == ".csv":
        return read_egms_csv(path, **kw)
    raise ProductError(f"{path}: unknown product format (expected MintPy .h5, EGMS .csv or "
                       "GeoTIFF)")
