"""Construction-monitoring settlement markers beside InSAR.

A contractor's survey crew levels settlement markers around a site (a tunnel shaft, an
excavation) and records the settlement of each, positive downward, in mm. Each marker
is matched with the nearest InSAR point within ``max_distance_m``; both series are
shown side by side, as vertical displacement (up positive, so a marker's settlement
``s`` is ``-s``) relative to the marker's first date, with the InSAR series
interpolated to the marker dates for the difference statistics of
:func:`~cityos.apps.subsidence.levelling.difference_stats`.

The markers CSV has a header row and the columns ``marker_id`` (or ``marker``/``id``),
``lon``, ``lat``, ``date`` (``YYYY-MM-DD``) and ``settlement_mm`` (positive downward) or
``displacement_mm`` (vertical, positive upward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cityos.apps.subsidence.assets import to_metric
from cityos.apps.subsidence.levelling import (
    Benchmark,
    DifferenceStats,
    LevellingFormatError,
    difference_stats,
    parse_series_csv,
    vertical_scale,
)

DEFAULT_MAX_DISTANCE_M = 50.0
_ID_NAMES = ("marker_id", "marker", "id")
# settlement is positive downward; a displacement column is vertical, up positive
_VALUES = {"settlement_mm": -1.0, "settlement": -1.0, "displacement_mm": 1.0}


def parse_markers_csv(text: str, source: str = "markers.csv") -> list[Benchmark]:
    """Parse settlement markers; each comes back as vertical displacement (mm, up
    positive) relative to its first date.

    Raises
    ------
    LevellingFormatError
        ``file:line: field: what is wrong``.
    """
    return parse_series_csv(text, source, _ID_NAMES, _VALUES,
                            "settlement_mm (positive down) or displacement_mm (up)")


def read_markers_csv(path: str | Path) -> list[Benchmark]:
    """Read a settlement markers CSV (see the module's description)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LevellingFormatError(f"{path}: cannot read it: {error}") from None
    return parse_markers_csv(text, str(path))


@dataclass
class MarkerMatch:
    """A settlement marker and its nearest InSAR point, series side by side."""

    marker_id: str
    lon: float
    lat: float
    marker_dates: np.ndarray
    marker_mm: np.ndarray
    point_row: int | None
    point_id: str | None
    distance_m: float
    insar_dates: np.ndarray
    insar_mm: np.ndarray
    insar_at_marker_mm: np.ndarray
    stats: DifferenceStats | None

    def to_json(self) -> dict:
        def clean(values):
            return [None if not math.isfinite(v) else round(float(v), 3) for v in values]

        return {"marker": self.marker_id, "lon": self.lon, "lat": self.lat,
                "point": self.point_id,
                "distance_m": None if self.point_row is None else round(self.distance_m, 1),
                "marker_dates": [str(d) for d in self.marker_dates],
                "marker_mm": clean(self.marker_mm),
                "insar_dates": [str(d) for d in self.insar_dates],
                "insar_mm": clean(self.insar_mm),
                "insar_at_marker_mm": clean(self.insar_at_marker_mm),
                "stats": self.stats.to_json() if self.stats else None}


def nearest_point(points, lon: float, lat: float, max_distance_m: float,
                  allowed_rows: np.ndarray | None = None) -> tuple[int | None, float]:
    """The row of the nearest point within ``max_distance_m`` and its distance."""
    rows = np.asarray(points.select_near(lon, lat, max_distance_m), dtype=np.int64)
    if allowed_rows is not None:
        rows = rows[np.isin(rows, allowed_rows)]
    if rows.size == 0:
        return None, float("nan")
    project = to_metric(lon, lat)
    x0, y0 = project.transform(lon, lat)
    x, y = project.transform(np.asarray(points.lon)[rows], np.asarray(points.lat)[rows])
    distance = np.hypot(np.asarray(x) - x0, np.asarray(y) - y0)
    best = int(np.argmin(distance))
    return int(rows[best]), float(distance[best])


def match_markers(points, markers: list[Benchmark], *,
                  max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
                  allowed_rows: np.ndarray | None = None) -> list[MarkerMatch]:
    """Match every marker with its nearest InSAR point and line the series up.

    Parameters
    ----------
    points : PointStore
    markers : list of Benchmark
        From :func:`read_markers_csv`.
    max_distance_m : float
        A marker with no point this close is returned unmatched (``point_row`` None).
    allowed_rows : numpy.ndarray, optional
        Only these rows may be matched.
    """
    insar_dates = np.asarray(points.dates, dtype="datetime64[D]")
    insar_days = insar_dates.astype(np.int64).astype(np.float64)
    ids = np.asarray(points.ids)
    matches = []
    empty = np.array([])
    for marker in markers:
        row, distance = nearest_point(points, marker.lon, marker.lat, max_distance_m,
                                      allowed_rows)
        if row is None:
            matches.append(MarkerMatch(marker.benchmark_id, marker.lon, marker.lat,
                                       marker.dates, marker.displacement_mm, None, None,
                                       distance, insar_dates[:0], empty, empty, None))
            continue
        rows = np.array([row])
        series = np.asarray(points.displacement(rows), dtype=np.float64)[0]
        series = series * vertical_scale(points, rows)[0]
        good = np.isfinite(series)
        marker_days = marker.dates.astype(np.int64).astype(np.float64)
        inside = (marker_days >= insar_days[good].min()) & (marker_days <= insar_days[good].max())
        at_marker = np.full(marker_days.size, np.nan)
        at_marker[inside] = np.interp(marker_days[inside], insar_days[good], series[good])
        # both relative to the marker's first date (the InSAR value there, interpolated)
        base = float(np.interp(marker_days[0], insar_days[good], series[good]))
        series = series - base
        at_marker = at_marker - base
        stats = None
        if inside.sum() >= 2:
            first = int(np.argmax(inside))
            later = inside.copy()
            later[first] = False
            shift = at_marker[first] - marker.displacement_mm[first]
            stats = difference_stats(at_marker[later] - shift,
                                     marker.displacement_mm[later])
        matches.append(MarkerMatch(marker.benchmark_id, marker.lon, marker.lat, marker.dates,
                                   marker.displacement_mm, row,
                                   str(ids[row]), distance,
                                   insar_dates, series, at_marker, stats))
    return matches


def markers_figure(matches: list[MarkerMatch], max_panels: int = 9):
    """One panel per matched marker: the marker's and the InSAR point's series."""
    from matplotlib.figure import Figure

    shown = [m for m in matches if m.point_row is not None][:max_panels]
    cols = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(4.0 * cols, 2.6 * rows), label="Settlement markers and InSAR")
    for k, match in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.plot(match.insar_dates.astype("O"), match.insar_mm, "-", lw=1, color="0.5",
                label=f"InSAR {match.point_id} ({match.distance_m:.0f} m)")
        ax.plot(match.marker_dates.astype("O"), match.marker_mm, "o-", ms=4, color="#d62828",
                label="marker")
        ax.set_title(match.marker_id, fontsize=9)
        ax.set_ylabel("mm")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
