"""Driver monitoring from the buses' position pings.

From each vehicle's pings (1 Hz or sparser) this finds harsh braking and acceleration
(longitudinal acceleration from the speed series), harsh cornering (lateral
acceleration = speed x yaw rate, the yaw rate from bearing changes), speeding against a
limit looked up per place (per road segment or road class), long idling away from
stops and doors open while moving, then scores drivers and vehicles by their weighted
events per 100 km and writes a weekly report.

Where a ping carries no speed (or bearing) it is derived from the positions: the speed
from the distance to the neighbouring pings over their time span (a central
difference, exact for a constant acceleration), the bearing from the course between
the neighbouring pings (the tangent, on a circular arc). A 3-point running median on the
speed series then removes single-ping spikes while keeping every monotone ramp exactly,
so a real stop keeps its full deceleration. Distances and courses are geodesic on the
WGS84 ellipsoid (``pyproj.Geod``).

Sparse pings hide short events: a 3 s stop seen by pings 10 s apart shows a third of
its deceleration. Thresholds are therefore meant for 1 Hz (or faster) traces;
acceleration is not computed across gaps longer than ``max_gap_s``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from pyproj import Geod

from cityos.apps.transit.models import Feed, Ping, Stop, service_day_origin

__all__ = ["G", "KINDS", "DrivingEvent", "DrivingRecord", "DrivingScore", "DrivingThresholds",
           "Kinematics", "ScoreWeights", "WeeklyReport", "driving_scores", "limit_lookup",
           "monitor_driving", "vehicle_kinematics", "weekly_report"]

#: Standard gravity, m/s^2: accelerations are reported in g.
G = 9.80665
_WGS84 = Geod(ellps="WGS84")

#: Event kinds, the unit of their magnitude and how the report names them.
KINDS = {
    "harsh_braking": ("g", "Harsh braking"),
    "harsh_acceleration": ("g", "Harsh acceleration"),
    "harsh_cornering": ("g", "Harsh cornering"),
    "speeding": ("km/h over the limit", "Speeding"),
    "idling": ("s", "Long idling"),
    "door_open_moving": ("km/h", "Door open while moving"),
}


@dataclass(frozen=True)
class DrivingThresholds:
    """When driving becomes an event.

    Accelerations are in g (9.80665 m/s^2). Defaults follow common bus telematics
    practice: a service brake is about 0.1-0.2 g, an emergency stop 0.5 g and more.
    """

    harsh_braking_g: float = 0.35
    harsh_acceleration_g: float = 0.30
    harsh_cornering_g: float = 0.30
    cornering_min_s: float = 2.0  # a real turn lasts; a one-interval yaw spike is a GPS course jump
    speeding_margin_kmh: float = 5.0  # tolerated above the limit
    speeding_min_s: float = 10.0  # how long it must last
    speeding_severity_kmh: tuple[float, float] = (10.0, 20.0)  # excess for severity 2, 3
    idle_speed_mps: float = 0.5  # at or below this a bus stands still
    idle_min_s: float = 300.0
    idle_stop_radius_m: float = 50.0  # standing within this of a stop is service
    door_moving_speed_mps: float = 5.0 / 3.6
    min_turn_speed_mps: float = 3.0  # below this a course is mostly GPS noise
    max_gap_s: float = 10.0  # no acceleration across a longer outage
    severity_ratios: tuple[float, float] = (1.25, 1.5)  # x threshold for severity 2, 3


@dataclass(frozen=True)
class DrivingEvent:
    """One event of one vehicle and its driver.

    ``magnitude`` is in the kind's unit (:data:`KINDS`): the peak acceleration in g,
    the peak excess over the speed limit in km/h, the idling time in s, or the peak
    speed with a door open in km/h. ``severity`` is 1 (moderate) to 3 (severe).
    """

    kind: str
    vehicle_id: str
    driver_id: str | None
    t: float  # when it began, POSIX seconds
    end_t: float
    lat: float
    lon: float
    magnitude: float
    severity: int
    trip_id: str | None = None
    detail: str = ""

    @property
    def unit(self) -> str:
        """The unit of :attr:`magnitude`."""
        return KINDS[self.kind][0]

    def as_geojson(self) -> dict:
        """The event as a GeoJSON Feature (for the map)."""
        properties = {"kind": self.kind, "vehicle_id": self.vehicle_id,
                      "driver_id": self.driver_id, "t": self.t, "end_t": self.end_t,
                      "magnitude": round(self.magnitude, 3), "unit": self.unit,
                      "severity": self.severity, "trip_id": self.trip_id, "detail": self.detail}
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
                "properties": properties}


@dataclass
class DrivingRecord:
    """What :func:`monitor_driving` found: the events and the distance driven."""

    events: list[DrivingEvent] = field(default_factory=list)
    km_by_driver: dict[str, float] = field(default_factory=dict)
    km_by_vehicle: dict[str, float] = field(default_factory=dict)


@dataclass
class Kinematics:
    """One vehicle's motion, ping by ping (time-ordered, duplicates dropped).

    ``longitudinal_g`` and ``lateral_g`` are per interval between pings ``i`` and
    ``i + 1`` (NaN across gaps, and for the lateral one below the turning speed);
    lateral is positive turning right (clockwise).
    """

    pings: list[Ping]
    t: np.ndarray
    speed_mps: np.ndarray
    bearing_deg: np.ndarray  # NaN where unknown
    step_m: np.ndarray  # distance from ping i to i + 1
    longitudinal_g: np.ndarray
    lateral_g: np.ndarray


# ========================================================================= kinematics
def _median3(values: np.ndarray) -> np.ndarray:
    if len(values) < 3:
        return values.copy()
    out = values.copy()
    stacked = np.stack([values[:-2], values[1:-1], values[2:]])
    out[1:-1] = np.median(stacked, axis=0)
    return out


def _segments(t: np.ndarray, max_gap_s: float) -> list[slice]:
    """Runs of pings with no gap longer than ``max_gap_s`` between neighbours."""
    cuts = np.flatnonzero(np.diff(t) > max_gap_s) + 1
    bounds = [0, *cuts.tolist(), len(t)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _derived_speed_and_course(lat: np.ndarray, lon: np.ndarray, t: np.ndarray,
                              step_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference speed and course of one gap-free run of pings."""
    n = len(t)
    speed = np.zeros(n)
    course = np.full(n, np.nan)
    if n < 2:
        return speed, course
    dt = np.diff(t)
    speed[0] = step_m[0] / dt[0]
    speed[-1] = step_m[-1] / dt[-1]
    if n > 2:
        speed[1:-1] = (step_m[:-1] + step_m[1:]) / (t[2:] - t[:-2])
    before = np.r_[0, np.arange(n - 2), n - 2]
    after = np.r_[1, np.arange(2, n), n - 1]
    azimuth, _, _ = _WGS84.inv(lon[before], lat[before], lon[after], lat[after])
    course = np.mod(np.asarray(azimuth, dtype=float), 360.0)
    return speed, course


def _kinematics(pings: list[Ping], thresholds: DrivingThresholds) -> Kinematics:
    t = np.array([p.t for p in pings], dtype=float)
    lat = np.array([p.lat for p in pings], dtype=float)
    lon = np.array([p.lon for p in pings], dtype=float)
    n = len(pings)
    step_m = np.zeros(max(n - 1, 0))
    if n > 1:
        _, _, dist = _WGS84.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
        step_m = np.asarray(dist, dtype=float)
    reported_speed = np.array([np.nan if p.speed_mps is None else p.speed_mps for p in pings])
    reported_bearing = np.array([np.nan if p.bearing_deg is None else p.bearing_deg
                                 for p in pings])
    speed = np.zeros(n)
    bearing = np.full(n, np.nan)
    longitudinal = np.full(max(n - 1, 0), np.nan)
    lateral = np.full(max(n - 1, 0), np.nan)
    for run in _segments(t, thresholds.max_gap_s):
        rt, rlat, rlon = t[run], lat[run], lon[run]
        steps = step_m[run.start:run.stop - 1]
        derived_speed, derived_course = _derived_speed_and_course(rlat, rlon, rt, steps)
        v = np.where(np.isnan(reported_speed[run]), derived_speed, reported_speed[run])
        v = _median3(v)
        b = np.where(np.isnan(reported_bearing[run]), derived_course, reported_bearing[run])
        speed[run] = v
        bearing[run] = b
        if len(rt) < 2:
            continue
        dt = np.diff(rt)
        intervals = slice(run.start, run.stop - 1)
        longitudinal[intervals] = np.diff(v) / dt / G
        turn = (np.diff(b) + 180.0) % 360.0 - 180.0  # wrapped to -180..180
        yaw_rate = np.radians(turn) / dt
        moving = np.minimum(v[:-1], v[1:]) >= thresholds.min_turn_speed_mps
        lateral[intervals] = np.where(moving, 0.5 * (v[:-1] + v[1:]) * yaw_rate / G, np.nan)
    return Kinematics(pings, t, speed, bearing, step_m, longitudinal, lateral)


def _ordered(pings: Iterable[Ping]) -> list[Ping]:
    """Time order, dropping repeated timestamps (the first report wins)."""
    out: list[Ping] = []
    for ping in sorted(pings, key=lambda p: p.t):
        if out and ping.t <= out[-1].t:
            continue
        out.append(ping)
    return out


def vehicle_kinematics(pings: Iterable[Ping],
                       thresholds: DrivingThresholds | None = None) -> Kinematics:
    """Speed, bearing, longitudinal and lateral acceleration of one vehicle's pings.

    Parameters
    ----------
    pings : iterable of Ping
        Pings of a single vehicle, any order.
    thresholds : DrivingThresholds, optional
        For ``max_gap_s`` and ``min_turn_speed_mps``.
    """
    return _kinematics(_ordered(pings), thresholds or DrivingThresholds())


# ============================================================================ events
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` index pairs of the runs of True in ``mask``."""
    if not len(mask):
        return []
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _severity(ratio: float, steps: tuple[float, float]) -> int:
    return 1 + int(ratio >= steps[0]) + int(ratio >= steps[1])


def limit_lookup(key_of: Callable[[Ping], str | None], limits_kmh: Mapping[str, float],
                 default_kmh: float | None = None) -> Callable[[Ping], float | None]:
    """A speed limit lookup by road segment or road class.

    Parameters
    ----------
    key_of : callable
        Gives the segment id or road class of a ping (e.g. from the snapped shape
        distance, or from the road network), or ``None`` where unknown.
    limits_kmh : mapping
        The limit per segment id or road class, km/h.
    default_kmh : float, optional
        The limit where the key is unknown or has no entry (``None``: not checked).
    """

    def limit(ping: Ping) -> float | None:
        key = key_of(ping)
        return limits_kmh.get(key, default_kmh) if key is not None else default_kmh

    return limit


def _stop_positions(stops: Feed | Iterable[Stop] | None) -> tuple[np.ndarray, np.ndarray] | None:
    if stops is None:
        return None
    items = list(stops.stops.values() if isinstance(stops, Feed) else stops)
    lat = np.array([s.lat for s in items], dtype=float)
    lon = np.array([s.lon for s in items], dtype=float)
    return lat, lon


def _near_a_stop(lat: float, lon: float, stops: tuple[np.ndarray, np.ndarray] | None,
                 radius_m: float) -> bool:
    if stops is None or not len(stops[0]):
        return False
    # cheap box first: a degree of latitude is at least 110.5 km
    box = radius_m / 110_000.0 * 2.0
    near = (np.abs(stops[0] - lat) < box) & (
        np.abs(stops[1] - lon) < box / max(math.cos(math.radians(lat)), 0.01))
    if not near.any():
        return False
    count = int(near.sum())
    _, _, dist = _WGS84.inv(np.full(count, lon), np.full(count, lat), stops[1][near],
                            stops[0][near])
    return bool(np.min(dist) <= radius_m)


def _event(kind: str, k: Kinematics, at: int, first: int, last: int, magnitude: float,
           severity: int, detail: str = "") -> DrivingEvent:
    ping = k.pings[at]
    return DrivingEvent(kind, ping.vehicle_id, ping.driver_id, float(k.t[first]),
                        float(k.t[last]), ping.lat, ping.lon, float(magnitude), severity,
                        ping.trip_id, detail)


def _acceleration_events(k: Kinematics, th: DrivingThresholds) -> list[DrivingEvent]:
    events = []
    along = k.longitudinal_g
    for kind, sign, limit in (("harsh_braking", -1.0, th.harsh_braking_g),
                              ("harsh_acceleration", 1.0, th.harsh_acceleration_g)):
        signed = np.nan_to_num(sign * along, nan=-np.inf)
        for first, last in _runs(signed >= limit):
            peak = first + int(np.argmax(signed[first:last + 1]))
            magnitude = float(signed[peak])
            speed_from, speed_to = k.speed_mps[first] * 3.6, k.speed_mps[last + 1] * 3.6
            events.append(_event(kind, k, peak, first, last + 1, magnitude,
                                 _severity(magnitude / limit, th.severity_ratios),
                                 f"{speed_from:.0f} to {speed_to:.0f} km/h"))
    lateral = np.nan_to_num(k.lateral_g, nan=0.0)
    for sign, side in ((1.0, "right"), (-1.0, "left")):
        signed = sign * lateral
        for first, last in _runs(signed >= th.harsh_cornering_g):
            if k.t[last + 1] - k.t[first] < th.cornering_min_s:
                continue
            peak = first + int(np.argmax(signed[first:last + 1]))
            magnitude = float(signed[peak])
            events.append(_event("harsh_cornering", k, peak, first, last + 1, magnitude,
                                 _severity(magnitude / th.harsh_cornering_g, th.severity_ratios),
                                 f"{side} turn at {k.speed_mps[peak] * 3.6:.0f} km/h"))
    return events


def _speeding_events(k: Kinematics, th: DrivingThresholds,
                     limit_of: Callable[[Ping], float | None]) -> list[DrivingEvent]:
    # a lookup that knows its lowest limit (``floor_kmh``) is only asked where a bus
    # could be over it: most pings are slower than every limit in the city
    floor = getattr(limit_of, "floor_kmh", None)
    speed_kmh = k.speed_mps * 3.6
    limits = np.array([
        np.nan if (floor is not None and v <= floor + th.speeding_margin_kmh)
        or (x := limit_of(p)) is None else float(x)
        for p, v in zip(k.pings, speed_kmh.tolist(), strict=True)])
    excess = k.speed_mps * 3.6 - limits
    over = np.nan_to_num(excess, nan=-np.inf) > th.speeding_margin_kmh
    events = []
    for run in _segments(k.t, th.max_gap_s):
        for first, last in _runs(over[run]):
            first, last = first + run.start, last + run.start
            if k.t[last] - k.t[first] < th.speeding_min_s:
                continue
            peak = first + int(np.argmax(excess[first:last + 1]))
            magnitude = float(excess[peak])
            severity = 1 + sum(magnitude >= step for step in th.speeding_severity_kmh)
            events.append(_event("speeding", k, peak, first, last, magnitude, severity,
                                 f"{k.speed_mps[peak] * 3.6:.0f} km/h where the limit is "
                                 f"{limits[peak]:.0f} km/h"))
    return events


def _idling_events(k: Kinematics, th: DrivingThresholds,
                   stops: tuple[np.ndarray, np.ndarray] | None) -> list[DrivingEvent]:
    events = []
    for run in _segments(k.t, th.max_gap_s):
        for first, last in _runs(k.speed_mps[run] <= th.idle_speed_mps):
            first, last = first + run.start, last + run.start
            duration = float(k.t[last] - k.t[first])
            if duration <= th.idle_min_s:
                continue
            lat = float(np.median([p.lat for p in k.pings[first:last + 1]]))
            lon = float(np.median([p.lon for p in k.pings[first:last + 1]]))
            if _near_a_stop(lat, lon, stops, th.idle_stop_radius_m):
                continue
            ping = k.pings[first]
            events.append(DrivingEvent("idling", ping.vehicle_id, ping.driver_id,
                                       float(k.t[first]), float(k.t[last]), lat, lon, duration,
                                       _severity(duration / th.idle_min_s, (2.0, 4.0)),
                                       ping.trip_id, f"{duration / 60:.0f} min standing"))
    return events


def _door_events(k: Kinematics, th: DrivingThresholds) -> list[DrivingEvent]:
    doors = np.array([p.doors_open is True for p in k.pings])
    moving_open = doors & (k.speed_mps > th.door_moving_speed_mps)
    events = []
    for first, last in _runs(moving_open):
        peak = first + int(np.argmax(k.speed_mps[first:last + 1]))
        speed_kmh = float(k.speed_mps[peak] * 3.6)
        events.append(_event("door_open_moving", k, peak, first, last, speed_kmh, 3,
                             f"door open at {speed_kmh:.0f} km/h"))
    return events


def monitor_driving(pings: Iterable[Ping], *, thresholds: DrivingThresholds | None = None,
                    speed_limit_kmh: Callable[[Ping], float | None] | float | None = None,
                    stops: Feed | Iterable[Stop] | None = None) -> DrivingRecord:
    """Find the driving events in the pings of any number of vehicles.

    Parameters
    ----------
    pings : iterable of Ping
        Pings of one or more vehicles, any order (grouped by ``vehicle_id``); a
        driver change within a vehicle's pings is followed ping by ping.
    thresholds : DrivingThresholds, optional
        When driving becomes an event.
    speed_limit_kmh : callable or float, optional
        The limit at a ping's place, km/h (see :func:`limit_lookup`), or one limit for
        everywhere; ``None`` checks no speeding.
    stops : Feed or iterable of Stop, optional
        Where standing is service, not idling; without them every long stand counts.

    Returns
    -------
    DrivingRecord
        Events in time order, and the kilometres driven per driver and per vehicle
        (steps where the bus stood still are not counted, so GPS jitter adds none).
    """
    th = thresholds or DrivingThresholds()
    if speed_limit_kmh is None or callable(speed_limit_kmh):
        limit_of = speed_limit_kmh
    else:
        uniform = float(speed_limit_kmh)

        def limit_of(_ping: Ping) -> float:
            return uniform

    stop_positions = _stop_positions(stops)
    by_vehicle: dict[str, list[Ping]] = {}
    for ping in pings:
        by_vehicle.setdefault(ping.vehicle_id, []).append(ping)
    record = DrivingRecord()
    for vehicle_id in sorted(by_vehicle):
        k = _kinematics(_ordered(by_vehicle[vehicle_id]), th)
        record.events += _acceleration_events(k, th)
        if limit_of is not None:
            record.events += _speeding_events(k, th, limit_of)
        record.events += _idling_events(k, th, stop_positions)
        record.events += _door_events(k, th)
        moving = np.maximum(k.speed_mps[:-1], k.speed_mps[1:]) > th.idle_speed_mps
        driven_m = np.where(moving, k.step_m, 0.0)
        record.km_by_vehicle[vehicle_id] = (record.km_by_vehicle.get(vehicle_id, 0.0)
                                            + float(driven_m.sum()) / 1000.0)
        for ping, metres in zip(k.pings[:-1], driven_m, strict=True):
            if ping.driver_id is not None:
                record.km_by_driver[ping.driver_id] = (record.km_by_driver.get(ping.driver_id, 0.0)
                                                       + metres / 1000.0)
        for ping in k.pings[-1:]:
            if ping.driver_id is not None:
                record.km_by_driver.setdefault(ping.driver_id, 0.0)
    record.events.sort(key=lambda e: (e.t, e.vehicle_id, e.kind))
    return record


# ============================================================================ scores
@dataclass(frozen=True)
class ScoreWeights:
    """How events weigh in a score.

    score = 100 - ``points_per_100km`` x (sum of kind weight x severity weight of the
    events per 100 km driven), clipped to 0..100.
    """

    kinds: Mapping[str, float] = field(default_factory=lambda: {
        "harsh_braking": 1.0, "harsh_acceleration": 1.0, "harsh_cornering": 1.0,
        "speeding": 1.0, "idling": 0.5, "door_open_moving": 3.0})
    severity: tuple[float, float, float] = (1.0, 2.0, 3.0)
    points_per_100km: float = 5.0
    min_km: float = 10.0  # below this no score is given (too little driving to judge)


@dataclass(frozen=True)
class DrivingScore:
    """The score of one driver or vehicle: 100 is faultless, ``None`` too little data."""

    who: str
    km: float
    events: Mapping[str, int]
    weighted_per_100km: float
    score: float | None


def driving_scores(record: DrivingRecord, by: str = "driver",
                   weights: ScoreWeights | None = None) -> dict[str, DrivingScore]:
    """Score every driver (``by="driver"``) or vehicle (``by="vehicle"``).

    Parameters
    ----------
    record : DrivingRecord
        From :func:`monitor_driving`.
    by : {"driver", "vehicle"}
        Whom to score.
    weights : ScoreWeights, optional
        Event weights and the points a weighted event per 100 km costs.
    """
    if by not in ("driver", "vehicle"):
        raise ValueError(f"by: {by!r} is not 'driver' or 'vehicle'")
    w = weights or ScoreWeights()
    km = record.km_by_driver if by == "driver" else record.km_by_vehicle
    counts: dict[str, dict[str, int]] = {who: {} for who in km}
    weighted: dict[str, float] = dict.fromkeys(km, 0.0)
    for event in record.events:
        who = event.driver_id if by == "driver" else event.vehicle_id
        if who is None:
            continue
        counts.setdefault(who, {})
        counts[who][event.kind] = counts[who].get(event.kind, 0) + 1
        weighted[who] = (weighted.get(who, 0.0) + w.kinds.get(event.kind, 1.0)
                         * w.severity[min(max(event.severity, 1), 3) - 1])
    scores = {}
    for who in sorted(counts):
        driven = km.get(who, 0.0)
        rate = weighted[who] / driven * 100.0 if driven > 0 else math.inf
        score = None
        if driven >= w.min_km:
            score = float(min(100.0, max(0.0, 100.0 - w.points_per_100km * rate)))
        scores[who] = DrivingScore(who, driven, dict(counts[who]),
                                   rate if driven > 0 else math.nan, score)
    return scores


# ============================================================================ report
@dataclass
class WeeklyReport:
    """A week of driving: scores per driver and per vehicle, and the events."""

    week_start: date
    drivers: list[DrivingScore]
    vehicles: list[DrivingScore]
    events: list[DrivingEvent]

    def rows(self, by: str = "driver") -> list[dict]:
        """One dict per driver (or vehicle), worst score first: for CSV, JSON, charts."""
        scores = self.drivers if by == "driver" else self.vehicles
        out = []
        for s in scores:
            row = {by: s.who, "km": round(s.km, 1)}
            row.update({kind: s.events.get(kind, 0) for kind in KINDS})
            row["weighted_events_per_100km"] = (None if math.isnan(s.weighted_per_100km)
                                                else round(s.weighted_per_100km, 2))
            row["score"] = None if s.score is None else round(s.score, 1)
            out.append(row)
        return out

    def to_csv(self, by: str = "driver") -> str:
        """The :meth:`rows` as CSV text with a header line."""
        rows = self.rows(by)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[by, "km", *KINDS,
                                                    "weighted_events_per_100km", "score"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def to_markdown(self) -> str:
        """The report as a Markdown document: drivers, vehicles, event totals."""
        end = self.week_start + timedelta(days=6)
        lines = [f"# Driving report {self.week_start.isoformat()} to {end.isoformat()}", ""]
        for by, title in (("driver", "Drivers"), ("vehicle", "Vehicles")):
            header = [by.capitalize(), "km", *(KINDS[k][1] for k in KINDS),
                      "Weighted events / 100 km", "Score"]
            lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)]
            for row in self.rows(by):
                cells = ["-" if v is None else str(v) for v in row.values()]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        totals = {kind: sum(1 for e in self.events if e.kind == kind) for kind in KINDS}
        lines += ["## Events", ""]
        lines += [f"- {KINDS[kind][1]}: {count}" for kind, count in totals.items()]
        return "\n".join(lines) + "\n"


def weekly_report(pings: Iterable[Ping], week_start: date, timezone: str, *,
                  weights: ScoreWeights | None = None, **monitor_options) -> WeeklyReport:
    """The driving report of the week that starts on ``week_start`` (local midnight).

    Parameters
    ----------
    pings : iterable of Ping
        Pings of any vehicles and times; only those of the week are used.
    week_start : date
        The first day of the week.
    timezone : str
        The operator's IANA time zone (where the week's days begin).
    weights : ScoreWeights, optional
        For the scores.
    **monitor_options
        ``thresholds``, ``speed_limit_kmh``, ``stops`` for :func:`monitor_driving`.
    """
    # service_day_origin is noon minus 12 h: local midnight except on a DST change day
    begin = service_day_origin(week_start, timezone)
    end = service_day_origin(week_start + timedelta(days=7), timezone)
    record = monitor_driving((p for p in pings if begin <= p.t < end), **monitor_options)

    def worst_first(scores: dict[str, DrivingScore]) -> list[DrivingScore]:
        return sorted(scores.values(),
                      key=lambda s: (s.score is None, s.score if s.score is not None else 0,
                                     s.who))

    return WeeklyReport(week_start, worst_first(driving_scores(record, "driver", weights)),
                        worst_first(driving_scores(record, "vehicle", weights)), record.events)
