"""Operations analytics from observed arrivals and the static feed.

Every metric takes the :class:`~cityos.apps.transit.models.ObservedArrival` records
(when each bus reached and left each stop) and the :class:`Feed`, and returns a dict
keyed by a tuple of the grouping names asked for in ``by`` (``("route", "stop",
"hour")`` gives keys ``(route_id, stop_id, hour)``; ``by=()`` gives the network total
under the key ``()``). Grouping names: ``route``, ``direction``, ``stop``, ``hour``
(local clock hour, 0-23), ``date`` (service date), ``trip``, ``vehicle`` and, for
running times, ``segment`` (``(from_stop_id, to_stop_id)``). :func:`as_rows` flattens
a result into a list of dicts for JSON, CSV and charts.

Conventions, as in the TCQSM (Transit Capacity and Quality of Service Manual):

* on time means ``-early_s <= actual - scheduled <= late_s`` (default -1/+5 min),
  judged on departures, and on the arrival at a trip's last stop;
  grouped by the hour of the *scheduled* time;
* a headway is the time between consecutive arrivals of a route's buses at a stop
  (same direction and service date); its coefficient of variation is the population
  standard deviation over the mean; bunching is a headway below
  ``bunching_ratio`` x the scheduled one, a gap one above ``gap_ratio`` x it, the
  scheduled headway being the time from the trip's scheduled predecessor at that stop
  (or the ``headway_secs`` of a frequency-based trip);
* running time over a segment is the arrival at the next stop minus the departure from
  this one (dwell excluded); percentiles interpolate linearly (``numpy.percentile``).

Frequency-based trips with ``exact_times=0`` have no timetable: they count for
headways (against ``headway_secs``), running times, service and ridership, but not for
on-time performance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
from pyproj import Geod

from cityos.apps.transit.models import (
    Feed,
    Frequency,
    ObservedArrival,
    TripSchedule,
    service_day_origin,
)

__all__ = ["AnalyticsError", "FleetUse", "HeadwayEvent", "HeadwayStats", "OnTimeStats",
           "RidershipStats", "RunningTimeStats", "ServiceDelivered", "as_rows",
           "fleet_utilisation", "headway_events", "headway_regularity",
           "on_time_performance", "ridership", "running_times", "service_delivered"]

GROUPINGS = ("route", "direction", "stop", "hour", "date", "trip", "vehicle", "segment")
_WGS84 = Geod(ellps="WGS84")


class AnalyticsError(ValueError):
    """Arrivals that do not fit the feed; the text names the arrival and the field."""


# ============================================================================ results
@dataclass(frozen=True)
class OnTimeStats:
    """On-time performance of a group of departures (arrivals at last stops)."""

    observed: int
    early: int
    on_time: int
    late: int
    on_time_share: float
    mean_deviation_s: float  # actual - scheduled, positive when late


@dataclass(frozen=True)
class HeadwayStats:
    """Regularity of the headways in a group."""

    headways: int
    mean_s: float
    std_s: float
    cv: float  # std / mean of the actual headways
    scheduled_mean_s: float | None
    bunching: int
    gaps: int


@dataclass(frozen=True)
class HeadwayEvent:
    """A bus that came too soon (``bunching``) or too late (``gap``) after the one before."""

    kind: str
    route_id: str
    direction_id: int | None
    stop_id: str
    service_date: date
    t: float  # the arrival that closes the headway
    headway_s: float
    scheduled_headway_s: float
    trip_id: str
    previous_trip_id: str
    vehicle_id: str
    previous_vehicle_id: str


@dataclass(frozen=True)
class RunningTimeStats:
    """Running times over a segment (stop to next stop), seconds."""

    observed: int
    median_s: float
    p90_s: float
    mean_s: float
    scheduled_median_s: float | None


@dataclass(frozen=True)
class ServiceDelivered:
    """Service run against service scheduled."""

    trips_scheduled: int
    trips_run: int
    share_run: float
    km_scheduled: float
    km_run: float
    hours_scheduled: float
    hours_run: float


@dataclass(frozen=True)
class FleetUse:
    """Vehicles in service during one clock hour."""

    vehicles_in_service: int
    fleet_size: int
    share: float
    vehicle_hours: float


@dataclass(frozen=True)
class RidershipStats:
    """Passengers counted in a group (stops without counts are left out of the sums)."""

    boardings: int
    alightings: int
    observations: int  # arrivals in the group
    counted: int  # of which had passenger counts


def as_rows(result: dict[tuple, object], by: Sequence[str]) -> list[dict]:
    """Flatten a ``{key: stats}`` result into dicts (one per group, key fields first).

    Parameters
    ----------
    result : dict
        What a metric function returned.
    by : sequence of str
        The grouping it was called with (names the key fields).
    """
    rows = []
    for key in sorted(result, key=lambda k: tuple(str(v) for v in k)):
        row: dict = {}
        for name, value in zip(by, key, strict=True):
            if name == "segment":
                row["from_stop_id"], row["to_stop_id"] = value
            else:
                row[name] = value.isoformat() if isinstance(value, date) else value
        row.update(asdict(result[key]))
        rows.append(row)
    return rows


# ===================================================================== shared context
@dataclass(frozen=True)
class _Row:
    """An observed arrival with what the feed says about it."""

    a: ObservedArrival
    route_id: str
    direction_id: int | None
    index: int  # position of the stop in the trip's schedule
    last: bool  # the trip's last stop
    scheduled_arrival_t: float | None  # None: frequency-based, exact_times=0
    scheduled_departure_t: float | None
    headway_s: float | None  # frequency-based trips: the period's headway_secs


def _check_by(by: Sequence[str], allowed: Sequence[str] = GROUPINGS) -> tuple[str, ...]:
    by = tuple(by)
    for name in by:
        if name not in allowed:
            raise AnalyticsError(f"by: {name!r} is not one of {', '.join(allowed)}")
    return by


def _period(frequencies: list[Frequency], start_s: float) -> Frequency:
    for f in frequencies:
        if f.start_s <= start_s < f.end_s:
            return f
    return min(frequencies, key=lambda f: min(abs(start_s - f.start_s), abs(start_s - f.end_s)))


class _Context:
    def __init__(self, feed: Feed, timezone: str | None) -> None:
        self.feed = feed
        if timezone is None:
            zones = [agency.timezone for agency in feed.agencies.values() if agency.timezone]
            if not zones:
                raise AnalyticsError("timezone: the feed names no agency time zone; give one")
            timezone = zones[0]
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self._schedules: dict[str, tuple[TripSchedule, dict[int, int]]] = {}
        self._origins: dict[date, float] = {}
        self._scheduled_at: dict[tuple[str, date], dict[tuple, np.ndarray]] = {}

    def schedule(self, trip_id: str) -> tuple[TripSchedule, dict[int, int]]:
        if trip_id not in self._schedules:
            schedule = self.feed.schedule(trip_id)
            positions = {int(seq): i for i, seq in enumerate(schedule.stop_sequence)}
            self._schedules[trip_id] = (schedule, positions)
        return self._schedules[trip_id]

    def origin(self, day: date) -> float:
        if day not in self._origins:
            self._origins[day] = service_day_origin(day, self.timezone)
        return self._origins[day]

    def local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.zone)

    def hour(self, t: float) -> int:
        return self.local(t).hour

    def rows(self, arrivals: Iterable[ObservedArrival]) -> list[_Row]:
        rows = []
        for n, a in enumerate(arrivals):
            where = f"arrival {n} (trip {a.trip_id!r}, stop_sequence {a.stop_sequence})"
            trip = self.feed.trips.get(a.trip_id)
            if trip is None:
                raise AnalyticsError(f"{where}: trip_id is not in the feed")
            try:
                schedule, positions = self.schedule(a.trip_id)
            except KeyError:
                raise AnalyticsError(f"{where}: the trip has no stop times") from None
            i = positions.get(a.stop_sequence)
            if i is None:
                raise AnalyticsError(f"{where}: stop_sequence is not a stop of the trip")
            if schedule.stop_ids[i] != a.stop_id:
                raise AnalyticsError(f"{where}: stop_id {a.stop_id!r} is not the trip's stop "
                                     f"{schedule.stop_ids[i]!r} at that sequence")
            origin = self.origin(a.service_date)
            sched_arr = origin + float(schedule.arrival_s[i])
            sched_dep = origin + float(schedule.departure_s[i])
            headway = None
            frequencies = self.feed.frequencies.get(a.trip_id)
            if frequencies:
                # the instance's start, from where along the template trip this stop is
                offset = float(schedule.arrival_s[i] - schedule.departure_s[0])
                start_s = a.arrival_t - origin - offset
                period = _period(frequencies, start_s)
                headway = float(period.headway_s)
                if period.exact_times:
                    k = round((start_s - period.start_s) / period.headway_s)
                    shift = period.start_s + k * period.headway_s - float(schedule.departure_s[0])
                    sched_arr, sched_dep = sched_arr + shift, sched_dep + shift
                else:
                    sched_arr = sched_dep = None
            rows.append(_Row(a, trip.route_id, trip.direction_id, i, i == len(schedule) - 1,
                             sched_arr, sched_dep, headway))
        return rows

    def scheduled_at(self, route_id: str, day: date) -> dict[tuple, np.ndarray]:
        """Sorted scheduled arrival instants of a route's trips per (direction, stop)."""
        key = (route_id, day)
        if key not in self._scheduled_at:
            times: dict[tuple, list[float]] = {}
            origin = self.origin(day)
            for trip_id in self.feed.trips_on(day):
                trip = self.feed.trips[trip_id]
                if trip.route_id != route_id:
                    continue
                try:
                    schedule, _ = self.schedule(trip_id)
                except KeyError:
                    continue
                starts = [0.0]
                frequencies = self.feed.frequencies.get(trip_id)
                if frequencies:
                    if not all(f.exact_times for f in frequencies):
                        continue  # no timetable: compared with headway_secs instead
                    first = float(schedule.departure_s[0])
                    starts = [s - first for f in frequencies
                              for s in range(f.start_s, f.end_s, f.headway_s)]
                for stop_id, arrival_s in zip(schedule.stop_ids, schedule.arrival_s,
                                              strict=True):
                    bucket = times.setdefault((trip.direction_id, stop_id), [])
                    bucket.extend(origin + float(arrival_s) + shift for shift in starts)
            self._scheduled_at[key] = {k: np.sort(np.array(v)) for k, v in times.items()}
        return self._scheduled_at[key]


def _key(by: tuple[str, ...], row: _Row, hour: int, segment: tuple | None = None) -> tuple:
    values = {"route": row.route_id, "direction": row.direction_id, "stop": row.a.stop_id,
              "hour": hour, "date": row.a.service_date, "trip": row.a.trip_id,
              "vehicle": row.a.vehicle_id, "segment": segment}
    return tuple(values[name] for name in by)


# ================================================================ on-time performance
def on_time_performance(arrivals: Iterable[ObservedArrival], feed: Feed, *,
                        by: Sequence[str] = ("route", "stop", "hour"), early_s: float = 60.0,
                        late_s: float = 300.0, measure: str = "departure",
                        timezone: str | None = None) -> dict[tuple, OnTimeStats]:
    """Share of buses on time, per group.

    Parameters
    ----------
    arrivals : iterable of ObservedArrival
        What happened.
    feed : Feed
        The timetable.
    by : sequence of str
        Grouping (see the module's notes); ``hour`` is the scheduled hour.
    early_s, late_s : float
        The on-time window: ``-early_s <= actual - scheduled <= late_s`` seconds.
    measure : {"departure", "arrival"}
        Judge departures (the arrival at a trip's last stop) or arrivals.
    timezone : str, optional
        The local time zone for hours; the feed's agency's by default.
    """
    by = _check_by(by)
    if measure not in ("departure", "arrival"):
        raise AnalyticsError(f"measure: {measure!r} is not 'departure' or 'arrival'")
    ctx = _Context(feed, timezone)
    deviations: dict[tuple, list[float]] = {}
    for row in ctx.rows(arrivals):
        if row.scheduled_arrival_t is None:
            continue
        if measure == "departure" and not row.last:
            actual, scheduled = row.a.departure_t, row.scheduled_departure_t
        else:
            actual, scheduled = row.a.arrival_t, row.scheduled_arrival_t
        deviations.setdefault(_key(by, row, ctx.hour(scheduled)), []).append(actual - scheduled)
    result = {}
    for key, values in deviations.items():
        dev = np.array(values)
        early = int(np.sum(dev < -early_s))
        late = int(np.sum(dev > late_s))
        on_time = len(dev) - early - late
        result[key] = OnTimeStats(len(dev), early, on_time, late, on_time / len(dev),
                                  float(dev.mean()))
    return result


# ========================================================================== headways
def _headways(rows: list[_Row], ctx: _Context):
    """Yield (row, previous row, actual headway, scheduled headway or None)."""
    groups: dict[tuple, list[_Row]] = {}
    for row in rows:
        key = (row.route_id, row.direction_id, row.a.stop_id, row.a.service_date)
        groups.setdefault(key, []).append(row)
    for (route_id, direction_id, stop_id, day), members in groups.items():
        members.sort(key=lambda r: r.a.arrival_t)
        planned = ctx.scheduled_at(route_id, day).get((direction_id, stop_id))
        for previous, row in zip(members[:-1], members[1:], strict=True):
            actual = row.a.arrival_t - previous.a.arrival_t
            scheduled = row.headway_s
            if row.scheduled_arrival_t is not None and planned is not None:
                before = np.searchsorted(planned, row.scheduled_arrival_t, side="left")
                if before > 0:
                    scheduled = row.scheduled_arrival_t - float(planned[before - 1])
            yield row, previous, actual, scheduled


def headway_regularity(arrivals: Iterable[ObservedArrival], feed: Feed, *,
                       by: Sequence[str] = ("route", "stop", "hour"),
                       bunching_ratio: float = 0.25, gap_ratio: float = 1.5,
                       timezone: str | None = None) -> dict[tuple, HeadwayStats]:
    """Headway regularity per group: coefficient of variation, bunching and gaps.

    Parameters
    ----------
    arrivals : iterable of ObservedArrival
        What happened.
    feed : Feed
        The timetable (for scheduled headways).
    by : sequence of str
        Grouping; ``hour`` is the hour of the arrival that closes the headway.
    bunching_ratio, gap_ratio : float
        A headway under ``bunching_ratio`` x scheduled is bunching, over ``gap_ratio``
        x scheduled a gap.
    timezone : str, optional
        The local time zone for hours.
    """
    by = _check_by(by)
    ctx = _Context(feed, timezone)
    collected: dict[tuple, list[tuple[float, float | None]]] = {}
    for row, _, actual, scheduled in _headways(ctx.rows(arrivals), ctx):
        key = _key(by, row, ctx.hour(row.a.arrival_t))
        collected.setdefault(key, []).append((actual, scheduled))
    result = {}
    for key, pairs in collected.items():
        actual = np.array([p[0] for p in pairs])
        planned = [p[1] for p in pairs if p[1] is not None and p[1] > 0]
        bunching = sum(1 for a, s in pairs if s is not None and s > 0 and a < bunching_ratio * s)
        gaps = sum(1 for a, s in pairs if s is not None and s > 0 and a > gap_ratio * s)
        mean = float(actual.mean())
        std = float(actual.std())
        result[key] = HeadwayStats(len(actual), mean, std, std / mean if mean > 0 else math.nan,
                                   float(np.mean(planned)) if planned else None, bunching, gaps)
    return result


def headway_events(arrivals: Iterable[ObservedArrival], feed: Feed, *,
                   bunching_ratio: float = 0.25, gap_ratio: float = 1.5,
                   timezone: str | None = None) -> list[HeadwayEvent]:
    """Every bunching and gap event, in time order (for the map and the log).

    Parameters are those of :func:`headway_regularity`.
    """
    ctx = _Context(feed, timezone)
    events = []
    for row, previous, actual, scheduled in _headways(ctx.rows(arrivals), ctx):
        if scheduled is None or scheduled <= 0:
            continue
        kind = ("bunching" if actual < bunching_ratio * scheduled
                else "gap" if actual > gap_ratio * scheduled else None)
        if kind:
            events.append(HeadwayEvent(kind, row.route_id, row.direction_id, row.a.stop_id,
                                       row.a.service_date, row.a.arrival_t, actual, scheduled,
                                       row.a.trip_id, previous.a.trip_id, row.a.vehicle_id,
                                       previous.a.vehicle_id))
    events.sort(key=lambda e: (e.t, e.stop_id))
    return events


# ===================================================================== running times
def _instances(rows: list[_Row]) -> list[list[_Row]]:
    """The observed runs of trips: one per trip, service date and vehicle, split where
    the stop sequence starts again (a frequency-based trip run twice)."""
    groups: dict[tuple, list[_Row]] = {}
    for row in rows:
        groups.setdefault((row.a.trip_id, row.a.service_date, row.a.vehicle_id), []).append(row)
    runs = []
    for members in groups.values():
        members.sort(key=lambda r: r.a.arrival_t)
        current: list[_Row] = []
        for row in members:
            if current and row.index <= current[-1].index:
                runs.append(current)
                current = []
            current.append(row)
        runs.append(current)
    return runs


def running_times(arrivals: Iterable[ObservedArrival], feed: Feed, *,
                  by: Sequence[str] = ("segment", "hour"),
                  timezone: str | None = None) -> dict[tuple, RunningTimeStats]:
    """Running time per segment (stop to the trip's next stop), by group.

    Parameters
    ----------
    arrivals : iterable of ObservedArrival
        What happened; only consecutive stops of a trip observed on the same run count.
    feed : Feed
        The timetable (for scheduled running times).
    by : sequence of str
        Grouping; ``hour`` is the hour of the departure that starts the segment.
    timezone : str, optional
        The local time zone for hours.
    """
    by = _check_by(by)
    ctx = _Context(feed, timezone)
    observed: dict[tuple, list[float]] = {}
    planned: dict[tuple, list[float]] = {}
    for run in _instances(ctx.rows(arrivals)):
        schedule, _ = ctx.schedule(run[0].a.trip_id)
        for here, there in zip(run[:-1], run[1:], strict=True):
            if there.index != here.index + 1:
                continue
            segment = (here.a.stop_id, there.a.stop_id)
            key = _key(by, here, ctx.hour(here.a.departure_t), segment)
            observed.setdefault(key, []).append(there.a.arrival_t - here.a.departure_t)
            planned.setdefault(key, []).append(float(schedule.arrival_s[there.index]
                                                     - schedule.departure_s[here.index]))
    result = {}
    for key, values in observed.items():
        times = np.array(values)
        result[key] = RunningTimeStats(len(times), float(np.median(times)),
                                       float(np.percentile(times, 90)), float(times.mean()),
                                       float(np.median(planned[key])))
    return result


# ================================================================== service delivered
def _trip_length_m(feed: Feed, trip_id: str, schedule: TripSchedule) -> float:
    dist = schedule.shape_dist_m
    if len(dist) and np.isfinite(dist[0]) and np.isfinite(dist[-1]):
        return float(dist[-1] - dist[0])
    shape = feed.shape_of(trip_id)
    if shape is not None and shape.length_m > 0:
        return shape.length_m
    stops = [feed.stops[s] for s in schedule.stop_ids if s in feed.stops]
    if len(stops) < 2:
        return 0.0
    lon = np.array([s.lon for s in stops])
    lat = np.array([s.lat for s in stops])
    _, _, steps = _WGS84.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return float(np.sum(steps))


def service_delivered(arrivals: Iterable[ObservedArrival], feed: Feed, *,
                      by: Sequence[str] = ("route",),
                      service_dates: Iterable[date] | None = None,
                      min_stop_share: float = 0.5,
                      timezone: str | None = None) -> dict[tuple, ServiceDelivered]:
    """Trips, kilometres and hours run against those scheduled.

    A trip counts as run when it was observed at ``min_stop_share`` of its stops or
    more. Scheduled kilometres are the trips' lengths along their shapes (the
    ``shape_dist_m`` span of their stops; the shape's length, or the stop-to-stop
    distance, where that is unknown); a run trip delivers its full length. Hours run
    are from the first observed departure to the last observed arrival.

    Parameters
    ----------
    arrivals : iterable of ObservedArrival
        What happened.
    feed : Feed
        The timetable and calendar.
    by : sequence of str
        Any of ``route``, ``direction``, ``date`` (``()``: the network).
    service_dates : iterable of date, optional
        The days to judge; by default those the arrivals cover.
    min_stop_share : float
        The share of a trip's stops it must be seen at to count as run.
    timezone : str, optional
        The feed's time zone (for service days).
    """
    by = _check_by(by, ("route", "direction", "date"))
    ctx = _Context(feed, timezone)
    rows = ctx.rows(arrivals)
    days = sorted(set(service_dates) if service_dates is not None
                  else {r.a.service_date for r in rows})
    wanted = set(days)
    totals: dict[tuple, list[float]] = {}  # trips, km, hours scheduled; trips, km, hours run

    def add(key: tuple, column: int, value: float) -> None:
        totals.setdefault(key, [0.0] * 6)[column] += value

    for day in days:
        for trip_id in feed.trips_on(day):
            trip = feed.trips[trip_id]
            try:
                schedule, _ = ctx.schedule(trip_id)
            except KeyError:
                continue
            if len(schedule) == 0:
                continue
            instances = 1
            frequencies = feed.frequencies.get(trip_id)
            if frequencies:
                instances = sum(math.ceil((f.end_s - f.start_s) / f.headway_s)
                                for f in frequencies)
            key = tuple({"route": trip.route_id, "direction": trip.direction_id,
                         "date": day}[name] for name in by)
            add(key, 0, instances)
            add(key, 1, instances * _trip_length_m(feed, trip_id, schedule) / 1000.0)
            add(key, 2, instances * float(schedule.arrival_s[-1] - schedule.departure_s[0])
                / 3600.0)
    for run in _instances(rows):
        first = run[0]
        if first.a.service_date not in wanted:
            continue
        schedule, _ = ctx.schedule(first.a.trip_id)
        if len({r.index for r in run}) < min_stop_share * len(schedule):
            continue
        key = tuple({"route": first.route_id, "direction": first.direction_id,
                     "date": first.a.service_date}[name] for name in by)
        add(key, 3, 1)
        add(key, 4, _trip_length_m(feed, first.a.trip_id, schedule) / 1000.0)
        add(key, 5, (max(r.a.arrival_t for r in run) - min(r.a.departure_t for r in run))
            / 3600.0)
    return {key: ServiceDelivered(int(v[0]), int(v[3]), v[3] / v[0] if v[0] else math.nan,
                                  v[1], v[4], v[2], v[5])
            for key, v in totals.items()}


# ================================================================= fleet utilisation
def fleet_utilisation(arrivals: Iterable[ObservedArrival], feed: Feed, *,
                      fleet_size: int | None = None,
                      timezone: str | None = None) -> dict[tuple, FleetUse]:
    """Vehicles in service per clock hour against the fleet.

    A vehicle is in service from the first departure to the last arrival of each trip
    it was observed running (layovers between trips are not service).

    Parameters
    ----------
    arrivals : iterable of ObservedArrival
        What happened.
    feed : Feed
        The timetable (for trips and the time zone).
    fleet_size : int, optional
        Vehicles the operator has; by default the number seen in the arrivals.
    timezone : str, optional
        The local time zone for hours.

    Returns
    -------
    dict
        ``{(local_date, hour): FleetUse}``.
    """
    ctx = _Context(feed, timezone)
    rows = ctx.rows(arrivals)
    vehicles = {r.a.vehicle_id for r in rows}
    size = len(vehicles) if fleet_size is None else int(fleet_size)
    if size <= 0:
        raise AnalyticsError(f"fleet_size: {fleet_size} must be positive")
    spans: dict[str, list[tuple[float, float]]] = {}
    for run in _instances(rows):
        begin = min(r.a.departure_t for r in run)
        end = max(r.a.arrival_t for r in run)
        spans.setdefault(run[0].a.vehicle_id, []).append((begin, end))
    seconds: dict[tuple, dict[str, float]] = {}
    for vehicle_id, intervals in spans.items():
        intervals.sort()
        merged: list[list[float]] = []
        for begin, end in intervals:  # a vehicle is in service once, however many trips
            if merged and begin <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([begin, end])
        for begin, end in merged:
            t = begin
            while True:
                local = ctx.local(t)
                hour_start = local.replace(minute=0, second=0, microsecond=0)
                hour_end = hour_start.timestamp() + 3600.0
                key = (local.date(), local.hour)
                share = seconds.setdefault(key, {})
                share[vehicle_id] = share.get(vehicle_id, 0.0) + min(end, hour_end) - t
                if end <= hour_end:
                    break
                t = hour_end
    return {key: FleetUse(len(by_vehicle), size, len(by_vehicle) / size,
                          sum(by_vehicle.values()) / 3600.0)
            for key, by_vehicle in sorted(seconds.items())}


# ========================================================================= ridership
def ridership(arrivals: Iterable[ObservedArrival], feed: Feed, *,
              by: Sequence[str] = ("route", "stop", "hour"),
              timezone: str | None = None) -> dict[tuple, RidershipStats]:
    """Boardings and alightings per group, from passenger counters or ticket taps
    attributed to the arrivals.

    Parameters
    ----------
    arrivals : iterable of ObservedArrival
        What happened, with ``boardings``/``alightings`` where counted.
    feed : Feed
        For routes and directions.
    by : sequence of str
        Grouping; ``hour`` is the hour of the arrival.
    timezone : str, optional
        The local time zone for hours.
    """
    by = _check_by(by)
    ctx = _Context(feed, timezone)
    sums: dict[tuple, list[int]] = {}
    for row in ctx.rows(arrivals):
        key = _key(by, row, ctx.hour(row.a.arrival_t))
        total = sums.setdefault(key, [0, 0, 0, 0])
        total[2] += 1
        if row.a.boardings is not None or row.a.alightings is not None:
            total[0] += row.a.boardings or 0
            total[1] += row.a.alightings or 0
            total[3] += 1
    return {key: RidershipStats(*v) for key, v in sums.items()}
