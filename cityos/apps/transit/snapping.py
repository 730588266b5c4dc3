"""Snapping vehicle positions to a trip's shape: distance travelled along the route.

A :class:`ShapeSnapper` projects one shape to its local UTM zone once and keeps the
segments as complex numbers (start point, vector, 1/length²), so snapping a ping is a
handful of NumPy operations over the segments in a search window: a few tens of
microseconds on a shape of hundreds of points.

Progress is monotonic. Given the previous distance along the shape, the search looks
only a window ahead of it (``max_advance_m``, bounded by plausible travel) and a few
metres behind it for GPS jitter, and a result behind the previous distance is clamped
to it. That is what keeps a loop route (first stop == last stop) and a route that
doubles back along the same street on the right part of the shape. Where separate
parts of the shape are about as close to a ping (within ``branch_tie_m`` of the best),
the earliest one wins: a bus is never credited with progress it has not shown. Near
the far end of an out-and-back route, a ping that is as close to the way back just
ahead as to the way out just behind goes with the way back.

Distances are in the frame of ``Shape.dist_m`` (the frame of the stop times'
``shape_dist_m``), interpolated linearly within a segment; offsets are metres in the
UTM projection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import Transformer

from cityos.core.geo import utm_epsg

from .models import Shape

__all__ = ["SnapResult", "ShapeSnapper", "utm_epsg"]


@dataclass(frozen=True, slots=True)
class SnapResult:
    """Where a position lies on a shape.

    Attributes
    ----------
    dist_m : float
        Distance along the shape (``Shape.dist_m`` frame), never behind the previous
        progress when one was given.
    offset_m : float
        Distance from the position to the nearest point of the shape in the search
        window (the perpendicular GPS error; not increased by a jitter clamp).
    lat, lon : float
        The point of the shape at ``dist_m`` (WGS84).
    """

    dist_m: float
    offset_m: float
    lat: float
    lon: float


@lru_cache(maxsize=64)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


class ShapeSnapper:
    """Snap positions to one shape with monotonic progress.

    Parameters
    ----------
    shape : Shape
        The trip's path; at least two finite points. When ``dist_m`` is missing,
        not finite or decreasing, distances are measured on the projected shape.
    max_offset_m : float
        A position further than this from the shape is off route (``snap`` gives None).
    max_advance_m : float
        How far ahead of the previous progress the search window reaches by default.
        A vehicle found nowhere in the window within ``max_offset_m`` (after an
        outage) is searched on the whole rest of the shape.
    jitter_back_m : float
        How far behind the previous progress the window reaches, so that GPS jitter
        backwards is measured perpendicular to the shape and then clamped.
    branch_tie_m : float
        Separate parts of the shape within this of the best offset are as good as the
        best: the earliest of them wins.
    branch_separation_m : float
        Close parts of the shape less than this apart along it are one branch
        (:meth:`branches`).

    Raises
    ------
    ValueError
        When the shape has fewer than two points or non-finite coordinates.
    """

    def __init__(self, shape: Shape, *, max_offset_m: float = 80.0,
                 max_advance_m: float = 1500.0, jitter_back_m: float = 30.0,
                 branch_tie_m: float = 15.0, branch_separation_m: float = 100.0) -> None:
        lon = np.asarray(shape.lon, dtype=float)
        lat = np.asarray(shape.lat, dtype=float)
        if lon.shape != lat.shape or lon.ndim != 1:
            raise ValueError(f"shape {shape.shape_id}: lon and lat must be 1-D of equal length")
        if len(lon) < 2:
            raise ValueError(f"shape {shape.shape_id}: needs at least 2 points, has {len(lon)}")
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise ValueError(f"shape {shape.shape_id}: lon/lat must be finite")
        self.shape_id = shape.shape_id
        self.max_offset_m = float(max_offset_m)
        self.max_advance_m = float(max_advance_m)
        self.jitter_back_m = float(jitter_back_m)
        self.branch_tie_m = float(branch_tie_m)
        self.branch_separation_m = float(branch_separation_m)

        self.epsg = utm_epsg(float(lon.mean()), float(lat.mean()))
        self._to_xy = _to_utm(self.epsg)
        x, y = self._to_xy.transform(lon, lat)
        z = np.asarray(x, dtype=float) + 1j * np.asarray(y, dtype=float)
        seg = np.diff(z)
        len2 = seg.real ** 2 + seg.imag ** 2
        self._a = z[:-1]  # segment starts
        self._v = seg  # segment vectors
        self._vconj = np.conj(seg)
        self._inv_len2 = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)

        dist = np.asarray(shape.dist_m, dtype=float) if shape.dist_m is not None else None
        if (dist is None or dist.shape != lon.shape or not np.isfinite(dist).all()
                or (np.diff(dist) < 0).any() or dist[-1] <= dist[0]):
            dist = np.concatenate([[0.0], np.cumsum(np.sqrt(len2))])
        self._dist = dist
        self._d0 = dist[:-1]
        self._dd = np.diff(dist)
        self._dist_end = dist[1:]
        self._lat = lat
        self._lon = lon
        self.start_m = float(dist[0])
        self.length_m = float(dist[-1])
        self.n_segments = len(seg)

    # ------------------------------------------------------------------ geometry
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(min_lat, min_lon, max_lat, max_lon)`` of the shape."""
        return (float(self._lat.min()), float(self._lon.min()),
                float(self._lat.max()), float(self._lon.max()))

    def project(self, lat: float | np.ndarray, lon: float | np.ndarray) -> complex | np.ndarray:
        """UTM position(s) as complex ``x + iy`` metres."""
        x, y = self._to_xy.transform(lon, lat)
        if np.ndim(x) == 0:
            return complex(x, y)
        return np.asarray(x, dtype=float) + 1j * np.asarray(y, dtype=float)

    def point_at(self, dist_m: float) -> tuple[float, float]:
        """``(lat, lon)`` of the shape at ``dist_m`` (clamped to the shape)."""
        d = min(max(float(dist_m), self.start_m), self.length_m)
        return (float(np.interp(d, self._dist, self._lat)),
                float(np.interp(d, self._dist, self._lon)))

    def _window(self, lo: float, hi: float) -> tuple[int, int]:
        """Segments ``[i0, i1)`` overlapping ``[lo, hi]`` metres along the shape."""
        i0 = int(self._dist_end.searchsorted(lo, "left"))
        i1 = int(self._dist.searchsorted(hi, "right"))
        return min(i0, self.n_segments), min(max(i1, 0), self.n_segments)

    def _nearest(self, z: complex, i0: int, i1: int,
                 limit: float = math.inf) -> tuple[int, float, float] | None:
        """Nearest point to ``z`` on segments ``[i0, i1)``: (segment, fraction, offset);
        the earliest of separate parts about as close (and within ``limit``)."""
        if i1 <= i0:
            return None
        p = z - self._a[i0:i1]
        t = (p * self._vconj[i0:i1]).real
        t *= self._inv_len2[i0:i1]
        np.maximum(t, 0.0, out=t)  # ufuncs: cheaper than np.clip on short arrays
        np.minimum(t, 1.0, out=t)
        off = np.abs(p - t * self._v[i0:i1])
        k = int(off.argmin())
        # prefer the earliest of separate, about as close parts of the shape (a loop's
        # start, the outbound leg of an out-and-back)
        tie = off[k] + self.branch_tie_m
        near = (off <= (min(tie, limit) if off[k] <= limit else tie)).nonzero()[0]
        if near[0] != k:
            # the first local minimum of the offset along the shape among them
            last = len(off) - 1
            before = off[near - 1]
            if near[0] == 0:
                before[0] = math.inf
            after = off[np.minimum(near + 1, last)]
            if near[-1] == last:
                after[-1] = math.inf
            here = off[near] - 0.01  # centimetres: float noise, not geography
            k = int(near[((here <= before) & (here <= after)).nonzero()[0][0]])
        best = float(off[k])
        return i0 + k, float(t[k]), best

    def _nearest_ahead(self, z: complex, floor: float,
                       reach: float) -> tuple[int, float, float] | None:
        """Nearest point to ``z`` at or after ``floor`` and at most ``reach`` beyond it."""
        i0, i1 = self._window(floor, floor + reach)
        if i1 <= i0:
            return None
        p = z - self._a[i0:i1]
        t = (p * self._vconj[i0:i1]).real
        t *= self._inv_len2[i0:i1]
        np.maximum(t, 0.0, out=t)  # ufuncs: cheaper than np.clip on short arrays
        np.minimum(t, 1.0, out=t)
        if self._dd[i0] > 0:  # the first segment only from the floor on
            t[0] = max(t[0], min(1.0, (floor - self._d0[i0]) / self._dd[i0]))
        off = np.abs(p - t * self._v[i0:i1])
        k = int(off.argmin())
        return i0 + k, float(t[k]), float(off[k])

    def _result(self, seg: int, frac: float, offset: float,
                previous_dist_m: float | None) -> SnapResult:
        dist = float(self._d0[seg] + frac * self._dd[seg])
        if previous_dist_m is not None and dist < previous_dist_m:
            lat, lon = self.point_at(previous_dist_m)
            return SnapResult(float(previous_dist_m), offset, lat, lon)
        lat = float(self._lat[seg] + frac * (self._lat[seg + 1] - self._lat[seg]))
        lon = float(self._lon[seg] + frac * (self._lon[seg + 1] - self._lon[seg]))
        return SnapResult(dist, offset, lat, lon)

    # ------------------------------------------------------------------ snapping
    def snap_xy(self, z: complex, previous_dist_m: float | None = None,
                max_offset_m: float | None = None,
                max_advance_m: float | None = None) -> SnapResult | None:
        """:meth:`snap` for a position already projected with :meth:`project`."""
        limit = self.max_offset_m if max_offset_m is None else max_offset_m
        if previous_dist_m is None:
            found = self._nearest(z, 0, self.n_segments, limit)
        else:
            previous_dist_m = min(max(float(previous_dist_m), self.start_m), self.length_m)
            ahead = self.max_advance_m if max_advance_m is None else max_advance_m
            back = previous_dist_m - self.jitter_back_m
            found = self._nearest(z, *self._window(back, previous_dist_m + ahead), limit)
            if found is None or found[2] > limit:
                # not in the window (an outage, a detour rejoining): the rest of the route
                found = self._nearest(z, *self._window(back, math.inf), limit)
            if found is not None and self._d0[found[0]] + found[1] * self._dd[found[0]] \
                    < previous_dist_m:
                # behind the progress: jitter (clamp), unless the shape comes back here
                # just ahead, as at the far end of an out-and-back route
                turn = self._nearest_ahead(z, previous_dist_m,
                                           2 * self.jitter_back_m + self.branch_tie_m)
                if turn is not None and turn[2] <= min(found[2] + self.branch_tie_m, limit) and \
                        self._d0[turn[0]] + turn[1] * self._dd[turn[0]] > previous_dist_m + 1e-6:
                    found = turn
        if found is None or found[2] > limit:
            return None
        return self._result(*found, previous_dist_m)

    def snap(self, lat: float, lon: float, previous_dist_m: float | None = None,
             max_offset_m: float | None = None,
             max_advance_m: float | None = None) -> SnapResult | None:
        """Snap one position to the shape.

        Parameters
        ----------
        lat, lon : float
            The vehicle's WGS84 position.
        previous_dist_m : float, optional
            The vehicle's progress so far on this shape. Without it the whole shape is
            searched (earliest of equally close parts); with it only a window from
            ``jitter_back_m`` behind to ``max_advance_m`` ahead, then the rest of the
            shape ahead, and the result never goes back.
        max_offset_m : float, optional
            Off-route limit (default: the snapper's).
        max_advance_m : float, optional
            Plausible travel since the previous position, e.g. elapsed seconds times a
            top speed (default: the snapper's).

        Returns
        -------
        SnapResult or None
            None when the position is further than ``max_offset_m`` from every part of
            the shape searched (off route: keep the previous progress).
        """
        return self.snap_xy(self.project(lat, lon), previous_dist_m, max_offset_m,
                            max_advance_m)

    def branches(self, lat: float, lon: float,
                 max_offset_m: float | None = None) -> list[SnapResult]:
        """Every distinct part of the shape passing near a position.

        A loop's start and end, or the two legs of an out-and-back route, are separate
        branches when they lie more than ``branch_separation_m`` apart along the shape.

        Returns
        -------
        list of SnapResult
            One per branch within ``max_offset_m``, in order along the shape.
        """
        return self._branches_xy(self.project(lat, lon), max_offset_m)

    def _branches_xy(self, z: complex, max_offset_m: float | None) -> list[SnapResult]:
        limit = self.max_offset_m if max_offset_m is None else max_offset_m
        p = z - self._a
        t = (p * self._vconj).real * self._inv_len2
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
        off = np.abs(p - t * self._v)
        # local minima of the offset along the shape, within the limit
        padded = np.concatenate([[np.inf], off, [np.inf]])
        low = off - 0.01  # centimetres: float noise, not geography
        minima = ((low <= padded[:-2]) & (low <= padded[2:]) & (off <= limit)).nonzero()[0]
        found: list[tuple[int, float, float, float]] = []  # seg, frac, offset, dist
        for k in minima:
            dist = float(self._d0[k] + t[k] * self._dd[k])
            if found and dist - found[-1][3] <= self.branch_separation_m:
                if off[k] < found[-1][2]:
                    found[-1] = (int(k), float(t[k]), float(off[k]), dist)
                continue
            found.append((int(k), float(t[k]), float(off[k]), dist))
        return [self._result(seg, frac, offset, None) for seg, frac, offset, _ in found]

    def snap_track(self, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray,
                   max_advance_m: float | Sequence[float] | np.ndarray | None = None,
                   max_offset_m: float | None = None,
                   restart: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Snap a time-ordered run of positions with monotonic progress, choosing the
        branch to start from that fits the whole run best (least total offset plus
        progress unexplained by the distance moved; a later branch must beat an earlier
        one by ``branch_tie_m``).

        Parameters
        ----------
        lats, lons : array-like
            Positions in time order.
        max_advance_m : float or array-like, optional
            Plausible travel before each position (element ``i`` bounds the step from
            ``i - 1`` to ``i``; element 0 is unused).
        max_offset_m : float, optional
            Off-route limit.
        restart : bool
            When a position is off route, start again from it and drop what came
            before (the run began on another trip); otherwise carry on from the last
            position on route.

        Returns
        -------
        dist_m, offset_m : ndarray
            Progress and offset per position; NaN where the position was off route
            (or, with ``restart``, before the last restart).
        """
        lats = np.asarray(lats, dtype=float)
        lons = np.asarray(lons, dtype=float)
        n = len(lats)
        dist = np.full(n, np.nan)
        offset = np.full(n, np.nan)
        if n == 0:
            return dist, offset
        limit = self.max_offset_m if max_offset_m is None else max_offset_m
        zs = np.atleast_1d(self.project(lats, lons))
        if max_advance_m is None or np.ndim(max_advance_m) == 0:
            advance = [max_advance_m] * n
        else:
            advance = [float(a) for a in max_advance_m]
        begin = 0
        while begin < n:
            d, o = self._track(zs, advance, limit, begin)
            dist[begin:], offset[begin:] = d[begin:], o[begin:]
            if not restart:
                break
            found = np.flatnonzero(np.isfinite(o[begin:]))
            if not len(found):
                break
            lost = np.flatnonzero(np.isnan(o[begin + found[0]:]))
            if not len(lost):
                break
            begin += int(found[0] + lost[0])
            dist[:begin] = np.nan
            offset[:begin] = np.nan
        return dist, offset

    def _track(self, zs: np.ndarray, advance: list, limit: float,
               begin: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(zs)
        dist = np.full(n, np.nan)
        offset = np.full(n, np.nan)
        first, starts = begin, []
        while first < n:
            starts = self._branches_xy(complex(zs[first]), limit)
            if starts:
                break
            first += 1
        best_cost = math.inf
        for start in starts:
            d = np.full(n, np.nan)
            o = np.full(n, np.nan)
            d[first], o[first] = start.dist_m, start.offset_m
            progress, cost, last = start.dist_m, start.offset_m, zs[first]
            for i in range(first + 1, n):
                found = self.snap_xy(complex(zs[i]), progress, limit, advance[i])
                if found is None:
                    cost += 2 * limit
                    continue
                d[i], o[i] = found.dist_m, found.offset_m
                # progress far beyond the distance moved: the start was the wrong branch
                cost += found.offset_m + max(0.0, found.dist_m - progress
                                             - 2 * abs(zs[i] - last) - 2 * limit)
                progress, last = found.dist_m, zs[i]
            # a later branch must fit clearly better: a bus standing at a loop's
            # terminal is at its start, not at its end
            if cost < best_cost - self.branch_tie_m:
                best_cost, dist, offset = cost, d, o
        return dist, offset
