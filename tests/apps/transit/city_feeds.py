"""Small city bus feeds written as GTFS text files, in any time zone, shaped like the
real feeds users bring (for the evaluation, simulator and import tests).

:func:`write_city_feed` writes two crossing routes of twelve stops, both directions
every 30 minutes from 06:00 and a last run at 23:50 that ends past 24:00, with:

* ``block_id`` values unique within a route only (each route's vehicle is block
  ``"1"``), as some publishers number them;
* ``shapes.txt`` and ``shape_dist_traveled`` in metres, blank at each trip's first
  stop (an empty value is not a value);
* times written ``" 6:00:00"`` (a space for the leading zero) and Windows line ends;
* a weekday service ``WK`` in force over ``service_years`` and an older, long expired
  service ``OLD``, plus a trip with a single stop time.
"""

from __future__ import annotations

import math
from pathlib import Path

#: Where each test city lies: (lat, lon) of its centre.
CENTRES = {"Asia/Bangkok": (13.75, 100.50), "America/Los_Angeles": (44.94, -123.03),
           "Pacific/Tongatapu": (-21.14, -175.20)}
N_STOPS = 12
SPACING_M = 420.0
RUN_S = 140  # scheduled running time between stops (the simulated traffic keeps to it)
DWELL_S = 30
HEADWAY_S = 1800


def _hms(seconds: int) -> str:
    """A GTFS time as some feeds write it: the hour without its leading zero, padded
    with a space (`` 6:00:00``)."""
    return f"{seconds // 3600:2d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _line(lat0: float, lon0: float, axis: str, n: int) -> list[tuple[float, float]]:
    step_lat = SPACING_M / 111_132.0
    step_lon = SPACING_M / (111_320.0 * math.cos(math.radians(lat0)))
    half = (n - 1) / 2
    if axis == "ew":
        return [(lat0, lon0 + (i - half) * step_lon) for i in range(n)]
    return [(lat0 + (i - half) * step_lat, lon0 + 0.3 * step_lon) for i in range(n)]


def write_city_feed(folder: Path, timezone: str, *, service_years: tuple[int, int] = (2016, 2030),
                    centre: tuple[float, float] | None = None) -> Path:
    """Write the feed described in the module docstring into ``folder``; return it."""
    lat0, lon0 = centre or CENTRES[timezone]
    folder.mkdir(parents=True, exist_ok=True)
    routes = {"A": _line(lat0, lon0, "ew", N_STOPS), "B": _line(lat0, lon0, "ns", N_STOPS)}
    stops = [["stop_id", "stop_name", "stop_lat", "stop_lon"]]
    shapes = [["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence",
               "shape_dist_traveled"]]
    for route, points in routes.items():
        for i, (lat, lon) in enumerate(points):
            stops.append([f"{route}{i}", f"{route} street {i}", f"{lat:.6f}", f"{lon:.6f}"])
        for direction in (0, 1):
            path = points if direction == 0 else points[::-1]
            for k, (lat, lon) in enumerate(path):
                shapes.append([f"{route}-{direction}", f"{lat:.6f}", f"{lon:.6f}", k + 1,
                               "" if k == 0 else f"{k * SPACING_M:.1f}"])
    trips = [["route_id", "service_id", "trip_id", "direction_id", "block_id", "shape_id"]]
    stop_times = [["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence",
                   "shape_dist_traveled"]]
    departures = list(range(6 * 3600, 22 * 3600 + 1, HEADWAY_S)) + [23 * 3600 + 50 * 60]
    for route in routes:
        for start in departures:
            for direction in (0, 1):
                begin = start + direction * (HEADWAY_S // 2) if start < 23 * 3600 else start
                if start >= 23 * 3600 and direction == 1:
                    continue  # the last run goes one way only
                trip_id = f"{route}{direction}-{begin // 60:04d}"
                trips.append([route, "WK", trip_id, direction, "1", f"{route}-{direction}"])
                t = begin
                for k in range(N_STOPS):
                    index = k if direction == 0 else N_STOPS - 1 - k
                    arrive = t
                    leave = t + (DWELL_S if 0 < k < N_STOPS - 1 else 0)
                    stop_times.append([trip_id, _hms(arrive), _hms(leave), f"{route}{index}",
                                       k + 1, "" if k == 0 else f"{k * SPACING_M:.1f}"])
                    t = leave + RUN_S
    trips.append(["A", "OLD", "A-OLD-1", 0, "9", "A-0"])
    stop_times.append(["A-OLD-1", _hms(9 * 3600), _hms(9 * 3600), "A0", 1, ""])
    first, last = service_years
    tables = {
        "agency": [["agency_id", "agency_name", "agency_url", "agency_timezone"],
                   ["C", "City buses", "https://bus.example.org", timezone]],
        "stops": stops,
        "routes": [["route_id", "agency_id", "route_short_name", "route_long_name",
                    "route_type"], ["A", "C", "A", "East-west", 3],
                   ["B", "C", "B", "North-south", 3]],
        "trips": trips,
        "stop_times": stop_times,
        "shapes": shapes,
        "calendar": [["service_id", "monday", "tuesday", "wednesday", "thursday", "friday",
                      "saturday", "sunday", "start_date", "end_date"],
                     ["WK", 1, 1, 1, 1, 1, 0, 0, f"{first}0101", f"{last}1231"],
                     ["OLD", 1, 1, 1, 1, 1, 1, 1, "20100101", "20101231"]],
        "calendar_dates": [["service_id", "date", "exception_type"],
                           ["WK", f"{first}1225", 2]],
    }
    for name, rows in tables.items():
        text = "\r\n".join(",".join(str(v) for v in row) for row in rows) + "\r\n"
        (folder / f"{name}.txt").write_bytes(text.encode("utf-8"))
    return folder
