"""GTFS-realtime feeds: vehicle positions, trip updates and service alerts.

Messages are built with the official bindings (``gtfs-realtime-bindings``,
``google.transit.gtfs_realtime_pb2``) so that what leaves the platform is exactly the
protocol buffer every journey planner reads. Each builder returns a full-dataset
``FeedMessage`` (``gtfs_realtime_version`` "2.0", ``FULL_DATASET``, a header
timestamp) with feed-unique entity ids; :func:`to_json` gives the JSON mapping of the
same message (``?format=json``), :func:`parse_feed` reads one back and
:func:`validate_feed` checks it against the rules of the specification, with the rule
codes of the MobilityData GTFS-realtime validator (E001, E002 ...) where one exists.

Times are POSIX seconds; speeds metres per second; bearings degrees clockwise from
true north.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2 as rt

from cityos.apps.transit.models import ArrivalPrediction, Feed, Ping
from cityos.core.clock import now as clock_now

__all__ = ["GtfsRealtimeError", "ServiceAlert", "TripState", "VehicleState", "alerts_feed",
           "occupancy_status", "parse_feed", "parse_feed_text", "to_json",
           "stops_ahead_problems", "trip_updates_feed", "validate_feed",
           "vehicle_positions_feed", "vehicle_state_from_ping"]

GTFS_REALTIME_VERSION = "2.0"
#: How far in the future a timestamp may be before it is an error (E050), seconds.
FUTURE_TOLERANCE_S = 60.0
# Later than 2100-01-01: a timestamp in milliseconds, not POSIX seconds (E001).
_MAX_POSIX_S = 4_102_444_800

CAUSES = tuple(rt.Alert.Cause.keys())
EFFECTS = tuple(rt.Alert.Effect.keys())
SEVERITIES = tuple(rt.Alert.SeverityLevel.keys())
OCCUPANCY = tuple(rt.VehiclePosition.OccupancyStatus.keys())
STOP_STATUS = tuple(rt.VehiclePosition.VehicleStopStatus.keys())
TRIP_RELATIONSHIPS = tuple(rt.TripDescriptor.ScheduleRelationship.keys())

_START_DATE = re.compile(r"^\d{8}$")
_START_TIME = re.compile(r"^\d{1,2}:[0-5]\d:[0-5]\d$")
_STU = rt.TripUpdate.StopTimeUpdate


class GtfsRealtimeError(ValueError):
    """A GTFS-realtime message that cannot be read or built; the text says which field."""


def _choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise GtfsRealtimeError(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _yyyymmdd(value: date | str | None, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if not _START_DATE.match(value):
        raise GtfsRealtimeError(f"{what}: {value!r} is not a YYYYMMDD date")
    return value


# ============================================================================ inputs
@dataclass(frozen=True, kw_only=True)
class VehicleState:
    """Where one vehicle is now, as published in the vehicle positions feed.

    ``current_status`` is a ``VehicleStopStatus`` name (``INCOMING_AT``,
    ``STOPPED_AT``, ``IN_TRANSIT_TO``) and ``occupancy`` an ``OccupancyStatus`` name
    (``MANY_SEATS_AVAILABLE`` ...); ``speed`` is in m/s, ``bearing`` in degrees.
    """

    vehicle_id: str
    label: str | None = None
    trip_id: str | None = None
    route_id: str | None = None
    start_date: date | str | None = None
    lat: float
    lon: float
    bearing: float | None = None
    speed: float | None = None
    t: float
    current_stop_sequence: int | None = None
    stop_id: str | None = None
    current_status: str | None = None
    occupancy: str | None = None
    occupancy_percentage: int | None = None

    def __post_init__(self) -> None:
        where = f"vehicle {self.vehicle_id!r}"
        if not self.vehicle_id:
            raise GtfsRealtimeError("vehicle: vehicle_id is required")
        if not (-90.0 <= self.lat <= 90.0):
            raise GtfsRealtimeError(f"{where}: lat {self.lat} is outside -90..90")
        if not (-180.0 <= self.lon <= 180.0):
            raise GtfsRealtimeError(f"{where}: lon {self.lon} is outside -180..180")
        _choice(self.current_status, STOP_STATUS, f"{where}: current_status")
        _choice(self.occupancy, OCCUPANCY, f"{where}: occupancy")
        _yyyymmdd(self.start_date, f"{where}: start_date")


@dataclass(frozen=True, kw_only=True)
class TripState:
    """What the trip updates feed says about a trip besides its predictions.

    ``schedule_relationship`` is a ``TripDescriptor.ScheduleRelationship`` name; a
    ``CANCELED`` trip is published without stop time updates. ``delay_s`` is the
    trip's current schedule deviation (``TripUpdate.delay``); ``timestamp`` (POSIX
    seconds) when it was last measured, the vehicle's last report
    (``TripUpdate.timestamp``).
    """

    trip_id: str
    route_id: str | None = None
    direction_id: int | None = None
    start_date: date | str | None = None
    start_time: str | None = None  # HH:MM:SS of the first departure (may exceed 24 h)
    schedule_relationship: str = "SCHEDULED"
    vehicle_id: str | None = None
    vehicle_label: str | None = None
    delay_s: float | None = None
    timestamp: float | None = None

    def __post_init__(self) -> None:
        where = f"trip {self.trip_id!r}"
        _choice(self.schedule_relationship, TRIP_RELATIONSHIPS, f"{where}: schedule_relationship")
        _yyyymmdd(self.start_date, f"{where}: start_date")
        if self.start_time is not None and not _START_TIME.match(self.start_time):
            raise GtfsRealtimeError(f"{where}: start_time {self.start_time!r} is not HH:MM:SS")


@dataclass(frozen=True, kw_only=True)
class ServiceAlert:
    """A service alert written by an operator.

    ``header`` and ``description`` map a BCP-47 language code to the text in that
    language (``{"en": "Stop closed", "ms": "Hentian ditutup"}``). ``start``/``end``
    are POSIX seconds (either may be open). ``cause``/``effect`` are the names of the
    GTFS-realtime enums (``CONSTRUCTION``, ``DETOUR`` ...).
    """

    id: str
    cause: str = "UNKNOWN_CAUSE"
    effect: str = "UNKNOWN_EFFECT"
    header: Mapping[str, str] = field(default_factory=dict)
    description: Mapping[str, str] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    route_ids: tuple[str, ...] = ()
    stop_ids: tuple[str, ...] = ()
    trip_ids: tuple[str, ...] = ()
    agency_ids: tuple[str, ...] = ()
    url: Mapping[str, str] = field(default_factory=dict)
    severity: str | None = None

    def __post_init__(self) -> None:
        where = f"alert {self.id!r}"
        if not self.id:
            raise GtfsRealtimeError("alert: id is required")
        _choice(self.cause, CAUSES, f"{where}: cause")
        _choice(self.effect, EFFECTS, f"{where}: effect")
        _choice(self.severity, SEVERITIES, f"{where}: severity")
        if not self.header or not all(str(text).strip() for text in self.header.values()):
            raise GtfsRealtimeError(f"{where}: header needs a text in at least one language")
        if not (self.route_ids or self.stop_ids or self.trip_ids or self.agency_ids):
            raise GtfsRealtimeError(
                f"{where}: name at least one route_id, stop_id, trip_id or agency_id")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise GtfsRealtimeError(f"{where}: end {self.end} is before start {self.start}")


def occupancy_status(passengers: int | None, seats: int, capacity: int) -> str:
    """The ``OccupancyStatus`` name for a passenger count on a bus.

    Parameters
    ----------
    passengers : int or None
        People on board (``None``: no data).
    seats : int
        Seated places.
    capacity : int
        Seated and standing places.
    """
    if passengers is None:
        return "NO_DATA_AVAILABLE"
    if passengers <= 0:
        return "EMPTY"
    if passengers < 0.5 * seats:
        return "MANY_SEATS_AVAILABLE"
    if passengers < seats:
        return "FEW_SEATS_AVAILABLE"
    if passengers < 0.9 * capacity:
        return "STANDING_ROOM_ONLY"
    if passengers < capacity:
        return "CRUSHED_STANDING_ROOM_ONLY"
    return "FULL"


def vehicle_state_from_ping(ping: Ping, *, route_id: str | None = None,
                            start_date: date | str | None = None, label: str | None = None,
                            **extra) -> VehicleState:
    """A :class:`VehicleState` from the latest accepted ping of a vehicle.

    ``extra`` passes the other fields (``current_stop_sequence``, ``stop_id``,
    ``current_status``, ``occupancy``).
    """
    return VehicleState(vehicle_id=ping.vehicle_id, label=label, trip_id=ping.trip_id,
                        route_id=route_id, start_date=start_date, lat=ping.lat, lon=ping.lon,
                        bearing=ping.bearing_deg, speed=ping.speed_mps, t=ping.t, **extra)


# ========================================================================== builders
def _new_feed(timestamp: float) -> rt.FeedMessage:
    message = rt.FeedMessage()
    message.header.gtfs_realtime_version = GTFS_REALTIME_VERSION
    message.header.incrementality = rt.FeedHeader.FULL_DATASET
    message.header.timestamp = int(round(timestamp))
    return message


def _translated(target: rt.TranslatedString, texts: Mapping[str, str]) -> None:
    for language, text in texts.items():
        translation = target.translation.add()
        translation.text = text
        if language:
            translation.language = language


def vehicle_positions_feed(vehicles: Iterable[VehicleState], timestamp: float) -> rt.FeedMessage:
    """The vehicle positions feed: one entity per vehicle (the latest state wins).

    Parameters
    ----------
    vehicles : iterable of VehicleState
        The vehicles to publish.
    timestamp : float
        When the feed was produced (POSIX seconds); the header timestamp.

    Returns
    -------
    FeedMessage
        Entity ids are the vehicle ids.
    """
    latest: dict[str, VehicleState] = {}
    for vehicle in vehicles:
        seen = latest.get(vehicle.vehicle_id)
        if seen is None or vehicle.t >= seen.t:
            latest[vehicle.vehicle_id] = vehicle
    message = _new_feed(timestamp)
    for vehicle_id in sorted(latest):
        state = latest[vehicle_id]
        entity = message.entity.add()
        entity.id = vehicle_id
        position = entity.vehicle
        if state.trip_id or state.route_id:
            _trip_descriptor(position.trip, trip_id=state.trip_id, route_id=state.route_id,
                             start_date=state.start_date)
        position.vehicle.id = vehicle_id
        if state.label:
            position.vehicle.label = state.label
        position.position.latitude = state.lat
        position.position.longitude = state.lon
        if state.bearing is not None:
            position.position.bearing = state.bearing % 360.0
        if state.speed is not None:
            position.position.speed = max(0.0, state.speed)
        if state.current_stop_sequence is not None:
            position.current_stop_sequence = state.current_stop_sequence
        if state.stop_id:
            position.stop_id = state.stop_id
        if state.current_status:
            position.current_status = rt.VehiclePosition.VehicleStopStatus.Value(
                state.current_status)
        if state.occupancy:
            position.occupancy_status = rt.VehiclePosition.OccupancyStatus.Value(state.occupancy)
        if state.occupancy_percentage is not None:
            position.occupancy_percentage = max(0, int(state.occupancy_percentage))
        position.timestamp = int(round(state.t))
    return message


def _trip_descriptor(target: rt.TripDescriptor, *, trip_id: str | None, route_id: str | None,
                     start_date: date | str | None = None, start_time: str | None = None,
                     direction_id: int | None = None,
                     schedule_relationship: str | None = None) -> None:
    if trip_id:
        # a run of a frequency-based trip is known here as "<trip_id>@HH:MM:SS"; the
        # specification wants the feed's trip_id and the run's start_time apart
        from cityos.apps.transit.assignment import split_instance_id

        template, start_s = split_instance_id(trip_id)
        if start_s is not None:
            trip_id = template
            start_time = start_time or \
                f"{start_s // 3600:02d}:{start_s // 60 % 60:02d}:{start_s % 60:02d}"
        target.trip_id = trip_id
    if route_id:
        target.route_id = route_id
    if direction_id is not None:
        target.direction_id = direction_id
    if start_time:
        target.start_time = start_time
    when = _yyyymmdd(start_date, f"trip {trip_id!r}: start_date")
    if when:
        target.start_date = when
    if schedule_relationship:
        target.schedule_relationship = rt.TripDescriptor.ScheduleRelationship.Value(
            schedule_relationship)


def trip_updates_feed(predictions: Iterable[ArrivalPrediction],
                      trip_states: Mapping[str, TripState] | Iterable[TripState] | None,
                      timestamp: float, *, feed: Feed | None = None) -> rt.FeedMessage:
    """The trip updates feed: one entity per trip, a stop time update per downstream stop.

    Each stop time update carries ``stop_sequence`` and ``stop_id`` and an arrival with
    the predicted ``time``, the ``delay`` against the schedule and an ``uncertainty``
    of half the prediction interval (left out, "unknown" in the specification, where
    the prediction has no interval). Where a trip has several predictions for the same
    stop, the latest made wins; predicted times are kept non-decreasing along the trip
    (a consumer rejects a trip whose times go backwards). Every trip update has a
    ``timestamp``: the trip state's, else when its latest prediction was made, else
    the feed's. A trip that is not ``CANCELED`` and has no prediction is left out:
    the specification requires a stop time update of it.

    Parameters
    ----------
    predictions : iterable of ArrivalPrediction
        Downstream predictions of the active trips.
    trip_states : mapping or iterable of TripState, or None
        Route, start date, schedule relationship, vehicle and delay per trip; a trip
        state with no predictions (e.g. ``CANCELED``) is published on its own.
    timestamp : float
        When the feed was produced (POSIX seconds).
    feed : Feed, optional
        The static feed, to fill in route and direction where no trip state says.

    Returns
    -------
    FeedMessage
        Entity ids are the trip ids.
    """
    if trip_states is None:
        states: dict[str, TripState] = {}
    elif isinstance(trip_states, Mapping):
        states = dict(trip_states)
    else:
        states = {state.trip_id: state for state in trip_states}
    by_trip: dict[str, dict[int, ArrivalPrediction]] = {}
    for prediction in predictions:
        if not math.isfinite(prediction.predicted_t):
            continue  # no time to publish
        stops = by_trip.setdefault(prediction.trip_id, {})
        seen = stops.get(prediction.stop_sequence)
        if seen is None or prediction.made_at >= seen.made_at:
            stops[prediction.stop_sequence] = prediction
    message = _new_feed(timestamp)
    header_t = message.header.timestamp
    for trip_id in sorted(set(by_trip) | set(states)):
        state = states.get(trip_id) or TripState(trip_id=trip_id)
        stops = by_trip.get(trip_id, {})
        if not stops and state.schedule_relationship != "CANCELED":
            continue  # E041: nothing to say of it
        route_id, direction_id = state.route_id, state.direction_id
        if feed is not None and trip_id in feed.trips:
            route_id = route_id or feed.trips[trip_id].route_id
            if direction_id is None:
                direction_id = feed.trips[trip_id].direction_id
        entity = message.entity.add()
        entity.id = trip_id
        update = entity.trip_update
        _trip_descriptor(update.trip, trip_id=trip_id, route_id=route_id,
                         start_date=state.start_date, start_time=state.start_time,
                         direction_id=direction_id,
                         schedule_relationship=state.schedule_relationship)
        vehicle_id = state.vehicle_id or next(
            (p.vehicle_id for p in stops.values() if p.vehicle_id), None)
        if vehicle_id:
            update.vehicle.id = vehicle_id
            if state.vehicle_label:
                update.vehicle.label = state.vehicle_label
        if state.delay_s is not None:
            update.delay = int(round(state.delay_s))
        if state.schedule_relationship != "CANCELED":
            previous_t = None
            for sequence in sorted(stops):
                prediction = stops[sequence]
                arrival_t = int(round(prediction.predicted_t))
                if previous_t is not None and arrival_t < previous_t:
                    arrival_t = previous_t
                previous_t = arrival_t
                stop_update = update.stop_time_update.add()
                stop_update.stop_sequence = sequence
                stop_update.stop_id = prediction.stop_id
                stop_update.arrival.time = arrival_t
                if math.isfinite(prediction.scheduled_t):  # else a trip without times
                    stop_update.arrival.delay = int(round(prediction.predicted_t
                                                          - prediction.scheduled_t))
                spread = prediction.upper_t - prediction.lower_t
                if math.isfinite(spread):
                    stop_update.arrival.uncertainty = max(0, int(round(spread / 2.0)))
                stop_update.schedule_relationship = _STU.SCHEDULED
        measured = state.timestamp if state.timestamp is not None else \
            max((p.made_at for p in stops.values()), default=timestamp)
        update.timestamp = min(header_t, int(round(measured)))
    return message


def alerts_feed(alerts: Iterable[ServiceAlert], timestamp: float | None = None) -> rt.FeedMessage:
    """The service alerts feed.

    Parameters
    ----------
    alerts : iterable of ServiceAlert
        The alerts in force (or announced); ids must be unique.
    timestamp : float, optional
        When the feed was produced (POSIX seconds); now by default.

    Returns
    -------
    FeedMessage
        One entity per alert, its id the alert's id; each route, stop, trip and
        agency named becomes an ``informed_entity``.
    """
    message = _new_feed(clock_now() if timestamp is None else timestamp)
    seen: set[str] = set()
    for alert in alerts:
        if alert.id in seen:
            raise GtfsRealtimeError(f"alert {alert.id!r}: id is used by another alert")
        seen.add(alert.id)
        entity = message.entity.add()
        entity.id = alert.id
        body = entity.alert
        if alert.start is not None or alert.end is not None:
            period = body.active_period.add()
            if alert.start is not None:
                period.start = int(round(alert.start))
            if alert.end is not None:
                period.end = int(round(alert.end))
        for agency_id in alert.agency_ids:
            body.informed_entity.add().agency_id = agency_id
        for route_id in alert.route_ids:
            body.informed_entity.add().route_id = route_id
        for stop_id in alert.stop_ids:
            body.informed_entity.add().stop_id = stop_id
        for trip_id in alert.trip_ids:
            body.informed_entity.add().trip.trip_id = trip_id
        body.cause = rt.Alert.Cause.Value(alert.cause)
        body.effect = rt.Alert.Effect.Value(alert.effect)
        if alert.severity:
            body.severity_level = rt.Alert.SeverityLevel.Value(alert.severity)
        if alert.url:
            _translated(body.url, alert.url)
        _translated(body.header_text, alert.header)
        if alert.description:
            _translated(body.description_text, alert.description)
    return message


# ============================================================================ reading
def to_json(message: rt.FeedMessage) -> str:
    """The JSON mapping of a feed (field names as in the specification).

    64-bit integers (timestamps, times) are JSON strings, as the protocol buffer JSON
    mapping writes them.
    """
    return json_format.MessageToJson(message, preserving_proto_field_name=True)


def parse_feed(data: bytes) -> rt.FeedMessage:
    """Read a protobuf-encoded ``FeedMessage``.

    Raises
    ------
    GtfsRealtimeError
        When the bytes are not a FeedMessage or lack a required field.
    """
    message = rt.FeedMessage()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise GtfsRealtimeError(f"not a GTFS-realtime FeedMessage: {error}") from error
    missing = message.FindInitializationErrors()
    if missing:
        raise GtfsRealtimeError(f"FeedMessage lacks required field(s): {', '.join(missing)}")
    return message


def parse_feed_text(text: str) -> rt.FeedMessage:
    """Read a ``FeedMessage`` in protocol buffer text format (the specification's
    examples are written in it)."""
    message = rt.FeedMessage()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise GtfsRealtimeError(f"not a GTFS-realtime FeedMessage in text format: {error}") \
            from error
    return message


# ========================================================================= validation
class _Checker:
    """Collects problems with the path of the offending field."""

    def __init__(self, feed: Feed | None, now: float, tolerance_s: float,
                 strict_times: bool, warnings: bool = False,
                 max_age_s: float | None = None) -> None:
        self.warnings = warnings
        self.max_age_s = max_age_s
        self.feed = feed
        self.now = now
        self.tolerance_s = tolerance_s
        self.strict_times = strict_times
        self.problems: list[str] = []
        self.header_t = 0

    def add(self, code: str | None, where: str, what: str) -> None:
        self.problems.append(f"{code + ' ' if code else ''}{where}: {what}")

    def timestamp(self, where: str, value: int, *, entity_level: bool = True,
                  may_be_ahead: bool = False) -> None:
        if value > _MAX_POSIX_S or value < 0:
            self.add("E001", where, f"{value} is not POSIX time in seconds")
            return
        if may_be_ahead:  # an alert's active period may well lie in the future
            return
        if value > self.now + self.tolerance_s:
            self.add("E050", where, f"{value} is {value - self.now:.0f} s in the future")
        if entity_level and self.header_t and value > self.header_t:
            self.add("E012", where, f"{value} is later than header.timestamp {self.header_t}")
        if entity_level and self.max_age_s is not None and self.header_t \
                and value < self.header_t - self.max_age_s:
            self.add(None, where, f"{value} is {self.header_t - value} s older than "
                     f"header.timestamp: the data is stale (more than {self.max_age_s:.0f} s)")

    # ---------------------------------------------------------------- descriptors
    def trip(self, where: str, trip: rt.TripDescriptor) -> None:
        if trip.HasField("start_date") and not _valid_date(trip.start_date):
            self.add("E021", f"{where}.start_date", f"{trip.start_date!r} is not YYYYMMDD")
        if trip.HasField("start_time") and not _START_TIME.match(trip.start_time):
            self.add("E020", f"{where}.start_time", f"{trip.start_time!r} is not HH:MM:SS")
        if not trip.trip_id and not trip.route_id:
            self.add(None, where, "names neither trip_id nor route_id")
        if self.feed is None:
            return
        added = trip.schedule_relationship in (rt.TripDescriptor.ADDED, rt.TripDescriptor.NEW)
        if trip.trip_id and not added and trip.trip_id not in self.feed.trips:
            self.add("E003", f"{where}.trip_id", f"{trip.trip_id!r} is not in the static feed")
        if trip.route_id and trip.route_id not in self.feed.routes:
            self.add("E004", f"{where}.route_id", f"{trip.route_id!r} is not in the static feed")
        periods = self.feed.frequencies.get(trip.trip_id) if trip.trip_id else None
        if periods and not added:
            for name in ("start_time", "start_date"):
                if not trip.HasField(name):
                    self.add("E006", f"{where}.{name}", f"is required: trip {trip.trip_id!r} "
                             "is frequency-based (frequencies.txt)")
            if trip.HasField("start_time") and _START_TIME.match(trip.start_time):
                self.frequency_start(where, trip, periods)
        elif (trip.trip_id in self.feed.trips and trip.HasField("start_time") and not added
              and _START_TIME.match(trip.start_time)):
            self.scheduled_start(where, trip)
        static = self.feed.trips.get(trip.trip_id)
        if static is not None and trip.route_id and static.route_id != trip.route_id:
            self.add(None, f"{where}.route_id", f"trip {trip.trip_id!r} runs on route "
                     f"{static.route_id!r} in the static feed, not {trip.route_id!r}")
        if (static is not None and trip.HasField("direction_id")
                and static.direction_id is not None and static.direction_id != trip.direction_id):
            self.add("E024", f"{where}.direction_id", f"{trip.direction_id} is not the static "
                     f"feed's {static.direction_id}")

    def frequency_start(self, where: str, trip: rt.TripDescriptor, periods) -> None:
        """A run of a frequency-based trip starts within one of its periods; with
        ``exact_times=1``, a whole number of headways after the period's start (E019)."""
        start_s = _seconds(trip.start_time)
        inside = [p for p in periods if p.start_s <= start_s < p.end_s]
        if not inside:
            self.add(None, f"{where}.start_time", f"{trip.start_time} is outside every "
                     f"frequencies.txt period of trip {trip.trip_id!r}")
        elif all(p.exact_times and (start_s - p.start_s) % max(p.headway_s, 1) for p in inside):
            self.add("E019", f"{where}.start_time", f"{trip.start_time} is not a whole number "
                     f"of headways after the start of an exact_times=1 period of trip "
                     f"{trip.trip_id!r}")

    def scheduled_start(self, where: str, trip: rt.TripDescriptor) -> None:
        """A scheduled trip's start_time is its first arrival in stop_times.txt (E023),
        where the feed gives one."""
        try:
            first = float(self.feed.schedule(trip.trip_id).arrival_s[0])
        except (KeyError, IndexError):
            return
        if math.isfinite(first) and _seconds(trip.start_time) != int(round(first)):
            from cityos.apps.transit.gtfs import format_time

            self.add("E023", f"{where}.start_time", f"{trip.start_time} is not the first "
                     f"arrival of trip {trip.trip_id!r} in stop_times.txt "
                     f"({format_time(first)})")

    def stop(self, where: str, stop_id: str, *, boarding: bool = False) -> None:
        if self.feed is None:
            return
        stop = self.feed.stops.get(stop_id)
        if stop is None:
            self.add("E011", where, f"stop_id {stop_id!r} is not in the static feed")
        elif boarding and stop.location_type not in (0, None):
            self.add("E015", where, f"stop_id {stop_id!r} has location_type "
                     f"{stop.location_type}: a trip stops at a boarding stop (0)")

    # -------------------------------------------------------------------- entities
    def trip_update(self, where: str, update: rt.TripUpdate) -> None:
        if not update.HasField("trip"):
            self.add(None, where, "trip is required")
        else:
            self.trip(f"{where}.trip", update.trip)
        if update.HasField("timestamp"):
            self.timestamp(f"{where}.timestamp", update.timestamp)
        elif self.warnings:
            self.add("W001", f"{where}.timestamp", "is not populated")
        if self.warnings and not update.vehicle.id:
            self.add("W002", f"{where}.vehicle.id", "is not populated")
        canceled = update.trip.schedule_relationship in (rt.TripDescriptor.CANCELED,
                                                         rt.TripDescriptor.DELETED)
        if not update.stop_time_update and not canceled:
            self.add("E041", where, "a trip that is not CANCELED needs stop_time_updates")
        schedule = None
        if self.feed is not None and update.trip.trip_id in self.feed.trips:
            try:
                schedule = self.feed.schedule(update.trip.trip_id)
            except KeyError:
                schedule = None
        stop_at = ({int(seq): stop for seq, stop in zip(schedule.stop_sequence,
                                                        schedule.stop_ids, strict=True)}
                   if schedule is not None else None)
        last_sequence = None
        last_t = None
        for i, stop_update in enumerate(update.stop_time_update):
            here = f"{where}.stop_time_update[{i}]"
            has_sequence = stop_update.HasField("stop_sequence")
            if not has_sequence and not stop_update.stop_id:
                self.add("E040", here, "needs stop_sequence or stop_id")
            if has_sequence:
                if last_sequence is not None and stop_update.stop_sequence <= last_sequence:
                    self.add("E002", f"{here}.stop_sequence",
                             f"{stop_update.stop_sequence} after {last_sequence}: stop time "
                             "updates must be sorted by strictly increasing stop_sequence")
                last_sequence = stop_update.stop_sequence
            if stop_update.stop_id:
                self.stop(f"{here}.stop_id", stop_update.stop_id, boarding=True)
            if stop_at is not None and has_sequence:
                static_stop = stop_at.get(stop_update.stop_sequence)
                if static_stop is None:
                    self.add(None, f"{here}.stop_sequence", f"{stop_update.stop_sequence} is not "
                             f"a stop_sequence of trip {update.trip.trip_id!r}")
                elif stop_update.stop_id and stop_update.stop_id != static_stop:
                    self.add("E045", here, f"stop_sequence {stop_update.stop_sequence} is stop "
                             f"{static_stop!r} in the static feed, not {stop_update.stop_id!r}")
            relationship = stop_update.schedule_relationship
            if (relationship in (_STU.SCHEDULED,)
                    and not stop_update.HasField("arrival")
                    and not stop_update.HasField("departure")):
                self.add("E043", here, "a SCHEDULED stop_time_update needs arrival or departure")
            times = []
            for name in ("arrival", "departure"):
                if not stop_update.HasField(name):
                    continue
                event = getattr(stop_update, name)
                if not event.HasField("time") and not event.HasField("delay"):
                    self.add("E044", f"{here}.{name}", "needs time or delay")
                if event.HasField("uncertainty") and event.uncertainty < 0:
                    self.add(None, f"{here}.{name}.uncertainty",
                             f"{event.uncertainty} is negative")
                if event.HasField("time"):
                    if event.time > _MAX_POSIX_S or event.time <= 0:
                        self.add("E001", f"{here}.{name}.time",
                                 f"{event.time} is not POSIX time in seconds")
                    times.append((name, event.time))
            if len(times) == 2 and times[1][1] < times[0][1]:
                self.add("E025", here, f"departure {times[1][1]} is before arrival {times[0][1]}")
            for name, t in times:
                if last_t is not None and (t < last_t or (self.strict_times and t == last_t)):
                    self.add("E022", f"{here}.{name}.time",
                             f"{t} is {'before' if t < last_t else 'the same as'} the "
                             f"previous stop's {last_t}: times must not decrease along a trip")
                last_t = t if last_t is None else max(last_t, t)

    def vehicle(self, where: str, position: rt.VehiclePosition) -> None:
        if position.HasField("trip"):
            self.trip(f"{where}.trip", position.trip)
        if position.HasField("position"):
            lat, lon = position.position.latitude, position.position.longitude
            if not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
                self.add("E026", f"{where}.position", f"({lat}, {lon}) is not a WGS84 position")
            if position.position.HasField("bearing") and not (
                    0.0 <= position.position.bearing <= 360.0):
                self.add("E027", f"{where}.position.bearing",
                         f"{position.position.bearing} is outside 0..360")
            if position.position.HasField("speed") and position.position.speed < 0:
                self.add(None, f"{where}.position.speed",
                         f"{position.position.speed} is negative")
        if position.HasField("timestamp"):
            self.timestamp(f"{where}.timestamp", position.timestamp)
        elif self.warnings:
            self.add("W001", f"{where}.timestamp", "is not populated")
        if self.warnings and not position.vehicle.id:
            self.add("W002", f"{where}.vehicle.id", "is not populated")
        if position.stop_id:
            self.stop(f"{where}.stop_id", position.stop_id)

    def alert(self, where: str, alert: rt.Alert) -> None:
        for i, period in enumerate(alert.active_period):
            here = f"{where}.active_period[{i}]"
            for name in ("start", "end"):
                if period.HasField(name):
                    self.timestamp(f"{here}.{name}", getattr(period, name), entity_level=False,
                                   may_be_ahead=True)
            if period.HasField("start") and period.HasField("end") and period.end < period.start:
                self.add(None, here, f"end {period.end} is before start {period.start}")
        if not alert.informed_entity:
            self.add("E032", where, "needs at least one informed_entity")
        for i, selector in enumerate(alert.informed_entity):
            here = f"{where}.informed_entity[{i}]"
            if not any(selector.HasField(name) for name in
                       ("agency_id", "route_id", "route_type", "trip", "stop_id")):
                self.add("E033", here, "names no agency, route, route_type, trip or stop")
            if selector.HasField("route_id") and self.feed is not None \
                    and selector.route_id not in self.feed.routes:
                self.add("E004", f"{here}.route_id",
                         f"{selector.route_id!r} is not in the static feed")
            if selector.HasField("stop_id"):
                self.stop(f"{here}.stop_id", selector.stop_id)
            if selector.HasField("trip"):
                self.trip(f"{here}.trip", selector.trip)
            if selector.HasField("agency_id") and self.feed is not None \
                    and selector.agency_id not in self.feed.agencies:
                self.add(None, f"{here}.agency_id",
                         f"{selector.agency_id!r} is not in the static feed")
        if not alert.HasField("header_text"):
            self.add(None, where, "header_text is required")
        for name in ("header_text", "description_text", "url"):
            if alert.HasField(name):
                self.translated(f"{where}.{name}", getattr(alert, name))

    def translated(self, where: str, text: rt.TranslatedString) -> None:
        if not text.translation:
            self.add(None, where, "has no translation")
        if len(text.translation) > 1:
            languages = [t.language for t in text.translation]
            if not all(languages):
                self.add(None, where, "every translation needs a language when there are "
                         "several")
            elif len(set(languages)) < len(languages):
                self.add(None, where, "a language is translated twice")


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def _valid_date(value: str) -> bool:
    if not _START_DATE.match(value):
        return False
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return False
    return True


_CONTENT = tuple(name for name in ("trip_update", "vehicle", "alert", "shape", "stop",
                                   "trip_modifications")
                 if name in rt.FeedEntity.DESCRIPTOR.fields_by_name)


def validate_feed(message: rt.FeedMessage, feed: Feed | None = None, *,
                  now: float | None = None, future_tolerance_s: float = FUTURE_TOLERANCE_S,
                  strict_times: bool = False, warnings: bool = False,
                  max_age_s: float | None = None) -> list[str]:
    """Check a feed against the rules of the GTFS-realtime specification.

    Checked: the header (``gtfs_realtime_version``, ``incrementality``, ``timestamp``);
    every timestamp is POSIX seconds, not more than ``future_tolerance_s`` in the
    future and not later than the header's; entity ids present and unique, each entity
    carrying exactly one of trip_update / vehicle / alert (...); trip descriptors
    (date and time formats, ids in the static feed, ``start_time`` and ``start_date``
    of a frequency-based trip's run, within its periods and on its headways where
    ``exact_times=1``; a scheduled trip's ``start_time`` its first arrival); at most one
    trip update per run of a trip; a stop time update
    for every trip that is not ``CANCELED``, sorted by strictly increasing
    ``stop_sequence``, naming a stop, with an arrival or departure that has a time or
    delay and no negative uncertainty, departure not before arrival, times not
    decreasing along the trip, stop ids of boarding stops in the static feed and
    matching its stop sequence; vehicle position ranges and unique vehicle ids; alerts with informed
    entities, a header text and well-formed translations.

    Parameters
    ----------
    message : FeedMessage
        The feed to check.
    feed : Feed, optional
        The static feed the ids must exist in; without it those checks are skipped.
    now : float, optional
        The time to judge "in the future" by (POSIX seconds); the clock by default.
    future_tolerance_s : float
        How far ahead of ``now`` a timestamp may be (the MobilityData validator's 60 s).
    strict_times : bool
        Also report two consecutive stops with the same time (the MobilityData
        validator does; predictions rounded to the second can legitimately tie).

    warnings : bool
        Also report what the specification recommends but does not require: trip
        update and vehicle timestamps (W001) and vehicle ids (W002).
    max_age_s : float, optional
        Also report a trip update or vehicle whose timestamp is more than this much
        older than the header's (a vehicle that went quiet but is still published).

    Returns
    -------
    list of str
        One line per problem, ``CODE path: what is wrong``; empty when valid.
    """
    check = _Checker(feed, clock_now() if now is None else now, future_tolerance_s,
                     strict_times, warnings, max_age_s)
    header = message.header
    if not header.HasField("gtfs_realtime_version"):
        check.add("E038", "header.gtfs_realtime_version", "is required")
    elif header.gtfs_realtime_version not in ("1.0", "2.0"):
        check.add("E038", "header.gtfs_realtime_version",
                  f"{header.gtfs_realtime_version!r} is not a known version (1.0, 2.0)")
    version_2 = header.gtfs_realtime_version != "1.0"
    if not header.HasField("timestamp") or header.timestamp == 0:
        if version_2:
            check.add("E048", "header.timestamp", "is required")
    else:
        check.header_t = header.timestamp
        check.timestamp("header.timestamp", header.timestamp, entity_level=False)
    if version_2 and not header.HasField("incrementality"):
        check.add("E049", "header.incrementality", "is required")
    full = header.incrementality == rt.FeedHeader.FULL_DATASET

    ids: set[str] = set()
    vehicle_ids: set[str] = set()
    runs: set[tuple[str, str, str]] = set()
    for i, entity in enumerate(message.entity):
        where = f"entity[{i}]" + (f" {entity.id!r}" if entity.id else "")
        if not entity.id:
            check.add(None, where, "id is required")
        elif entity.id in ids:
            check.add(None, where, "id is not unique in the feed")
        ids.add(entity.id)
        if entity.is_deleted and full:
            check.add(None, where, "is_deleted belongs to DIFFERENTIAL feeds only")
        present = [name for name in _CONTENT if entity.HasField(name)]
        if len(present) != 1 and not (entity.is_deleted and not present):
            check.add(None, where, "must carry exactly one of trip_update, vehicle, alert "
                      f"(has {', '.join(present) or 'none'})")
        if entity.HasField("trip_update"):
            check.trip_update(f"{where} trip_update", entity.trip_update)
            trip = entity.trip_update.trip
            run = (trip.trip_id, trip.start_date, trip.start_time)
            if trip.trip_id and run in runs:
                when = " ".join(v for v in (trip.start_date, trip.start_time) if v)
                check.add(None, f"{where} trip_update.trip", f"trip {trip.trip_id!r}"
                          f"{' ' + when if when else ''} has another trip update in the "
                          "feed (at most one per trip)")
            runs.add(run)
        if entity.HasField("vehicle"):
            check.vehicle(f"{where} vehicle", entity.vehicle)
            vehicle_id = entity.vehicle.vehicle.id
            if vehicle_id:
                if vehicle_id in vehicle_ids:
                    check.add("E052", f"{where} vehicle.vehicle.id",
                              f"{vehicle_id!r} appears in more than one entity")
                vehicle_ids.add(vehicle_id)
        if entity.HasField("alert"):
            check.alert(f"{where} alert", entity.alert)
    return check.problems


def stops_ahead_problems(trip_updates: rt.FeedMessage, vehicle_positions: rt.FeedMessage,
                         feed: Feed) -> list[str]:
    """Check that every vehicle on a trip has its trip's update, predicting each stop
    ahead of it.

    The trip updates and vehicle positions of one moment, read together: a vehicle
    position naming a trip (and not standing at its last stop) needs the trip update
    with the same ``vehicle.id`` and ``trip_id``, whose stop time updates are the
    trip's stops (``stop_sequence`` as in ``stop_times.txt``) from the one the vehicle
    is heading for (the one after the stop it stands at) to the last, each with a
    ``time`` not before the vehicle's report; a trip update names a vehicle the
    positions have.

    Parameters
    ----------
    trip_updates, vehicle_positions : FeedMessage
        The two feeds.
    feed : Feed
        The static feed.

    Returns
    -------
    list of str
        One line per problem, ``path: what is wrong``; empty when every trip is covered.
    """
    problems: list[str] = []
    by_vehicle: dict[str, list[tuple[int, rt.TripUpdate]]] = {}
    for i, entity in enumerate(trip_updates.entity):
        if entity.HasField("trip_update") and entity.trip_update.vehicle.id:
            by_vehicle.setdefault(entity.trip_update.vehicle.id, []).append(
                (i, entity.trip_update))
    positioned = set()
    for entity in vehicle_positions.entity:
        position = entity.vehicle
        vehicle_id = position.vehicle.id
        positioned.add(vehicle_id)
        trip_id = position.trip.trip_id
        if not trip_id or trip_id not in feed.trips:
            continue
        where = f"vehicle {vehicle_id!r} on trip {trip_id!r}"
        sequence = [int(s) for s in feed.schedule(trip_id).stop_sequence.tolist()]
        current = position.current_stop_sequence
        if current not in sequence:
            problems.append(f"{where}: current_stop_sequence {current} is not a stop of the "
                            "trip")
            continue
        i = sequence.index(current)
        standing = position.current_status == rt.VehiclePosition.STOPPED_AT
        if standing and i == len(sequence) - 1:
            continue  # its trip is over
        first = i + 1 if standing else i
        updates = [(k, u) for k, u in by_vehicle.get(vehicle_id, ()) if u.trip.trip_id == trip_id
                   and (not position.trip.start_time
                        or u.trip.start_time == position.trip.start_time)]
        if len(updates) != 1:
            problems.append(f"{where}: {len(updates)} trip updates of the run (one expected)")
            continue
        k, update = updates[0]
        got = [u.stop_sequence for u in update.stop_time_update]
        if got != sequence[first:]:
            problems.append(f"entity[{k}] trip_update: stop_sequences {got} are not the "
                            f"stops ahead of {where} at {current} "
                            f"({'standing' if standing else 'on its way'}): {sequence[i:]}")
        for stop_update in update.stop_time_update:
            if not stop_update.arrival.HasField("time"):
                problems.append(f"entity[{k}] trip_update: stop_sequence "
                                f"{stop_update.stop_sequence} has no predicted time")
            elif stop_update.arrival.time < position.timestamp - 1:
                problems.append(f"entity[{k}] trip_update: stop_sequence "
                                f"{stop_update.stop_sequence} predicted at "
                                f"{stop_update.arrival.time}, before the vehicle's report "
                                f"{position.timestamp}")
    for vehicle_id, updates in by_vehicle.items():
        if vehicle_id not in positioned:
            problems.extend(f"entity[{k}] trip_update: vehicle {vehicle_id!r} is not in the "
                            "vehicle positions" for k, _ in updates)
    return problems
