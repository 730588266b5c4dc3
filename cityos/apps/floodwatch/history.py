"""Stored readings as time series: what calibration, evaluation and reports read.

Readings live in the store's attribute history (every ``depth`` and ``precipitation``
a device sent, with its ``observedAt``). :func:`series` turns one attribute of one
entity into numpy arrays; :func:`site_record` gathers a site's depth, its gauge's rain
and the traffic counts near it for the event report.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cityos.apps.floodwatch.models import Site

if TYPE_CHECKING:  # the report pulls in Matplotlib: only the report path imports it
    from cityos.apps.floodwatch.report import SiteRecord

TRAFFIC_TYPE = "TrafficFlowObserved"
TRAFFIC_RADIUS_M = 300.0  # counts this close to a sensor are its road's traffic


def series(store, tenant: str, entity_id: str, attribute: str, *,
           start_t: float | None = None, end_t: float | None = None,
           usable_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The numeric history of one attribute: ``(t, value)`` sorted by time.

    Parameters
    ----------
    store : ContextStore
    tenant, entity_id, attribute : str
    start_t, end_t : float, optional
        POSIX seconds, ``start_t <= t < end_t``.
    usable_only : bool
        Leave out readings the quality checks marked unusable (``<attribute>Quality``
        with a flag that makes the reading unusable; see
        :mod:`cityos.apps.floodwatch.service`).

    Returns
    -------
    tuple of numpy.ndarray
        Times (POSIX seconds) and values; a non-numeric instance is left out.
    """
    start_us = None if start_t is None else int(start_t * 1e6)
    end_us = None if end_t is None else int(end_t * 1e6)
    wanted = [attribute, f"{attribute}Usable"] if usable_only else [attribute]
    rows = store.history(tenant, entity_id, wanted, start_us, end_us, None)
    values: dict[int, float] = {}
    unusable: set[int] = set()
    for row in rows:
        if row.attribute == attribute:
            value = row.number if row.number is not None else row.instance.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
                    value):
                values[row.observed_us] = float(value)
        elif row.instance.get("value") is False:
            unusable.add(row.observed_us)
    stamps = sorted(k for k in values if k not in unusable)
    return (np.array(stamps, dtype=float) / 1e6, np.array([values[k] for k in stamps]))


def _near(store, tenant: str, lon: float, lat: float, radius_m: float) -> list[str]:
    d_lat = radius_m / 111_320.0
    d_lon = d_lat / max(math.cos(math.radians(lat)), 0.01)
    found = []
    for record in store.scan(tenant, types=[TRAFFIC_TYPE],
                             bbox=(lon - d_lon, lat - d_lat, lon + d_lon, lat + d_lat)):
        found.append(record.entity["id"])
    return found


def site_record(store, tenant: str, site: Site, *, start_t: float | None = None,
                end_t: float | None = None,
                traffic_radius_m: float = TRAFFIC_RADIUS_M) -> SiteRecord:
    """A site's depth, its gauge's rain and nearby traffic counts for the report.

    Traffic is the ``intensity`` (vehicles per reporting period) of the
    ``TrafficFlowObserved`` entities within ``traffic_radius_m`` of the sensor,
    summed per instant.
    """
    from cityos.apps.floodwatch.report import SiteRecord

    depth_t, depth = series(store, tenant, site.site_id, "depth", start_t=start_t, end_t=end_t,
                            usable_only=True)
    if site.gauge_id:
        rain_t, rain = series(store, tenant, site.gauge_id, "precipitation", start_t=start_t,
                              end_t=end_t, usable_only=True)
    else:
        rain_t, rain = np.array([]), np.array([])
    traffic_t = traffic = None
    if site.lon is not None and site.lat is not None:
        totals: dict[float, float] = {}
        for counter in _near(store, tenant, site.lon, site.lat, traffic_radius_m):
            t, v = series(store, tenant, counter, "intensity", start_t=start_t, end_t=end_t)
            for when, count in zip(t.tolist(), v.tolist(), strict=True):
                totals[when] = totals.get(when, 0.0) + count
        if totals:
            stamps = sorted(totals)
            traffic_t = np.array(stamps)
            traffic = np.array([totals[s] for s in stamps])
    return SiteRecord(site.site_id, site.name, rain_t, rain, depth_t, depth,
                      traffic_t, traffic)


def sites_of(store, tenant: str) -> list[Site]:
    """Every flood-depth site of the tenant (``WaterObserved`` entities)."""
    return [Site.from_entity(record.entity)
            for record in store.scan(tenant, types=["WaterObserved"])]



def on_grid(depth_t: np.ndarray, depth_cm: np.ndarray, rain_t: np.ndarray,
            rain_mm: np.ndarray, grid_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth and rain on a regular time grid, as the nowcast models take them.

    Depth is interpolated linearly between readings. Rain gauge readings are the
    millimetres since the gauge's previous reading: they are accumulated on the
    gauge's own clock and differenced on the grid, so each step gets the rain that
    fell in it (spread evenly over each gauge interval) and the total is kept.

    Parameters
    ----------
    depth_t, depth_cm : numpy.ndarray
        Depth readings (at least one), sorted.
    rain_t, rain_mm : numpy.ndarray
        Gauge readings, sorted (may be empty: no rain known).
    grid_t : numpy.ndarray
        Regular, increasing grid times.

    Returns
    -------
    tuple of numpy.ndarray
        ``(rain_mm, depth_cm)`` per grid step; the rain of step ``i`` is what fell
        between ``grid_t[i-1]`` and ``grid_t[i]``.
    """
    depth = np.interp(grid_t, depth_t, depth_cm)
    rain = np.zeros(len(grid_t))
    if len(rain_t):
        first_interval = rain_t[1] - rain_t[0] if len(rain_t) > 1 else (
            grid_t[1] - grid_t[0] if len(grid_t) > 1 else 60.0)
        clock = np.concatenate([[rain_t[0] - first_interval], rain_t])
        cumulative = np.concatenate([[0.0], np.cumsum(rain_mm)])
        step = grid_t[1] - grid_t[0] if len(grid_t) > 1 else first_interval
        edges = np.concatenate([[grid_t[0] - step], grid_t])
        rain = np.maximum(np.diff(np.interp(edges, clock, cumulative, left=0.0,
                                            right=cumulative[-1])), 0.0)
    return rain, depth
