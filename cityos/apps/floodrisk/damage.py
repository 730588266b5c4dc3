"""Flood impacts of one event: building damage, affected people, inundated area, roads.

Damage follows the depth-damage method: the water depth above a building's ground floor
gives, through the depth-damage function of its use class, the fraction of its maximum
(replacement) value that is lost. The catalogue shipped is the JRC global flood
depth-damage functions for Asia (Huizinga, de Moel & Szewczyk 2017, EUR 28552 EN,
doi:10.2760/16510; ``data/jrc_asia_depth_damage.csv``); a study may add or replace curves
from its own CSV or YAML.

Method (per event, from the solver's maximum depth raster):

- Depth at a building: the **maximum** of the event's maximum depth over the cells whose
  centres lie within the footprint grown by half a cell (``halo``), so the cell under a
  small building and the water against its walls are both seen even when the DEM makes
  the footprint itself a solid block; ``statistic="mean"`` takes the mean instead.
  Depth above floor = that depth - ``floor_height_m``.
- Damage = fraction(depth above floor) x value; a building is *affected* when its depth
  above floor exceeds ``min_depth_m`` (default 0: any water above the floor), and its
  people are affected people.
- Inundated area above 10 and 50 cm: cells whose maximum depth exceeds the threshold,
  times the cell area, leaving out permanent water (rivers, canals, ponds).
- Road length flooded: the length of the road centre lines inside the cells whose maximum
  depth exceeds ``road_depth_m`` (default 0.3 m, where ordinary cars can no longer pass:
  Pregnolato et al. 2017, Transportation Research D 55, 67-81), by exact intersection of
  the lines with the flooded-cell polygons (bridges over permanent water left out).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import yaml

DATA_DIR = Path(__file__).parent / "data"
JRC_ASIA_CSV = DATA_DIR / "jrc_asia_depth_damage.csv"
JRC_SOURCE = ("Huizinga, de Moel & Szewczyk (2017), Global flood depth-damage functions, "
              "JRC EUR 28552 EN, doi:10.2760/16510 (Asia)")
INUNDATION_THRESHOLDS_M = (0.10, 0.50)
ROAD_DEPTH_M = 0.30
#: Other names of the JRC classes (a building file's ``use_class`` is matched lower-case).
CLASS_ALIASES = {
    "house": "residential", "housing": "residential", "apartment": "residential",
    "commerce": "commercial", "office": "commercial", "retail": "commercial",
    "public": "commercial", "school": "commercial",
    "industry": "industrial", "warehouse": "industrial",
    "road": "infrastructure", "roads": "infrastructure",
    "farmland": "agriculture", "agricultural": "agriculture",
}


class DamageCurveError(ValueError):
    """A depth-damage curve or catalogue that cannot be used; the message names it."""


# ======================================================================= curves
@dataclass(frozen=True)
class DepthDamageCurve:
    """A depth-damage function: damage fraction, piecewise linear in water depth.

    Parameters
    ----------
    name : str
        Use class, e.g. ``residential``.
    depth_m : array_like
        Water depths above the floor (m), strictly increasing.
    fraction : array_like
        Damage fraction (0-1) of the maximum damage at each depth.
    source : str
        Where the curve comes from.

    Notes
    -----
    Between points the fraction is linear in depth; it is clamped beyond the ends (the
    last fraction holds above the deepest point), and is 0 at or below zero depth.
    """

    name: str
    depth_m: np.ndarray
    fraction: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        depth = np.asarray(self.depth_m, dtype=float)
        fraction = np.asarray(self.fraction, dtype=float)
        where = f"damage curve {self.name!r}"
        if depth.ndim != 1 or depth.shape != fraction.shape or depth.size < 2:
            raise DamageCurveError(f"{where}: needs at least two (depth, fraction) points of "
                                   f"equal count, got {depth.size} depths and "
                                   f"{fraction.size} fractions")
        if not (np.all(np.isfinite(depth)) and np.all(np.isfinite(fraction))):
            raise DamageCurveError(f"{where}: depths and fractions must be finite numbers")
        if np.any(np.diff(depth) <= 0):
            raise DamageCurveError(f"{where}: depths must increase strictly, got "
                                   f"{depth.tolist()}")
        if np.any(fraction < 0) or np.any(fraction > 1):
            raise DamageCurveError(f"{where}: fractions must lie in 0..1, got "
                                   f"{fraction.tolist()}")
        object.__setattr__(self, "depth_m", depth)
        object.__setattr__(self, "fraction", fraction)

    def __call__(self, depth_m: float | np.ndarray) -> np.ndarray:
        """Damage fraction at ``depth_m`` (m above the floor); 0 where depth <= 0."""
        depth = np.asarray(depth_m, dtype=float)
        out = np.interp(depth, self.depth_m, self.fraction)
        return np.where(depth > 0, out, 0.0)


@dataclass
class DamageCatalogue:
    """Depth-damage curves by use class.

    Use :func:`jrc_asia`, :func:`read_curves` or :func:`catalogue_from_config`.
    """

    curves: dict[str, DepthDamageCurve] = field(default_factory=dict)

    def classes(self) -> list[str]:
        """The use classes with a curve."""
        return sorted(self.curves)

    def resolve(self, use_class: str) -> str:
        """The catalogue's name for ``use_class`` (case and aliases), or raise KeyError."""
        key = str(use_class).strip().lower()
        if key in self.curves:
            return key
        alias = CLASS_ALIASES.get(key)
        if alias in self.curves:
            return alias
        raise KeyError(f"use class {use_class!r} has no depth-damage curve (known: "
                       f"{', '.join(self.classes())})")

    def curve(self, use_class: str) -> DepthDamageCurve:
        """The curve of ``use_class`` (aliases accepted)."""
        return self.curves[self.resolve(use_class)]

    def merged(self, other: DamageCatalogue) -> DamageCatalogue:
        """A catalogue with ``other``'s curves replacing or adding to these."""
        return DamageCatalogue({**self.curves, **other.curves})


def _parse_curve_csv(text: str, name: str, source: str) -> DamageCatalogue:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip()
             .startswith("#")]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if not rows:
        raise DamageCurveError(f"{name}: no header row")
    header = [h.strip().lower() for h in rows[0]]
    if header[0] not in ("depth_m", "depth"):
        raise DamageCurveError(f"{name}: the first column must be depth_m, got {rows[0][0]!r}")
    if len(header) < 2:
        raise DamageCurveError(f"{name}: needs a column per use class after depth_m")
    values = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DamageCurveError(f"{name}: data row {number}: {len(row)} fields, the header "
                                   f"has {len(header)}")
        try:
            values.append([float(v) for v in row])
        except ValueError:
            raise DamageCurveError(f"{name}: data row {number}: not a number in "
                                   f"{row}") from None
    table = np.array(values, dtype=float).reshape(-1, len(header))
    curves = {}
    for j, cls in enumerate(header[1:], start=1):
        curves[cls] = DepthDamageCurve(cls, table[:, 0], table[:, j], source)
    return DamageCatalogue(curves)


def jrc_asia() -> DamageCatalogue:
    """The JRC global depth-damage functions for Asia (Huizinga et al. 2017).

    Classes: residential, commercial, industrial, transport, infrastructure (roads),
    agriculture; depths 0-6 m.
    """
    return _parse_curve_csv(JRC_ASIA_CSV.read_text(), JRC_ASIA_CSV.name, JRC_SOURCE)


def read_curves(path: str | Path) -> DamageCatalogue:
    """User depth-damage curves from a CSV or YAML file.

    CSV: a ``depth_m`` column then one column of damage fractions per use class (lines
    starting with ``#`` are comments), the layout of the shipped JRC file. YAML: a mapping
    ``class: {depth_m: [...], fraction: [...]}``.

    Raises
    ------
    DamageCurveError
        Naming the file and the curve or row at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise DamageCurveError(f"{path}: damage curve file not found")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise DamageCurveError(f"{path.name}: not valid YAML: {error}") from None
        if not isinstance(data, dict) or not data:
            raise DamageCurveError(f"{path.name}: must map use class -> {{depth_m, fraction}}")
        curves = {}
        for cls, spec in data.items():
            if not isinstance(spec, dict) or "depth_m" not in spec or "fraction" not in spec:
                raise DamageCurveError(f"{path.name}: {cls}: needs depth_m and fraction lists")
            try:
                curves[str(cls).lower()] = DepthDamageCurve(
                    str(cls).lower(), spec["depth_m"], spec["fraction"], str(path.name))
            except (TypeError, ValueError) as error:
                raise DamageCurveError(f"{path.name}: {cls}: {error}") from None
        return DamageCatalogue(curves)
    return _parse_curve_csv(text, path.name, str(path.name))


def catalogue_from_config(spec: str | Sequence[str] | None, base_dir: Path) -> DamageCatalogue:
    """The catalogue a study names: ``jrc-asia`` (the default), a file path, or a list of
    them (later ones add to or replace earlier classes)."""
    if spec is None:
        return jrc_asia()
    items = [spec] if isinstance(spec, str) else list(spec)
    catalogue = DamageCatalogue()
    for item in items:
        if str(item).lower() in ("jrc-asia", "jrc_asia"):
            catalogue = catalogue.merged(jrc_asia())
        else:
            path = Path(item)
            catalogue = catalogue.merged(read_curves(path if path.is_absolute()
                                                     else base_dir / path))
    return catalogue


# ==================================================================== exposure
def _apply(transform, u, v):
    """``transform`` applied to (u, v) (scalars or arrays), coefficient by coefficient."""
    t = transform
    return t.a * u + t.b * v + t.c, t.d * u + t.e * v + t.f


def _grid_parts(grid) -> tuple:
    transform = grid.transform
    ny, nx = (int(v) for v in grid.shape)
    cell = float(getattr(grid, "cell_size", abs(transform.a)))
    return transform, ny, nx, cell


def footprint_cells(footprints: Sequence, grid, *, halo_m: float | None = None
                    ) -> list[np.ndarray]:
    """Flat indices (row * nx + col) of the cells that sample each footprint.

    A cell samples a footprint when its centre lies within the footprint grown by
    ``halo_m`` (default half a cell); a footprint that catches no cell centre gets the
    cell under its representative point. Footprints wholly outside the grid get none.
    """
    transform, ny, nx, cell = _grid_parts(grid)
    halo = 0.5 * cell if halo_m is None else float(halo_m)
    inverse = ~transform
    cells = []
    for polygon in footprints:
        area = polygon.buffer(halo) if halo > 0 else polygon
        minx, miny, maxx, maxy = area.bounds
        corners = [_apply(inverse, x, y) for x in (minx, maxx) for y in (miny, maxy)]
        cols = [c for c, _ in corners]
        rows = [r for _, r in corners]
        c0, c1 = max(int(math.floor(min(cols))), 0), min(int(math.ceil(max(cols))), nx)
        r0, r1 = max(int(math.floor(min(rows))), 0), min(int(math.ceil(max(rows))), ny)
        found = np.empty(0, dtype=np.int64)
        if c0 < c1 and r0 < r1:
            rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
            xs, ys = _apply(transform, cc + 0.5, rr + 0.5)
            inside = shapely.contains_xy(area, xs, ys)
            found = (rr[inside] * nx + cc[inside]).astype(np.int64)
        if found.size == 0:
            point = polygon.representative_point()
            col, row = _apply(inverse, point.x, point.y)
            col, row = int(math.floor(col)), int(math.floor(row))
            if 0 <= row < ny and 0 <= col < nx:
                found = np.array([row * nx + col], dtype=np.int64)
        cells.append(found)
    return cells


def building_depths(max_depth_m: np.ndarray, cells: Sequence[np.ndarray], *,
                    statistic: str = "max") -> np.ndarray:
    """Water depth at each building: max (or mean) of ``max_depth_m`` over its cells.

    Buildings without cells (outside the grid) get 0; no-flow cells (NaN) count as dry.
    """
    if statistic not in ("max", "mean"):
        raise ValueError(f"statistic: {statistic!r} is not max or mean")
    depth = np.nan_to_num(np.asarray(max_depth_m, dtype=float).ravel(), nan=0.0)
    counts = np.array([c.size for c in cells], dtype=np.int64)
    out = np.zeros(len(cells))
    has = counts > 0
    if not has.any():
        return out
    flat = np.concatenate([c for c in cells if c.size])
    starts = np.concatenate([[0], np.cumsum(counts[has])[:-1]])
    values = depth[flat]
    if statistic == "max":
        out[has] = np.maximum.reduceat(values, starts)
    else:
        out[has] = np.add.reduceat(values, starts) / counts[has]
    return out


# ===================================================================== impacts
@dataclass
class EventImpact:
    """What one flood event does: damage, affected buildings and people, area, roads.

    Attributes
    ----------
    damage : float
        Direct damage to buildings, currency units.
    damage_by_class : dict of str to float
    buildings_affected, buildings_total : int
    people_affected : float
    inundated_area_m2 : dict of float to float
        Area whose maximum depth exceeds each threshold (m), permanent water left out.
    road_flooded_m, road_total_m : float
        Road length under more than ``road_depth_m`` of water, and in all.
    road_depth_m : float
    building_depth_m, building_damage : ndarray
        Per building (the order of the buildings given): depth above floor and damage.
    """

    damage: float
    damage_by_class: dict[str, float]
    buildings_affected: int
    buildings_total: int
    people_affected: float
    inundated_area_m2: dict[float, float]
    road_flooded_m: float
    road_total_m: float
    road_depth_m: float
    building_depth_m: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    building_damage: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict:
        """The JSON-ready summary (without the per-building arrays)."""
        return {
            "damage": self.damage,
            "damage_by_class": dict(self.damage_by_class),
            "buildings_affected": self.buildings_affected,
            "buildings_total": self.buildings_total,
            "people_affected": self.people_affected,
            "inundated_area_m2": {f"{k:g}": v for k, v in self.inundated_area_m2.items()},
            "road_flooded_m": self.road_flooded_m,
            "road_total_m": self.road_total_m,
            "road_depth_m": self.road_depth_m,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> EventImpact:
        """Inverse of :meth:`to_dict`."""
        return cls(damage=float(data["damage"]),
                   damage_by_class={k: float(v) for k, v in data["damage_by_class"].items()},
                   buildings_affected=int(data["buildings_affected"]),
                   buildings_total=int(data["buildings_total"]),
                   people_affected=float(data["people_affected"]),
                   inundated_area_m2={float(k): float(v)
                                      for k, v in data["inundated_area_m2"].items()},
                   road_flooded_m=float(data["road_flooded_m"]),
                   road_total_m=float(data["road_total_m"]),
                   road_depth_m=float(data["road_depth_m"]))

    def area_above(self, threshold_m: float) -> float:
        """Inundated area (m2) above ``threshold_m``."""
        for key, value in self.inundated_area_m2.items():
            if abs(key - threshold_m) < 1e-9:
                return value
        raise KeyError(f"no inundated area recorded above {threshold_m} m")


def inundated_area(max_depth_m: np.ndarray, cell_size: float,
                   thresholds_m: Iterable[float] = INUNDATION_THRESHOLDS_M, *,
                   permanent_water: np.ndarray | None = None) -> dict[float, float]:
    """Area (m2) whose maximum depth exceeds each threshold.

    Parameters
    ----------
    max_depth_m : ndarray
        (ny, nx) maximum depth; NaN (no-flow) cells count as dry.
    cell_size : float
        Cell edge (m).
    thresholds_m : iterable of float
    permanent_water : ndarray of bool, optional
        Cells left out (rivers, canals, ponds wet before the storm).
    """
    depth = np.nan_to_num(np.asarray(max_depth_m, dtype=float), nan=0.0)
    if permanent_water is not None:
        depth = np.where(permanent_water, 0.0, depth)
    cell_area = float(cell_size) ** 2
    return {float(t): float(np.count_nonzero(depth > t)) * cell_area for t in thresholds_m}


def flooded_road_length(roads: Sequence, max_depth_m: np.ndarray, grid, *,
                        depth_m: float = ROAD_DEPTH_M,
                        permanent_water: np.ndarray | None = None) -> tuple[float, float]:
    """Length (m) of road centre lines in cells deeper than ``depth_m``, and total length.

    The flooded cells are turned into polygons (connected regions of the raster) and the
    lines are intersected with them exactly. Cells of ``permanent_water`` (where roads
    cross rivers and canals on bridges) do not count as flooded.
    """
    from rasterio import features

    lines = [g for g in roads if g is not None and not g.is_empty]
    if not lines:
        return 0.0, 0.0
    array = np.array(lines, dtype=object)
    total = float(shapely.length(array).sum())
    depth = np.nan_to_num(np.asarray(max_depth_m, dtype=float), nan=0.0)
    mask = depth > depth_m
    if permanent_water is not None:
        mask &= ~np.asarray(permanent_water, dtype=bool)
    if not mask.any():
        return 0.0, total
    polygons = [shapely.geometry.shape(geom) for geom, _ in features.shapes(
        mask.astype(np.uint8), mask=mask, transform=grid.transform)]
    flooded = shapely.union_all(polygons)
    return float(shapely.length(shapely.intersection(array, flooded)).sum()), total


def event_impact(max_depth_m: np.ndarray, grid, buildings: Sequence, catalogue: DamageCatalogue,
                 *, roads: Sequence = (), permanent_water: np.ndarray | None = None,
                 statistic: str = "max", min_depth_m: float = 0.0,
                 road_depth_m: float = ROAD_DEPTH_M,
                 thresholds_m: Iterable[float] = INUNDATION_THRESHOLDS_M,
                 cells: Sequence[np.ndarray] | None = None) -> EventImpact:
    """Impacts of one event from its maximum depth raster.

    Parameters
    ----------
    max_depth_m : ndarray
        (ny, nx) maximum water depth of the event (m).
    grid : GridSpec
        Its georeference (``transform``, ``shape``, ``cell_size``).
    buildings : sequence of Building
        Each with ``id``, ``footprint`` (grid CRS), ``use_class``, ``value``,
        ``floor_height_m`` and ``people``.
    catalogue : DamageCatalogue
    roads : sequence of LineString, optional
    permanent_water : ndarray of bool, optional
        Rivers, canals and ponds: left out of the inundated area and the flooded roads.
    statistic : str
        ``max`` (default) or ``mean`` depth over a building's cells.
    min_depth_m : float
        Depth above floor beyond which a building counts as affected.
    road_depth_m : float
        Depth beyond which a road counts as flooded.
    thresholds_m : iterable of float
        Depths of the inundated-area figures.
    cells : list of ndarray, optional
        Precomputed :func:`footprint_cells` of ``buildings`` (reused across events).

    Raises
    ------
    KeyError
        A building's use class has no curve (the message names the building).
    """
    depth_grid = np.asarray(max_depth_m, dtype=float)
    if depth_grid.shape != tuple(grid.shape):
        raise ValueError(f"max depth has shape {depth_grid.shape}, the grid {tuple(grid.shape)}")
    n = len(buildings)
    if cells is None:
        cells = footprint_cells([b.footprint for b in buildings], grid)
    depth = building_depths(depth_grid, cells, statistic=statistic)
    floors = np.array([float(getattr(b, "floor_height_m", 0.0) or 0.0) for b in buildings])
    above = depth - floors if n else np.empty(0)
    values = np.array([float(b.value) for b in buildings])
    people = np.array([float(getattr(b, "people", 0.0) or 0.0) for b in buildings])
    classes = []
    for b in buildings:
        try:
            classes.append(catalogue.resolve(b.use_class))
        except KeyError as error:
            raise KeyError(f"building {b.id}: {error.args[0]}") from None
    damage = np.zeros(n)
    by_class: dict[str, float] = {}
    class_array = np.array(classes, dtype=object)
    for cls in sorted(set(classes)):
        index = class_array == cls
        damage[index] = catalogue.curves[cls](above[index]) * values[index]
        by_class[cls] = float(damage[index].sum())
    affected = above > min_depth_m
    cell_size = _grid_parts(grid)[3]
    flooded_m, total_m = flooded_road_length(roads, depth_grid, grid, depth_m=road_depth_m,
                                             permanent_water=permanent_water)
    return EventImpact(
        damage=float(damage.sum()), damage_by_class=by_class,
        buildings_affected=int(np.count_nonzero(affected)), buildings_total=n,
        people_affected=float(people[affected].sum()),
        inundated_area_m2=inundated_area(depth_grid, cell_size, thresholds_m,
                                         permanent_water=permanent_water),
        road_flooded_m=flooded_m, road_total_m=total_m, road_depth_m=float(road_depth_m),
        building_depth_m=above, building_damage=damage)
