"""Study inputs in standard formats, loaded onto the DEM's grid as a :class:`Scenario`.

The ``inputs:`` section of ``study.yaml`` names the files (paths relative to the study
file): a DEM GeoTIFF, Manning's n (land-cover raster + class table, polygons, or one
value), buildings and roads as GeoJSON, drains (capacity in mm/h per polygon, per
cell, or one value), soil losses (SCS curve number or Green-Ampt), the boundary and an
inflow hydrograph. Every layer ends up in the DEM's projected CRS; vector layers that
declare another CRS are reprojected, rasters in another CRS need ``reproject: true``.
Each problem is raised as an :class:`InputError` naming the file and the field,
feature or line, e.g. ``buildings.geojson: feature 12: value: negative (-5)``.
"""

from __future__ import annotations

import copy as _copy
import csv
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from scipy import ndimage
from scipy.interpolate import griddata
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, Polygon, shape

from cityos.apps.floodrisk.grid import (
    GridError,
    GridSpec,
    cells_on_line,
    rasterize_polygons,
    read_raster,
)
from cityos.apps.floodrisk.losses import CurveNumber, GreenAmpt

__all__ = [
    "Building",
    "DesignInflow",
    "InputError",
    "InputWarning",
    "Scenario",
    "load_buildings",
    "load_scenario",
    "read_geojson",
    "read_design_hydrograph_csv",
    "read_hydrograph_csv",
]

EDGES = ("north", "south", "east", "west")

#: People per m2 of floor area by use class, used when a building gives no ``people``
#: (residential about 1 person per 35 m2; offices/shops and factories by day).
DEFAULT_PEOPLE_PER_M2 = {"residential": 1 / 35, "commercial": 1 / 50, "industrial": 1 / 200,
                         "public": 1 / 50}


class InputError(ValueError):
    """An input that cannot be used; the message names the file and the field."""


class InputWarning(UserWarning):
    """An input was repaired on load (e.g. DEM holes filled); the message says how."""


@dataclass
class Building:
    """A building exposed to flooding.

    Parameters
    ----------
    id : str
    footprint : shapely Polygon or MultiPolygon
        In the grid's CRS.
    use_class : str
        ``residential``, ``commercial``, ``industrial`` ... (the damage curve's class).
    value : float
        Replacement value in the study's currency.
    floor_height_m : float
        Height of the ground floor above the ground; water below it does no damage.
    people : float
        Occupants.
    """

    id: str
    footprint: Any
    use_class: str
    value: float
    floor_height_m: float = 0.0
    people: float = 0.0

    @property
    def area_m2(self) -> float:
        """Footprint area."""
        return float(self.footprint.area)


@dataclass
class DesignInflow:
    """An inflow whose hydrograph depends on the design return period (a river whose
    upstream flood grows with the storm).

    ``discharge_by_return_period`` maps T (years) to discharges at ``times_s``; between
    the given return periods the discharge is interpolated linearly in log T.
    """

    cells: np.ndarray
    times_s: np.ndarray
    discharge_by_return_period: dict[float, np.ndarray]
    label: str = "inflow"

    def at(self, return_period_yr: float) -> Any:
        """The solver :class:`~cityos.apps.floodrisk.solver.Inflow` for one return period."""
        from cityos.apps.floodrisk.solver import Inflow

        periods = np.array(sorted(self.discharge_by_return_period))
        T = float(return_period_yr)
        if not periods[0] - 1e-9 <= T <= periods[-1] + 1e-9:
            raise InputError(f"{self.label}: return period {T:g} yr is outside the "
                             f"hydrograph columns ({periods[0]:g}-{periods[-1]:g} yr)")
        if periods.size == 1:
            q = self.discharge_by_return_period[periods[0]]
        else:
            k = int(np.clip(np.searchsorted(np.log(periods), math.log(T)) - 1, 0,
                            periods.size - 2))
            lo, hi = periods[k], periods[k + 1]
            w = (math.log(T) - math.log(lo)) / (math.log(hi) - math.log(lo))
            q = (1 - w) * self.discharge_by_return_period[lo] + \
                w * self.discharge_by_return_period[hi]
        return Inflow(cells=self.cells.copy(), times_s=self.times_s.copy(),
                      discharge_m3_s=np.asarray(q, dtype=float).copy())


@dataclass
class Scenario:
    """Everything the solver and the impact model need, on one grid.

    ``elevation`` is NaN outside the modelled area; every other raster has the grid's
    shape. ``water`` marks permanent water (rivers, canals, ponds: the land-cover
    classes listed in ``inputs.landcover.water_classes`` and the cells of retention
    ponds), which impact counts can leave out of the inundated area. Measures return
    modified copies (:meth:`copy`).
    """

    grid: GridSpec
    elevation: np.ndarray
    manning: np.ndarray
    drain_capacity_mm_h: np.ndarray
    losses: GreenAmpt | CurveNumber | None = None
    boundary: dict[str, str] | str = "closed"
    inflows: list[Any] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    roads: list[LineString] = field(default_factory=list)
    landcover: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    design_inflows: list[DesignInflow] = field(default_factory=list)
    water: np.ndarray | None = None

    @property
    def active(self) -> np.ndarray:
        """Cells inside the modelled area."""
        return np.isfinite(self.elevation)

    def domain(self) -> Any:
        """The solver's :class:`~cityos.apps.floodrisk.solver.Domain`."""
        from cityos.apps.floodrisk.solver import Domain

        return Domain(elevation=self.elevation, cell_size=self.grid.cell_size,
                      manning=self.manning, boundary=self.boundary)

    def forcing(self, rain: Any = None, return_period_yr: float | None = None) -> Any:
        """The solver's :class:`~cityos.apps.floodrisk.solver.Forcing` for a storm.

        Inflows that vary with the return period take ``return_period_yr``, or else the
        storm's own ``rain.return_period_yr``.
        """
        from cityos.apps.floodrisk.solver import Forcing

        inflows = list(self.inflows)
        if self.design_inflows:
            T = return_period_yr if return_period_yr is not None else getattr(
                rain, "return_period_yr", None)
            if T is None:
                raise InputError(f"{self.design_inflows[0].label}: the hydrograph depends on "
                                 "the return period; pass return_period_yr")
            inflows += [d.at(T) for d in self.design_inflows]
        return Forcing(rain=rain, losses=self.losses,
                       drain_capacity_mm_h=self.drain_capacity_mm_h, inflows=inflows)

    def copy(self) -> Scenario:
        """A copy whose arrays, losses and buildings can be changed freely."""
        return Scenario(
            grid=self.grid,
            elevation=self.elevation.copy(),
            manning=np.array(self.manning, dtype=float, copy=True),
            drain_capacity_mm_h=np.array(self.drain_capacity_mm_h, dtype=float, copy=True),
            losses=self.losses.copy() if self.losses is not None else None,
            boundary=_copy.deepcopy(self.boundary),
            inflows=[_copy.deepcopy(i) for i in self.inflows],
            buildings=[replace(b) for b in self.buildings],
            roads=list(self.roads),
            landcover=None if self.landcover is None else self.landcover.copy(),
            notes=list(self.notes),
            design_inflows=[_copy.deepcopy(d) for d in self.design_inflows],
            water=None if self.water is None else self.water.copy(),
        )


# -- small helpers -------------------------------------------------------------------

def _spec(value: Any, key: str = "file") -> dict[str, Any]:
    """A layer given as a bare path becomes ``{key: path}``."""
    if isinstance(value, (str, Path)):
        return {key: str(value)}
    if isinstance(value, Mapping):
        return dict(value)
    return {"value": value}


def _number(value: Any, where: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: not a number ({value!r})") from None
    if not math.isfinite(x):
        raise InputError(f"{where}: not finite ({value!r})")
    if low is not None and (x < low or (low_open and x == low)):
        word = "negative" if low == 0 and not low_open and x < 0 else f"must be {'>' if low_open else '>='} {low:g}"
        raise InputError(f"{where}: {word} ({x:g})")
    if high is not None and x > high:
        raise InputError(f"{where}: must be <= {high:g} ({x:g})")
    return x


def _check_array(a: np.ndarray, active: np.ndarray, where: str, *, low: float,
                 high: float | None = None, low_open: bool = False) -> np.ndarray:
    bad = ~np.isfinite(a) & active
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{where}: {int(bad.sum())} cells inside the DEM have no value "
                         f"(first at row {r}, col {c})")
    vals = np.where(active, a, np.nan)
    with np.errstate(invalid="ignore"):
        low_bad = (vals <= low) if low_open else (vals < low)
        high_bad = vals > high if high is not None else np.zeros_like(low_bad)
    for mask, rule in ((low_bad, f"{'>' if low_open else '>='} {low:g}"),
                       (high_bad, f"<= {high}")):
        if mask.any():
            r, c = np.argwhere(mask)[0]
            raise InputError(f"{where}: {int(mask.sum())} cells break the rule {rule} "
                             f"(row {r}, col {c} is {a[r, c]:g})")
    return np.where(active, a, np.where(np.isfinite(a), a, 0.0))


def _path(base_dir: Path, name: Any, where: str) -> Path:
    if not isinstance(name, (str, Path)) or not str(name):
        raise InputError(f"{where}: expected a file name, got {name!r}")
    p = Path(name)
    p = p if p.is_absolute() else base_dir / p
    if not p.exists():
        raise InputError(f"{where}: file not found: {p}")
    return p


def _raster_on_grid(path: Path, label: str, grid: GridSpec, spec: Mapping[str, Any], *,
                    resampling: str) -> np.ndarray:
    """Read a raster onto the DEM grid; a CRS different from the DEM's is an error unless
    ``reproject: true``."""
    try:
        with rasterio.open(path) as src:
            crs = src.crs
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{label}: not a readable raster ({exc})") from None
    if crs is None:
        raise InputError(f"{label}: no CRS; the DEM is in {grid.crs.to_string()}")
    if crs != grid.crs and not spec.get("reproject", False):
        raise InputError(f"{label}: CRS {crs.to_string()} differs from the DEM's "
                         f"{grid.crs.to_string()}; set `reproject: true` for this layer to "
                         "reproject it on load")
    try:
        data, _ = read_raster(path, like=grid, resampling=resampling)
    except GridError as exc:
        raise InputError(f"{label}: {exc}") from None
    return data


# -- GeoJSON -------------------------------------------------------------------------

def _declared_crs(doc: Mapping[str, Any]) -> CRS | None:
    member = doc.get("crs")
    if not member:
        return None
    try:
        name = member["properties"]["name"]
        return CRS.from_user_input(name)
    except (KeyError, TypeError, rasterio.errors.CRSError):
        return None


def read_geojson(
    path: Path, label: str, target_crs: CRS, *, layer_crs: Any = None,
) -> list[tuple[int, Any, dict[str, Any]]]:
    """Features of a GeoJSON file as ``(index, shapely geometry, properties)`` in
    ``target_crs``.

    The source CRS is ``layer_crs`` if given, else the file's (legacy) ``crs`` member,
    else WGS 84 (RFC 7946) when every coordinate is a longitude/latitude.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{label}: not readable GeoJSON ({exc})") from None
    if doc.get("type") == "Feature":
        feats = [doc]
    elif doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        feats = doc["features"]
    else:
        raise InputError(f"{label}: expected a GeoJSON FeatureCollection")
    out = []
    for i, f in enumerate(feats):
        try:
            geom = shape(f["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{label}: feature {i}: geometry: not valid GeoJSON ({exc})") \
                from None
        if geom.is_empty:
            raise InputError(f"{label}: feature {i}: geometry: empty")
        out.append((i, geom, dict(f.get("properties") or {})))
    src = CRS.from_user_input(layer_crs) if layer_crs else _declared_crs(doc)
    if src is None:
        lonlat = all(
            -180 <= x <= 180 and -90 <= y <= 90
            for _, g, _ in out for x, y, *_ in _coords(g))
        if not lonlat:
            raise InputError(f"{label}: no CRS declared and the coordinates are not "
                             "longitude/latitude; add a `crs` member to the file or set "
                             "`crs:` for this layer in study.yaml")
        src = CRS.from_epsg(4326)
    if src != target_crs:
        tr = Transformer.from_crs(src, target_crs, always_xy=True)
        out = [(i, _reproject_geometry(g, tr), p) for i, g, p in out]
    return out


def _reproject_geometry(geom: Any, transformer: Transformer) -> Any:
    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, move)


def _coords(geom: Any):
    if hasattr(geom, "geoms"):
        for g in geom.geoms:
            yield from _coords(g)
    elif isinstance(geom, Polygon):
        yield from geom.exterior.coords
    else:
        yield from geom.coords


def _polygon_values(
    spec: Mapping[str, Any], label: str, base_dir: Path, grid: GridSpec, prop: str,
    *, low: float, high: float | None = None, low_open: bool = False,
) -> np.ndarray:
    """Rasterize polygons carrying a numeric property; cells outside all polygons get
    ``default`` (NaN when none is given)."""
    path = _path(base_dir, spec["polygons"], f"{label}.polygons")
    name = str(spec["polygons"])
    field_name = spec.get("field", prop)
    pairs = []
    for i, geom, props in read_geojson(path, name, grid.crs, layer_crs=spec.get("crs")):
        if not isinstance(geom, (Polygon, MultiPolygon)):
            raise InputError(f"{name}: feature {i}: geometry: {geom.geom_type}, expected a "
                             "Polygon or MultiPolygon")
        if field_name not in props:
            raise InputError(f"{name}: feature {i}: {field_name}: missing")
        v = _number(props[field_name], f"{name}: feature {i}: {field_name}", low=low,
                    high=high, low_open=low_open)
        pairs.append((geom, v))
    default = spec.get("default")
    fill = np.nan if default is None else _number(default, f"{label}.default", low=low,
                                                  high=high, low_open=low_open)
    return rasterize_polygons(pairs, grid, fill)


def _surface(
    value: Any, label: str, base_dir: Path, grid: GridSpec, active: np.ndarray, prop: str,
    *, low: float, high: float | None = None, low_open: bool = False,
    landcover: np.ndarray | None = None, resampling: str = "bilinear",
) -> np.ndarray:
    """A per-cell quantity given as a number, ``{raster: f}``, ``{polygons: f, field,
    default}`` or ``{landcover: {class: value}}``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _number(value, label, low=low, high=high, low_open=low_open)
        return np.full(grid.shape, v)
    spec = _spec(value, "raster" if str(value).lower().endswith((".tif", ".tiff"))
                 else "polygons")
    if "file" in spec:
        key = "raster" if str(spec["file"]).lower().endswith((".tif", ".tiff")) else "polygons"
        spec[key] = spec.pop("file")
    if "value" in spec:
        return _surface(spec["value"], label, base_dir, grid, active, prop, low=low,
                        high=high, low_open=low_open)
    if "raster" in spec:
        path = _path(base_dir, spec["raster"], f"{label}.raster")
        a = _raster_on_grid(path, str(spec["raster"]), grid, spec, resampling=resampling)
        if "default" in spec:
            a = np.where(np.isnan(a), float(spec["default"]), a)
        return _check_array(a, active, str(spec["raster"]), low=low, high=high,
                            low_open=low_open)
    if "polygons" in spec:
        a = _polygon_values(spec, label, base_dir, grid, prop, low=low, high=high,
                            low_open=low_open)
        return _check_array(a, active, f"{spec['polygons']} ({label})", low=low, high=high,
                            low_open=low_open)
    if "landcover" in spec:
        if landcover is None:
            raise InputError(f"{label}: by land cover, but inputs.landcover is not given")
        table = spec["landcover"]
        return _by_class(landcover, table, active, f"{label}.landcover", low=low, high=high,
                         low_open=low_open)
    raise InputError(f"{label}: give a number, raster, polygons or landcover (got "
                     f"{sorted(spec)})")


def _by_class(classes: np.ndarray, table: Any, active: np.ndarray, label: str, *,
              low: float, high: float | None = None, low_open: bool = False) -> np.ndarray:
    if not isinstance(table, Mapping) or not table:
        raise InputError(f"{label}: expected a mapping of class code to value")
    out = np.full(classes.shape, np.nan)
    for k, v in table.items():
        try:
            code = int(k)
        except (TypeError, ValueError):
            raise InputError(f"{label}: class {k!r} is not an integer code") from None
        out[classes == code] = _number(v, f"{label}: class {code}", low=low, high=high,
                                       low_open=low_open)
    missing = np.isnan(out) & active
    if missing.any():
        codes = sorted({int(c) for c in np.unique(classes[missing]) if np.isfinite(c)})
        raise InputError(f"{label}: no value for land-cover class(es) {codes} "
                         f"({int(missing.sum())} cells)")
    return np.where(active, out, 0.0)


# -- the DEM -------------------------------------------------------------------------

def _load_dem(value: Any, base_dir: Path, crs: Any) -> tuple[np.ndarray, GridSpec, list[str]]:
    spec = _spec(value)
    if "raster" in spec:
        spec["file"] = spec.pop("raster")
    if "file" not in spec:
        raise InputError("inputs.dem: give the DEM GeoTIFF file")
    label = str(spec["file"])
    path = _path(base_dir, spec["file"], "inputs.dem")
    cell = spec.get("cell_size_m")
    if cell is not None:
        cell = _number(cell, "inputs.dem.cell_size_m", low=0, low_open=True)
    target = spec.get("crs", crs)
    try:
        with rasterio.open(path) as src:
            t = src.transform
            if t.a <= 0:
                raise InputError(f"{label}: negative or zero cell width ({t.a:g}); the DEM "
                                 "must be north-up with x increasing with the column")
        elevation, grid = read_raster(path, crs=target, cell_size=cell,
                                      require_projected=True, resampling="bilinear")
    except GridError as exc:
        raise InputError(f"{label}: {str(exc).replace(str(path) + ': ', '')}") from None
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{label}: not a readable raster ({exc})") from None
    t = grid.transform
    if not math.isclose(abs(t.a), abs(t.e), rel_tol=1e-6):
        raise InputError(f"{label}: cells are not square ({abs(t.a):g} x {abs(t.e):g} m); "
                         "set inputs.dem.cell_size_m to resample")
    plausible = np.isnan(elevation) | ((elevation > -500) & (elevation < 9000))
    if not plausible.all():
        r, c = np.argwhere(~plausible)[0]
        raise InputError(f"{label}: {int((~plausible).sum())} cells have implausible "
                         f"elevations (row {r}, col {c}: {elevation[r, c]:g} m); is the "
                         "nodata value declared in the file?")
    elevation, notes = _fill_holes(elevation, label, float(spec.get("max_hole_share", 0.01)))
    return elevation, grid, notes


def _fill_holes(z: np.ndarray, label: str, max_share: float) -> tuple[np.ndarray, list[str]]:
    """Nodata regions touching the edge are outside the model (stay NaN); interior holes
    are filled by linear interpolation from their rim, when few enough."""
    nodata = np.isnan(z)
    if nodata.all():
        raise InputError(f"{label}: every cell is nodata")
    if not nodata.any():
        return z, []
    labels, n = ndimage.label(nodata)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = nodata & ~np.isin(labels, edge[edge > 0])
    notes = []
    if nodata.sum() > holes.sum():
        notes.append(f"{label}: {int(nodata.sum() - holes.sum())} nodata cells along the edge "
                     "are outside the model")
    if not holes.any():
        return z, notes
    count, valid = int(holes.sum()), int((~nodata).sum())
    share = count / (valid + count)
    if share > max_share:
        r, c = np.argwhere(holes)[0]
        raise InputError(f"{label}: {count} nodata cells inside the DEM ({share:.1%} of it, "
                         f"more than max_hole_share {max_share:.1%}; first at row {r}, col {c});"
                         " fill the holes or raise inputs.dem.max_hole_share")
    out = z.copy()
    rim = ndimage.binary_dilation(holes, iterations=2) & ~nodata
    pts = np.argwhere(rim)
    targets = np.argwhere(holes)
    vals = griddata(pts, z[rim], targets, method="linear")
    near = griddata(pts, z[rim], targets, method="nearest")
    out[holes] = np.where(np.isnan(vals), near, vals)
    n_holes = len(np.unique(labels[holes]))
    msg = f"{label}: filled {count} nodata cells in {n_holes} hole(s) by interpolation"
    warnings.warn(msg, InputWarning, stacklevel=3)
    notes.append(msg)
    return out, notes


# -- buildings, roads ------------------------------------------------------------------

def load_buildings(value: Any, base_dir: Path, grid: GridSpec) -> tuple[list[Building], list[str]]:
    """Buildings from GeoJSON (``use_class``; ``value`` or ``value_per_m2``;
    ``floor_height_m``; ``people`` or an estimate from floor area and density)."""
    spec = _spec(value)
    path = _path(base_dir, spec.get("file"), "inputs.buildings")
    name = str(spec["file"])
    vpm2_by_class = spec.get("value_per_m2", {}) or {}
    density = {**DEFAULT_PEOPLE_PER_M2, **(spec.get("people_per_m2", {}) or {})}
    floor_default = _number(spec.get("floor_height_m", 0.0), "inputs.buildings.floor_height_m",
                            low=0)
    left, bottom, right, top = grid.bounds
    out, outside, seen = [], 0, set()
    for i, geom, props in read_geojson(path, name, grid.crs, layer_crs=spec.get("crs")):
        where = f"{name}: feature {i}"
        bid = str(props.get("id", i))
        if "id" in props:
            where += f" (id {bid})"
        if bid in seen:
            raise InputError(f"{where}: id: duplicate")
        seen.add(bid)
        if not isinstance(geom, (Polygon, MultiPolygon)):
            raise InputError(f"{where}: geometry: {geom.geom_type}, expected a Polygon")
        if not geom.is_valid:
            geom = geom.buffer(0)
            if geom.is_empty:
                raise InputError(f"{where}: geometry: invalid polygon")
        use = props.get("use_class")
        if not isinstance(use, str) or not use:
            raise InputError(f"{where}: use_class: missing")
        area = geom.area
        storeys = _number(props.get("storeys", 1), f"{where}: storeys", low=1)
        if "value" in props:
            val = _number(props["value"], f"{where}: value", low=0)
        elif "value_per_m2" in props:
            val = _number(props["value_per_m2"], f"{where}: value_per_m2", low=0) * area * storeys
        elif use in vpm2_by_class:
            val = _number(vpm2_by_class[use], f"inputs.buildings.value_per_m2.{use}",
                          low=0) * area * storeys
        else:
            raise InputError(f"{where}: value: missing (give value, value_per_m2, or "
                             f"inputs.buildings.value_per_m2.{use})")
        floor = _number(props.get("floor_height_m", floor_default), f"{where}: floor_height_m",
                        low=0)
        if "people" in props:
            people = _number(props["people"], f"{where}: people", low=0)
        else:
            people = area * storeys * _number(density.get(use, 1 / 50),
                                              f"inputs.buildings.people_per_m2.{use}", low=0)
        c = geom.centroid
        if not (left <= c.x <= right and bottom <= c.y <= top):
            outside += 1
            continue
        out.append(Building(bid, geom, use, val, floor, people))
    notes = []
    if outside:
        msg = f"{name}: {outside} buildings lie outside the DEM and are left out"
        warnings.warn(msg, InputWarning, stacklevel=3)
        notes.append(msg)
    return out, notes


def _load_roads(value: Any, base_dir: Path, grid: GridSpec) -> list[LineString]:
    spec = _spec(value)
    path = _path(base_dir, spec.get("file"), "inputs.roads")
    name = str(spec["file"])
    roads = []
    for i, geom, _ in read_geojson(path, name, grid.crs, layer_crs=spec.get("crs")):
        if isinstance(geom, LineString):
            roads.append(geom)
        elif isinstance(geom, MultiLineString):
            roads.extend(geom.geoms)
        else:
            raise InputError(f"{name}: feature {i}: geometry: {geom.geom_type}, expected a "
                             "LineString")
    return roads


# -- boundary and inflows ------------------------------------------------------------

def _boundary(value: Any, base_dir: Path) -> dict[str, Any] | str:
    """``closed``/``open`` for all edges, or per edge ``closed``, ``open`` or a water level
    (``{level_m: 0.8}`` or ``{levels: tide.csv}`` with columns time_s, level_m)."""
    if value is None:
        return "closed"
    if isinstance(value, str):
        if value not in ("closed", "open"):
            raise InputError(f"inputs.boundary: {value!r}: use closed or open")
        return value
    if not isinstance(value, Mapping):
        raise InputError("inputs.boundary: expected closed, open or a mapping per edge")
    out: dict[str, Any] = {}
    for k, v in value.items():
        where = f"inputs.boundary.{k}"
        if k not in EDGES:
            raise InputError(f"{where}: not an edge; use {', '.join(EDGES)}")
        if isinstance(v, Mapping):
            out[k] = _level_boundary(v, where, base_dir)
        elif v in ("closed", "open"):
            out[k] = v
        else:
            raise InputError(f"{where}: {v!r}: use closed, open, {{level_m: ...}} or "
                             "{levels: file.csv}")
    return {e: out.get(e, "closed") for e in EDGES}


def _level_boundary(v: Mapping[str, Any], where: str, base_dir: Path) -> Any:
    from cityos.apps.floodrisk.solver import WaterLevelBoundary

    if "level_m" in v:
        level = _number(v["level_m"], f"{where}.level_m", low=-500)
        return WaterLevelBoundary(np.array([0.0]), np.array([level]))
    if "levels" in v:
        path = _path(base_dir, v["levels"], f"{where}.levels")
        t, lv = read_hydrograph_csv(path, str(v["levels"]), value_columns=("level_m",),
                                    nonnegative=False)
        return WaterLevelBoundary(t, lv)
    raise InputError(f"{where}: give level_m or levels (a CSV of time_s, level_m)")


_TIME_SCALE = {"time_s": 1.0, "time": 1.0, "time_min": 60.0, "time_h": 3600.0}


def _csv_rows(path: Path, label: str) -> list[list[str]]:
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except OSError as exc:
        raise InputError(f"{label}: cannot read ({exc})") from None
    if not rows:
        raise InputError(f"{label}: empty")
    return rows


def _series(rows: list[list[str]], label: str, tcol: int, vcols: list[int], *,
            nonnegative: bool) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and values ``(m, len(vcols))`` of a CSV, checked line by line."""
    header = [h.strip().lower() for h in rows[0]]
    factor = _TIME_SCALE.get(header[tcol], 1.0)
    times, values = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(x.strip() for x in row):
            continue
        try:
            t = float(row[tcol]) * factor
            v = [float(row[j]) for j in vcols]
        except (ValueError, IndexError):
            raise InputError(f"{label}: line {n}: not a number in {row}") from None
        if not (math.isfinite(t) and all(math.isfinite(x) for x in v)):
            raise InputError(f"{label}: line {n}: not finite")
        for j, x in zip(vcols, v, strict=True):
            if x < 0 and nonnegative:
                raise InputError(f"{label}: line {n}: {header[j]}: negative ({x:g})")
        if times and t <= times[-1]:
            raise InputError(f"{label}: line {n}: time {t:g} s does not increase")
        times.append(t)
        values.append(v)
    if len(times) < 2:
        raise InputError(f"{label}: need at least 2 rows of time and values")
    return np.array(times), np.array(values)


def read_hydrograph_csv(
    path: Path, label: str, *, value_columns: tuple[str, ...] = ("discharge_m3_s", "discharge"),
    nonnegative: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(times_s, values)`` from a CSV with a header: a time column (``time_s``,
    ``time_min``, ``time_h`` or ``time`` in seconds) and ``discharge_m3_s`` (or
    ``discharge``; other ``value_columns`` for a water level)."""
    rows = _csv_rows(path, label)
    header = [h.strip().lower() for h in rows[0]]
    tcol = next((header.index(h) for h in _TIME_SCALE if h in header), None)
    qcol = next((header.index(h) for h in value_columns if h in header), None)
    if tcol is None or qcol is None:
        raise InputError(f"{label}: line 1: header needs a time column (time_s, time_min, "
                         f"time_h) and {value_columns[0]}; got {rows[0]}")
    times, values = _series(rows, label, tcol, [qcol], nonnegative=nonnegative)
    return times, values[:, 0]


def read_design_hydrograph_csv(path: Path, label: str
                               ) -> tuple[np.ndarray, dict[float, np.ndarray]] | None:
    """``(times_s, {T: discharge})`` from a CSV whose header is a time column then return
    periods in years (``time_min,2,5,10,...``); None when the header is not of that form."""
    rows = _csv_rows(path, label)
    header = [h.strip().lower() for h in rows[0]]
    if len(header) < 2 or header[0] not in _TIME_SCALE:
        return None
    try:
        periods = [float(h.lstrip("t")) for h in header[1:]]
    except ValueError:
        return None
    for T in periods:
        if T < 1:
            raise InputError(f"{label}: line 1: return period {T:g} yr is below 1")
    times, values = _series(rows, label, 0, list(range(1, len(header))), nonnegative=True)
    return times, {T: values[:, j] for j, T in enumerate(periods)}


def _load_inflow(value: Any, index: int, base_dir: Path, grid: GridSpec,
                 active: np.ndarray) -> Any:
    from cityos.apps.floodrisk.solver import Inflow

    where = f"inputs.inflow[{index}]"
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a mapping with line/point/file and hydrograph")
    if "hydrograph" not in value:
        raise InputError(f"{where}.hydrograph: missing (a CSV of time, discharge)")
    hpath = _path(base_dir, value["hydrograph"], f"{where}.hydrograph")
    design = read_design_hydrograph_csv(hpath, str(value["hydrograph"]))
    if design is None:
        times, q = read_hydrograph_csv(hpath, str(value["hydrograph"]))
    src_crs = value.get("crs")
    if "line" in value or "point" in value:
        key = "line" if "line" in value else "point"
        try:
            geom = LineString(value["line"]) if key == "line" else Point(value["point"])
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}.{key}: not coordinates ({exc})") from None
        if src_crs and CRS.from_user_input(src_crs) != grid.crs:
            tr = Transformer.from_crs(CRS.from_user_input(src_crs), grid.crs, always_xy=True)
            geom = _reproject_geometry(geom, tr)
    elif "file" in value:
        path = _path(base_dir, value["file"], f"{where}.file")
        feats = read_geojson(path, str(value["file"]), grid.crs, layer_crs=src_crs)
        geom = feats[0][1]
    else:
        raise InputError(f"{where}: give line, point or file for where the inflow enters")
    if isinstance(geom, Point):
        r, c = grid.rowcol(geom.x, geom.y)
        mask = np.zeros(grid.shape, bool)
        if grid.contains(r, c):
            mask[int(r), int(c)] = True
    else:
        mask = cells_on_line(geom, grid)
    mask &= active
    if not mask.any():
        raise InputError(f"{where}: the inflow location falls on no active cell of the DEM")
    if design is not None:
        return DesignInflow(np.argwhere(mask), design[0], design[1],
                            label=str(value["hydrograph"]))
    return Inflow(cells=np.argwhere(mask), times_s=times, discharge_m3_s=q)


# -- the scenario ----------------------------------------------------------------------

def load_scenario(config: Mapping[str, Any], base_dir: str | Path) -> Scenario:
    """Load the ``inputs:`` section of a study (or a whole study dict) as a Scenario.

    Parameters
    ----------
    config : mapping
        The ``inputs`` section; a whole study mapping (with ``inputs`` and an optional
        top-level ``crs``) is accepted too.
    base_dir : str or Path
        Folder that relative file names are resolved against (the study file's folder).

    Returns
    -------
    Scenario

    Raises
    ------
    InputError
        Naming the file and the field, feature or line at fault.
    """
    base_dir = Path(base_dir)
    crs = None
    if "inputs" in config:
        crs = config.get("crs")
        config = config["inputs"]
    if not isinstance(config, Mapping):
        raise InputError("inputs: expected a mapping")
    crs = config.get("crs", crs)
    if "dem" not in config:
        raise InputError("inputs.dem: missing (the DEM GeoTIFF)")
    elevation, grid, notes = _load_dem(config["dem"], base_dir, crs)
    active = np.isfinite(elevation)

    landcover = None
    lc_spec: dict[str, Any] = {}
    if config.get("landcover") is not None:
        lc_spec = _spec(config["landcover"], "raster")
        if "file" in lc_spec:
            lc_spec["raster"] = lc_spec.pop("file")
        if "raster" not in lc_spec:
            raise InputError("inputs.landcover.raster: missing")
        path = _path(base_dir, lc_spec["raster"], "inputs.landcover.raster")
        landcover = _raster_on_grid(path, str(lc_spec["raster"]), grid, lc_spec,
                                    resampling="nearest")
        if "default_class" in lc_spec:
            landcover = np.where(np.isnan(landcover), float(lc_spec["default_class"]),
                                 landcover)
        gap = np.isnan(landcover) & active
        if gap.any():
            r, c = np.argwhere(gap)[0]
            raise InputError(f"{lc_spec['raster']}: {int(gap.sum())} cells inside the DEM "
                             f"have no class (first at row {r}, col {c}); set default_class")

    # Manning's n
    if config.get("manning") is not None:
        manning = _surface(config["manning"], "inputs.manning", base_dir, grid, active,
                           "manning", low=0, high=1, low_open=True, landcover=landcover)
    elif "manning" in lc_spec:
        manning = _by_class(landcover, lc_spec["manning"], active, "inputs.landcover.manning",
                            low=0, high=1, low_open=True)
    else:
        raise InputError("inputs.manning: missing (give a value, polygons with `manning`, or "
                         "inputs.landcover.manning per class)")

    # drains
    drains = config.get("drains", 0.0)
    if isinstance(drains, Mapping) and "polygons" in drains and "default" not in drains:
        drains = {**drains, "default": 0.0}
    if isinstance(drains, str) and not drains.lower().endswith((".tif", ".tiff")):
        drains = {"polygons": drains, "default": 0.0}
    drain = _surface(drains, "inputs.drains", base_dir, grid, active, "capacity_mm_h",
                     low=0, landcover=landcover)

    losses = _load_soil(config.get("soil"), base_dir, grid, active, landcover, lc_spec)

    buildings: list[Building] = []
    if config.get("buildings") is not None:
        buildings, more = load_buildings(config["buildings"], base_dir, grid)
        notes += more
    roads = _load_roads(config["roads"], base_dir, grid) if config.get("roads") else []

    inflow_cfg = config.get("inflow") or []
    if isinstance(inflow_cfg, Mapping):
        inflow_cfg = [inflow_cfg]
    loaded = [_load_inflow(v, i, base_dir, grid, active) for i, v in enumerate(inflow_cfg)]
    inflows = [x for x in loaded if not isinstance(x, DesignInflow)]
    design_inflows = [x for x in loaded if isinstance(x, DesignInflow)]
    water = None
    if landcover is not None and lc_spec.get("water_classes"):
        codes = [int(c) for c in lc_spec["water_classes"]]
        water = np.isin(landcover, codes) & active

    return Scenario(grid=grid, elevation=elevation, manning=manning,
                    drain_capacity_mm_h=drain, losses=losses,
                    boundary=_boundary(config.get("boundary"), base_dir), inflows=inflows,
                    buildings=buildings, roads=roads, landcover=landcover, notes=notes,
                    design_inflows=design_inflows, water=water)


def _load_soil(value: Any, base_dir: Path, grid: GridSpec, active: np.ndarray,
               landcover: np.ndarray | None, lc_spec: Mapping[str, Any]) -> Any:
    if value is None:
        return None
    if not isinstance(value, Mapping) or len({"curve_number", "green_ampt"} & set(value)) != 1:
        raise InputError("inputs.soil: give exactly one of curve_number or green_ampt")
    if "curve_number" in value:
        cn_spec = value["curve_number"]
        if cn_spec == "landcover":
            if "curve_number" not in lc_spec:
                raise InputError("inputs.soil.curve_number: 'landcover' needs "
                                 "inputs.landcover.curve_number per class")
            cn_spec = {"landcover": lc_spec["curve_number"]}
        cn = _surface(cn_spec, "inputs.soil.curve_number", base_dir, grid, active,
                      "curve_number", low=0, high=100, low_open=True, landcover=landcover)
        cn = np.where(active, cn, 100.0)
        ratio = _number(value.get("initial_abstraction_ratio", 0.2),
                        "inputs.soil.initial_abstraction_ratio", low=0, high=1)
        return CurveNumber(cn, ratio)
    ga = value["green_ampt"]
    if not isinstance(ga, Mapping):
        raise InputError("inputs.soil.green_ampt: expected a mapping")
    rules = {"conductivity_mm_h": (0, None), "suction_mm": (0, None),
             "moisture_deficit": (0, 1)}
    fields = {}
    for key, (low, high) in rules.items():
        if key not in ga:
            raise InputError(f"inputs.soil.green_ampt.{key}: missing")
        arr = _surface(ga[key], f"inputs.soil.green_ampt.{key}", base_dir, grid, active, key,
                       low=low, high=high, landcover=landcover)
        fields[key] = np.where(active, arr, 0.0)
    return GreenAmpt(**fields)
