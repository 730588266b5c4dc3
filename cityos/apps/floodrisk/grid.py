"""Regular raster grids: georeference, GeoTIFF reading (with reprojection onto a target
grid) and writing, and burning polygons or lines into cells.

Every array in floodrisk is north-up, indexed ``[row, col]`` with row 0 at the top,
and carries a :class:`GridSpec` that says where it lies. Nodata becomes ``NaN`` on read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import calculate_default_transform, reproject

from cityos.core.geo import utm_epsg

__all__ = [
    "GridError",
    "GridSpec",
    "cells_on_line",
    "cells_in_polygon",
    "rasterize_polygons",
    "read_raster",
    "write_geotiff",
]


class GridError(ValueError):
    """A raster cannot be used as given; the message names the file and what is wrong."""


@dataclass(frozen=True)
class GridSpec:
    """Georeference of a north-up raster.

    Parameters
    ----------
    transform : affine.Affine
        Maps (col, row) of a cell's top-left corner to (x, y).
    crs : rasterio.crs.CRS or str
        Coordinate reference system; a string is parsed by :meth:`rasterio.crs.CRS.from_user_input`.
    shape : tuple of int
        ``(ny, nx)``.
    """

    transform: Affine
    crs: Any
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        if self.crs is not None and not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))

    @classmethod
    def from_origin(
        cls, west: float, north: float, cell_size: float, shape: tuple[int, int], crs: Any
    ) -> GridSpec:
        """A grid of square cells whose top-left corner is at (``west``, ``north``)."""
        return cls(Affine(cell_size, 0.0, west, 0.0, -cell_size, north), crs, shape)

    @property
    def cell_size(self) -> float:
        """Cell width in CRS units (metres for a projected CRS)."""
        return abs(self.transform.a)

    @property
    def cell_area(self) -> float:
        """Area of one cell in CRS units squared."""
        return abs(self.transform.a * self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)``."""
        ny, nx = self.shape
        t = self.transform
        left, top = t.c, t.f
        right, bottom = t.c + t.a * nx, t.f + t.e * ny
        return (min(left, right), min(bottom, top), max(left, right), max(bottom, top))

    def xy(self, row: Any, col: Any) -> tuple[Any, Any]:
        """Coordinates of cell centres (scalars or arrays)."""
        t = self.transform
        c, r = np.asarray(col) + 0.5, np.asarray(row) + 0.5
        return t.c + t.a * c + t.b * r, t.f + t.d * c + t.e * r

    def rowcol(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Row and column of the cells containing points (may fall outside the grid)."""
        t = self.transform
        col = (np.asarray(x, dtype=float) - t.c) / t.a
        row = (np.asarray(y, dtype=float) - t.f) / t.e
        return np.floor(row).astype(int), np.floor(col).astype(int)

    def contains(self, row: Any, col: Any) -> Any:
        """True where (row, col) is a cell of this grid."""
        ny, nx = self.shape
        row, col = np.asarray(row), np.asarray(col)
        return (row >= 0) & (row < ny) & (col >= 0) & (col < nx)

    def same_as(self, other: GridSpec, tol: float = 1e-6) -> bool:
        """Same shape, CRS and transform (to ``tol`` of a cell)."""
        if self.shape != other.shape or (self.crs != other.crs):
            return False
        a, b = np.array(self.transform)[:6], np.array(other.transform)[:6]
        return bool(np.all(np.abs(a - b) <= tol * max(self.cell_size, 1e-12)))


_RESAMPLING = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "average": Resampling.average,
    "mode": Resampling.mode,
    "min": Resampling.min,
    "max": Resampling.max,
}


def _resampling(value: str | Resampling) -> Resampling:
    if isinstance(value, Resampling):
        return value
    try:
        return _RESAMPLING[value]
    except KeyError:
        raise GridError(
            f"resampling: unknown method {value!r}; use one of {sorted(_RESAMPLING)}"
        ) from None


def read_raster(
    path: str | Path,
    *,
    band: int = 1,
    like: GridSpec | None = None,
    resampling: str | Resampling = "bilinear",
    crs: Any = None,
    cell_size: float | None = None,
    require_projected: bool = False,
) -> tuple[np.ndarray, GridSpec]:
    """Read one band of a raster as float64 with nodata as NaN.

    Parameters
    ----------
    path : str or Path
        GeoTIFF (or any raster GDAL reads).
    band : int
        1-based band number.
    like : GridSpec, optional
        Target grid: the band is reprojected/resampled onto it (``resampling``).
    resampling : str
        ``nearest`` (for classes), ``bilinear``, ``cubic``, ``average``, ``mode``, ``min``, ``max``.
    crs : CRS or str, optional
        Target CRS when ``like`` is not given; the raster is reprojected to it (with
        ``cell_size`` if given).
    cell_size : float, optional
        Target cell size (target CRS units) when reprojecting or resampling to ``crs``.
    require_projected : bool
        Raise :class:`GridError` when the result would be in a geographic CRS; the message
        names the UTM zone to use.

    Returns
    -------
    array : numpy.ndarray
        ``(ny, nx)`` float64, NaN where nodata.
    grid : GridSpec
    """
    path = Path(path)
    if not path.exists():
        raise GridError(f"{path}: file not found")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise GridError(f"{path}: not a readable raster ({exc})") from None
    with src:
        if not 1 <= band <= src.count:
            raise GridError(f"{path}: band {band} requested, the file has {src.count}")
        t = src.transform
        if t.b != 0 or t.d != 0:
            raise GridError(f"{path}: rotated or sheared rasters are not supported ({t})")
        if t.a <= 0:
            raise GridError(f"{path}: negative or zero cell width {t.a} (x must increase "
                            "with the column)")
        if src.crs is None:
            raise GridError(f"{path}: no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:...)")
        data = src.read(band, masked=True).astype(np.float64).filled(np.nan)
        transform = t
        if t.e > 0:  # south-up: flip to north-up
            data = data[::-1]
            ny = data.shape[0]
            transform = Affine(t.a, 0.0, t.c, 0.0, -t.e, t.f + t.e * ny)
        grid = GridSpec(transform, src.crs, data.shape)

    target_crs = like.crs if like is not None else (CRS.from_user_input(crs) if crs else None)
    if require_projected:
        final_crs = target_crs or grid.crs
        if final_crs.is_geographic:
            left, bottom, right, top = grid.bounds
            lon, lat = (left + right) / 2, (bottom + top) / 2
            if grid.crs.is_geographic:
                epsg = utm_epsg(lon, lat)
                hint = f"; reproject it to a projected CRS, e.g. EPSG:{epsg} (UTM zone " \
                       f"{(epsg % 100)}{'N' if epsg < 32700 else 'S'}), or set `crs:` to do so on load"
            else:
                hint = "; use a projected CRS"
            raise GridError(f"{path}: CRS {final_crs.to_string()} is geographic (degrees), "
                            f"a projected CRS in metres is needed{hint}")

    square = math.isclose(abs(grid.transform.a), abs(grid.transform.e), rel_tol=1e-9)
    if like is None and cell_size and target_crs is None:
        target_crs = grid.crs
    if like is None and target_crs is not None and (
        target_crs != grid.crs
        or (cell_size and not (square and math.isclose(cell_size, grid.cell_size)))
    ):
        left, bottom, right, top = grid.bounds
        dst_t, nx, ny = calculate_default_transform(
            grid.crs, target_crs, grid.shape[1], grid.shape[0], left, bottom, right, top,
            resolution=cell_size,
        )
        if cell_size is None:  # make the cells square
            size = (abs(dst_t.a) + abs(dst_t.e)) / 2
            dst_t, nx, ny = calculate_default_transform(
                grid.crs, target_crs, grid.shape[1], grid.shape[0], left, bottom, right, top,
                resolution=size,
            )
        like = GridSpec(dst_t, target_crs, (ny, nx))

    if like is not None and not grid.same_as(like):
        out = np.full(like.shape, np.nan, dtype=np.float64)
        reproject(
            source=data, destination=out,
            src_transform=grid.transform, src_crs=grid.crs, src_nodata=np.nan,
            dst_transform=like.transform, dst_crs=like.crs, dst_nodata=np.nan,
            resampling=_resampling(resampling),
        )
        return out, like
    return data, grid


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    grid: GridSpec,
    *,
    nodata: float | None = None,
    description: str | None = None,
    dtype: str | None = None,
) -> Path:
    """Write a 2-D array as a single-band, DEFLATE-compressed GeoTIFF.

    NaN cells are written as ``nodata`` (which defaults to -9999 for float arrays that
    contain NaN). ``description`` becomes the band description (e.g. "max depth (m)").
    """
    path = Path(path)
    array = np.asarray(array)
    if array.shape != grid.shape:
        raise GridError(f"{path}: array shape {array.shape} differs from the grid {grid.shape}")
    dtype = np.dtype(dtype or array.dtype)
    if dtype == np.float16 or dtype == np.bool_:
        dtype = np.dtype(np.float32 if dtype == np.float16 else np.uint8)
    data = array.astype(dtype)
    if np.issubdtype(dtype, np.floating):
        if nodata is None and np.isnan(data).any():
            nodata = -9999.0
        if nodata is not None:
            data = np.where(np.isnan(data), nodata, data).astype(dtype)
    ny, nx = grid.shape
    profile = {
        "driver": "GTiff", "height": ny, "width": nx, "count": 1, "dtype": dtype.name,
        "crs": grid.crs, "transform": grid.transform, "compress": "deflate",
        "predictor": 3 if np.issubdtype(dtype, np.floating) else 2,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if nx >= 256 and ny >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if description:
            dst.set_band_description(1, description)
    return path


def rasterize_polygons(
    geometries_with_values: Iterable[tuple[Any, float]],
    grid: GridSpec,
    fill: float = 0.0,
    *,
    all_touched: bool = False,
    dtype: str = "float64",
) -> np.ndarray:
    """Burn (geometry, value) pairs into a grid; later geometries overwrite earlier ones.

    A cell takes a polygon's value when its centre lies inside it (or, with
    ``all_touched``, when the polygon touches it at all). Geometries are shapely objects
    or GeoJSON-like mappings in the grid's CRS.
    """
    shapes = [(g, v) for g, v in geometries_with_values]
    if not shapes:
        return np.full(grid.shape, fill, dtype=dtype)
    return rasterize(
        shapes, out_shape=grid.shape, transform=grid.transform, fill=fill,
        all_touched=all_touched, dtype=dtype,
    )


def cells_in_polygon(polygon: Any, grid: GridSpec) -> np.ndarray:
    """Boolean mask of the cells whose centre lies inside ``polygon``."""
    return rasterize_polygons([(polygon, 1)], grid, 0, dtype="uint8").astype(bool)


def cells_on_line(line: Any, grid: GridSpec) -> np.ndarray:
    """Boolean mask of every cell a line passes through (a 4-connected chain of cells)."""
    return rasterize_polygons([(line, 1)], grid, 0, all_touched=True, dtype="uint8").astype(bool)
