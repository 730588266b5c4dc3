"""Adaptation measures: small declarative changes to a :class:`~.inputs.Scenario`.

Each measure has a ``name``, a ``capital_cost`` and an ``annual_cost`` (operation and
maintenance, the study's currency) and ``apply(scenario)`` returning a new scenario;
the input is never changed. A :class:`Package` applies its measures in order.

In ``study.yaml`` a measure is a mapping with a ``type``::

    - {type: retention_pond, polygon: [[x, y], ...], volume_m3: 60000, capital_cost: 2.1e6}
    - {type: levee, line: [[x, y], ...], crest_height_m: 1.5, capital_cost: 3.0e6}
    - {type: drainage_upgrade, extra_mm_h: 40, polygon: [[x, y], ...], capital_cost: 4e6}
    - {type: green_infrastructure, polygon: ..., curve_number: 70, capital_cost: 1e6}
    - {type: raised_floors, raise_m: 0.5, use_classes: [residential], capital_cost: 2e6}

Coordinates are in the study's (the DEM's) CRS; ``file: some.geojson`` may replace
``polygon``/``line`` (its features are merged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.ops import unary_union

from cityos.apps.floodrisk.grid import cells_in_polygon, cells_on_line
from cityos.apps.floodrisk.inputs import InputError, Scenario, read_geojson
from cityos.apps.floodrisk.losses import CurveNumber, GreenAmpt

__all__ = [
    "DrainageUpgrade",
    "GreenInfrastructure",
    "Levee",
    "Measure",
    "MeasureError",
    "Package",
    "RaisedFloors",
    "RetentionPond",
    "measure_from_dict",
    "package_from_config",
]


class MeasureError(InputError):
    """A measure that is badly specified or cannot be applied to the scenario."""


class Measure(Protocol):
    """What every measure offers."""

    name: str
    capital_cost: float
    annual_cost: float

    def apply(self, scenario: Scenario) -> Scenario: ...


def _mask(polygon: Any, scenario: Scenario, where: str) -> np.ndarray:
    mask = cells_in_polygon(polygon, scenario.grid) & scenario.active
    if not mask.any():
        raise MeasureError(f"{where}: the polygon covers no active cell of the DEM")
    return mask


@dataclass
class RetentionPond:
    """A pond excavated inside a polygon.

    With ``volume_m3`` the pond gets a flat bottom at the level that removes exactly that
    volume of ground from the cells in the polygon (cells already below the bottom are left
    as they are); with ``depth_m`` every cell is lowered by that depth.
    """

    polygon: Any
    volume_m3: float | None = None
    depth_m: float | None = None
    name: str = "retention pond"
    capital_cost: float = 0.0
    annual_cost: float = 0.0

    def __post_init__(self) -> None:
        if (self.volume_m3 is None) == (self.depth_m is None):
            raise MeasureError(f"{self.name}: give exactly one of volume_m3 or depth_m")
        for key in ("volume_m3", "depth_m"):
            v = getattr(self, key)
            if v is not None and not v > 0:
                raise MeasureError(f"{self.name}: {key}: must be > 0 ({v})")

    def bottom_elevation(self, scenario: Scenario) -> float:
        """Bottom level that excavates ``volume_m3`` from the polygon's cells."""
        mask = _mask(self.polygon, scenario, self.name)
        z = np.sort(scenario.elevation[mask])[::-1]  # high to low
        area = scenario.grid.cell_area
        # volume above level L of the k highest cells: area * (sum_k z - k L)
        csum = np.cumsum(z)
        k = np.arange(1, z.size + 1)
        volume_at_next = area * (csum - k * np.append(z[1:], -np.inf))
        j = int(np.searchsorted(volume_at_next, self.volume_m3))
        j = min(j, z.size - 1)
        return float((csum[j] - self.volume_m3 / area) / (j + 1))

    def apply(self, scenario: Scenario) -> Scenario:
        out = scenario.copy()
        mask = _mask(self.polygon, scenario, self.name)
        if self.depth_m is not None:
            out.elevation[mask] -= self.depth_m
        else:
            bottom = self.bottom_elevation(scenario)
            out.elevation[mask] = np.minimum(out.elevation[mask], bottom)
        # the pond is designed to hold water: it joins the scenario's permanent water
        water = np.zeros(scenario.grid.shape, bool) if out.water is None else out.water
        out.water = water | mask
        return out


@dataclass
class Levee:
    """A levee or flood wall along a line: every cell the line passes through (and,
    with an odd ``width_cells`` = 2k + 1, k more cells on each side) is raised.

    ``crest_height_m`` raises each cell by that height above its ground;
    ``crest_elevation_m`` raises each cell to that level (never lowers one).
    """

    line: Any
    crest_height_m: float | None = None
    crest_elevation_m: float | None = None
    width_cells: int = 1
    name: str = "levee"
    capital_cost: float = 0.0
    annual_cost: float = 0.0

    def __post_init__(self) -> None:
        if (self.crest_height_m is None) == (self.crest_elevation_m is None):
            raise MeasureError(f"{self.name}: give exactly one of crest_height_m or "
                               "crest_elevation_m")
        if self.crest_height_m is not None and not self.crest_height_m > 0:
            raise MeasureError(f"{self.name}: crest_height_m: must be > 0 "
                               f"({self.crest_height_m})")
        if int(self.width_cells) < 1:
            raise MeasureError(f"{self.name}: width_cells: must be >= 1 ({self.width_cells})")

    def cells(self, scenario: Scenario) -> np.ndarray:
        """Mask of the cells the levee occupies."""
        from scipy import ndimage

        mask = cells_on_line(self.line, scenario.grid)
        grow = (int(self.width_cells) - 1) // 2  # cells added on each side of the line
        if grow > 0:
            mask = ndimage.binary_dilation(mask, iterations=grow)
        mask &= scenario.active
        if not mask.any():
            raise MeasureError(f"{self.name}: the line crosses no active cell of the DEM")
        return mask

    def apply(self, scenario: Scenario) -> Scenario:
        out = scenario.copy()
        mask = self.cells(scenario)
        if self.crest_height_m is not None:
            out.elevation[mask] += self.crest_height_m
        else:
            out.elevation[mask] = np.maximum(out.elevation[mask], self.crest_elevation_m)
        return out


@dataclass
class DrainageUpgrade:
    """More drain (sink) capacity, mm/h, inside a polygon or over the whole model."""

    extra_mm_h: float
    polygon: Any = None
    name: str = "drainage upgrade"
    capital_cost: float = 0.0
    annual_cost: float = 0.0

    def __post_init__(self) -> None:
        if not self.extra_mm_h > 0:
            raise MeasureError(f"{self.name}: extra_mm_h: must be > 0 ({self.extra_mm_h})")

    def apply(self, scenario: Scenario) -> Scenario:
        out = scenario.copy()
        mask = scenario.active if self.polygon is None else _mask(self.polygon, scenario,
                                                                  self.name)
        drain = np.broadcast_to(out.drain_capacity_mm_h, scenario.grid.shape).astype(float)
        drain[mask] += self.extra_mm_h
        out.drain_capacity_mm_h = drain
        return out


@dataclass
class GreenInfrastructure:
    """More infiltration inside a polygon (bioswales, porous paving, parks).

    For curve-number losses: ``curve_number`` (cells above it come down to it) or
    ``curve_number_reduction``; for Green-Ampt: ``conductivity_mm_h`` (cells below it come
    up to it) or ``conductivity_factor``.
    """

    polygon: Any
    curve_number: float | None = None
    curve_number_reduction: float | None = None
    conductivity_mm_h: float | None = None
    conductivity_factor: float | None = None
    name: str = "green infrastructure"
    capital_cost: float = 0.0
    annual_cost: float = 0.0

    def __post_init__(self) -> None:
        given = [k for k in ("curve_number", "curve_number_reduction", "conductivity_mm_h",
                             "conductivity_factor") if getattr(self, k) is not None]
        if len(given) != 1:
            raise MeasureError(f"{self.name}: give exactly one of curve_number, "
                               "curve_number_reduction, conductivity_mm_h, conductivity_factor")
        v = getattr(self, given[0])
        if given[0] == "curve_number" and not 0 < v <= 100:
            raise MeasureError(f"{self.name}: curve_number: must be in (0, 100] ({v})")
        if given[0] == "conductivity_factor" and not v >= 1:
            raise MeasureError(f"{self.name}: conductivity_factor: must be >= 1 ({v})")
        if given[0] in ("curve_number_reduction", "conductivity_mm_h") and not v > 0:
            raise MeasureError(f"{self.name}: {given[0]}: must be > 0 ({v})")

    def apply(self, scenario: Scenario) -> Scenario:
        out = scenario.copy()
        mask = _mask(self.polygon, scenario, self.name)
        shape = scenario.grid.shape
        cn_change = self.curve_number is not None or self.curve_number_reduction is not None
        if cn_change:
            if not isinstance(out.losses, CurveNumber):
                raise MeasureError(f"{self.name}: changes curve numbers, but the scenario's "
                                   "soil is not inputs.soil.curve_number")
            cn = np.broadcast_to(np.asarray(out.losses.cn, float), shape).copy()
            if self.curve_number is not None:
                cn[mask] = np.minimum(cn[mask], self.curve_number)
            else:
                cn[mask] = np.maximum(cn[mask] - self.curve_number_reduction, 1.0)
            out.losses.cn = cn
        else:
            if not isinstance(out.losses, GreenAmpt):
                raise MeasureError(f"{self.name}: changes conductivity, but the scenario's "
                                   "soil is not inputs.soil.green_ampt")
            k = np.broadcast_to(np.asarray(out.losses.conductivity_mm_h, float), shape).copy()
            if self.conductivity_mm_h is not None:
                k[mask] = np.maximum(k[mask], self.conductivity_mm_h)
            else:
                k[mask] = k[mask] * self.conductivity_factor
            out.losses.conductivity_mm_h = k
        return out


@dataclass
class RaisedFloors:
    """Raise the ground floors of buildings by ``raise_m`` (all, or those of the given
    use classes and/or whose footprint centre is inside ``polygon``)."""

    raise_m: float
    use_classes: Sequence[str] | None = None
    polygon: Any = None
    name: str = "raised floors"
    capital_cost: float = 0.0
    annual_cost: float = 0.0

    def __post_init__(self) -> None:
        if not self.raise_m > 0:
            raise MeasureError(f"{self.name}: raise_m: must be > 0 ({self.raise_m})")

    def chosen(self, building: Any) -> bool:
        """Whether the measure applies to a building."""
        if self.use_classes is not None and building.use_class not in self.use_classes:
            return False
        return self.polygon is None or self.polygon.contains(building.footprint.centroid)

    def apply(self, scenario: Scenario) -> Scenario:
        out = scenario.copy()
        for b in out.buildings:
            if self.chosen(b):
                b.floor_height_m += self.raise_m
        return out


@dataclass
class Package:
    """A named set of measures applied together, with their summed costs."""

    name: str
    measures: list[Any] = field(default_factory=list)

    @property
    def capital_cost(self) -> float:
        return float(sum(m.capital_cost for m in self.measures))

    @property
    def annual_cost(self) -> float:
        return float(sum(m.annual_cost for m in self.measures))

    def apply(self, scenario: Scenario) -> Scenario:
        """The scenario with every measure applied in order (a new object)."""
        out = scenario.copy()
        for m in self.measures:
            out = m.apply(out)
        return out


# -- from study.yaml ---------------------------------------------------------------------

_TYPES = {
    "retention_pond": (RetentionPond, "polygon", ("volume_m3", "depth_m")),
    "levee": (Levee, "line", ("crest_height_m", "crest_elevation_m", "width_cells")),
    "drainage_upgrade": (DrainageUpgrade, "polygon?", ("extra_mm_h",)),
    "green_infrastructure": (GreenInfrastructure, "polygon", (
        "curve_number", "curve_number_reduction", "conductivity_mm_h", "conductivity_factor")),
    "raised_floors": (RaisedFloors, "polygon?", ("raise_m", "use_classes")),
}


def _geometry(d: Mapping[str, Any], kind: str, where: str, base_dir: Path | None,
              crs: Any) -> Any:
    if "file" in d:
        if base_dir is None or crs is None:
            raise MeasureError(f"{where}.file: needs the study folder and CRS to be read")
        path = Path(d["file"])
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.exists():
            raise MeasureError(f"{where}.file: file not found: {path}")
        geoms = [g for _, g, _ in read_geojson(path, str(d["file"]), crs)]
        geom = unary_union(geoms)
        return geom
    if kind not in d:
        raise MeasureError(f"{where}.{kind}: missing (coordinates or `file:`)")
    coords = d[kind]
    try:
        if kind == "line":
            return LineString(coords)
        if isinstance(coords, Mapping):  # a GeoJSON geometry
            from shapely.geometry import shape

            return shape(coords)
        if coords and isinstance(coords[0][0], (list, tuple)):  # several polygons
            return MultiPolygon([Polygon(p) for p in coords])
        return Polygon(coords)
    except (TypeError, ValueError, IndexError) as exc:
        raise MeasureError(f"{where}.{kind}: not valid coordinates ({exc})") from None


def measure_from_dict(d: Mapping[str, Any], *, base_dir: str | Path | None = None,
                      crs: Any = None, where: str = "measure") -> Any:
    """Build a measure from its study.yaml mapping (``type`` and its fields).

    Raises
    ------
    MeasureError
        Naming the field at fault, e.g. ``packages.full[2].extra_mm_h: must be > 0``.
    """
    if not isinstance(d, Mapping):
        raise MeasureError(f"{where}: expected a mapping with a type")
    kind = d.get("type")
    if kind not in _TYPES:
        raise MeasureError(f"{where}.type: {kind!r}; use one of {', '.join(_TYPES)}")
    cls, geom_key, fields = _TYPES[kind]
    known = {"type", "name", "capital_cost", "annual_cost", "file", geom_key.rstrip("?"),
             *fields}
    unknown = sorted(set(d) - known)
    if unknown:
        raise MeasureError(f"{where}.{unknown[0]}: not a field of {kind} (fields: "
                           f"{', '.join(sorted(known - {'type'}))})")
    kwargs: dict[str, Any] = {}
    for key in ("capital_cost", "annual_cost"):
        if key in d:
            try:
                kwargs[key] = float(d[key])
            except (TypeError, ValueError):
                raise MeasureError(f"{where}.{key}: not a number ({d[key]!r})") from None
            if not kwargs[key] >= 0:
                raise MeasureError(f"{where}.{key}: negative ({d[key]})")
    if "capital_cost" not in d:
        raise MeasureError(f"{where}.capital_cost: missing (0 if the measure is free)")
    kwargs["name"] = str(d.get("name", kind.replace("_", " ")))
    gkey = geom_key.rstrip("?")
    if not geom_key.endswith("?") or gkey in d or "file" in d:
        kwargs[gkey] = _geometry(d, gkey, where, Path(base_dir) if base_dir else None, crs)
    for key in fields:
        if key not in d:
            continue
        v = d[key]
        if key == "use_classes":
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise MeasureError(f"{where}.use_classes: expected a list of class names")
        elif key == "width_cells":
            if not isinstance(v, int) or isinstance(v, bool):
                raise MeasureError(f"{where}.width_cells: expected a whole number ({v!r})")
        else:
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise MeasureError(f"{where}.{key}: not a number ({v!r})") from None
        kwargs[key] = v
    try:
        return cls(**kwargs)
    except MeasureError as exc:
        # re-address the dataclass's own check to the study field
        msg = str(exc).split(": ", 1)[-1]
        raise MeasureError(f"{where}.{msg}" if ":" in msg else f"{where}: {msg}") from None
    except TypeError as exc:
        raise MeasureError(f"{where}: {exc}") from None


def package_from_config(name: str, measures: Sequence[Mapping[str, Any]] | None, *,
                        base_dir: str | Path | None = None, crs: Any = None) -> Package:
    """A :class:`Package` from the study.yaml ``packages.<name>`` list (empty: baseline)."""
    if measures is None:
        measures = []
    if not isinstance(measures, Sequence) or isinstance(measures, (str, bytes)):
        raise MeasureError(f"packages.{name}: expected a list of measures")
    return Package(name, [measure_from_dict(m, base_dir=base_dir, crs=crs,
                                            where=f"packages.{name}[{i}]")
                          for i, m in enumerate(measures)])
