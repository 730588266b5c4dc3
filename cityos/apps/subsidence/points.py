"""The point store: a processed InSAR product on disk, queried by place.

A :class:`PointStore` is a directory:

``points.parquet``
    One row per point: ``id``, ``lon``, ``lat``, ``height``, ``incidence_deg``,
    ``cell``, the product's own ``product_velocity_mm_yr`` when it gives one, and the
    fitted columns once :func:`~cityos.apps.subsidence.fit.fit_store` has run.
``displacement.h5``
    ``displacement`` float32 (n_points, n_dates) in mm, chunked by rows; ``date``
    (``|S8`` YYYYMMDD); ``lon``/``lat`` (for range reads by the queries);
    ``cell_start`` (the grid index).
``meta.json``
    Dates, reference date, kind, orbit, heading, wavelength, the grid and the source.

Rows are sorted by the cell of a regular lon/lat grid (about 256 points per cell), and
``cell_start[c]`` is the first row of cell ``c`` (cells numbered ``row * nx + col``), so
the points of a rectangle of cells are one contiguous row range per grid row: a bbox,
radius or polygon query reads only the coordinates of the cells it touches and then
tests those points exactly.

:meth:`PointStore.create` imports a product chunk by chunk: the displacement goes to a
temporary memory-mapped file in reading order, only the per-point attributes stay in
memory (about 40 bytes a point), then rows are written to ``displacement.h5`` in cell
order block by block. Ten million points never need their matrix in memory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .products import Product, ProductError

EARTH_RADIUS_M = 6_371_008.8
POINTS_PER_CELL = 256
MAX_CELLS = 1 << 20
ROW_CHUNK_BYTES = 1 << 20
FIT_DATE_COLUMNS = ("break_date",)


class PointStoreError(ValueError):
    """A store directory that is missing or damaged."""


def _grid(lon: np.ndarray, lat: np.ndarray, cell_deg: float | None):
    west, east = float(lon.min()), float(lon.max())
    south, north = float(lat.min()), float(lat.max())
    if cell_deg is None:
        span = max(east - west, north - south, 1e-6)
        area = max((east - west) * (north - south), span * 1e-6)
        cells = min(MAX_CELLS, max(1, len(lon) // POINTS_PER_CELL))
        cell_deg = max(math.sqrt(area / cells), span / 1024, 1e-7)
    nx = int(math.floor((east - west) / cell_deg)) + 1
    ny = int(math.floor((north - south) / cell_deg)) + 1
    return {"west": west, "south": south, "cell_deg": float(cell_deg), "nx": nx, "ny": ny}


def _cells(lon, lat, grid) -> np.ndarray:
    cx = np.clip(np.floor((lon - grid["west"]) / grid["cell_deg"]), 0, grid["nx"] - 1)
    cy = np.clip(np.floor((lat - grid["south"]) / grid["cell_deg"]), 0, grid["ny"] - 1)
    return (cy.astype(np.int64) * grid["nx"] + cx.astype(np.int64))


def haversine_m(lon0, lat0, lon, lat) -> np.ndarray:
    """Great-circle distance in metres on the mean Earth sphere."""
    p0, p = np.deg2rad(lat0), np.deg2rad(lat)
    dp = p - p0
    dl = np.deg2rad(np.asarray(lon) - lon0)
    a = np.sin(dp / 2) ** 2 + np.cos(p0) * np.cos(p) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


class PointStore:
    """InSAR points and their displacement series, with a grid index.

    Open with :meth:`open`, build with :meth:`create`.
    """

    def __init__(self, directory, meta: dict):
        self.directory = Path(directory)
        self.meta = meta
        self.dates = np.array(meta["dates"], dtype="datetime64[D]")
        self.n_points = int(meta["n_points"])
        self.grid = meta["grid"]
        self._columns: dict[str, np.ndarray] = {}
        self._cell_start: np.ndarray | None = None

    # ----------------------------------------------------------------- build
    @classmethod
    def create(cls, directory, product: Product, *, chunk: int = 200_000,
               cell_deg: float | None = None,
               progress: Callable[[int], None] | None = None) -> PointStore:
        """Import a product into a new store (``cityos subsidence import``).

        Parameters
        ----------
        directory : path
            Created if needed; an existing store there is replaced.
        product : Product
            From :func:`~cityos.apps.subsidence.products.open_product`.
        chunk : int
            Points read per chunk.
        cell_deg : float, optional
            Grid cell size in degrees (by default about 256 points a cell).
        progress : callable, optional
            Called with the number of points of each chunk read (a
            :meth:`~cityos.core.progress.Progress.advance`).

        Returns
        -------
        PointStore
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        n_dates = product.n_dates
        ids, lon, lat, height, inc, vel = [], [], [], [], [], []
        with tempfile.TemporaryDirectory(dir=directory, prefix=".import-") as tmp:
            capacity = max(1, product.n_points)
            raw = np.lib.format.open_memmap(Path(tmp) / "raw.npy", mode="w+",
                                            dtype=np.float32, shape=(capacity, n_dates))
            n = 0
            for c in product.chunks(chunk):
                k = len(c)
                if c.displacement_mm.shape != (k, n_dates):
                    raise ProductError(f"{product.path}: chunk displacement shape "
                                       f"{c.displacement_mm.shape}, expected {(k, n_dates)}")
                if n + k > capacity:  # a CSV whose line count under-counted the points
                    capacity = max(2 * capacity, n + k)
                    raw.flush()
                    grown = np.lib.format.open_memmap(Path(tmp) / f"raw{capacity}.npy",
                                                      mode="w+", dtype=np.float32,
                                                      shape=(capacity, n_dates))
                    grown[:n] = raw[:n]
                    del raw
                    raw = grown
                raw[n:n + k] = c.displacement_mm
                ids.append(c.ids)
                lon.append(c.lon)
                lat.append(c.lat)
                height.append(c.height)
                inc.append(c.incidence_deg)
                vel.append(c.velocity_mm_yr if c.velocity_mm_yr is not None
                           else np.full(k, np.nan, np.float32))
                n += k
                if progress is not None:
                    progress(k)
            if n == 0:
                raise ProductError(f"{product.path}: no point with data in every epoch")
            lon_a, lat_a = np.concatenate(lon), np.concatenate(lat)
            grid = _grid(lon_a, lat_a, cell_deg)
            cells = _cells(lon_a, lat_a, grid)
            order = np.argsort(cells, kind="stable")
            cells = cells[order]
            n_cells = grid["nx"] * grid["ny"]
            cell_start = np.searchsorted(cells, np.arange(n_cells + 1)).astype(np.int64)

            disp_path = directory / "displacement.h5"
            rows_per_chunk = max(1, min(n, ROW_CHUNK_BYTES // (4 * n_dates)))
            with h5py.File(disp_path.with_suffix(".h5.tmp"), "w") as h5:
                ds = h5.create_dataset("displacement", shape=(n, n_dates), dtype=np.float32,
                                       chunks=(rows_per_chunk, n_dates))
                ds.attrs["unit"] = "mm"
                block = max(rows_per_chunk, (64 << 20) // (4 * n_dates))
                for a in range(0, n, block):
                    src = order[a:a + block]
                    # gather in on-disk order, then put back in cell order
                    by_disk = np.argsort(src)
                    gathered = np.empty((len(src), n_dates), np.float32)
                    gathered[by_disk] = raw[src[by_disk]]
                    ds[a:a + len(src)] = gathered
                h5.create_dataset("lon", data=lon_a[order], chunks=True)
                h5.create_dataset("lat", data=lat_a[order], chunks=True)
                h5.create_dataset("cell_start", data=cell_start)
                h5.create_dataset("date", data=np.array(
                    [str(d).replace("-", "") for d in product.dates], dtype="S8"))
            del raw
        os.replace(disp_path.with_suffix(".h5.tmp"), disp_path)

        id_a = np.concatenate(ids)[order]
        table = pa.table({
            "id": pa.array(id_a.astype(str) if id_a.dtype == object else id_a),
            "lon": lon_a[order], "lat": lat_a[order],
            "height": np.concatenate(height)[order].astype(np.float32),
            "incidence_deg": np.concatenate(inc)[order].astype(np.float32),
            "product_velocity_mm_yr": np.concatenate(vel)[order].astype(np.float32),
            "cell": cells,
        })
        pq.write_table(table, directory / "points.parquet")
        meta = {
            "n_points": int(n), "dates": [str(d) for d in product.dates],
            "reference_date": None if product.reference_date is None
            else str(product.reference_date),
            "kind": product.kind, "orbit": product.orbit, "heading_deg": product.heading_deg,
            "wavelength_m": product.wavelength_m, "incidence": bool(product.incidence),
            "reference_point": product.reference_point,
            "source": str(product.path), "format": product.format, "crs": "EPSG:4326",
            "grid": grid, "fitted": False,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=1))
        return cls(directory, meta)

    @classmethod
    def open(cls, directory) -> PointStore:
        """Open an existing store directory."""
        directory = Path(directory)
        for name in ("meta.json", "points.parquet", "displacement.h5"):
            if not (directory / name).is_file():
                raise PointStoreError(f"{directory}: not a point store (no {name})")
        try:
            return cls(directory, json.loads((directory / "meta.json").read_text()))
        except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
            raise PointStoreError(f"{directory / 'meta.json'}: damaged ({error!r}); import "
                                  "the product again") from None

    # ------------------------------------------------------------ attributes
    def _column(self, name: str) -> np.ndarray:
        if name not in self._columns:
            table = pq.read_table(self.directory / "points.parquet", columns=[name])
            column = table.column(name)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                self._columns[name] = np.asarray(column.to_pylist(), dtype=object)
            else:
                self._columns[name] = column.to_numpy()
        return self._columns[name]

    @property
    def ids(self) -> np.ndarray:
        return self._column("id")

    @property
    def lon(self) -> np.ndarray:
        return self._column("lon")

    @property
    def lat(self) -> np.ndarray:
        return self._column("lat")

    @property
    def height(self) -> np.ndarray:
        return self._column("height")

    @property
    def incidence_deg(self) -> np.ndarray:
        return self._column("incidence_deg")

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    def column_names(self) -> list[str]:
        return pq.read_schema(self.directory / "points.parquet").names

    # ----------------------------------------------------------------- index
    @property
    def cell_start(self) -> np.ndarray:
        if self._cell_start is None:
            with h5py.File(self.directory / "displacement.h5", "r") as h5:
                self._cell_start = h5["cell_start"][()]
        return self._cell_start

    def _row_ranges(self, west, south, east, north) -> list[tuple[int, int]]:
        g = self.grid
        if east < west or north < south:
            return []
        cx0 = max(0, int(math.floor((west - g["west"]) / g["cell_deg"])))
        cx1 = min(g["nx"] - 1, int(math.floor((east - g["west"]) / g["cell_deg"])))
        cy0 = max(0, int(math.floor((south - g["south"]) / g["cell_deg"])))
        cy1 = min(g["ny"] - 1, int(math.floor((north - g["south"]) / g["cell_deg"])))
        if cx0 > cx1 or cy0 > cy1:
            return []
        starts = self.cell_start
        ranges: list[tuple[int, int]] = []
        for cy in range(cy0, cy1 + 1):
            a = int(starts[cy * g["nx"] + cx0])
            b = int(starts[cy * g["nx"] + cx1 + 1])
            if b <= a:
                continue
            if ranges and ranges[-1][1] == a:
                ranges[-1] = (ranges[-1][0], b)
            else:
                ranges.append((a, b))
        return ranges

    def _candidates(self, west, south, east, north):
        """Rows, lon, lat of the points in the cells the rectangle touches."""
        ranges = self._row_ranges(west, south, east, north)
        if not ranges:
            empty = np.empty(0)
            return np.empty(0, np.int64), empty, empty
        rows = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])
        if "lon" in self._columns and "lat" in self._columns:
            return rows, self._columns["lon"][rows], self._columns["lat"][rows]
        with h5py.File(self.directory / "displacement.h5", "r") as h5:
            lon = np.concatenate([h5["lon"][a:b] for a, b in ranges])
            lat = np.concatenate([h5["lat"][a:b] for a, b in ranges])
        return rows, lon, lat

    def select_bbox(self, west, south, east, north) -> np.ndarray:
        """Rows of the points inside a lon/lat rectangle (edges included).

        Returns
        -------
        ndarray of int64
            Row indices, increasing.
        """
        rows, lon, lat = self._candidates(west, south, east, north)
        inside = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
        return rows[inside]

    def select_near(self, lon, lat, radius_m) -> np.ndarray:
        """Rows of the points within ``radius_m`` metres (great circle) of a place."""
        if radius_m < 0:
            raise ValueError(f"radius_m must be >= 0, got {radius_m}")
        dlat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.001
        coslat = max(math.cos(math.radians(min(89.9, abs(lat) + dlat))), 1e-6)
        dlon = min(180.0, dlat / coslat)
        rows, plon, plat = self._candidates(lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        return rows[haversine_m(lon, lat, plon, plat) <= radius_m]

    def select_polygon(self, polygon) -> np.ndarray:
        """Rows of the points inside a shapely (Multi)Polygon in lon/lat (boundary
        included)."""
        import shapely

        west, south, east, north = polygon.bounds
        rows, lon, lat = self._candidates(west, south, east, north)
        if len(rows) == 0:
            return rows
        shapely.prepare(polygon)
        inside = shapely.intersects_xy(polygon, lon, lat)
        return rows[inside]

    # ---------------------------------------------------------- displacement
    def displacement(self, rows) -> np.ndarray:
        """Displacement series (mm) of the given rows, in the order given.

        Parameters
        ----------
        rows : array of int

        Returns
        -------
        ndarray of float32, shape (len(rows), n_dates)
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = np.empty((len(rows), self.n_dates), dtype=np.float32)
        if len(rows) == 0:
            return out
        if rows.min() < 0 or rows.max() >= self.n_points:
            raise IndexError(f"rows outside 0..{self.n_points - 1}")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        breaks = np.flatnonzero(np.diff(srt) > 64) + 1
        with h5py.File(self.directory / "displacement.h5", "r") as h5:
            ds = h5["displacement"]
            for part in np.split(np.arange(len(srt)), breaks):
                a, b = int(srt[part[0]]), int(srt[part[-1]]) + 1
                block = ds[a:b]
                out[order[part]] = block[srt[part] - a]
        return out

    def displacement_block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the displacement matrix (mm), one contiguous read."""
        with h5py.File(self.directory / "displacement.h5", "r") as h5:
            return h5["displacement"][start:stop]

    # ------------------------------------------------------------------- fit
    def fitted(self, rows=None) -> dict[str, np.ndarray]:
        """Fitted columns (see :func:`~cityos.apps.subsidence.fit.fit_series`), all rows
        or the given ones.

        Raises
        ------
        PointStoreError
            When the store has not been fitted yet.
        """
        if not self.meta.get("fitted"):
            raise PointStoreError(f"{self.directory}: not fitted yet (run the fit)")
        names = self.meta.get("fit_columns", [])
        out = {name: self._column(name) for name in names}
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            out = {k: v[rows] for k, v in out.items()}
        return out

    @property
    def has_incidence(self) -> bool:
        """Whether any point has an incidence angle (a line-of-sight product without one
        gives no vertical motion)."""
        return bool(np.isfinite(np.asarray(self.incidence_deg, dtype=np.float64)).any())

    def fill_incidence(self, incidence_deg: float) -> int:
        """Give ``incidence_deg`` to every point without an incidence angle.

        Parameters
        ----------
        incidence_deg : float
            Degrees from vertical, checked by
            :func:`~cityos.apps.subsidence.products.check_incidence`.

        Returns
        -------
        int
            The points that had none.
        """
        from .products import check_incidence

        angle = check_incidence(incidence_deg)
        incidence = np.asarray(self.incidence_deg, dtype=np.float32)
        missing = ~np.isfinite(incidence)
        if missing.any():
            self._replace_columns({"incidence_deg": np.where(missing, np.float32(angle),
                                                             incidence)})
        self.meta["incidence"] = True
        self._write_meta()
        return int(missing.sum())

    def _write_meta(self) -> None:
        (self.directory / "meta.json").write_text(json.dumps(self.meta, indent=1))

    def write_fit(self, columns: dict[str, np.ndarray]) -> None:
        """Add or replace per-point columns (the fit results) in ``points.parquet``.

        Parameters
        ----------
        columns : dict of str to array
            Each of length ``n_points``, in row order.
        """
        self._replace_columns(columns)
        names = list(dict.fromkeys(list(self.meta.get("fit_columns", [])) + list(columns)))
        self.meta.update({"fitted": True, "fit_columns": names})
        self._write_meta()

    def _replace_columns(self, columns: dict[str, np.ndarray]) -> None:
        path = self.directory / "points.parquet"
        table = pq.read_table(path)
        for name, values in columns.items():
            values = np.asarray(values)
            if len(values) != self.n_points:
                raise ValueError(f"column {name!r} has {len(values)} values, the store "
                                 f"{self.n_points} points")
            if name in ("id", "lon", "lat", "cell"):
                raise ValueError(f"column {name!r} cannot be overwritten")
            array = pa.array(values)
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, array)
            else:
                table = table.append_column(name, array)
            self._columns.pop(name, None)
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    def remove(self) -> None:
        """Delete the store directory."""
        shutil.rmtree(self.directory)
