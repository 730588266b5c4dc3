"""The live fleet: every vehicle's pings turned into positions on trips, stop
passages and arrival predictions, in memory, with no I/O.

:class:`LiveFleet` is the pipeline the transit service runs for each incoming AVL
ping (:meth:`LiveFleet.process`):

1. **clean**: duplicates, late and impossible pings are dropped and counted, the rest
   released in time order (:class:`~cityos.apps.transit.pings.PingCleaner`);
2. **assign**: a vehicle with no trip, or whose trip is finished, gets one: the trip
   its device names, else the one its recent pings fit by block, schedule and position
   (:class:`~cityos.apps.transit.assignment.TripAssigner`, about a millisecond, so it
   runs only then and at most every ``assign_retry_s`` per vehicle while nothing fits);
3. **snap**: the ping is snapped to the trip's shape with monotonic progress
   (:class:`~cityos.apps.transit.snapping.ShapeSnapper`);
4. **stop passages**: progress passing a stop's distance along the shape is an arrival
   (interpolated between the pings either side); a vehicle slow within ``at_stop_m``
   of the stop is dwelling there until it leaves, which is the departure. Each passage
   becomes an :class:`~cityos.apps.transit.models.ObservedArrival` (with the passenger
   counts reported at the stop), the history the predictor learns from;
5. **predict**: every ping feeds the vehicle's Kalman filter
   (:meth:`ArrivalPredictor.observe`, tens of microseconds); the downstream stops are
   forecast (:meth:`ArrivalPredictor.forecast`, about a hundred) at most every
   ``forecast_every_s`` per vehicle, and at once on a new trip or a stop passage. The
   latest forecast of each trip is kept.

The read side serves the GTFS-realtime feeds and the stop boards: :meth:`vehicles`,
:meth:`trip_states`, :meth:`predictions`, :meth:`stop_board`. Given the time of the
read, they leave out a vehicle that has not reported for ``stale_s`` and end its
trip's predictions (a journey planner falls back to the timetable for that trip).
Every trip under way has a prediction for each stop ahead: the predictor's forecast,
or, until one is made (or with no predictor), the timetable shifted by the current
delay, with no interval (its uncertainty is unknown).

Trip ids: a trip of ``frequencies.txt`` runs as instances named
``<trip_id>@HH:MM:SS`` after their first departure
(:func:`~cityos.apps.transit.assignment.instance_id`); live state, predictions and
stop board rows use that name, observed arrivals the feed's trip id (as history is
kept).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from .assignment import TripAssigner, instance_id, split_instance_id, trip_of
from .gtfs_rt import TripState, VehicleState
from .models import ArrivalPrediction, Feed, ObservedArrival, Ping, service_day_origin
from .pings import PingCleaner, distance_m
from .prediction import ArrivalPredictor, StopForecast, _stop_distances
from .snapping import ShapeSnapper

__all__ = ["STALE_S", "BoardRow", "LiveFleet", "VehicleUpdate"]

IN_TRANSIT_TO = "IN_TRANSIT_TO"
STOPPED_AT = "STOPPED_AT"
#: Silence after which a vehicle leaves the feeds and its trip's predictions end, s.
STALE_S = 300.0
#: Pace of a trip whose stop times have no times at all (the simulator's), m/s.
UNTIMED_PACE_MPS = 20.0 / 3.6


# ============================================================================ outputs
@dataclass
class VehicleUpdate:
    """What one ping said about a vehicle, after cleaning, snapping and predicting.

    ``lat``/``lon`` are on the trip's shape (the raw fix when the vehicle has no trip
    or is off route), ``raw_lat``/``raw_lon`` the device's fix. ``delay_s`` is the
    schedule deviation at the vehicle's position (positive: late), None without a
    trip. ``predictions`` are filled when the trip's forecast was refreshed by this
    ping (else empty: the previous ones stand); ``new_arrivals`` are the stop passages
    this ping completed.
    """

    vehicle_id: str
    trip_id: str | None
    route_id: str | None
    lat: float
    lon: float
    raw_lat: float
    raw_lon: float
    dist_m: float | None
    delay_s: float | None
    speed_mps: float | None
    bearing: float | None
    t: float
    current_stop_sequence: int | None
    stop_id: str | None
    status: str | None
    predictions: list[ArrivalPrediction] = field(default_factory=list)
    new_arrivals: list[ObservedArrival] = field(default_factory=list)
    driver_id: str | None = None
    occupancy: int | None = None
    service_date: date | None = None
    on_route: bool = True


@dataclass(frozen=True)
class BoardRow:
    """One line of a stop board: a trip's next arrival at the stop.

    ``expected_t`` is the prediction when ``live`` (a vehicle runs the trip), else the
    timetable (``scheduled_t``). Times are POSIX seconds.
    """

    route_short_name: str
    headsign: str
    trip_id: str
    scheduled_t: float
    expected_t: float
    live: bool
    vehicle_id: str | None = None
    route_id: str | None = None
    stop_sequence: int | None = None
    lower_t: float | None = None
    upper_t: float | None = None

    @property
    def delay_s(self) -> float:
        """Expected minus scheduled (positive: late)."""
        return self.expected_t - self.scheduled_t


# ======================================================================== trip plans
@dataclass
class _Route:
    """What the fleet needs of a feed trip, computed once (template times)."""

    trip_id: str
    route_id: str
    stop_ids: list[str]
    sequence: list[int]
    arrival_s: np.ndarray
    departure_s: np.ndarray
    stop_dist: np.ndarray  # along the snapper's shape, non-decreasing
    model_dist: np.ndarray | None  # the predictor's frame where it differs (else None)
    snapper: ShapeSnapper
    timed: bool = True  # False: the feed gives no times; these are UNTIMED_PACE_MPS's


@dataclass
class _Run:
    """One trip (or instance) being run on one service date."""

    key: str  # trip id, or instance id of a frequency-based trip
    route: _Route
    service_date: date
    origin: float
    shift_s: float  # instance start minus template departure
    arrival_t: np.ndarray  # POSIX seconds, per stop
    departure_t: np.ndarray
    start_time: str  # HH:MM:SS: a frequency run's first departure, else the first arrival
    device_named: bool


class _Vehicle:
    """Live state of one vehicle."""

    __slots__ = ("vehicle_id", "recent", "run", "dist", "prev_t", "prev_d", "prev_speed",
                 "next_i", "at_i", "at_arr_t", "at_last_t", "boardings", "alightings",
                 "finished", "finished_key", "last_key", "next_assign_t", "off_since",
                 "forecast_t", "delay", "last", "snap_lat", "snap_lon", "on_route",
                 "assigned_t", "assign_failures", "quiet")

    def __init__(self, vehicle_id: str) -> None:
        self.vehicle_id = vehicle_id
        self.recent: deque[Ping] = deque(maxlen=30)
        self.run: _Run | None = None
        self.dist = math.nan
        self.prev_t = math.nan
        self.prev_d = math.nan
        self.prev_speed: float | None = None
        self.next_i = 0  # the next stop not yet reached
        self.at_i = -1  # the stop the vehicle stands at (-1: none)
        self.at_arr_t = math.nan
        self.at_last_t = math.nan
        self.boardings: int | None = None
        self.alightings: int | None = None
        self.finished = False
        self.finished_key: str | None = None
        self.last_key: str | None = None  # the trip run last (for its block)
        self.next_assign_t = -math.inf
        self.off_since = math.nan
        self.forecast_t = -math.inf
        self.delay: float | None = None
        self.last: Ping | None = None
        self.snap_lat = math.nan
        self.snap_lon = math.nan
        self.on_route = False
        self.assigned_t = math.nan
        self.assign_failures = 0  # in a row: the retries back off
        self.quiet = False  # silent for stale_s at the last release_due


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ============================================================================ the fleet
class LiveFleet:
    """Live positions, stop passages and arrival predictions of a whole fleet.

    Parameters
    ----------
    feed : Feed
        The timetable the vehicles run.
    predictor : ArrivalPredictor, optional
        A trained predictor; without one no predictions are made (delays and stop
        passages still are).
    timezone : str, optional
        The agency's IANA zone (default: the feed's first agency's, else UTC).
    max_speed_mps : float
        Fastest plausible speed between pings: faster jumps are rejected.
    forecast_every_s : float
        Least time (ping time) between two forecasts of a vehicle's trip, except on a
        new trip or a stop passage.
    at_stop_m : float
        A vehicle slower than ``stopped_mps`` this close to a stop is dwelling there.
    stopped_mps : float
        Speed under which a vehicle counts as standing.
    assign_retry_s : float
        Least time between two trip assignment attempts of a vehicle while none fits
        (doubling, up to 8 times, while nothing keeps fitting).
    off_route_s : float
        A vehicle off its trip's shape this long loses an assigned (not device-named)
        trip, which is then assigned again.
    stale_s : float
        A vehicle that has not reported for this long is left out of the read side
        (:meth:`vehicles`, :meth:`trip_states`, :meth:`predictions`, the live rows of
        :meth:`stop_board`) and its trip's forecast is dropped (:meth:`release_due`).
    standing_retry_s : float
        A vehicle at the first stop of the trip it fits best is assigned that trip
        only once it leaves (several buses wait at a terminus) or when it is the next
        trip of the vehicle's block; until then it is tried again this often.
    keep_arrivals : int
        How many observed arrivals :attr:`arrivals_log` keeps.

    Examples
    --------
    >>> fleet = LiveFleet(feed, predictor)                        # doctest: +SKIP
    >>> update = fleet.process(ping)                              # doctest: +SKIP
    >>> fleet.stop_board("S12", now=time.time())                 # doctest: +SKIP
    """

    def __init__(self, feed: Feed, predictor: ArrivalPredictor | None = None,
                 timezone: str | None = None, *, max_speed_mps: float = 33.0,
                 forecast_every_s: float = 5.0, at_stop_m: float = 25.0,
                 stopped_mps: float = 1.0, assign_retry_s: float = 20.0,
                 off_route_s: float = 90.0, stale_s: float = STALE_S,
                 standing_retry_s: float = 5.0, keep_arrivals: int = 500_000) -> None:
        self.feed = feed
        self.predictor = predictor
        if timezone is None:
            agency = next(iter(feed.agencies.values()), None)
            timezone = agency.timezone if agency is not None and agency.timezone else "UTC"
        self.timezone = timezone
        self._zone = ZoneInfo(timezone)
        self.max_speed_mps = float(max_speed_mps)
        self.forecast_every_s = float(forecast_every_s)
        self.at_stop_m = float(at_stop_m)
        self.stopped_mps = float(stopped_mps)
        self.assign_retry_s = float(assign_retry_s)
        self.off_route_s = float(off_route_s)
        self.stale_s = float(stale_s)
        self.standing_retry_s = float(standing_retry_s)
        self.cleaner = PingCleaner(max_speed_mps=self.max_speed_mps)
        self.assigner = TripAssigner(feed, max_speed_mps=self.max_speed_mps)
        #: The stop passages observed so far, oldest first (the latest
        #: ``keep_arrivals``; every one is also on the update that completed it).
        self.arrivals_log: deque[ObservedArrival] = deque(maxlen=keep_arrivals)
        self._vehicles: dict[str, _Vehicle] = {}
        self._routes: dict[str, _Route | None] = {}
        self._forecasts: dict[str, tuple[StopForecast, str, _Run]] = {}
        self._origins: dict[date, float] = {}
        self._services: dict[date, set[str]] = {}
        self._stop_rows: dict[str, np.ndarray] | None = None
        self._row_trip: np.ndarray | None = None
        self._served: dict[tuple[date, str], str] = {}  # runs given to a vehicle
        # how long after midnight the previous service day's trips run (times > 24:00)
        times = feed.stop_times.arrival_s
        latest = float(np.nanmax(times)) if len(times) and np.isfinite(times).any() else 0.0
        for periods in feed.frequencies.values():
            latest = max(latest, *(p.end_s + 3600.0 for p in periods))
        self._after_midnight_s = max(0.0, latest - 86400.0) + 3600.0

    # ================================================================== intake
    def process(self, ping: Ping, now: float | None = None) -> VehicleUpdate | None:
        """Take one ping as received (any order) and update its vehicle.

        Parameters
        ----------
        ping : Ping
        now : float, optional
            Receive time (POSIX seconds): pings far in the future are rejected.

        Returns
        -------
        VehicleUpdate or None
            The update of the newest ping the cleaner released (with the stop passages
            of every ping released now), or None when the ping is held back for
            reordering or was rejected (counted in :attr:`rejected`).
        """
        released = self.cleaner.accept(ping, now)
        if not released:
            return None
        if len(released) == 1:
            return self._advance(released[0])
        return self._merge([self._advance(p) for p in released])

    def release_due(self, now: float) -> list[VehicleUpdate]:
        """Process pings held for reordering longer than the cleaner waits, and drop
        the predictions of trips whose vehicle went quiet for ``stale_s`` (the read
        side leaves such a vehicle out until it reports again).

        Call on a timer (every second or so).
        """
        out = [self._advance(p) for p in self.cleaner.release_due(now)]
        for state in self._vehicles.values():
            state.quiet = state.last is None or now - state.last.t > self.stale_s
        for key, (_f, vehicle_id, _run) in list(self._forecasts.items()):
            state = self._vehicles.get(vehicle_id)
            if state is None or state.quiet:
                del self._forecasts[key]
        oldest = self._candidate_days(now)[-1] - timedelta(days=1)
        if self._served and min(day for day, _ in self._served) < oldest:
            self._served = {k: v for k, v in self._served.items() if k[0] >= oldest}
        return out

    def flush(self) -> list[VehicleUpdate]:
        """Process every ping still held for reordering (end of a replay)."""
        return [self._advance(p) for p in self.cleaner.flush()]

    @property
    def rejected(self) -> dict[str, dict[str, int]]:
        """Rejected pings per vehicle and reason (see ``pings.REJECT_REASONS``)."""
        return self.cleaner.rejected

    def rejected_totals(self) -> dict[str, int]:
        """Rejected pings of the whole fleet per reason."""
        totals: dict[str, int] = {}
        for reasons in self.cleaner.rejected.values():
            for reason, n in reasons.items():
                totals[reason] = totals.get(reason, 0) + n
        return totals

    @staticmethod
    def _merge(updates: list[VehicleUpdate]) -> VehicleUpdate:
        last = updates[-1]
        arrivals = [a for u in updates for a in u.new_arrivals]
        predictions = last.predictions or next(
            (u.predictions for u in reversed(updates) if u.predictions), [])
        if arrivals != last.new_arrivals or predictions is not last.predictions:
            last = replace(last, new_arrivals=arrivals, predictions=predictions)
        return last

    # ================================================================ one ping
    def _advance(self, ping: Ping) -> VehicleUpdate:
        state = self._vehicles.get(ping.vehicle_id)
        if state is None:
            state = self._vehicles[ping.vehicle_id] = _Vehicle(ping.vehicle_id)
        state.recent.append(ping)
        state.last = ping
        state.quiet = False
        t = ping.t
        arrivals: list[ObservedArrival] = []
        refresh = False
        run = state.run
        # a device naming another trip has started it
        if run is not None and ping.trip_id and ping.trip_id != run.key \
                and split_instance_id(ping.trip_id)[0] != run.route.trip_id \
                and split_instance_id(ping.trip_id)[0] in self.feed.trips:
            self._end_run(state, arrivals, t)
            run = None
            state.next_assign_t = -math.inf
        if run is not None and state.finished:
            run = None
        if run is None and t >= state.next_assign_t:
            run = self._assign(state, ping)
            refresh = run is not None
        if run is None or state.run is None:
            state.on_route = False
            return VehicleUpdate(ping.vehicle_id, None, None, ping.lat, ping.lon, ping.lat,
                                 ping.lon, None, None, ping.speed_mps, ping.bearing_deg, t,
                                 None, None, None, [], arrivals, ping.driver_id,
                                 ping.occupancy, None, False)

        route = run.route
        # ---------------------------------------------------------------- snap
        previous = state.dist if math.isfinite(state.dist) else None
        if previous is None:
            found = route.snapper.snap(ping.lat, ping.lon, None)
        else:
            dt = t - state.prev_t if math.isfinite(state.prev_t) else 60.0
            advance = max(dt * self.max_speed_mps, 200.0)
            found = route.snapper.snap(ping.lat, ping.lon, previous, None, advance)
        if found is None:
            state.on_route = False
            if not math.isfinite(state.off_since):
                state.off_since = t
            if not run.device_named and t - state.off_since > self.off_route_s:
                self._end_run(state, arrivals, t)  # not this trip after all
                state.next_assign_t = t
            return self._update(state, ping, arrivals, [])
        state.off_since = math.nan
        state.on_route = True
        d = found.dist_m
        state.snap_lat, state.snap_lon = found.lat, found.lon
        speed = ping.speed_mps
        if speed is None and math.isfinite(state.prev_t) and t > state.prev_t:
            speed = (d - state.prev_d) / (t - state.prev_t)
        if math.isfinite(state.prev_t):
            passed = self._passages(state, run, t, d, speed, ping, arrivals)
        else:
            passed = self._start_at(state, run, t, d, speed, arrivals)
        state.prev_t, state.prev_d, state.prev_speed, state.dist = t, d, speed, d
        refresh = refresh or passed
        timed = route.timed  # without a timetable there is no delay to speak of
        if state.finished:
            self._forecasts.pop(run.key, None)
            state.delay = self._delay(run, state, t, d) if timed else None
            return self._update(state, ping, arrivals, [])
        state.delay = self._delay(run, state, t, d) if timed else None
        predictions: list[ArrivalPrediction] = []
        if self.predictor is not None and timed:
            predictions = self._predict(state, run, t, d, refresh)
        return self._update(state, ping, arrivals, predictions)

    def _update(self, state: _Vehicle, ping: Ping, arrivals: list[ObservedArrival],
                predictions: list[ArrivalPrediction]) -> VehicleUpdate:
        run = state.run
        if run is None:
            return VehicleUpdate(ping.vehicle_id, None, None, ping.lat, ping.lon, ping.lat,
                                 ping.lon, None, None, ping.speed_mps, ping.bearing_deg,
                                 ping.t, None, None, None, predictions, arrivals,
                                 ping.driver_id, ping.occupancy, None, False)
        route = run.route
        sequence, stop_id, status = self._stop_status(state)
        lat, lon = (state.snap_lat, state.snap_lon) if state.on_route else (ping.lat, ping.lon)
        return VehicleUpdate(ping.vehicle_id, run.key, route.route_id, lat, lon, ping.lat,
                             ping.lon, state.dist if math.isfinite(state.dist) else None,
                             state.delay, ping.speed_mps, ping.bearing_deg, ping.t, sequence,
                             stop_id, status, predictions, arrivals, ping.driver_id,
                             ping.occupancy, run.service_date, state.on_route)

    @staticmethod
    def _stop_status(state: _Vehicle) -> tuple[int | None, str | None, str | None]:
        run = state.run
        if run is None:
            return None, None, None
        route = run.route
        n = len(route.stop_ids)
        if state.at_i >= 0:
            i, status = state.at_i, STOPPED_AT
        elif state.finished:
            i, status = n - 1, STOPPED_AT
        else:
            i, status = min(state.next_i, n - 1), IN_TRANSIT_TO
        return route.sequence[i], route.stop_ids[i], status

    # ============================================================ assignment
    def _origin(self, day: date) -> float:
        origin = self._origins.get(day)
        if origin is None:
            origin = self._origins[day] = service_day_origin(day, self.timezone)
        return origin

    def _runs_on(self, day: date) -> set[str]:
        services = self._services.get(day)
        if services is None:
            services = self._services[day] = self.feed.services_on(day)
        return services

    def _candidate_days(self, t: float) -> list[date]:
        """Service dates a ping may belong to: its local date, then the day before
        (trips after midnight run on the previous day's timetable)."""
        local = datetime.fromtimestamp(t, self._zone)
        today = local.date()
        if local.hour * 3600 + local.minute * 60 < self._after_midnight_s:
            return [today, today - timedelta(days=1)]
        return [today]

    def _route(self, trip_id: str) -> _Route | None:
        """The fleet's plan of a feed trip (None when it cannot be followed)."""
        if trip_id in self._routes:
            return self._routes[trip_id]
        route = None
        snapper = self.assigner.snapper(trip_id)
        try:
            schedule = self.feed.schedule(trip_id)
        except KeyError:
            schedule = None
        if snapper is not None and schedule is not None and len(schedule) >= 2:
            given = np.asarray(schedule.shape_dist_m, dtype=float)
            model_dist = None
            if np.isfinite(given).all() and not (np.diff(given) < 0).any():
                dist = given.copy()
            else:
                stops = [self.feed.stops[s] for s in schedule.stop_ids]
                got, _ = snapper.snap_track([s.lat for s in stops], [s.lon for s in stops],
                                            max_advance_m=math.inf, max_offset_m=math.inf)
                dist = np.where(np.isfinite(given), given, got)
                model_dist = _stop_distances(self.feed, schedule.stop_ids)
            dist = np.maximum.accumulate(np.nan_to_num(dist))
            arrival = np.asarray(schedule.arrival_s, dtype=float)
            departure = np.asarray(schedule.departure_s, dtype=float)
            # untimed stops: interpolate the timetable along the shape
            timed = np.isfinite(arrival) & np.isfinite(departure)
            if timed.sum() >= 2 and not timed.all():
                arrival = np.where(timed, arrival, np.interp(dist, dist[timed], arrival[timed]))
                departure = np.where(timed, departure,
                                     np.interp(dist, dist[timed], departure[timed]))
            has_times = bool(timed.sum() >= 2)
            if not has_times:
                # no timetable: each run is timed from when its vehicle is first seen,
                # at a nominal pace (predictions only, no schedule deviation)
                arrival = (dist - dist[0]) / UNTIMED_PACE_MPS
                departure = arrival.copy()
            if np.isfinite(arrival).all() and np.isfinite(departure).all():
                route = _Route(trip_id, self.feed.trips[trip_id].route_id,
                               list(schedule.stop_ids),
                               [int(s) for s in schedule.stop_sequence.tolist()],
                               arrival, departure, dist, model_dist, snapper, has_times)
        self._routes[trip_id] = route
        return route

    def _make_run(self, key: str, day: date, device_named: bool) -> _Run | None:
        base, start = split_instance_id(key)
        if key in self.feed.trips:
            base, start = key, None
        route = self._route(base)
        if route is None:
            return None
        shift = 0.0 if start is None else float(start) - float(route.departure_s[0])
        origin = self._origin(day)
        # a scheduled trip starts at its first arrival (as GTFS-realtime's start_time)
        return _Run(key, route, day, origin, shift, origin + shift + route.arrival_s,
                    origin + shift + route.departure_s,
                    _hms(route.arrival_s[0] if start is None else start), device_named)

    def _named_run(self, state: _Vehicle, ping: Ping) -> _Run | None:
        """The run of the (non frequency-based) trip a device names, on the service
        date whose timetable puts it nearest to the ping's time."""
        trip_id = ping.trip_id
        trip = self.feed.trips.get(trip_id)
        if trip is None or self.feed.frequencies.get(trip_id):
            return None
        route = self._route(trip_id)
        if route is not None and not route.timed:
            return self._untimed_run(state, ping, route)
        best, best_gap = None, math.inf
        for day in self._candidate_days(ping.t):
            if trip.service_id not in self._runs_on(day):
                continue
            run = self._make_run(trip_id, day, True)
            if run is None:
                return None
            gap = max(run.departure_t[0] - ping.t, ping.t - run.arrival_t[-1], 0.0)
            if gap < best_gap:
                best, best_gap = run, gap
        if best is not None and best_gap > 4 * 3600:
            return None  # a trip of another day
        return best

    def _assign(self, state: _Vehicle, ping: Ping) -> _Run | None:
        run = None
        if ping.trip_id and ping.trip_id in self.feed.trips \
                and not self.feed.frequencies.get(ping.trip_id):
            run = self._named_run(state, ping)
        else:
            recent = list(state.recent)[:-1]
            held = self._held_by_others(state)
            for day in self._candidate_days(ping.t):
                found = self.assigner.explain(ping, recent, day, self.timezone,
                                              previous_trip_id=state.last_key)
                trip_id = self._free_fit(found, day, held)
                if trip_id is not None:
                    named = bool(ping.trip_id) and \
                        split_instance_id(trip_id)[0] == split_instance_id(ping.trip_id)[0]
                    if not named and self._waiting_at_start(state, found):
                        state.next_assign_t = ping.t + self.standing_retry_s
                        return None
                    run = self._make_run(trip_id, day, named)
                    break
        if run is None and ping.trip_id and self.feed.frequencies.get(ping.trip_id):
            run = self._latest_instance(state, ping)
        if run is not None and (run.service_date, run.key) == state.finished_key:
            run = None  # the trip it has just finished: wait for the next one
        if run is None:
            # nothing fits: try again later, less often while nothing keeps fitting
            state.next_assign_t = ping.t + self.assign_retry_s * 2 ** min(
                state.assign_failures, 3)
            state.assign_failures += 1
            return None
        state.assign_failures = 0
        self._start_run(state, run)
        return run

    def _untimed_run(self, state: _Vehicle, ping: Ping, route: _Route) -> _Run | None:
        """A run of a trip without times: the trip a device names, started when the
        vehicle is first seen on it (several run at once all day, as an exact_times=0
        frequency trip's runs do, so each is named ``<trip_id>@HH:MM:SS``); none while
        the vehicle still stands at the end of its last run of the trip."""
        trip = self.feed.trips[route.trip_id]
        if state.finished_key is not None \
                and split_instance_id(state.finished_key[1])[0] == route.trip_id:
            lat, lon = route.snapper.point_at(route.stop_dist[-1])
            if distance_m(ping.lat, ping.lon, lat, lon) <= 2 * self.at_stop_m + 15.0:
                return None
        held = self._held_by_others(state) | set(self._served)
        for day in self._candidate_days(ping.t):
            if trip.service_id not in self._runs_on(day):
                continue
            start = int(ping.t - self._origin(day))
            while (day, instance_id(route.trip_id, start)) in held:
                start += 1
            return self._make_run(instance_id(route.trip_id, start), day, True)
        return None

    def _held_by_others(self, state: _Vehicle) -> set[tuple[date, str]]:
        """The runs other vehicles are on (unfinished)."""
        return {(v.run.service_date, v.run.key) for v in self._vehicles.values()
                if v.run is not None and not v.finished and v is not state}

    @staticmethod
    def _free_fit(found, day: date, held: set[tuple[date, str]]) -> str | None:
        """The assigner's choice, or where another vehicle runs it, the best fitting
        candidate no vehicle runs: one run has one vehicle (and one trip update)."""
        if found.trip_id is None or (day, found.trip_id) not in held:
            return found.trip_id
        free = [c for c in found.candidates if c.rejected is None and math.isfinite(c.cost)
                and (day, c.trip_id) not in held]
        return min(free, key=lambda c: c.cost).trip_id if free else None

    def _latest_instance(self, state: _Vehicle, ping: Ping) -> _Run | None:
        """The instance of the headway-based trip a device names that started last
        (by the ping's time) and no other vehicle runs: where its timetable is too
        rough for the assigner to place the vehicle (``exact_times=0`` times are only
        indicative)."""
        trip_id = ping.trip_id
        trip = self.feed.trips[trip_id]
        running = self._held_by_others(state)
        early = self.assigner.early_s
        for day in self._candidate_days(ping.t):
            if trip.service_id not in self._runs_on(day):
                continue
            s = ping.t - self._origin(day)
            starts = [start for period in self.feed.frequencies[trip_id]
                      for start in range(period.start_s, period.end_s, max(1, period.headway_s))
                      if start <= s + early]
            for start in sorted(starts, reverse=True):
                key = instance_id(trip_id, start)
                if (day, key) not in running and (day, key) != state.finished_key:
                    return self._make_run(key, day, True)
        return None

    def _waiting_at_start(self, state: _Vehicle, found) -> bool:
        """True when the vehicle is at the first stop of the trip it fits best and
        that trip is not the next of its block: buses of several trips wait at a
        terminus, and the one that leaves is known when it does."""
        best = next((c for c in found.candidates if c.trip_id == found.trip_id), None)
        if best is None or not math.isfinite(best.dist_m):
            return False
        route = self._route(trip_of(self.feed, found.trip_id).trip_id)
        if route is None or best.dist_m > route.stop_dist[0] + self.assigner.start_radius_m:
            return False
        if state.last_key is not None:
            block = trip_of(self.feed, state.last_key).block_id
            if block and block == trip_of(self.feed, found.trip_id).block_id:
                return False  # the block says which trip is next
        return True

    def _start_run(self, state: _Vehicle, run: _Run) -> None:
        state.run = run
        state.finished = False
        state.dist = math.nan
        state.prev_t = state.prev_d = math.nan
        state.prev_speed = None
        state.next_i, state.at_i = 0, -1
        state.at_arr_t = state.at_last_t = math.nan
        state.boardings = state.alightings = None
        state.off_since = math.nan
        state.forecast_t = -math.inf
        state.delay = None
        state.last_key = run.key
        state.assigned_t = state.last.t if state.last is not None else math.nan
        self._served[(run.service_date, run.key)] = state.vehicle_id

    def _end_run(self, state: _Vehicle, arrivals: list[ObservedArrival], t: float) -> None:
        """The vehicle leaves its trip: a dwell in progress ends with the last ping at
        the stop."""
        run = state.run
        if run is None:
            return
        if state.at_i >= 0 and not state.finished:
            self._emit(state, run, state.at_i, state.at_arr_t, state.at_last_t, arrivals)
        # the predictor's filter keeps what it learnt of the vehicle for its next trip
        self._forecasts.pop(run.key, None)
        state.run = None
        state.finished = False
        state.at_i = -1

    # =========================================================== stop passages
    def _start_at(self, state: _Vehicle, run: _Run, t: float, d: float,
                  speed: float | None, arrivals: list[ObservedArrival]) -> bool:
        """First position on a trip: stops behind are unknown, a stop here is where the
        vehicle stands."""
        dist = run.route.stop_dist
        i = int(np.searchsorted(dist, d - self.at_stop_m, side="left"))
        state.next_i = min(i, len(dist))
        if i == 1 and not run.device_named:
            self._left_first_stop(state, run, t, d, speed, arrivals)
        if i < len(dist) and abs(dist[i] - d) <= self.at_stop_m and \
                (speed is None or speed < self.stopped_mps or i == 0):
            state.at_i, state.at_arr_t, state.at_last_t = i, t, t
            state.next_i = i + 1
            if i == len(dist) - 1:
                return self._finish(state, run, t, arrivals)
        return True

    def _left_first_stop(self, state: _Vehicle, run: _Run, t: float, d: float,
                         speed: float | None, arrivals: list[ObservedArrival]) -> None:
        """A trip assigned as the vehicle leaves its first stop: the dwell there from
        the vehicle's recent pings."""
        route = run.route
        lat, lon = route.snapper.point_at(route.stop_dist[0])
        reach = self.at_stop_m + 15.0  # the stop's place on the shape, and GPS error
        stood = [p for p in list(state.recent)[:-1]
                 if p.t >= run.departure_t[0] - 3600
                 and distance_m(p.lat, p.lon, lat, lon) <= reach]
        if not stood:
            return
        last = stood[-1]
        arrive = last.t
        for p in reversed(stood):  # back through the consecutive pings at the stop
            if last.t - p.t > 1800:
                break
            arrive = p.t
        depart = last.t
        moved = d - route.stop_dist[0]
        if speed is not None and speed > 0.5 and moved > 0:
            depart = min(max(depart, t - 2.0 * moved / speed), t)
        boardings = [p.passengers_in for p in stood if p.passengers_in is not None]
        alightings = [p.passengers_out for p in stood if p.passengers_out is not None]
        state.boardings = sum(boardings) if boardings else None
        state.alightings = sum(alightings) if alightings else None
        self._emit(state, run, 0, arrive, depart, arrivals)

    def _passages(self, state: _Vehicle, run: _Run, t: float, d: float,
                  speed: float | None, ping: Ping, arrivals: list[ObservedArrival]) -> bool:
        """Stops left, passed or reached between the previous position and this one."""
        dist = run.route.stop_dist
        n = len(dist)
        near = self.at_stop_m
        slow = speed is not None and speed < self.stopped_mps
        prev_t, prev_d = state.prev_t, state.prev_d
        emitted = len(arrivals)
        changed = False
        if state.at_i >= 0:
            s = dist[state.at_i]
            if d <= s + near and (slow or d <= s + 0.4 * near):
                if slow:
                    state.at_last_t = t  # still standing there
                self._count(state, ping)
                return False
            # left: the departure, from the last ping standing at the stop and how far
            # it got since (accelerating from rest); never before the arrival
            moved = d - s
            depart = state.at_last_t if math.isfinite(state.at_last_t) else state.at_arr_t
            if speed is not None and speed > 0.5 and moved > 0:
                depart = max(depart, t - 2.0 * moved / speed)
            depart = min(depart, t)
            self._emit(state, run, state.at_i, state.at_arr_t, depart, arrivals)
            state.at_i = -1
            changed = True
            prev_t, prev_d = depart, s
        while state.next_i < n:
            i = state.next_i
            s = dist[i]
            reached = d >= s or (slow and d >= s - near)
            if not reached:
                break
            state.next_i = i + 1
            changed = True
            # when the progress crossed the stop (or stopped short of it, standing)
            arrive = self._crossing(prev_t, prev_d, t, d, s, state.prev_speed, slow)
            if i == n - 1:
                self._emit(state, run, i, arrive, arrive, arrivals)
                self._finish(state, run, t, arrivals)
                break
            if d <= s + near:
                # at the stop (braking into it, or standing): a dwell until it leaves
                state.at_i, state.at_arr_t = i, arrive
                state.at_last_t = t if slow else math.nan
                state.boardings = state.alightings = None
                self._count(state, ping)
                break
            # passed between two pings: no dwell seen
            self._emit(state, run, i, arrive, arrive, arrivals)
        return changed or len(arrivals) > emitted

    @staticmethod
    def _crossing(t0: float, d0: float, t1: float, d1: float, s: float,
                  v0: float | None, standing: bool) -> float:
        """When progress went from ``d0`` (at ``t0``) through ``s`` towards ``d1``."""
        if not math.isfinite(t0) or t1 <= t0:
            return t1
        if standing and d1 < s + 5.0:
            # braked to a halt at the stop: uniform deceleration from v0 over s - d0
            gap = max(min(s, d1) - d0, 0.0)
            if v0 is not None and v0 > 0.5:
                return min(t0 + 2.0 * gap / v0, t1)
        if d1 <= d0:
            return t1
        w = min(max((s - d0) / (d1 - d0), 0.0), 1.0)
        return t0 + w * (t1 - t0)

    @staticmethod
    def _count(state: _Vehicle, ping: Ping) -> None:
        if ping.passengers_in is not None:
            state.boardings = (state.boardings or 0) + ping.passengers_in
        if ping.passengers_out is not None:
            state.alightings = (state.alightings or 0) + ping.passengers_out

    def _emit(self, state: _Vehicle, run: _Run, i: int, arrive: float, depart: float,
              arrivals: list[ObservedArrival]) -> None:
        route = run.route
        observed = ObservedArrival(route.trip_id, route.sequence[i], route.stop_ids[i],
                                   float(arrive), float(max(depart, arrive)),
                                   state.vehicle_id, run.service_date, state.boardings,
                                   state.alightings)
        state.boardings = state.alightings = None
        arrivals.append(observed)
        self.arrivals_log.append(observed)

    def _finish(self, state: _Vehicle, run: _Run, t: float,
                arrivals: list[ObservedArrival]) -> bool:
        state.finished = True
        state.finished_key = (run.service_date, run.key)
        state.at_i = -1
        state.next_assign_t = t  # its next trip may start at once
        self._forecasts.pop(run.key, None)
        return True

    # ============================================================== schedule
    @staticmethod
    def _delay(run: _Run, state: _Vehicle, t: float, d: float) -> float:
        """Schedule deviation at the vehicle's position (+ late); a vehicle waiting at
        its first stop is not late before its departure time."""
        route = run.route
        dist = route.stop_dist
        n = len(dist)
        if state.at_i >= 0:
            k = state.at_i
            delay = t - run.departure_t[k]
            return max(delay, 0.0) if k == 0 else delay
        if state.finished:
            return t - run.arrival_t[n - 1]
        k = min(max(state.next_i - 1, 0), n - 2)
        length = dist[k + 1] - dist[k]
        fraction = min(max((d - dist[k]) / length, 0.0), 1.0) if length > 0 else 1.0
        scheduled = run.departure_t[k] + fraction * (run.arrival_t[k + 1] - run.departure_t[k])
        delay = t - scheduled
        if state.next_i == 0:
            delay = max(delay, 0.0)
        return float(delay)

    # ============================================================ predictions
    def _model_trip(self, run: _Run) -> str:
        """The trip id the predictor knows the run by (an instance gets a plan of its
        own, the template's shifted to its start)."""
        if not run.shift_s and run.key in self.feed.trips:
            return run.key
        predictor = self.predictor
        plans = predictor._plans  # noqa: SLF001 - instances are not in the feed
        if predictor._plans_feed is not self.feed:  # noqa: SLF001
            predictor._use_feed(self.feed)  # noqa: SLF001
            plans = predictor._plans  # noqa: SLF001
        if run.key not in plans:
            template = predictor._plan(self.feed, run.route.trip_id)  # noqa: SLF001
            plans[run.key] = replace(template, trip_id=run.key,
                                     arrival_s=template.arrival_s + run.shift_s,
                                     departure_s=template.departure_s + run.shift_s)
        return run.key

    def _predict(self, state: _Vehicle, run: _Run, t: float, d: float,
                 refresh: bool) -> list[ArrivalPrediction]:
        route = run.route
        if route.model_dist is not None:
            d = float(np.interp(d, route.stop_dist, route.model_dist))
        reached = state.at_i if state.at_i >= 0 else state.next_i - 1
        progress = (route.sequence[reached] if reached >= 0 else None, d, t)
        trip_id = self._model_trip(run)
        due = refresh or t - state.forecast_t >= self.forecast_every_s
        try:
            if not due:
                self.predictor.observe(self.feed, trip_id, state.vehicle_id, progress,
                                       run.service_date, self.timezone)
                return []
            forecast = self.predictor.forecast(self.feed, trip_id, state.vehicle_id,
                                               progress, run.service_date, self.timezone)
        except KeyError:
            if trip_id == run.key and trip_id not in self.feed.trips:
                # the predictor relearnt and dropped the instance's plan: once more
                self.predictor._plans.pop(trip_id, None)  # noqa: SLF001
                self._model_trip(run)
                return []
            raise
        state.forecast_t = t
        self._forecasts[run.key] = (forecast, state.vehicle_id, run)
        return self._materialise(forecast, state.vehicle_id, run)

    @staticmethod
    def _materialise(forecast: StopForecast, vehicle_id: str,
                     run: _Run) -> list[ArrivalPrediction]:
        route = run.route
        first = forecast.first
        return [ArrivalPrediction(run.key, seq, stop, vehicle_id, p, lo, hi, s,
                                  forecast.made_at)
                for seq, stop, p, lo, hi, s in zip(
                    route.sequence[first:], route.stop_ids[first:],
                    forecast.predicted_t.tolist(), forecast.lower_t.tolist(),
                    forecast.upper_t.tolist(), forecast.scheduled_t.tolist(), strict=True)]

    # ============================================================== read side
    def _quiet(self, state: _Vehicle, now: float | None) -> bool:
        """True when the vehicle has not reported for ``stale_s`` by ``now``, or by
        the last :meth:`release_due` when ``now`` is None."""
        if now is None:
            return state.quiet
        return state.last is None or now - state.last.t > self.stale_s

    def _under_way(self, now: float | None):
        """``(forecast, vehicle_id, run)`` of every trip under way whose vehicle is not
        quiet: the latest forecast, else the timetable shifted by the delay."""
        for state in self._vehicles.values():
            run = state.run
            if run is None or state.finished or state.last is None or self._quiet(state, now):
                continue
            entry = self._forecasts.get(run.key)
            if entry is None or entry[1] != state.vehicle_id or entry[2] is not run:
                entry = (self._timetable_forecast(state, run), state.vehicle_id, run)
            elif entry[0].first != self._first_ahead(state, run):
                entry = (self._aligned(entry[0], state, run), state.vehicle_id, run)
            yield entry

    @staticmethod
    def _first_ahead(state: _Vehicle, run: _Run) -> int:
        """The index of the first stop the vehicle has not reached (or left) yet."""
        first = state.at_i + 1 if state.at_i >= 0 else state.next_i
        return min(max(first, 0), len(run.route.stop_ids))

    @classmethod
    def _aligned(cls, forecast: StopForecast, state: _Vehicle, run: _Run) -> StopForecast:
        """A forecast that starts at the first stop ahead of the vehicle: the stops it
        has reached since are left out; a stop the predictor counts as reached (the
        bus is a few metres from it) and the fleet not yet is due now, with no
        interval."""
        first = cls._first_ahead(state, run)
        if first > forecast.first:
            k = first - forecast.first
            return replace(forecast, first=first, predicted_t=forecast.predicted_t[k:],
                           lower_t=forecast.lower_t[k:], upper_t=forecast.upper_t[k:],
                           scheduled_t=forecast.scheduled_t[k:])
        k = forecast.first - first
        due = np.full(k, float(forecast.made_at))
        if len(forecast.predicted_t):
            due = np.minimum(due, forecast.predicted_t[0])
        unknown = np.full(k, np.nan)
        scheduled = run.arrival_t[first:forecast.first] if run.route.timed else unknown
        return replace(forecast, first=first,
                       predicted_t=np.concatenate([due, forecast.predicted_t]),
                       lower_t=np.concatenate([unknown, forecast.lower_t]),
                       upper_t=np.concatenate([unknown, forecast.upper_t]),
                       scheduled_t=np.concatenate([scheduled, forecast.scheduled_t]))

    @staticmethod
    def _timetable_forecast(state: _Vehicle, run: _Run) -> StopForecast:
        """The stops not reached yet at their timetabled times plus the vehicle's
        current delay (not before its last report, never decreasing along the trip),
        without an interval: what a consumer would propagate from the trip's delay."""
        first = LiveFleet._first_ahead(state, run)
        made_at = state.last.t
        scheduled = run.arrival_t[first:]
        if run.route.timed:
            delay = state.delay if state.delay is not None and math.isfinite(state.delay) \
                else 0.0
        elif math.isfinite(state.dist):  # the nominal pace from where the vehicle is
            delay = LiveFleet._delay(run, state, made_at, state.dist)
        else:
            delay = 0.0
        predicted = np.maximum.accumulate(np.maximum(scheduled + delay, made_at)) \
            if len(scheduled) else scheduled.copy()
        unknown = np.full(len(scheduled), np.nan)
        return StopForecast(run.key, first, predicted, unknown, unknown.copy(),
                            scheduled.copy() if run.route.timed else unknown.copy(), made_at,
                            delay if run.route.timed else 0.0)

    def vehicles(self, now: float | None = None) -> list[VehicleState]:
        """Every vehicle's latest state, for the vehicle positions feed.

        Parameters
        ----------
        now : float, optional
            POSIX seconds: vehicles silent for more than ``stale_s`` are left out
            (none when None).
        """
        out = []
        for state in self._vehicles.values():
            ping = state.last
            if ping is None or self._quiet(state, now):
                continue
            run = state.run
            sequence, stop_id, status = self._stop_status(state)
            on = run is not None and state.on_route
            out.append(VehicleState(
                vehicle_id=state.vehicle_id, trip_id=run.key if run else None,
                route_id=run.route.route_id if run else None,
                start_date=run.service_date if run else None,
                lat=state.snap_lat if on else ping.lat, lon=state.snap_lon if on else ping.lon,
                bearing=ping.bearing_deg, speed=ping.speed_mps, t=ping.t,
                current_stop_sequence=sequence, stop_id=stop_id, current_status=status))
        return out

    def trip_states(self, now: float | None = None) -> list[TripState]:
        """The trips under way (one per vehicle on an unfinished trip), each stamped
        with its vehicle's last report; with ``now``, not those of quiet vehicles
        (see :meth:`vehicles`)."""
        out = []
        for state in self._vehicles.values():
            run = state.run
            if run is None or state.finished or state.last is None or self._quiet(state, now):
                continue
            trip = self.feed.trips[run.route.trip_id]
            out.append(TripState(trip_id=run.key, route_id=trip.route_id,
                                 direction_id=trip.direction_id, start_date=run.service_date,
                                 start_time=run.start_time, vehicle_id=state.vehicle_id,
                                 delay_s=state.delay, timestamp=state.last.t))
        return out

    def predictions(self, now: float | None = None) -> list[ArrivalPrediction]:
        """The latest predictions of every trip under way, by trip then stop: a
        prediction for each stop not reached yet (see the module's notes); with
        ``now``, none for the trips of quiet vehicles (see :meth:`vehicles`)."""
        out: list[ArrivalPrediction] = []
        for forecast, vehicle_id, run in self._under_way(now):
            out.extend(self._materialise(forecast, vehicle_id, run))
        return out

    def trip_predictions(self, trip_id: str, now: float | None = None
                         ) -> list[ArrivalPrediction]:
        """The latest predictions of one trip (or instance); empty when none."""
        for entry in self._under_way(now):
            if entry[2].key == trip_id:
                return self._materialise(*entry)
        return []

    def vehicle_update(self, vehicle_id: str) -> VehicleUpdate | None:
        """The latest state of one vehicle as an update (no new arrivals)."""
        state = self._vehicles.get(vehicle_id)
        if state is None or state.last is None:
            return None
        run = state.run
        preds = self.trip_predictions(run.key) if run is not None else []
        return self._update(state, state.last, [], preds)

    # -------------------------------------------------------------- stop board
    def _stop_index(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Stop-time rows of each stop, and the trip number of each row (built once)."""
        if self._stop_rows is None:
            st = self.feed.stop_times
            counts = np.diff(st.trip_start)
            self._row_trip = np.repeat(np.arange(len(st.trip_ids)), counts)
            order = np.argsort(st.stop_index, kind="stable")
            keys = st.stop_index[order]
            bounds = np.flatnonzero(np.diff(keys)) + 1
            self._stop_rows = {st.stop_ids[int(group[0])]: rows for group, rows in zip(
                np.split(keys, bounds), np.split(order, bounds), strict=True) if len(group)}
        return self._stop_rows, self._row_trip

    def stop_board(self, stop_id: str, now: float, limit: int = 10, *,
                   horizon_s: float = 3 * 3600, grace_s: float = 60.0) -> list[BoardRow]:
        """The next arrivals at a stop: live predictions, and the timetable for trips
        no vehicle runs yet (frequency-based trips as instances).

        Parameters
        ----------
        stop_id : str
        now : float
            POSIX seconds.
        limit : int
            Most rows.
        horizon_s : float
            How far ahead the timetable is read.
        grace_s : float
            Rows expected up to this long ago are still shown (the bus may be at the
            stop).

        Returns
        -------
        list of BoardRow
            Ordered by expected time. A trip's last stop (where it only sets down) is
            left out. The trip of a vehicle quiet for ``stale_s`` is back on the
            timetable.

        Raises
        ------
        KeyError
            When ``stop_id`` is not a stop of the feed.
        """
        feed = self.feed
        if stop_id not in feed.stops:
            raise KeyError(f"stop_id: {stop_id!r} is not a stop of the feed")
        rows: list[BoardRow] = []
        live_keys: set[tuple[date, str]] = set()
        for forecast, vehicle_id, run in self._under_way(now):
            live_keys.add((run.service_date, run.key))
            route = run.route
            stops = route.stop_ids
            n = len(stops)
            for j in range(forecast.first, n - 1):
                if stops[j] != stop_id:
                    continue
                i = j - forecast.first
                expected = float(forecast.predicted_t[i])
                if expected < now - grace_s or expected > now + horizon_s:
                    continue
                lower, upper = float(forecast.lower_t[i]), float(forecast.upper_t[i])
                known = math.isfinite(lower) and math.isfinite(upper)
                rows.append(self._board_row(run.key, route.trip_id, float(
                    forecast.scheduled_t[i]), expected, True, vehicle_id,
                    route.sequence[j], lower if known else None, upper if known else None))
        # trips given to a vehicle are live or done: not in the timetable part, but
        # for those of a quiet vehicle still under way
        quiet = {(v.run.service_date, v.run.key) for v in self._vehicles.values()
                 if v.run is not None and not v.finished and self._quiet(v, now)}
        taken = live_keys | (set(self._served) - quiet)
        stop_rows, row_trip = self._stop_index()
        rows_here = stop_rows.get(stop_id)
        if rows_here is not None and len(rows_here):
            st = feed.stop_times
            trip_number = row_trip[rows_here]
            last_row = st.trip_start[trip_number + 1] - 1
            keep = rows_here != last_row
            rows_here, trip_number = rows_here[keep], trip_number[keep]
            first_row = st.trip_start[trip_number]
            for day in self._candidate_days(now):
                origin = self._origin(day)
                services = self._runs_on(day)
                s_now = now - origin
                times = st.departure_s[rows_here]
                times = np.where(np.isfinite(times), times, st.arrival_s[rows_here])
                for r, trip_n, time_s, first in zip(rows_here.tolist(), trip_number.tolist(),
                                                    times.tolist(), first_row.tolist(), strict=True):
                    trip_id = st.trip_ids[trip_n]
                    trip = feed.trips.get(trip_id)
                    if trip is None or trip.service_id not in services \
                            or not math.isfinite(time_s):
                        continue
                    periods = feed.frequencies.get(trip_id)
                    if periods:
                        offset = time_s - float(st.departure_s[first])
                        for period in periods:
                            lo = max(period.start_s, s_now - grace_s - offset)
                            k0 = max(0, math.ceil((lo - period.start_s) / period.headway_s))
                            start = period.start_s + k0 * period.headway_s
                            while start < period.end_s and start + offset <= s_now + horizon_s:
                                key = instance_id(trip_id, start)
                                if (day, key) not in taken:
                                    rows.append(self._board_row(
                                        key, trip_id, origin + start + offset,
                                        origin + start + offset, False, None,
                                        int(st.stop_sequence[r])))
                                start += period.headway_s
                        continue
                    if not (s_now - grace_s <= time_s <= s_now + horizon_s):
                        continue
                    if (day, trip_id) in taken:
                        continue
                    rows.append(self._board_row(trip_id, trip_id, origin + time_s,
                                                origin + time_s, False, None,
                                                int(st.stop_sequence[r])))
        rows.sort(key=lambda row: (row.expected_t, not row.live, row.trip_id))
        return rows[:limit]

    def _board_row(self, key: str, trip_id: str, scheduled: float, expected: float,
                   live: bool, vehicle_id: str | None, sequence: int | None,
                   lower: float | None = None, upper: float | None = None) -> BoardRow:
        feed = self.feed
        trip = feed.trips[trip_id]
        route = feed.routes.get(trip.route_id)
        headsign = trip.headsign
        if not headsign:
            try:
                last = feed.schedule(trip_id).stop_ids[-1]
                headsign = feed.stops[last].name if last in feed.stops else ""
            except KeyError:
                headsign = ""
        short = (route.short_name or route.long_name) if route else trip.route_id
        return BoardRow(short, headsign, key, scheduled, expected, live, vehicle_id,
                        trip.route_id, sequence, lower, upper)
