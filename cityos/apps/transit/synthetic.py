"""The demo city's buses: a GTFS feed of its network, and a simulated service day.

:func:`demo_feed` lays five bus routes on the avenues and the ring road that
:mod:`cityos.web.basemap` draws: three two-way routes, a two-way downtown connector
sharing stops with them, and the Ring Road loop (one way, clockwise). Stops sit every
~445 m, mid-block, on the kerb side of the road (traffic keeps left, as in Malaysia),
so the two directions of a road have their own stops and two routes running the same
way along one avenue share theirs. Timetables run every 6-15 minutes from 06:00 to
23:00 on weekday and weekend calendars, scheduled at 20 km/h in the peaks and 25 km/h
off-peak with 20-25 s dwells; each vehicle's day is a block of trips chained at the
termini. :func:`write_gtfs` writes a feed as a GTFS zip.

:func:`simulate_day` plays one service day of any feed and returns what really
happened (an :class:`~cityos.apps.transit.models.ObservedArrival` per stop of every
trip) and what the vehicles' devices reported (noisy :class:`Ping` s), deterministic
for a seed:

- segment running time = free-flow time x time-of-day congestion x noise: a factor of
  1.6-2.2 in the peaks (07-09, 17-19) on some downtown segments in the ``"congested"``
  scenario (1.15 elsewhere and in ``"normal"``), a lognormal factor per vehicle and
  day, and lognormal noise autocorrelated along the trip;
- dwell = 8 s + 3 s per passenger; boardings are Poisson with the time elapsed since
  the previous bus of the route and direction left the stop, so a late bus picks up
  more people and falls further behind while its follower catches up (bunching);
- a vehicle runs its block's trips in turn: a late arrival delays its next trip by
  whatever the layover cannot absorb;
- pings every 10-20 s interpolated along the shape with GPS noise (sigma 8 m),
  speed, bearing, trip and driver ids, occupancy; door and passenger-count reports at
  stops; a few outages of several minutes per vehicle, ~1 % duplicated and ~1 %
  late-delivered pings (:attr:`DayTrace.pings` is in delivery order).

Real feeds leave times out, and the simulator fills them in before it plays a trip:

- times missing between timed stops are interpolated by metres along the shape; stops
  before the first or after the last timed one are reached at the pace of the timed
  part (:data:`UNTIMED_SPEED_KMH` when it has none);
- a trip with no times at all (every Transjakarta trip) gets a synthetic timetable:
  :data:`UNTIMED_SPEED_KMH` along its shape with :data:`UNTIMED_DWELL_S` dwells, and,
  unless ``frequencies.txt`` runs it, a departure every :data:`UNTIMED_HEADWAY_S` from
  06:00 to 22:00, staggered per trip so the routes do not all leave at once;
- a trip with fewer than two stops, or with stops that have no place along its path,
  cannot be driven and is skipped, counted by reason in
  :attr:`SimulatedDay.skipped_trips`.

How the pings reveal harsh braking
----------------------------------
Like most bus telematics units, the simulated devices keep a 1 Hz buffer of speed
and, when the bus brakes into a stop, send 1 Hz samples from one second before the
braking starts until a second after it stands still. The deceleration is therefore
the drop in ``speed_mps`` between consecutive pings about one second apart. One
driver (:func:`harsh_driver_id`) brakes at 0.55-0.65 g: wherever the approach speed
is above ~4.5 m/s (most off-peak stops) their 1 Hz series drops by more than
0.45 g x 9.81 m/s^2 within one second, while every other driver brakes at 0.09-0.15 g.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
from pyproj import Geod, Transformer

from cityos.appkit.demo import CITY_CENTRE
from cityos.apps.transit.models import (
    Agency,
    DayTrace,
    Feed,
    ObservedArrival,
    Ping,
    Route,
    ServiceCalendar,
    Shape,
    Stop,
    StopTimes,
    Trip,
    service_day_origin,
)

# ============================================================== the demo network
TIMEZONE = "Asia/Kuala_Lumpur"
AGENCY_ID = "DCB"
G_MPS2 = 9.80665
_GEOD = Geod(ellps="WGS84")
_M_PER_DEG = 111_320.0
MILLI_DEG = 0.001

#: Stops on a straight road sit where the along-road offset is 1 (mod 4) milli-degrees
#: from the city centre: mid-block, ~445 m apart, the same places for every route.
STOP_GRID_MILLI = 4
STOP_GRID_PHASE_MILLI = 1
KERB_OFFSET_M = 8.0
RING_RADIUS_DEG = 0.021
RING_STOPS = 32
MIN_LAYOVER_S = 240  # scheduled turn-round at a terminus
SERVICE_START_S = 6 * 3600
SERVICE_END_S = 23 * 3600
FEED_START, FEED_END = date(2024, 1, 1), date(2030, 12, 31)
#: Public holidays run the weekend timetable (National Day, Malaysia Day).
HOLIDAYS = ((8, 31), (9, 16))


@dataclass(frozen=True)
class RouteDesign:
    """One route of the demo network.

    ``corners`` are (east, north) offsets from :data:`cityos.appkit.demo.CITY_CENTRE` in
    milli-degrees, along the basemap's avenues; empty for the Ring Road loop.
    ``headway_min`` is (weekday peak, weekday off-peak, evening, weekend).
    """

    route_id: str
    color: str
    corners: tuple[tuple[int, int], ...]
    headway_min: tuple[int, int, int, int]

    @property
    def is_loop(self) -> bool:
        return not self.corners


DEMO_ROUTES = (
    RouteDesign("1", "D32F2F", ((-23, 0), (21, 0)), (6, 10, 15, 12)),
    RouteDesign("2", "1976D2", ((6, -19), (6, 17)), (8, 12, 15, 15)),
    RouteDesign("3", "388E3C", ((-19, -12), (12, -12), (12, 17)), (8, 12, 15, 15)),
    RouteDesign("4", "F57C00", ((-11, 0), (12, 0), (12, 17)), (10, 15, 15, 15)),
    RouteDesign("R", "7B1FA2", (), (10, 12, 15, 15)),
)


def _street_name(axis: str, offset_milli: int) -> str:
    # basemap numbering: lines every 0.002 deg from -0.030, Jalan run north-south
    index = round((offset_milli + 30) / 2) + 1
    return f"{'Jalan' if axis == 'V' else 'Lorong'} {index}"


def _cross_street(axis: str, along_milli: int, sign: int) -> str:
    """The street a stop is named after: the crossing just passed (streets every 2
    milli-degrees downtown, avenues every 6 outside)."""
    cross_axis = "H" if axis == "V" else "V"
    behind = along_milli - sign
    if abs(behind) > 20:  # no minor streets out there: the nearest avenue
        behind = 6 * round(along_milli / 6)
    return _street_name(cross_axis, behind)


@dataclass
class _StopRegistry:
    """Stops by their place on the road, so routes along one road share them."""

    stops: dict[str, Stop] = field(default_factory=dict)
    by_key: dict[tuple, str] = field(default_factory=dict)

    def stop(self, key: tuple, name: str, lon: float, lat: float,
             direction: tuple[float, float]) -> str:
        if key in self.by_key:
            return self.by_key[key]
        east, north = direction  # unit vector of travel, metres
        cos_lat = math.cos(math.radians(lat))
        # the kerb is on the left of the direction of travel
        lon += -north * KERB_OFFSET_M / (_M_PER_DEG * cos_lat)
        lat += east * KERB_OFFSET_M / _M_PER_DEG
        stop_id = f"S{len(self.stops) + 1:03d}"
        self.stops[stop_id] = Stop(stop_id, name, round(lat, 6), round(lon, 6),
                                   code=stop_id[1:], wheelchair_boarding=1)
        self.by_key[key] = stop_id
        return stop_id


def _cumulative_m(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Metres along a polyline (geodesic), from 0 at its first point."""
    if len(lon) < 2:
        return np.zeros(len(lon))
    _, _, step = _GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return np.concatenate([[0.0], np.cumsum(step)])


def _straight_pattern(corners: list[tuple[int, int]], registry: _StopRegistry):
    """Shape vertices (every milli-degree) and stops of a route along straight roads."""
    lon0, lat0 = CITY_CENTRE
    points: list[tuple[int, int]] = []
    stop_at: dict[int, str] = {}  # vertex index -> stop id
    legs = list(zip(corners, corners[1:], strict=False))
    for leg_number, ((x0, y0), (x1, y1)) in enumerate(legs):
        axis = "H" if y0 == y1 else "V"
        start, end = (x0, x1) if axis == "H" else (y0, y1)
        sign = 1 if end > start else -1
        line = y0 if axis == "H" else x0
        first = leg_number == 0
        last = leg_number == len(legs) - 1
        for along in range(start, end + sign, sign):
            if points and not first and along == start:
                continue  # the corner is already the last vertex of the previous leg
            points.append((along, line) if axis == "H" else (line, along))
            on_grid = along % STOP_GRID_MILLI == STOP_GRID_PHASE_MILLI
            at_corner = (along == start and not first) or (along == end and not last)
            if on_grid and not at_corner:
                x, y = points[-1]
                road = _street_name("V" if axis == "V" else "H", line)
                name = f"{road} / {_cross_street(axis, along, sign)}"
                direction = (sign, 0.0) if axis == "H" else (0.0, sign)
                stop_at[len(points) - 1] = registry.stop(
                    (axis, line, along, sign), name, lon0 + x * MILLI_DEG,
                    lat0 + y * MILLI_DEG, direction)
    lon = np.round(np.array([lon0 + x * MILLI_DEG for x, _ in points]), 6)
    lat = np.round(np.array([lat0 + y * MILLI_DEG for _, y in points]), 6)
    return lon, lat, stop_at


def _ring_pattern(registry: _StopRegistry):
    """The Ring Road loop (clockwise from its east end) with evenly spaced stops; the
    first stop closes the loop again as the last."""
    from shapely.geometry import Point

    lon0, lat0 = CITY_CENTRE
    ring = np.array(Point(lon0, lat0).buffer(RING_RADIUS_DEG, 32).exterior.coords)
    dist = _cumulative_m(ring[:, 0], ring[:, 1])
    targets = np.arange(RING_STOPS) * dist[-1] / RING_STOPS
    vertices = [tuple(p) for p in ring]
    inserted: list[tuple[float, tuple[float, float], int | None]] = [
        (d, p, None) for d, p in zip(dist, vertices, strict=True)]
    for k, target in enumerate(targets):
        i = int(np.searchsorted(dist, target, side="right") - 1)
        share = (target - dist[i]) / (dist[i + 1] - dist[i])
        point = (ring[i, 0] + share * (ring[i + 1, 0] - ring[i, 0]),
                 ring[i, 1] + share * (ring[i + 1, 1] - ring[i, 1]))
        inserted.append((target + 1e-9, point, k))
    inserted.sort(key=lambda item: item[0])
    lon, lat, stop_at = [], [], {}
    for _, (x, y), k in inserted:
        if lon and abs(x - lon[-1]) < 1e-7 and abs(y - lat[-1]) < 1e-7:
            if k is not None:
                stop_at[len(lon) - 1] = k
            continue
        lon.append(x)
        lat.append(y)
        if k is not None:
            stop_at[len(lon) - 1] = k
    lon, lat = np.round(np.array(lon), 6), np.round(np.array(lat), 6)
    # rounding may make a stop's point and a neighbouring vertex one: keep one of them
    kept = np.concatenate([[True], (np.diff(lon) != 0) | (np.diff(lat) != 0)])
    new_index = np.cumsum(kept) - 1
    stop_at = {int(new_index[i]): k for i, k in stop_at.items()}
    lon, lat = lon[kept], lat[kept]
    stops: dict[int, str] = {}
    for index, k in stop_at.items():
        nxt = min(index + 1, len(lon) - 1)
        prv = max(index - 1, 0)
        azimuth = _GEOD.inv(lon[prv], lat[prv], lon[nxt], lat[nxt])[0]
        direction = (math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth)))
        dx, dy = (lon[index] - lon0) / MILLI_DEG, (lat[index] - lat0) / MILLI_DEG
        # named after the nearest avenue crossing the ring
        near_v, near_h = 6 * round(dx / 6), 6 * round(dy / 6)
        cross = (_street_name("V", near_v) if abs(dx - near_v) < abs(dy - near_h)
                 else _street_name("H", near_h))
        stops[index] = registry.stop(("ring", k), f"Ring Road / {cross}", lon[index],
                                     lat[index], direction)
    closing = len(lon) - 1  # the loop's last vertex is its first point again
    stops[closing] = stops[0]
    return lon, lat, stops


def _long_name(design: RouteDesign, stop_names: list[str]) -> str:
    """``<first cross street> - <last cross street> via <roads>``."""
    roads = []
    for (x0, y0), (x1, _) in zip(design.corners, design.corners[1:], strict=False):
        road = _street_name("H", y0) if x0 != x1 else _street_name("V", x0)
        roads.append(road)
    first, last = (name.split(" / ")[-1] for name in (stop_names[0], stop_names[-1]))
    return f"{first} - {last} via {', '.join(roads)}"


def _is_peak(t_s: float, weekend: bool) -> bool:
    hour = t_s / 3600.0
    return not weekend and (7.0 <= hour < 9.5 or 16.5 <= hour < 19.5)


def _scheduled_speed_mps(t_s: float, weekend: bool) -> float:
    return (20.0 if _is_peak(t_s, weekend) else 25.0) / 3.6


def _scheduled_dwell_s(t_s: float, weekend: bool) -> int:
    return 25 if _is_peak(t_s, weekend) else 20


def _headway_s(design: RouteDesign, t_s: float, weekend: bool) -> int:
    peak, off_peak, evening, weekend_headway = design.headway_min
    hour = t_s / 3600.0
    if hour >= 20.0:
        minutes = evening
    elif weekend:
        minutes = weekend_headway
    elif 7.0 <= hour < 9.0 or 17.0 <= hour < 19.0:
        minutes = peak
    else:
        minutes = off_peak
    return minutes * 60


def _timetable(dist_m: np.ndarray, start_s: int, weekend: bool) -> tuple[list, list]:
    arrival, departure = [start_s], [start_s]
    t = float(start_s)
    for j in range(1, len(dist_m)):
        t += (dist_m[j] - dist_m[j - 1]) / _scheduled_speed_mps(t, weekend)
        arrive = int(round(t))
        dwell = 0 if j == len(dist_m) - 1 else _scheduled_dwell_s(arrive, weekend)
        arrival.append(arrive)
        departure.append(arrive + dwell)
        t = arrive + dwell
    return arrival, departure


def _chain_blocks(route_id: str, runs: list[tuple[str, str, str, int, int]]) -> dict:
    """Vehicle blocks of one route and service: each departure takes the vehicle that
    has waited longest at its terminus (after the minimum layover), else a new one.

    ``runs`` are ``(trip_id, from_terminus, to_terminus, start_s, end_s)``.
    """
    waiting: dict[str, list[tuple[int, int]]] = {}
    blocks: dict[str, str] = {}
    count = 0
    for trip_id, origin, destination, start, end in sorted(runs, key=lambda r: (r[3], r[0])):
        queue = waiting.setdefault(origin, [])
        ready = [item for item in queue if item[0] <= start]
        if ready:
            chosen = min(ready)
            queue.remove(chosen)
            number = chosen[1]
        else:
            count += 1
            number = count
        blocks[trip_id] = f"{route_id}-{number:02d}"
        waiting.setdefault(destination, []).append((end + MIN_LAYOVER_S, number))
    return blocks


def _holiday_dates() -> set[date]:
    return {date(year, month, day) for year in range(FEED_START.year, FEED_END.year + 1)
            for month, day in HOLIDAYS}


def demo_feed(seed: int = 0) -> Feed:
    """The demo city's bus network as a GTFS feed (deterministic).

    Parameters
    ----------
    seed : int
        Shifts each route's first departure by a whole number of minutes (0-4);
        the network itself is always the same.

    Returns
    -------
    Feed
        Agency ``DCB`` in Asia/Kuala_Lumpur, five routes (``1``-``4`` both ways,
        ``R`` the Ring Road loop), ~110 stops, weekday (``WD``) and weekend (``WE``)
        services, blocks, shapes, ``shape_dist_m`` in metres.
    """
    rng = np.random.default_rng(seed)
    registry = _StopRegistry()
    agency = Agency(AGENCY_ID, "Demo City Bus", "https://transit.demo-city.example",
                    TIMEZONE, lang="ms", phone="+60 3-0000 0000")
    routes: dict[str, Route] = {}
    shapes: dict[str, Shape] = {}
    patterns: dict[tuple[str, int], tuple[str, list[str], np.ndarray]] = {}
    for design in DEMO_ROUTES:
        directions = [0] if design.is_loop else [0, 1]
        for direction in directions:
            if design.is_loop:
                lon, lat, stop_at = _ring_pattern(registry)
            else:
                corners = list(design.corners) if direction == 0 else list(design.corners[::-1])
                lon, lat, stop_at = _straight_pattern(corners, registry)
            dist = np.round(_cumulative_m(lon, lat), 2)
            shape_id = f"{design.route_id}-{direction}"
            shapes[shape_id] = Shape(shape_id, lon, lat, dist)
            order = sorted(stop_at)
            patterns[(design.route_id, direction)] = (
                shape_id, [stop_at[i] for i in order], dist[order])
        long_name = "Ring Road Loop" if design.is_loop else _long_name(
            design, [registry.stops[s].name for s in patterns[(design.route_id, 0)][1]])
        routes[design.route_id] = Route(design.route_id, design.route_id, long_name, 3,
                                        AGENCY_ID, design.color, "FFFFFF")
    holidays = _holiday_dates()
    calendars = {
        "WD": ServiceCalendar("WD", (True,) * 5 + (False,) * 2, FEED_START, FEED_END,
                              removed={d for d in holidays if d.weekday() < 5}),
        "WE": ServiceCalendar("WE", (False,) * 5 + (True,) * 2, FEED_START, FEED_END,
                              added={d for d in holidays if d.weekday() < 5}),
    }
    trips: dict[str, Trip] = {}
    times: dict[str, tuple[list[str], list, list, np.ndarray]] = {}
    for design in DEMO_ROUTES:
        offset_s = 60 * int(rng.integers(0, 5))
        for service_id, weekend in (("WD", False), ("WE", True)):
            runs = []
            for direction in ([0] if design.is_loop else [0, 1]):
                shape_id, stop_ids, dist = patterns[(design.route_id, direction)]
                headsign = routes[design.route_id].long_name if design.is_loop else \
                    registry.stops[stop_ids[-1]].name
                start = SERVICE_START_S + offset_s
                while start <= SERVICE_END_S:
                    trip_id = (f"{design.route_id}-{service_id}-{direction}-"
                               f"{start // 3600:02d}{start // 60 % 60:02d}")
                    arrival, departure = _timetable(dist, start, weekend)
                    trips[trip_id] = Trip(trip_id, design.route_id, service_id, shape_id,
                                          direction, None, headsign)
                    times[trip_id] = (stop_ids, arrival, departure, dist)
                    origin, destination = ("A", "A") if design.is_loop else \
                        (("A", "B") if direction == 0 else ("B", "A"))
                    runs.append((trip_id, origin, destination, start, departure[-1]))
                    start += _headway_s(design, start, weekend)
            for trip_id, block_id in _chain_blocks(design.route_id, runs).items():
                trip = trips[trip_id]
                trips[trip_id] = Trip(trip.trip_id, trip.route_id, trip.service_id,
                                      trip.shape_id, trip.direction_id, block_id,
                                      trip.headsign)
    stop_times = _stop_times(list(registry.stops), times)
    return Feed({AGENCY_ID: agency}, registry.stops, routes, trips, stop_times, shapes,
                calendars)


def _stop_times(stop_ids: list[str], times: dict) -> StopTimes:
    index = {stop_id: i for i, stop_id in enumerate(stop_ids)}
    trip_ids = list(times)
    counts = [len(times[t][0]) for t in trip_ids]
    trip_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    stop_index = np.array([index[s] for t in trip_ids for s in times[t][0]], dtype=np.int32)
    sequence = np.concatenate([np.arange(1, c + 1) for c in counts]).astype(np.int32)
    arrival = np.array([a for t in trip_ids for a in times[t][1]], dtype=np.float64)
    departure = np.array([d for t in trip_ids for d in times[t][2]], dtype=np.float64)
    dist = np.concatenate([times[t][3] for t in trip_ids]).astype(np.float64)
    return StopTimes(trip_ids, trip_start, stop_ids, stop_index, sequence, arrival,
                     departure, dist)


# ================================================================= GTFS writing
def _gtfs_time(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _gtfs_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def _opt(value) -> str:
    return "" if value is None else str(value)


def _csv(header: list[str], rows: Iterable[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def gtfs_tables(feed: Feed) -> dict[str, str]:
    """The text of each GTFS file of ``feed`` (``agency.txt`` ...), CSV with headers.

    Distances (``shape_dist_traveled``) are written in metres.
    """
    files: dict[str, str] = {}
    files["agency.txt"] = _csv(
        ["agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang",
         "agency_phone"],
        ([a.agency_id, a.name, a.url, a.timezone, _opt(a.lang), _opt(a.phone)]
         for a in feed.agencies.values()))
    files["stops.txt"] = _csv(
        ["stop_id", "stop_code", "stop_name", "stop_lat", "stop_lon", "location_type",
         "parent_station", "wheelchair_boarding"],
        ([s.stop_id, _opt(s.code), s.name, f"{s.lat:.6f}", f"{s.lon:.6f}", s.location_type,
          _opt(s.parent_station), _opt(s.wheelchair_boarding)] for s in feed.stops.values()))
    files["routes.txt"] = _csv(
        ["route_id", "agency_id", "route_short_name", "route_long_name", "route_type",
         "route_color", "route_text_color"],
        ([r.route_id, _opt(r.agency_id), r.short_name, r.long_name, r.route_type,
          _opt(r.color), _opt(r.text_color)] for r in feed.routes.values()))
    files["trips.txt"] = _csv(
        ["route_id", "service_id", "trip_id", "trip_headsign", "direction_id", "block_id",
         "shape_id"],
        ([t.route_id, t.service_id, t.trip_id, _opt(t.headsign), _opt(t.direction_id),
          _opt(t.block_id), _opt(t.shape_id)] for t in feed.trips.values()))
    st = feed.stop_times
    rows = []
    for number, trip_id in enumerate(st.trip_ids):
        for i in range(int(st.trip_start[number]), int(st.trip_start[number + 1])):
            dist = st.shape_dist_m[i]
            rows.append([trip_id, _gtfs_time(st.arrival_s[i]), _gtfs_time(st.departure_s[i]),
                         st.stop_ids[st.stop_index[i]], int(st.stop_sequence[i]),
                         "" if math.isnan(dist) else f"{dist:.2f}"])
    files["stop_times.txt"] = _csv(["trip_id", "arrival_time", "departure_time", "stop_id",
                                    "stop_sequence", "shape_dist_traveled"], rows)
    calendar_rows, date_rows = [], []
    for cal in feed.calendars.values():
        if cal.start is not None and cal.end is not None:
            calendar_rows.append([cal.service_id, *(int(d) for d in cal.weekdays),
                                  _gtfs_date(cal.start), _gtfs_date(cal.end)])
        date_rows += [[cal.service_id, _gtfs_date(d), 1] for d in sorted(cal.added)]
        date_rows += [[cal.service_id, _gtfs_date(d), 2] for d in sorted(cal.removed)]
    files["calendar.txt"] = _csv(
        ["service_id", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
         "sunday", "start_date", "end_date"], calendar_rows)
    if date_rows:
        files["calendar_dates.txt"] = _csv(["service_id", "date", "exception_type"],
                                           sorted(date_rows, key=lambda r: (r[1], r[0])))
    shape_rows = []
    for shape in feed.shapes.values():
        if shape.derived:
            continue
        for k, (lon, lat, dist) in enumerate(zip(shape.lon, shape.lat, shape.dist_m,
                                                 strict=True)):
            shape_rows.append([shape.shape_id, f"{lat:.6f}", f"{lon:.6f}", k + 1,
                               f"{dist:.2f}"])
    if shape_rows:
        files["shapes.txt"] = _csv(["shape_id", "shape_pt_lat", "shape_pt_lon",
                                    "shape_pt_sequence", "shape_dist_traveled"], shape_rows)
    if feed.frequencies:
        files["frequencies.txt"] = _csv(
            ["trip_id", "start_time", "end_time", "headway_secs", "exact_times"],
            ([f.trip_id, _gtfs_time(f.start_s), _gtfs_time(f.end_s), f.headway_s,
              int(f.exact_times)] for fs in feed.frequencies.values() for f in fs))
    agency = next(iter(feed.agencies.values()), None)
    starts = [c.start for c in feed.calendars.values() if c.start]
    ends = [c.end for c in feed.calendars.values() if c.end]
    if agency is not None and starts and ends:
        files["feed_info.txt"] = _csv(
            ["feed_publisher_name", "feed_publisher_url", "feed_lang", "feed_start_date",
             "feed_end_date", "feed_version"],
            [[agency.name, agency.url, agency.lang or "en", _gtfs_date(min(starts)),
              _gtfs_date(max(ends)), "1"]])
    return files


def write_gtfs(feed: Feed, path: str | Path) -> Path:
    """Write ``feed`` as a GTFS zip at ``path`` (deterministic bytes); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in gtfs_tables(feed).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("utf-8"))
    return path


def write_demo_gtfs(path: str | Path, seed: int = 0) -> Path:
    """Write the demo city's feed (:func:`demo_feed`) as a GTFS zip at ``path``."""
    return write_gtfs(demo_feed(seed), path)


# ============================================================ simulating a day
SCENARIOS = ("congested", "normal")
MILD_PEAK_FACTOR = 1.15  # every road is a little slower in the rush hours
CONGESTED_FACTOR_RANGE = (1.6, 2.2)
VEHICLE_DAY_SIGMA = 0.06
SEGMENT_SIGMA = 0.15
SEGMENT_RHO = 0.6  # correlation of the noise of consecutive segments of a trip
DWELL_BASE_S = 8.0
DWELL_PER_PASSENGER_S = 3.0
CAPACITY = 70
RECOVERY_S = 90  # least turn-round at a terminus, whatever the timetable says
PULL_OUT_S = 600  # a vehicle leaves the depot this long before its first trip
GPS_SIGMA_M = 8.0
SPEED_SIGMA_MPS = 0.15
BEARING_SIGMA_DEG = 2.0
PING_INTERVAL_S = (10.0, 20.0)
OUTAGES_PER_VEHICLE_DAY = 1.5
OUTAGE_S = (120.0, 420.0)
DUPLICATE_SHARE = 0.01
LATE_SHARE = 0.01
LATE_DELIVERY_S = (30.0, 240.0)
HARSH_DECEL_G = (0.55, 0.65)
NORMAL_DECEL_MPS2 = (0.9, 1.4)
#: A trip without times runs at this scheduled speed along its shape (a city bus in
#: traffic, stops included) ...
UNTIMED_SPEED_KMH = 20.0
#: ... standing this long at each intermediate stop ...
UNTIMED_DWELL_S = 20
#: ... and, unless frequencies.txt says otherwise, leaves every this often between
#: these times of the service day (a typical urban daytime headway).
UNTIMED_HEADWAY_S = 30 * 60
UNTIMED_SERVICE_S = (6 * 3600, 22 * 3600)
#: Pace of an extrapolated stretch, when taken from a trip's timed part, kept in
#: these bounds (m/s): a timetable typo must not teleport the bus.
PACE_BOUNDS_MPS = (8 / 3.6, 80 / 3.6)
SHIFT_CHANGE_S = 14 * 3600  # drivers of a block change over at the first trip after it
#: A block's trip timetabled to leave more than this before its previous trip
#: arrives cannot be the same vehicle's.
BLOCK_OVERLAP_S = 0


def _unit(*parts) -> float:
    """A deterministic number in [0, 1) for the given parts (stable across runs)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def _short_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._~\-]", "-", text)


def vehicle_of_block(block_id: str) -> str:
    """The vehicle id that runs ``block_id`` (``bus-<block>``)."""
    return f"bus-{_short_id(block_id)}"


def harsh_driver_id(feed: Feed, seed: int = 0) -> str:
    """The driver who brakes harshly in :func:`simulate_day` (same for every day).

    The morning driver of a block that runs on every service of the feed, drawn with
    ``seed``; in a feed without blocks, where each route's trips of the day rotate
    among ten drivers (``drv-<route>-00`` .. ``-09``), the first driver of a route.
    """
    blocks: dict[str, set[str]] = {}
    for trip in feed.trips.values():
        if trip.block_id:
            blocks.setdefault(trip.block_id, set()).add(trip.service_id)
    if blocks:
        most = max(len(s) for s in blocks.values())
        everywhere = sorted(b for b, s in blocks.items() if len(s) == most)
        choice = everywhere[int(np.random.default_rng(seed).integers(len(everywhere)))]
        return f"drv-{_short_id(choice)}-am"
    route_ids = sorted({t.route_id for t in feed.trips.values()})
    choice = route_ids[int(np.random.default_rng(seed).integers(len(route_ids)))]
    return f"drv-{_short_id(choice)}-01"


def _stops_centre(feed: Feed) -> tuple[float, float, float]:
    """Centroid of the boarding stops and the radius (m) holding 90 % of them."""
    lon = np.array([s.lon for s in feed.stops.values() if s.location_type == 0])
    lat = np.array([s.lat for s in feed.stops.values() if s.location_type == 0])
    if not len(lon):
        return 0.0, 0.0, 1.0
    c_lon, c_lat = float(np.median(lon)), float(np.median(lat))
    _, _, dist = _GEOD.inv(np.full(len(lon), c_lon), np.full(len(lat), c_lat), lon, lat)
    return c_lon, c_lat, max(float(np.quantile(dist, 0.9)), 1.0)


class _Centrality:
    def __init__(self, feed: Feed):
        self.stops = feed.stops
        self.lon, self.lat, self.radius_m = _stops_centre(feed)
        self._memo: dict[str, float] = {}

    def of(self, stop_id: str) -> float:
        """Distance from the centre over the 90 % radius."""
        value = self._memo.get(stop_id)
        if value is None:
            stop = self.stops[stop_id]
            value = _GEOD.inv(self.lon, self.lat, stop.lon, stop.lat)[2] / self.radius_m
            self._memo[stop_id] = value
        return value


def _segment_peak_factor(seed: int, scenario: str, a: str, b: str,
                         centrality: _Centrality) -> float:
    if scenario != "congested":
        return MILD_PEAK_FACTOR
    inner = 0.5 * (centrality.of(a) + centrality.of(b)) < 0.5
    if _unit(seed, "congested", a, b) < (0.7 if inner else 0.25):
        low, high = CONGESTED_FACTOR_RANGE
        return low + (high - low) * _unit(seed, "factor", a, b)
    return MILD_PEAK_FACTOR


def congestion_plan(feed: Feed, scenario: str = "congested", seed: int = 0) -> dict:
    """The peak factor of every segment (``(from_stop_id, to_stop_id)``) of ``feed``.

    At the height of a peak a segment's running time is its free-flow time times this
    factor (on weekdays 07:30-08:30 and 17:30-18:30, ramping over the half hours on
    either side); off-peak the factor is 1. Weekends have a milder midday hump.
    """
    _check_scenario(scenario)
    centrality = _Centrality(feed)
    st = feed.stop_times
    same_trip = np.ones(len(st), dtype=bool)
    same_trip[st.trip_start[1:-1] - 1] = False  # last stop time of each trip
    same_trip[-1:] = False
    pairs = np.unique(np.stack([st.stop_index[:-1][same_trip[:-1]],
                                st.stop_index[1:][same_trip[:-1]]], axis=1), axis=0) \
        if len(st) > 1 else np.zeros((0, 2), dtype=np.int32)
    plan = {}
    for i, j in pairs.tolist():
        a, b = st.stop_ids[i], st.stop_ids[j]
        plan[(a, b)] = _segment_peak_factor(seed, scenario, a, b, centrality)
    return plan


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}")


def peak_weight(t_s: float, weekend: bool) -> float:
    """How much of a segment's peak factor applies at GTFS time ``t_s`` (0..1)."""
    hour = t_s / 3600.0
    if weekend:  # a milder midday hump of shoppers
        return 0.35 * _trapezoid(hour, 11.0, 11.5, 13.5, 14.0)
    return max(_trapezoid(hour, 7.0, 7.5, 8.5, 9.0), _trapezoid(hour, 17.0, 17.5, 18.5, 19.0))


def _trapezoid(x: float, a: float, b: float, c: float, d: float) -> float:
    if x <= a or x >= d:
        return 0.0
    if x < b:
        return (x - a) / (b - a)
    if x <= c:
        return 1.0
    return (d - x) / (d - c)


def _demand_profile(t_s: float, weekend: bool) -> float:
    hour = t_s / 3600.0
    if weekend:
        return 0.35 + 0.45 * math.exp(-(((hour - 13.0) / 3.0) ** 2))
    return (0.25 + 0.9 * math.exp(-(((hour - 8.0) / 1.0) ** 2))
            + 0.8 * math.exp(-(((hour - 18.0) / 1.2) ** 2))
            + 0.35 * math.exp(-(((hour - 13.0) / 1.5) ** 2)))


@lru_cache(maxsize=8)
def _to_utm(zone: int, south: bool) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{(32700 if south else 32600) + zone}",
                                always_xy=True)


def _metric(lon: np.ndarray, lat: np.ndarray, ref_lon: float, ref_lat: float):
    zone = int((ref_lon + 180.0) // 6) + 1
    return _to_utm(min(max(zone, 1), 60), ref_lat < 0).transform(lon, lat)


@dataclass
class _Pattern:
    """Where a trip's stops are along its path, and the path itself."""

    dist_m: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    path_m: np.ndarray
    bearing: np.ndarray  # of each path segment, degrees


def _project_stops(lon: np.ndarray, lat: np.ndarray, path_m: np.ndarray,
                   stop_lon: np.ndarray, stop_lat: np.ndarray) -> np.ndarray:
    """Distances of the stops along a path, never going back (loops, doubling back)."""
    x, y = _metric(lon, lat, float(lon[0]), float(lat[0]))
    sx, sy = _metric(stop_lon, stop_lat, float(lon[0]), float(lat[0]))
    x, y, sx, sy = map(np.asarray, (x, y, sx, sy))
    ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
    seg_len2 = np.maximum((bx - ax) ** 2 + (by - ay) ** 2, 1e-9)
    seg_dist = np.diff(path_m)
    out = np.empty(len(sx))
    previous = 0.0
    for k in range(len(sx)):
        share = np.clip(((sx[k] - ax) * (bx - ax) + (sy[k] - ay) * (by - ay)) / seg_len2, 0, 1)
        along = path_m[:-1] + share * seg_dist
        gap = np.hypot(ax + share * (bx - ax) - sx[k], ay + share * (by - ay) - sy[k])
        gap = np.where(along >= previous - 1.0, gap, np.inf)  # only ahead of the last stop
        best = int(np.argmin(gap + 1e-6 * along))  # the nearest; the earliest of equals
        previous = max(previous, float(along[best])) if np.isfinite(gap[best]) else previous
        out[k] = previous
    return out


def _pattern(feed: Feed, trip: Trip, stop_ids: list[str], shape_dist: np.ndarray,
             cache: dict) -> _Pattern:
    key = (trip.shape_id, tuple(stop_ids))
    found = cache.get(key)
    if found is not None:
        return found
    shape = feed.shapes.get(trip.shape_id) if trip.shape_id else None
    stop_lon = np.array([feed.stops[s].lon for s in stop_ids])
    stop_lat = np.array([feed.stops[s].lat for s in stop_ids])
    if shape is None or len(shape.lon) < 2:
        lon, lat = stop_lon, stop_lat
        path = _cumulative_m(lon, lat)
        dist = path.copy()
    else:
        lon, lat, path = np.asarray(shape.lon), np.asarray(shape.lat), np.asarray(shape.dist_m)
        if np.all(np.isfinite(shape_dist)) and np.all(np.diff(shape_dist) >= 0):
            dist = np.asarray(shape_dist, dtype=float)
        else:
            dist = _project_stops(lon, lat, path, stop_lon, stop_lat)
    if len(lon) >= 2:
        bearing = _GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])[0] % 360.0
    else:
        bearing = np.zeros(1)
    found = _Pattern(dist, lon, lat, path, np.asarray(bearing))
    cache[key] = found
    return found


@dataclass
class SimulatedDay(DayTrace):
    """A :class:`DayTrace` with the truth behind it, for tests and evaluation.

    Attributes
    ----------
    congestion : dict
        Peak factor per segment ``(from_stop_id, to_stop_id)`` (see
        :func:`congestion_plan`).
    free_run_s : dict
        Free-flow running time per segment, seconds.
    harsh_driver_id : str
    vehicles : dict
        Vehicle id -> the trip ids it ran, in order.
    skipped_trips : dict
        Why trips of the day did not run -> how many (e.g. ``"fewer than two stop
        times"``); empty when every trip ran.
    synthesised_timetables : int
        Trips that had no times at all and ran on a synthetic timetable.
    """

    congestion: dict = field(default_factory=dict)
    free_run_s: dict = field(default_factory=dict)
    harsh_driver_id: str | None = None
    vehicles: dict = field(default_factory=dict)
    timezone: str = "UTC"
    skipped_trips: dict = field(default_factory=dict)
    synthesised_timetables: int = 0


@dataclass
class _Run:
    """One trip instance as simulated, kept for the pings."""

    trip_id: str
    vehicle: str
    driver: str
    harsh: bool
    pattern: _Pattern
    span_start: float  # pings start here (end of the vehicle's previous trip)
    arrival: np.ndarray
    departure: np.ndarray
    boardings: np.ndarray
    alightings: np.ndarray
    occupancy: np.ndarray  # on board when leaving each stop
    accel: float
    decel: np.ndarray  # per stop approached


#: Metres per stop assumed where a trip's stops have no usable distances.
_NOMINAL_STOP_SPACING_M = 400.0


def _complete_times(arrival: np.ndarray, departure: np.ndarray, dist_m: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """A trip's times with every gap filled, or None when it has no time at all.

    A time given on one side of a stop stands for both; stops between timed ones are
    interpolated by metres along the path (leaving the stop before, reaching the stop
    after); stops beyond the first or last timed one are reached at the pace of the
    timed part (:data:`UNTIMED_SPEED_KMH` when it has none), without dwelling.
    """
    arrival = np.where(np.isnan(arrival), departure, arrival).astype(float)
    departure = np.where(np.isnan(departure), arrival, departure).astype(float)
    timed = np.flatnonzero(np.isfinite(arrival))
    if not len(timed):
        return None
    if len(timed) == len(arrival):
        return arrival, departure
    n = len(arrival)
    x = np.asarray(dist_m, dtype=float)
    if not (np.isfinite(x).all() and (np.diff(x) >= 0).all()):
        x = np.arange(n) * _NOMINAL_STOP_SPACING_M
    first, last = int(timed[0]), int(timed[-1])
    inner = np.flatnonzero(np.isnan(arrival))
    inner = inner[(inner > first) & (inner < last)]
    if len(inner):
        line_x = np.repeat(x[timed], 2)
        line_t = np.column_stack([arrival[timed], departure[timed]]).ravel()
        arrival[inner] = departure[inner] = np.interp(x[inner], line_x, line_t)
    span_t, span_x = arrival[last] - departure[first], x[last] - x[first]
    pace = span_x / span_t if span_t > 0 and span_x > 0 else UNTIMED_SPEED_KMH / 3.6
    pace = min(max(pace, PACE_BOUNDS_MPS[0]), PACE_BOUNDS_MPS[1])
    head, tail = np.arange(first), np.arange(last + 1, n)
    arrival[head] = departure[head] = arrival[first] - (x[first] - x[head]) / pace
    arrival[tail] = departure[tail] = departure[last] + (x[tail] - x[last]) / pace
    return arrival, departure


def _synthetic_times(dist_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A timetable from 0 s for a trip without times: :data:`UNTIMED_SPEED_KMH`
    along the path, :data:`UNTIMED_DWELL_S` at each stop but the ends."""
    run = np.maximum(np.diff(dist_m), 0.0) / (UNTIMED_SPEED_KMH / 3.6)
    dwell = np.full(len(dist_m), float(UNTIMED_DWELL_S))
    dwell[0] = dwell[-1] = 0.0
    departure = np.round(np.cumsum(np.concatenate([[0.0], run]) + dwell))
    return departure - dwell, departure


def _untimed_starts(trip_id: str) -> list[int]:
    """Departures of a trip without times that frequencies.txt does not run: every
    :data:`UNTIMED_HEADWAY_S` over :data:`UNTIMED_SERVICE_S`, from a whole minute
    of the first headway that is the trip's own (stable, so the routes spread out)."""
    stagger = int(_unit("untimed", trip_id) * UNTIMED_HEADWAY_S) // 60 * 60
    first, last = UNTIMED_SERVICE_S
    return list(range(first + stagger, last, UNTIMED_HEADWAY_S))


@dataclass
class _Plan:
    """The trip instances of a day and what could not be run."""

    #: ``(scheduled start, trip, offset_s, schedule with every time, pattern, repeated)``;
    #: ``repeated`` trips run more than once a day, a vehicle per run.
    instances: list = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    synthesised: int = 0


def _plan(feed: Feed, day: date, route_ids, cache: dict) -> _Plan:
    """Every trip instance run on ``day`` (frequency-based and untimed trips once per
    headway), each with a complete timetable; trips that cannot run are counted by
    reason."""
    plan = _Plan()

    def skip(reason: str) -> None:
        plan.skipped[reason] = plan.skipped.get(reason, 0) + 1

    for trip_id in feed.trips_on(day):
        trip = feed.trips[trip_id]
        if route_ids is not None and trip.route_id not in route_ids:
            continue
        try:
            schedule = feed.schedule(trip_id)
        except KeyError:
            skip("no stop times")
            continue
        if len(schedule) < 2:
            skip("fewer than two stop times")
            continue
        missing = [s for s in schedule.stop_ids if s not in feed.stops]
        if missing:
            skip("stop not in the feed")
            continue
        pattern = _pattern(feed, trip, schedule.stop_ids, schedule.shape_dist_m, cache)
        if not np.isfinite(pattern.dist_m).all():
            skip("stops without a position")
            continue
        times = _complete_times(schedule.arrival_s, schedule.departure_s, pattern.dist_m)
        periods = feed.frequencies.get(trip_id)
        if times is None:
            times = _synthetic_times(pattern.dist_m)
            plan.synthesised += 1
            starts = None if periods else _untimed_starts(trip_id)
        else:
            starts = None
        schedule = replace(schedule, arrival_s=times[0], departure_s=times[1])
        first = float(schedule.departure_s[0])
        if periods:
            for period in periods:
                for start in range(period.start_s, period.end_s, max(period.headway_s, 1)):
                    plan.instances.append((float(start), trip, start - first, schedule,
                                           pattern, True))
        elif starts is not None:
            for start in starts:
                plan.instances.append((float(start), trip, start - first, schedule,
                                       pattern, True))
        else:
            plan.instances.append((first, trip, 0.0, schedule, pattern, False))
    plan.instances.sort(key=lambda item: (item[0], item[1].trip_id))
    return plan


def _free_speeds(records) -> dict:
    """Free-flow speed per segment (m/s): the 75th percentile of its scheduled speeds."""
    speeds: dict[tuple[str, str], list[float]] = {}
    everything: list[float] = []
    for stop_ids, dist, arrival, departure in records:
        run = arrival[1:] - departure[:-1]
        gap = np.diff(dist)
        for k in np.flatnonzero((run > 0) & (gap > 0)).tolist():
            v = min(max(gap[k] / run[k], 8 / 3.6), 80 / 3.6)
            speeds.setdefault((stop_ids[k], stop_ids[k + 1]), []).append(v)
            everything.append(v)
    fallback = float(np.quantile(everything, 0.75)) if everything else 25 / 3.6
    out = {key: float(np.quantile(values, 0.75)) for key, values in speeds.items()}
    out[None] = fallback
    return out


def simulate_day(feed: Feed, day: date, scenario: str = "congested", seed: int = 0,
                 timezone: str | None = None, route_ids: Iterable[str] | None = None
                 ) -> SimulatedDay:
    """Simulate one service day of ``feed``: true arrivals and the devices' pings.

    Parameters
    ----------
    feed : Feed
        Any feed (blocks, shapes and ``shape_dist_m`` are used where present;
        frequency-based trips run once per headway, keeping the template's trip id;
        missing times are filled in, and trips with none run on a synthetic
        timetable, as the module describes).
    day : date
        The service date.
    scenario : {"congested", "normal"}
        ``"congested"`` slows some downtown segments 1.6-2.2x in the peaks.
    seed : int
        Everything random derives from it (and from ``day``).
    timezone : str, optional
        Defaults to the first agency's.
    route_ids : iterable of str, optional
        Simulate only these routes.

    Returns
    -------
    SimulatedDay
        ``arrivals`` (by trip, in stop order) and ``pings`` (in delivery order),
        with the congestion plan, free-flow times and harsh driver behind them.
    """
    _check_scenario(scenario)
    tz = timezone or next((a.timezone for a in feed.agencies.values()), None) or "UTC"
    origin = service_day_origin(day, tz)
    # a holiday that runs a weekend service is a weekend day for traffic and riders
    weekend = day.weekday() >= 5 or any(
        day in c.added and (c.weekdays[5] or c.weekdays[6]) for c in feed.calendars.values())
    rng = np.random.default_rng(np.random.SeedSequence([seed, day.toordinal()]))
    routes = set(route_ids) if route_ids is not None else None
    centrality = _Centrality(feed)
    harsh = harsh_driver_id(feed, seed)
    cache: dict = {}

    plan = _plan(feed, day, routes, cache)
    planned = plan.instances
    free_speed = _free_speeds((s.stop_ids, p.dist_m, s.arrival_s, s.departure_s)
                              for _, _, _, s, p, _ in planned)

    def free_speed_of(key):
        # a segment's own pace, with a little of its own character (junctions, lights)
        base = free_speed.get(key, free_speed[None])
        return base * (0.85 + 0.3 * _unit(seed, "pace", *key))

    peak_factor: dict = {}
    free_run: dict = {}
    demand: dict[str, float] = {}
    vehicle_factor: dict[str, float] = {}
    decel_of_driver: dict[str, float] = {}
    free_at: dict[str, float] = {}
    scheduled_free: dict[str, float] = {}  # a block vehicle's last scheduled arrival
    last_departure: dict[tuple, float] = {}
    runs: list[_Run] = []
    arrivals: list[ObservedArrival] = []
    vehicles: dict[str, list[str]] = {}
    frequency_count: dict[str, int] = {}
    route_turns: dict[str, int] = {}

    for start, trip, offset, schedule, pattern, repeated in planned:
        n = len(schedule)
        if trip.block_id and not repeated:
            vehicle = vehicle_of_block(trip.block_id)
            # a block whose timetable overlaps itself (block ids unique within a
            # route only, or services of one day sharing them) is not one vehicle:
            # the trip goes to the block's next vehicle free by its timetable, so
            # that no bus is hours late for trips it could never have run
            sched_start = origin + offset + float(schedule.departure_s[0])
            copy = 1
            while scheduled_free.get(vehicle, -math.inf) > sched_start + BLOCK_OVERLAP_S:
                copy += 1
                vehicle = f"{vehicle_of_block(trip.block_id)}-{copy}"
            scheduled_free[vehicle] = origin + offset + float(schedule.arrival_s[-1])
            shift = "am" if start < SHIFT_CHANGE_S else "pm"
            driver = f"drv-{_short_id(trip.block_id)}-{shift}"
        else:  # no block: a vehicle per trip, the route's drivers taking turns
            number = frequency_count[trip.trip_id] = frequency_count.get(trip.trip_id, 0) + 1
            vehicle = f"bus-{_short_id(trip.trip_id)}"
            if repeated:
                vehicle += f"-{number}"
            turn = route_turns[trip.route_id] = route_turns.get(trip.route_id, -1) + 1
            driver = f"drv-{_short_id(trip.route_id)}-{turn % 10:02d}"
        vehicles.setdefault(vehicle, []).append(trip.trip_id)
        if vehicle not in vehicle_factor:
            vehicle_factor[vehicle] = math.exp(
                VEHICLE_DAY_SIGMA * rng.standard_normal() - VEHICLE_DAY_SIGMA ** 2 / 2)
        is_harsh = driver == harsh
        if driver not in decel_of_driver:
            low, high = NORMAL_DECEL_MPS2
            decel_of_driver[driver] = low + (high - low) * _unit(seed, "braking", driver)

        accel = 1.6 if is_harsh else 1.0
        brake = G_MPS2 * HARSH_DECEL_G[0] if is_harsh else decel_of_driver[driver]
        pedals = 0.5 / accel + 0.5 / brake
        stop_ids = schedule.stop_ids
        sched_dep = (origin + offset + schedule.departure_s).tolist()
        dist = pattern.dist_m
        gaps = np.diff(dist).tolist()
        direction = (trip.route_id, trip.direction_id)
        eps = rng.standard_normal(n).tolist()

        previous_end = free_at.get(vehicle)
        span_start = previous_end if previous_end is not None else sched_dep[0] - PULL_OUT_S
        ready = (previous_end + RECOVERY_S) if previous_end is not None else span_start

        arr = [0.0] * n
        dep = [0.0] * n
        board = [0] * n
        alight = [0] * n
        occupancy = [0] * n
        on_board = 0
        x = SEGMENT_SIGMA * eps[0]
        scale = vehicle_factor[vehicle]
        for j in range(n):
            stop_id = stop_ids[j]
            if j == 0:
                t = max(sched_dep[0], ready)
            else:
                key = (stop_ids[j - 1], stop_id)
                factor = peak_factor.get(key)
                if factor is None:
                    factor = peak_factor[key] = _segment_peak_factor(
                        seed, scenario, key[0], key[1], centrality)
                    free_run[key] = gaps[j - 1] / free_speed_of(key) if gaps[j - 1] > 0 else 0.0
                congestion = 1.0 + (factor - 1.0) * peak_weight(dep[j - 1] - origin, weekend)
                x = SEGMENT_RHO * x + math.sqrt(1 - SEGMENT_RHO ** 2) * SEGMENT_SIGMA * eps[j]
                noise = math.exp(x - SEGMENT_SIGMA ** 2 / 2)
                # never quicker than the bus can physically go from halt to halt
                t = dep[j - 1] + max(math.sqrt(4.0 * pedals * gaps[j - 1]), 1.0,
                                     free_run[key] * congestion * scale * noise)
            last = j == n - 1
            out = on_board if last else int(rng.binomial(
                on_board, min(1.0, 1.3 / (n - 1 - j)))) if on_board and j else 0
            on_board -= out
            came = 0
            if not last:
                rate = demand.get(stop_id)
                if rate is None:
                    inner = centrality.of(stop_id) < 0.5
                    rate = demand[stop_id] = (0.1 + 0.4 * _unit(seed, "demand", stop_id)) \
                        * (1.6 if inner else 1.0) / 60.0
                waited = t - last_departure.get((direction, stop_id), t - 600.0)
                expected = rate * _demand_profile(t - origin, weekend) * max(waited, 0.0)
                came = min(int(rng.poisson(expected)), CAPACITY - on_board)
                on_board += came
            dwell = DWELL_BASE_S + DWELL_PER_PASSENGER_S * (came + out) if came + out else 0.0
            if j == 0:
                # boarding at the terminus: the bus leaves on time if it was there
                departure = max(sched_dep[0], ready + dwell)
                arr[0], dep[0] = departure - dwell, departure
            else:
                arr[j], dep[j] = t, t + dwell
            board[j], alight[j], occupancy[j] = came, out, on_board
            if not last:
                last_departure[(direction, stop_id)] = dep[j]
        free_at[vehicle] = dep[-1]
        decel = np.full(n, decel_of_driver[driver])
        if is_harsh:
            low, high = HARSH_DECEL_G
            decel = G_MPS2 * (low + (high - low) * rng.random(n))
        runs.append(_Run(trip.trip_id, vehicle, driver, is_harsh, pattern, span_start,
                         np.array(arr), np.array(dep), np.array(board), np.array(alight),
                         np.array(occupancy), accel, decel))
        sequence = schedule.stop_sequence.tolist()
        for j in range(n):
            arrivals.append(ObservedArrival(trip.trip_id, sequence[j], stop_ids[j], arr[j],
                                            dep[j], vehicle, day, board[j], alight[j]))

    pings = _pings(runs, rng)
    congestion = {key: f for key, f in peak_factor.items()}
    return SimulatedDay(day, arrivals, pings, scenario, congestion=congestion,
                        free_run_s=free_run, harsh_driver_id=harsh, vehicles=vehicles,
                        timezone=tz, skipped_trips=plan.skipped,
                        synthesised_timetables=plan.synthesised)


# ---------------------------------------------------------------------- pings
def _kinematics(run: _Run):
    """Cruise speed and phase lengths of each segment (arrays over stops 1..n-1):
    accelerate, cruise, brake to a halt at the stop, in the segment's true time."""
    length = np.diff(run.pattern.dist_m)
    duration = np.maximum(run.arrival[1:] - run.departure[:-1], 1e-3)
    accel = np.full(len(length), run.accel)
    decel = run.decel[1:].copy()
    k = 0.5 / accel + 0.5 / decel
    short = duration ** 2 < 4 * k * length
    # too short to reach a cruise at these rates: harder on both pedals, no cruise
    stretch = np.where(short, 4 * k * length / duration ** 2, 1.0)
    accel, decel, k = accel * stretch, decel * stretch, k / stretch
    cruise = (duration - np.sqrt(np.maximum(duration ** 2 - 4 * k * length, 0.0))) / (2 * k)
    cruise = np.where(length > 0.5, cruise, 0.0)
    return length, duration, accel, decel, cruise


def _state_at(run: _Run, t: np.ndarray, kin):
    """Distance along the path and speed at instants ``t`` (sorted)."""
    length, duration, accel, decel, cruise = kin
    dist, arr, dep = run.pattern.dist_m, run.arrival, run.departure
    n = len(dist)
    last_left = np.searchsorted(dep, t, side="right") - 1  # last stop left (-1: none)
    seg = np.clip(last_left, 0, n - 2)  # segment index (stop seg -> seg + 1)
    moving = (last_left >= 0) & (last_left < n - 1) & (t < arr[np.minimum(last_left + 1, n - 1)])
    tau = t - dep[seg]
    t1 = cruise[seg] / accel[seg]
    t3 = cruise[seg] / decel[seg]
    left = duration[seg] - tau
    s_accel = 0.5 * accel[seg] * tau ** 2
    s_cruise = 0.5 * accel[seg] * t1 ** 2 + cruise[seg] * (tau - t1)
    s_brake = length[seg] - 0.5 * decel[seg] * np.maximum(left, 0.0) ** 2
    s = np.where(tau < t1, s_accel, np.where(left > t3, s_cruise, s_brake))
    v = np.where(tau < t1, accel[seg] * tau, np.where(left > t3, cruise[seg],
                                                      decel[seg] * np.maximum(left, 0.0)))
    standing = np.where(last_left < 0, 0, np.where(last_left >= n - 1, n - 1, last_left + 1))
    position = np.where(moving, dist[seg] + np.clip(s, 0.0, length[seg]), dist[standing])
    speed = np.where(moving, np.maximum(v, 0.0), 0.0)
    return position, speed, moving, standing


def _pings(runs: list[_Run], rng: np.random.Generator) -> list[Ping]:
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (
        "run", "t", "lon", "lat", "speed", "bearing", "in", "out", "occ", "doors")}
    spans: dict[str, list[float]] = {}
    for run in runs:
        span = spans.setdefault(run.vehicle, [run.span_start, run.departure[-1]])
        span[1] = run.departure[-1]
    outages: dict[str, list[tuple[float, float]]] = {}
    for vehicle, (first, last) in spans.items():
        count = int(rng.poisson(OUTAGES_PER_VEHICLE_DAY))
        starts = rng.uniform(first, max(first, last), count)
        lengths = rng.uniform(*OUTAGE_S, count)
        outages[vehicle] = list(zip(starts.tolist(), (starts + lengths).tolist(), strict=True))

    for number, run in enumerate(runs):
        arr, dep = run.arrival, run.departure
        n = len(arr)
        kin = _kinematics(run)
        length, duration, accel, decel, cruise = kin
        # 1 Hz while braking into each stop: from 1 s before the brakes go on until
        # 1 s after standing still
        onset = arr[1:] - cruise / decel
        samples = np.ceil(cruise / decel).astype(int) + 3
        stop_of = np.repeat(np.arange(1, n), samples)
        step = np.arange(samples.sum()) - np.repeat(np.cumsum(samples) - samples, samples) - 1
        burst = np.repeat(onset, samples) + step
        burst = burst[(length[stop_of - 1] > 0.5)]
        # door opened, then passengers counted when the doors close
        dwelt = np.flatnonzero(dep - arr > 4.0)
        doors_open_t = arr[dwelt] + 3.0
        counted_t = dep[dwelt]
        events = np.sort(np.concatenate([burst, doors_open_t, counted_t]))
        # the regular reports every 10-20 s
        span = arr[-1] - run.span_start
        steps = rng.uniform(*PING_INTERVAL_S, int(span / PING_INTERVAL_S[0]) + 2)
        regular = run.span_start + rng.uniform(0, PING_INTERVAL_S[0]) + np.cumsum(steps)
        regular = regular[regular < arr[-1]]
        if len(events):
            near = np.searchsorted(events, regular)
            before = np.abs(regular - events[np.maximum(near - 1, 0)])
            after = np.abs(events[np.minimum(near, len(events) - 1)] - regular)
            regular = regular[np.minimum(before, after) >= 1.0]
        t = np.concatenate([regular, burst, doors_open_t, counted_t])
        kind = np.concatenate([np.zeros(len(regular) + len(burst) + len(doors_open_t), int),
                               np.ones(len(counted_t), int)])
        counted_stop = np.concatenate([np.full(len(t) - len(counted_t), -1), dwelt])
        order = np.argsort(t, kind="stable")
        t, kind, counted_stop = t[order], kind[order], counted_stop[order]
        keep = np.ones(len(t), dtype=bool)
        for start, end in outages[run.vehicle]:
            keep &= ~((t >= start) & (t < end))
        t, kind, counted_stop = t[keep], kind[keep], counted_stop[keep]
        if not len(t):
            continue
        position, speed, moving, standing = _state_at(run, t, kin)
        # what the device says: GPS fix with noise, Doppler speed, track bearing
        pattern = run.pattern
        lon = np.interp(position, pattern.path_m, pattern.lon)
        lat = np.interp(position, pattern.path_m, pattern.lat)
        noise = rng.normal(0.0, GPS_SIGMA_M, (2, len(t)))
        lat = lat + noise[1] / _M_PER_DEG
        lon = lon + noise[0] / (_M_PER_DEG * np.cos(np.radians(lat)))
        speed = np.abs(speed + rng.normal(0.0, SPEED_SIGMA_MPS, len(t)))
        segment = np.clip(np.searchsorted(pattern.path_m, position, side="right") - 1,
                          0, len(pattern.bearing) - 1)
        bearing = (pattern.bearing[segment] + rng.normal(0, BEARING_SIGMA_DEG, len(t))) % 360
        left = np.searchsorted(dep, t, side="right") - 1
        occ = np.where(left >= 0, run.occupancy[np.maximum(left, 0)], 0)
        at_stop = ~moving
        doors = at_stop & (t >= arr[standing] + 2.5) & (t < dep[standing] - 0.25) & \
            (dep[standing] - arr[standing] > 4.0)
        counted = kind == 1
        p_in = np.where(counted, run.boardings[np.maximum(counted_stop, 0)], -1)
        p_out = np.where(counted, run.alightings[np.maximum(counted_stop, 0)], -1)
        columns["run"].append(np.full(len(t), number))
        for name, values in (("t", t), ("lon", lon), ("lat", lat), ("speed", speed),
                             ("bearing", bearing), ("in", p_in), ("out", p_out),
                             ("occ", occ), ("doors", doors)):
            columns[name].append(values)
    if not columns["t"]:
        return []
    data = {name: np.concatenate(values) for name, values in columns.items()}
    count = len(data["t"])
    # delivery: a second or so of latency, a few late, a few sent twice
    latency = rng.uniform(0.3, 2.0, count)
    late = rng.random(count) < LATE_SHARE
    latency[late] = rng.uniform(*LATE_DELIVERY_S, int(late.sum()))
    twice = np.flatnonzero(rng.random(count) < DUPLICATE_SHARE)
    index = np.concatenate([np.arange(count), twice])
    delivered = np.concatenate([data["t"] + latency,
                                data["t"][twice] + latency[twice] + rng.uniform(0, 5, len(twice))])
    index = index[np.argsort(delivered, kind="stable")]
    run_of = data["run"][index].tolist()
    vehicle = [r.vehicle for r in runs]
    trip = [r.trip_id for r in runs]
    driver = [r.driver for r in runs]
    t = np.round(data["t"][index], 3).tolist()
    lat = np.round(data["lat"][index], 7).tolist()
    lon = np.round(data["lon"][index], 7).tolist()
    speed = np.round(data["speed"][index], 2).tolist()
    bearing = np.round(data["bearing"][index], 1).tolist()
    p_in = data["in"][index].tolist()
    p_out = data["out"][index].tolist()
    occ = data["occ"][index].tolist()
    doors = data["doors"][index].tolist()
    return [Ping(vehicle[r], t[i], lat[i], lon[i], speed[i], bearing[i], trip[r], driver[r],
                 p_in[i] if p_in[i] >= 0 else None, p_out[i] if p_out[i] >= 0 else None,
                 occ[i], doors[i])
            for i, r in enumerate(run_of)]
