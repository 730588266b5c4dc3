"""Linear assets (railways, canals, roads): a chainage profile of ground motion.

The points within ``buffer_m`` of the line are projected onto it in a metric CRS (the
UTM zone of the line's centre, with pyproj); their chainage (distance along the line
from its first vertex) is binned, ``bin_m`` wide, and each bin gets the number of
points, their mean vertical velocity (mm/yr) and their mean cumulative vertical
displacement at the product's last epoch relative to its first (mm). A settlement
trough under a metro line shows as a dip in both.

Linear assets come as GeoJSON ``LineString`` features in WGS84 lon/lat.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, shape

from cityos.core.geo import utm_epsg

DEFAULT_BUFFER_M = 50.0
DEFAULT_BIN_M = 50.0
ASSET_KINDS = ("rail", "canal", "road", "pipeline", "other")
_M_PER_DEG = 111_320.0


class AssetFormatError(ValueError):
    """A footprint or line file is malformed; the message names the feature and field."""


def utm_crs(lon: float, lat: float) -> str:
    """The EPSG code of the UTM zone of a WGS84 position (``EPSG:326zz`` north,
    ``EPSG:327zz`` south)."""
    return f"EPSG:{utm_epsg(lon, lat)}"


def to_metric(lon: float, lat: float) -> Transformer:
    """A lon/lat -> UTM metres transformer for the zone of ``(lon, lat)``."""
    return Transformer.from_crs("EPSG:4326", utm_crs(lon, lat), always_xy=True)


@dataclass
class LinearAsset:
    """A railway, canal or road: its id, name, kind and lon/lat line."""

    asset_id: str
    name: str
    kind: str
    line: LineString

    def geojson(self) -> dict:
        return {"type": "LineString", "coordinates": [list(c) for c in self.line.coords]}


def read_features(path: str | Path) -> list[dict]:
    """The features of a GeoJSON file (a FeatureCollection or one Feature)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AssetFormatError(f"{path}: cannot read it: {error}") from None
    except json.JSONDecodeError as error:
        raise AssetFormatError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    if isinstance(document, dict) and document.get("type") == "Feature":
        return [document]
    if isinstance(document, dict) and isinstance(document.get("features"), list):
        return document["features"]
    raise AssetFormatError(f"{path}: expected a GeoJSON FeatureCollection or Feature")


def feature_id(feature: dict, number: int, source: str) -> str:
    """The id of a feature: ``id``, else ``properties.id``."""
    props = feature.get("properties") or {}
    value = feature.get("id", props.get("id"))
    if value is None or str(value) == "":
        raise AssetFormatError(f"{source}: feature {number}: id: missing (give the feature "
                               "an 'id' or an 'id' property)")
    return str(value)


def linear_assets_from_features(features: list[dict], source: str = "assets") -> list[LinearAsset]:
    """Linear assets from GeoJSON features with ``LineString`` geometry."""
    assets = []
    for number, feature in enumerate(features, start=1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise AssetFormatError(f"{source}: feature {number}: not a GeoJSON Feature")
        asset_id = feature_id(feature, number, source)
        geometry = feature.get("geometry") or {}
        if geometry.get("type") != "LineString":
            raise AssetFormatError(f"{source}: feature {number} ({asset_id}): geometry: "
                                   f"{geometry.get('type')!r} is not a LineString")
        try:
            line = shape(geometry)
        except (ValueError, TypeError, AttributeError) as error:
            raise AssetFormatError(f"{source}: feature {number} ({asset_id}): geometry: "
                                   f"{error}") from None
        if line.length == 0 or len(line.coords) < 2:
            raise AssetFormatError(f"{source}: feature {number} ({asset_id}): geometry: "
                                   "a line needs two distinct positions")
        props = feature.get("properties") or {}
        kind = str(props.get("kind") or props.get("assetType") or "other")
        assets.append(LinearAsset(asset_id, str(props.get("name") or asset_id), kind, line))
    return assets


def read_linear_assets(path: str | Path) -> list[LinearAsset]:
    """Read linear assets from a GeoJSON file of LineString features."""
    return linear_assets_from_features(read_features(path), str(path))


# ------------------------------------------------------------------------ profile
@dataclass
class ChainageProfile:
    """Ground motion along a linear asset, binned by chainage.

    Attributes
    ----------
    asset_id : str
    length_m : float
    bin_m, buffer_m : float
    chainage_m : numpy.ndarray
        Centre of each bin, m from the line's first vertex.
    count : numpy.ndarray
        Points in each bin.
    rate_mm_yr : numpy.ndarray
        Mean vertical velocity of each bin (NaN where empty).
    cumulative_mm : numpy.ndarray
        Mean cumulative vertical displacement at the last epoch (NaN where empty).
    last_date : str
        The product's last epoch.
    point_chainage_m, point_offset_m, point_rate_mm_yr : numpy.ndarray
        Every point used: chainage, distance from the line, velocity.
    rows : numpy.ndarray
        The rows of those points in the point store.
    """

    asset_id: str
    length_m: float
    bin_m: float
    buffer_m: float
    chainage_m: np.ndarray
    count: np.ndarray
    rate_mm_yr: np.ndarray
    cumulative_mm: np.ndarray
    last_date: str
    point_chainage_m: np.ndarray
    point_offset_m: np.ndarray
    point_rate_mm_yr: np.ndarray
    rows: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        return int(self.count.sum())

    def to_json(self) -> dict:
        def clean(values, digits=2):
            return [None if not math.isfinite(v) else round(float(v), digits) for v in values]

        return {"asset": self.asset_id, "length_m": round(self.length_m, 1),
                "bin_m": self.bin_m, "buffer_m": self.buffer_m, "last_date": self.last_date,
                "points": self.n_points, "chainage_m": clean(self.chainage_m, 1),
                "count": [int(c) for c in self.count],
                "rate_mm_yr": clean(self.rate_mm_yr), "cumulative_mm": clean(self.cumulative_mm)}


def candidate_rows(points, geometry, buffer_m: float) -> np.ndarray:
    """Rows in the lon/lat box of ``geometry`` grown by ``buffer_m`` (a superset)."""
    west, south, east, north = geometry.bounds
    grow_lat = buffer_m / _M_PER_DEG
    grow_lon = buffer_m / (_M_PER_DEG * max(math.cos(math.radians((south + north) / 2)), 0.01))
    return np.asarray(points.select_bbox(west - grow_lon, south - grow_lat,
                                         east + grow_lon, north + grow_lat), dtype=np.int64)


def vertical_rates(points, rows: np.ndarray) -> np.ndarray:
    """The fitted vertical velocity (mm/yr) of ``rows``."""
    from cityos.apps.subsidence.levelling import vertical_scale

    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.array([])
    try:
        fitted = points.fitted(rows)
    except ValueError:  # PointStoreError: not fitted yet
        fitted = None
    if not fitted or "velocity_mm_yr" not in fitted:
        raise ValueError("the point store has no fitted velocities: run "
                         "`cityos subsidence fit` first")
    return np.asarray(fitted["velocity_mm_yr"], dtype=np.float64) * vertical_scale(points, rows)


def cumulative_vertical(points, rows: np.ndarray) -> np.ndarray:
    """Vertical displacement (mm) of ``rows`` at the last epoch relative to the first."""
    from cityos.apps.subsidence.levelling import vertical_scale

    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.array([])
    disp = np.asarray(points.displacement(rows), dtype=np.float64)
    return (disp[:, -1] - disp[:, 0]) * vertical_scale(points, rows)


def chainage_profile(points, asset: LinearAsset, *, buffer_m: float = DEFAULT_BUFFER_M,
                     bin_m: float = DEFAULT_BIN_M,
                     allowed_rows: np.ndarray | None = None) -> ChainageProfile:
    """Bin the points near a linear asset by chainage.

    Parameters
    ----------
    points : PointStore
    asset : LinearAsset
    buffer_m : float
        Largest distance of a point from the line.
    bin_m : float
        Bin width along the line.
    allowed_rows : numpy.ndarray, optional
        Only these rows may be used (a customer's areas of interest).

    Returns
    -------
    ChainageProfile
    """
    if not buffer_m > 0 or not bin_m > 0:
        raise ValueError(f"buffer_m ({buffer_m}) and bin_m ({bin_m}) must be positive")
    centre = asset.line.centroid
    project = to_metric(centre.x, centre.y)
    xs, ys = project.transform(*np.asarray(asset.line.coords).T[:2])
    line_m = LineString(np.column_stack([xs, ys]))
    rows = candidate_rows(points, asset.line, buffer_m)
    if allowed_rows is not None:
        rows = rows[np.isin(rows, allowed_rows)]
    lon = np.asarray(points.lon)[rows]
    lat = np.asarray(points.lat)[rows]
    px, py = project.transform(lon, lat)
    where = shapely.points(px, py)
    offset = shapely.distance(line_m, where) if rows.size else np.array([])
    near = offset <= buffer_m
    rows, where, offset = rows[near], where[near], offset[near]
    chainage = shapely.line_locate_point(line_m, where) if rows.size else np.array([])
    rates = vertical_rates(points, rows)
    cumulative = cumulative_vertical(points, rows)
    n_bins = max(1, math.ceil(line_m.length / bin_m))
    index = np.minimum((chainage // bin_m).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_mean = _bin_mean(index, rates, n_bins)
        cumulative_mean = _bin_mean(index, cumulative, n_bins)
    starts = np.arange(n_bins) * bin_m
    centres = (starts + np.minimum(starts + bin_m, line_m.length)) / 2.0
    return ChainageProfile(asset.asset_id, float(line_m.length), float(bin_m), float(buffer_m),
                           centres, count, rate_mean, cumulative_mean,
                           str(np.asarray(points.dates)[-1])[:10], chainage, offset, rates,
                           rows)


def _bin_mean(index: np.ndarray, values: np.ndarray, n_bins: int) -> np.ndarray:
    good = np.isfinite(values)
    total = np.bincount(index[good], weights=values[good], minlength=n_bins)
    count = np.bincount(index[good], minlength=n_bins)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def profile_figure(profile: ChainageProfile, title: str | None = None):
    """Rate and cumulative displacement along the asset (two stacked panels)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.6), label=f"Profile of {profile.asset_id}")
    top, bottom = fig.subplots(2, 1, sharex=True)
    km = profile.chainage_m / 1000.0
    top.scatter(profile.point_chainage_m / 1000.0, profile.point_rate_mm_yr, s=4, color="0.6",
                label="points")
    top.plot(km, profile.rate_mm_yr, "o-", ms=3, color="#d62828", label=f"{profile.bin_m:g} m bins")
    top.set_ylabel("velocity (mm/yr)")
    top.legend(fontsize=7)
    bottom.plot(km, profile.cumulative_mm, "o-", ms=3, color="#1d3557")
    bottom.set_ylabel(f"to {profile.last_date} (mm)")
    bottom.set_xlabel("chainage (km)")
    for ax in (top, bottom):
        ax.axhline(0, color="0.3", lw=0.6)
        ax.grid(alpha=0.3)
    top.set_title(title or f"{profile.asset_id}: {profile.n_points} points within "
                  f"{profile.buffer_m:g} m", fontsize=9)
    fig.tight_layout()
    return fig
