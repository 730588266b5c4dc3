"""The demo study: a synthetic low-lying new town on the coast near Jakarta.

:func:`write_demo_catchment` writes, in WGS 84 / UTM zone 48S (EPSG:32748), a study
folder a user can run as it is:

- ``dem.tif``: coastal plain falling from about 4 m (south) to 1 m above mean sea level
  (north edge, the sea: an open boundary), with three polders (closed basins 1-1.6 m
  below their surroundings), a meandering river crossing the site south to north in a
  3 m deep channel, and a drainage canal on the east side running to the sea;
- ``landcover.tif``: residential, commercial, industrial, roads, parks, water, open
  land, with Manning's n and SCS curve numbers (hydrologic soil group D) per class in
  ``study.yaml``;
- ``buildings.geojson``: a few thousand buildings on a street grid, with use class,
  value per m2 of floor (US dollars, 2024 replacement cost of the order of Indonesian
  construction costs), storeys and floor height;
- ``roads.geojson`` (the street grid), ``drains.geojson`` (drain capacity per district,
  mm/h), ``river_inflow.csv`` (the upstream river hydrograph for each return period);
- ``study.yaml``: the study: inputs, the illustrative tropical IDF
  (:func:`~cityos.apps.floodrisk.rainfall.demo_idf`), return periods, packages
  ``baseline``, ``drainage`` and ``full`` (retention ponds in the polders, levees along
  both river banks, drainage upgrade, green infrastructure, raised floors), economics.

Everything scales with ``size`` so a test can write a tiny one; the default (200 x 200
cells of 10 m, a 3-hour storm in a 6-hour simulation) runs the 6 x 3 study in minutes.
The site is synthetic: its numbers demonstrate the method, they describe no real place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage
from shapely.geometry import LineString, Polygon, box, mapping

from cityos.apps.floodrisk.grid import GridSpec, write_geotiff

__all__ = ["DEMO_CRS", "LANDCOVER_CLASSES", "RETURN_PERIODS", "write_demo_catchment"]

DEMO_CRS = "EPSG:32748"
#: Top-left corner of the demo grid (UTM 48S): the coast north of Jakarta.
ORIGIN = (700_000.0, 9_325_000.0)
RETURN_PERIODS = [2, 5, 10, 25, 50, 100]

#: code: (name, Manning's n, curve number for soil group D)
LANDCOVER_CLASSES = {
    1: ("residential", 0.080, 92),
    2: ("commercial", 0.060, 95),
    3: ("industrial", 0.050, 93),
    4: ("road", 0.016, 98),
    5: ("park", 0.045, 80),
    6: ("water", 0.030, 100),
    7: ("open land", 0.040, 86),
}
RESIDENTIAL, COMMERCIAL, INDUSTRIAL, ROAD, PARK, WATER, OPEN = range(1, 8)

#: Building structure replacement cost per m2 of floor (USD 2024, Greater Jakarta).
STRUCTURE_USD_M2 = {"residential": 350.0, "commercial": 450.0, "industrial": 300.0}
#: Contents as a share of the structure's value (the JRC guideline's ratios, Huizinga et
#: al. 2017: the JRC depth-damage curves are for structure and contents together).
CONTENTS_SHARE = {"residential": 0.5, "commercial": 1.0, "industrial": 1.5}
#: Storeys and ground-floor height above the adjacent ground (m) by class: landed
#: two-storey houses on a raised plinth, three-storey shophouses (ruko) one step above
#: the pavement, single-storey sheds on a slab above the yard.
BUILDING_FORM = {"residential": (2, 0.2), "commercial": (3, 0.15), "industrial": (1, 0.3)}
#: Value per m2 of floor (structure + contents, USD), storeys, ground-floor height (m).
BUILDING_TYPES = {
    use: (STRUCTURE_USD_M2[use] * (1.0 + CONTENTS_SHARE[use]), *BUILDING_FORM[use])
    for use in STRUCTURE_USD_M2
}

#: Upstream river flood peak (m3/s) by return period; the channel holds about 150.
#: Other return periods (25 yr: 262.6 m3/s) are interpolated linearly in log T.
RIVER_PEAK_M3_S = {2: 90.0, 5: 150.0, 10: 200.0, 50: 310.0, 100: 350.0}
RIVER_BASEFLOW_M3_S = 15.0


class _Site:
    """The synthetic site's geometry on a grid (normalised coordinates u east, v south)."""

    def __init__(self, size: tuple[int, int], cell: float, seed: int) -> None:
        self.ny, self.nx = size
        self.cell = cell
        self.width, self.height = self.nx * cell, self.ny * cell
        self.grid = GridSpec.from_origin(ORIGIN[0], ORIGIN[1], cell, size, DEMO_CRS)
        self.rng = np.random.default_rng(seed)
        rows, cols = np.indices(size)
        self.u = (cols + 0.5) / self.nx
        self.v = (rows + 0.5) / self.ny
        self.x = (cols + 0.5) * cell  # metres from the west edge
        self.y = (rows + 0.5) * cell  # metres from the north edge

    # geometry in metres from the top-left corner -> UTM
    def to_utm(self, xm: float, ym: float) -> tuple[float, float]:
        return (round(float(ORIGIN[0] + xm), 2), round(float(ORIGIN[1] - ym), 2))

    def river_x(self, v: Any) -> Any:
        """River centreline (m from the west edge) at normalised distance v from the coast."""
        return self.width * (0.36 + 0.05 * np.sin(2 * np.pi * (1.2 * v + 0.1)))

    def river_half_width(self) -> float:
        return max(15.0, 1.5 * self.cell)

    canal_u = 0.82

    def canal_half_width(self) -> float:
        return max(10.0, 1.0 * self.cell)

    #: polders: (u, v, radius as a share of the site width, depth m)
    polders = [(0.16, 0.42, 0.13, 1.4), (0.58, 0.30, 0.12, 1.2), (0.66, 0.70, 0.11, 1.3)]


def _elevation(site: _Site) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground (m), river mask, canal mask."""
    z = 1.0 + 3.0 * site.v
    noise = ndimage.gaussian_filter(site.rng.normal(0, 1, z.shape), sigma=max(2.0, 60 / site.cell))
    z += 0.15 * noise / (noise.std() + 1e-12)
    for pu, pv, pr, depth in site.polders:
        r = np.hypot(site.x - pu * site.width, site.y - pv * site.height) / (pr * site.width)
        z -= depth * np.clip(1 - r**2, 0, None)
    dist = np.abs(site.x - site.river_x(site.v))
    river = dist <= site.river_half_width()
    # the channel: 3 m below the local bank, sloping with the plain
    z = np.where(river, 1.0 + 3.0 * site.v - 3.0, z)
    canal = (np.abs(site.x - site.canal_u * site.width) <= site.canal_half_width()) & (
        site.v <= 0.62)
    z = np.where(canal, 1.0 + 3.0 * site.v - 2.0, z)
    return z, river, canal


def _blocks(site: _Site) -> list[tuple[float, float, float, float]]:
    """Street blocks (x0, y0, x1, y1 in metres) of a 100 m street grid."""
    step = 100.0 if site.width >= 600 else max(site.width / 6, 4 * site.cell)
    out = []
    for x0 in np.arange(0, site.width - step / 2, step):
        for y0 in np.arange(0, site.height - step / 2, step):
            out.append((x0 + 8, y0 + 8, x0 + step - 8, y0 + step - 8))
    return out


def _landuse_at(site: _Site, xm: float, ym: float) -> str:
    u, v = xm / site.width, ym / site.height
    if v < 0.2 and u > 0.45:
        return "industrial"  # the port-side estate
    if abs(v - 0.55) < 0.08 or (0.45 < u < 0.6 and v > 0.4):
        return "commercial"  # the central avenue and the market strip
    return "residential"


def _excluded(site: _Site, xm: float, ym: float, margin: float) -> bool:
    v = ym / site.height
    if abs(xm - float(site.river_x(v))) < site.river_half_width() + margin:
        return True
    if abs(xm - site.canal_u * site.width) < site.canal_half_width() + margin and v <= 0.64:
        return True
    for pu, pv, pr, _ in site.polders:
        if np.hypot(xm - pu * site.width, ym - pv * site.height) < 0.35 * pr * site.width:
            return True  # the polder's sump is open land (where a pond can go)
    return False


def _features(items: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32748"}},
        "features": [{"type": "Feature", "geometry": mapping(g), "properties": p}
                     for g, p in items],
    }


def _utm_geom(site: _Site, geom: Any) -> Any:
    from shapely import transform

    return transform(geom, lambda xy: np.column_stack([ORIGIN[0] + xy[:, 0],
                                                       ORIGIN[1] - xy[:, 1]]))


def _coords(site: _Site, geom: Any) -> list[list[float]]:
    g = _utm_geom(site, geom)
    ring = g.exterior.coords if isinstance(g, Polygon) else g.coords
    return [[round(float(x), 2), round(float(y), 2)] for x, y in ring]


def write_demo_catchment(
    directory: str | Path, *, size: tuple[int, int] = (200, 200), cell_size_m: float = 10.0,
    seed: int = 7, return_periods: list[int] | None = None,
) -> Path:
    """Write the demo new-town study into ``directory`` and return its ``study.yaml``.

    Parameters
    ----------
    directory : str or Path
        Created if missing; existing demo files are overwritten.
    size : (ny, nx)
        Grid cells. The default 200 x 200 at 10 m is a 2 km x 2 km site.
    cell_size_m : float
        Cell side in metres.
    seed : int
        Seed of the terrain noise and the building layout (the output is deterministic).
    return_periods : list of int, optional
        Defaults to 2, 5, 10, 25, 50, 100 years.

    Returns
    -------
    Path
        The study file.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    site = _Site(tuple(size), float(cell_size_m), seed)
    z, river, canal = _elevation(site)

    # land cover: districts by use, streets, parks, water
    lc = np.full(site.grid.shape, RESIDENTIAL, dtype=np.uint8)
    lc[(site.v < 0.2) & (site.u > 0.45)] = INDUSTRIAL
    lc[(np.abs(site.v - 0.55) < 0.08) | ((site.u > 0.45) & (site.u < 0.6) & (site.v > 0.4))] = \
        COMMERCIAL
    street = ((site.x % 100.0) < max(8.0, site.cell)) | ((site.y % 100.0) < max(8.0, site.cell))
    lc[street] = ROAD
    sumps = np.zeros(site.grid.shape, bool)
    for pu, pv, pr, _ in site.polders:
        sumps |= np.hypot(site.x - pu * site.width, site.y - pv * site.height) < \
            0.35 * pr * site.width
    lc[sumps] = OPEN
    near_river = np.abs(site.x - site.river_x(site.v)) < site.river_half_width() + 25
    lc[near_river] = PARK  # the riverside strip (where the levees go)
    lc[river | canal] = WATER
    write_geotiff(out / "dem.tif", z, site.grid, description="ground elevation (m above MSL)")
    write_geotiff(out / "landcover.tif", lc, site.grid, description="land cover class")

    # buildings on the street blocks
    buildings, n = [], 0
    for x0, y0, x1, y1 in _blocks(site):
        bw, bd = 12.0, 15.0
        for bx in np.arange(x0 + 2, x1 - bw, bw + 6):
            for by in np.arange(y0 + 2, y1 - bd, bd + 8):
                if site.rng.random() < 0.12:
                    continue  # an empty plot
                cx, cy = bx + bw / 2, by + bd / 2
                if _excluded(site, cx, cy, 35.0):
                    continue
                use = _landuse_at(site, cx, cy)
                per_m2, storeys, floor = BUILDING_TYPES[use]
                if use == "industrial":
                    foot = box(bx, by, bx + bw * 1.5, by + bd)
                else:
                    foot = box(bx, by, bx + bw, by + bd)
                n += 1
                buildings.append((_utm_geom(site, foot), {
                    "id": f"B{n:05d}", "use_class": use, "value_per_m2": per_m2,
                    "storeys": storeys, "floor_height_m": floor}))
    (out / "buildings.geojson").write_text(json.dumps(_features(buildings)))

    # streets
    roads = []
    for xs in np.arange(0, site.width + 1, 100.0):
        roads.append((_utm_geom(site, LineString([(xs + 4, 0), (xs + 4, site.height)])),
                      {"name": f"Jalan {int(xs // 100) + 1}"}))
    for ys in np.arange(0, site.height + 1, 100.0):
        roads.append((_utm_geom(site, LineString([(0, ys + 4), (site.width, ys + 4)])),
                      {"name": f"Jalan Raya {int(ys // 100) + 1}"}))
    (out / "roads.geojson").write_text(json.dumps(_features(roads)))

    # drains: the old town's capacity by district (mm/h of rain over the district)
    w, h = site.width, site.height
    districts = [
        (box(0, 0, w, 0.2 * h), 20.0, "coastal estate"),
        (box(0, 0.2 * h, w, 0.6 * h), 12.0, "town centre"),
        (box(0, 0.6 * h, w, h), 15.0, "southern quarter"),
    ]
    (out / "drains.geojson").write_text(json.dumps(_features(
        [(_utm_geom(site, g), {"capacity_mm_h": cap, "district": name})
         for g, cap, name in districts])))

    # the river's flood arriving from upstream, one column per return period
    periods = return_periods or RETURN_PERIODS
    times_min = np.arange(0, 6 * 60 + 1, 15)
    lines = ["time_min," + ",".join(str(t) for t in periods)]
    for t in times_min:
        shape = np.exp(-(((t - 150.0) / 60.0) ** 2))  # peak 2.5 h after the storm starts
        row = [f"{RIVER_BASEFLOW_M3_S + (_peak(T) - RIVER_BASEFLOW_M3_S) * shape:.2f}"
               for T in periods]
        lines.append(f"{t}," + ",".join(row))
    (out / "river_inflow.csv").write_text("\n".join(lines) + "\n")

    homes = sum(1 for _, props in buildings if props["use_class"] == "residential")
    study = _study_dict(site, periods, homes)
    path = out / "study.yaml"
    path.write_text(_HEADER + yaml.safe_dump(study, sort_keys=False, width=100,
                                                   default_flow_style=None))
    return path


def _peak(T: float) -> float:
    periods = sorted(RIVER_PEAK_M3_S)
    return float(np.interp(np.log(T), np.log(periods), [RIVER_PEAK_M3_S[p] for p in periods]))


_HEADER = """\
# Demo flood-risk study: a synthetic low-lying new town on the coast near Jakarta
# (EPSG:32748, UTM 48S). Written by cityos.apps.floodrisk.catchment; the site and its
# numbers are synthetic and illustrate the method. Values in US dollars.
"""


#: Raising a new home's ground floor by 0.5 m at construction: about 90 m3 of compacted
#: fill under a 180 m2 plot's footprint at ~USD 15/m3 plus the extra steps (USD, per home).
RAISED_FLOOR_USD_PER_HOME = 1650.0


def _study_dict(site: _Site, periods: list[int], homes: int) -> dict[str, Any]:
    w, h = site.width, site.height
    hw = site.river_half_width()
    # the inflow enters across the channel's cells on the south edge (centre to centre)
    last = np.abs(site.x[-1] - site.river_x(site.v[-1])) <= hw
    xs = site.x[-1][last]
    inflow_line = [list(site.to_utm(float(xs.min()), h - site.cell / 2)),
                   list(site.to_utm(float(xs.max()) + 1e-3, h - site.cell / 2))]

    def levee(side: float) -> list[list[float]]:
        vs = np.linspace(0.0, 1.0, 41)
        offset = side * (hw + max(20.0, 1.0 * site.cell))  # on the bank, 20 m back
        return [[round(a, 2), round(b, 2)] for a, b in
                (site.to_utm(float(site.river_x(v)) + offset, v * h) for v in vs)]

    ponds = []
    for i, (pu, pv, pr, _) in enumerate(site.polders):
        r = 0.3 * pr * w
        cx, cy = pu * w, pv * h
        ponds.append({
            "type": "retention_pond", "name": f"retention pond {i + 1}",
            "polygon": _coords(site, box(cx - r, cy - r, cx + r, cy + r)),
            "volume_m3": round(float((2 * r) ** 2 * 2.5), -2),
            "capital_cost": round(float((2 * r) ** 2 * 2.5) * 12.0, -3),
            "annual_cost": 15000.0,
        })
    town = _coords(site, box(0, 0, w, h))
    centre = _coords(site, box(0, 0.2 * h, w, 0.8 * h))
    drainage = {"type": "drainage_upgrade", "name": "drainage upgrade (pipes and pumps)",
                "polygon": centre, "extra_mm_h": 30.0, "capital_cost": 6.5e6,
                "annual_cost": 1.2e5}
    return {
        "name": "Demo new town near Jakarta (synthetic)",
        "crs": DEMO_CRS,
        "inputs": {
            "dem": "dem.tif",
            "landcover": {
                "raster": "landcover.tif",
                "manning": {k: v[1] for k, v in LANDCOVER_CLASSES.items()},
                "curve_number": {k: v[2] for k, v in LANDCOVER_CLASSES.items()},
                "water_classes": [WATER],
            },
            "buildings": {"file": "buildings.geojson"},
            "roads": "roads.geojson",
            "drains": "drains.geojson",
            "soil": {"curve_number": "landcover", "initial_abstraction_ratio": 0.2},
            "boundary": {"north": "open"},
            "inflow": {"line": inflow_line, "hydrograph": "river_inflow.csv"},
        },
        "rainfall": {"idf": "demo", "hyetograph": "alternating_block", "duration_min": 180,
                     "step_min": 10},
        "return_periods": list(periods),
        "simulation": {"duration_h": 6},
        "packages": {
            "baseline": [],
            "drainage": [drainage],
            "full": [
                *ponds,
                {"type": "levee", "name": "west river levee", "line": levee(-1.0),
                 "crest_height_m": 2.5, "capital_cost": 4.2e6, "annual_cost": 3.0e4},
                {"type": "levee", "name": "east river levee", "line": levee(1.0),
                 "crest_height_m": 2.5, "capital_cost": 4.2e6, "annual_cost": 3.0e4},
                drainage,
                {"type": "green_infrastructure", "name": "bioswales and porous paving",
                 "polygon": town, "curve_number_reduction": 8.0, "capital_cost": 2.5e6,
                 "annual_cost": 6.0e4},
                {"type": "raised_floors", "name": "raised ground floors (new homes)",
                 "raise_m": 0.5, "use_classes": ["residential"],
                 "capital_cost": round(homes * RAISED_FLOOR_USD_PER_HOME, -3)},
            ],
        },
        "economics": {"discount_rate": 0.06, "lifetime_years": 30, "loading_factor": 1.35,
                      "currency": "USD"},
        "damage": {"curves": "jrc-asia"},
    }
