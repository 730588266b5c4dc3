"""The data types of bus operations, shared by every module of the transit app.

Times of day follow GTFS: seconds after "noon minus 12 h" of the service day, so a
trip after midnight has times above 86,400. Instants (pings, observed arrivals,
predictions) are POSIX seconds (float, UTC). Distances are metres along a trip's shape
(``shape_dist_m``), whatever unit the feed's own ``shape_dist_traveled`` used.

A :class:`Feed` keeps stop times column-wise in NumPy arrays, one contiguous run per
trip, so a large city's feed (millions of stop times) fits in memory: about 40 bytes
per stop time instead of an object each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np

#: Days of week in GTFS ``calendar.txt`` order (Monday first, as ``date.weekday()``).
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def service_day_origin(day: date, timezone: str) -> float:
    """POSIX seconds of "noon minus 12 h" of ``day`` in ``timezone``: add a GTFS time
    of that service day to get its instant (right across daylight-saving changes).

    Parameters
    ----------
    day : date
        The service date.
    timezone : str
        The agency's IANA time zone, e.g. ``Asia/Kuala_Lumpur``.
    """
    noon = datetime.combine(day, time(12), tzinfo=ZoneInfo(timezone))
    # subtract on the absolute time line: aware-datetime arithmetic is wall-clock
    return noon.timestamp() - 12 * 3600


# ======================================================================= static feed
@dataclass(frozen=True)
class Agency:
    """A transit operator (``agency.txt``)."""

    agency_id: str
    name: str
    url: str
    timezone: str
    lang: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Stop:
    """A stop or station (``stops.txt``); ``location_type`` 0 is a boarding stop."""

    stop_id: str
    name: str
    lat: float
    lon: float
    code: str | None = None
    location_type: int = 0
    parent_station: str | None = None
    wheelchair_boarding: int | None = None


@dataclass(frozen=True)
class Route:
    """A route (``routes.txt``); ``route_type`` 3 is a bus."""

    route_id: str
    short_name: str
    long_name: str
    route_type: int = 3
    agency_id: str | None = None
    color: str | None = None
    text_color: str | None = None


@dataclass(frozen=True)
class Trip:
    """One journey of a vehicle along a route (``trips.txt``)."""

    trip_id: str
    route_id: str
    service_id: str
    shape_id: str | None = None
    direction_id: int | None = None
    block_id: str | None = None
    headsign: str | None = None


@dataclass
class Shape:
    """The path of a trip: WGS84 points and the metres travelled to each of them."""

    shape_id: str
    lon: np.ndarray
    lat: np.ndarray
    dist_m: np.ndarray
    derived: bool = False  # True when built from stop positions (no shapes.txt)

    @property
    def length_m(self) -> float:
        """Total length along the shape."""
        return float(self.dist_m[-1]) if len(self.dist_m) else 0.0


@dataclass(frozen=True)
class Frequency:
    """A headway-based service period of a template trip (``frequencies.txt``)."""

    trip_id: str
    start_s: int
    end_s: int
    headway_s: int
    exact_times: bool = False


@dataclass
class ServiceCalendar:
    """When a ``service_id`` runs: weekly pattern and exceptions."""

    service_id: str
    weekdays: tuple[bool, ...] = (False,) * 7
    start: date | None = None
    end: date | None = None
    added: set[date] = field(default_factory=set)
    removed: set[date] = field(default_factory=set)

    def runs_on(self, day: date) -> bool:
        """True when the service operates on ``day`` (calendar_dates win)."""
        if day in self.removed:
            return False
        if day in self.added:
            return True
        if self.start is None or self.end is None or not (self.start <= day <= self.end):
            return False
        return self.weekdays[day.weekday()]


@dataclass
class TripSchedule:
    """The stop times of one trip, in stop sequence order (views into the feed)."""

    trip_id: str
    stop_ids: list[str]
    stop_sequence: np.ndarray  # int
    arrival_s: np.ndarray  # float, GTFS seconds of the service day
    departure_s: np.ndarray  # float
    shape_dist_m: np.ndarray  # float, metres along the trip's shape (NaN if unknown)

    def __len__(self) -> int:
        return len(self.stop_ids)


@dataclass
class StopTimes:
    """All stop times of a feed, column-wise, sorted by trip then stop sequence.

    ``trip_start[i]:trip_start[i + 1]`` is the run of trip number ``i`` (the order of
    ``trip_ids``); ``stop_index`` indexes ``stop_ids``.
    """

    trip_ids: list[str]
    trip_start: np.ndarray  # int64, len(trip_ids) + 1
    stop_ids: list[str]
    stop_index: np.ndarray  # int32
    stop_sequence: np.ndarray  # int32
    arrival_s: np.ndarray  # float64
    departure_s: np.ndarray  # float64
    shape_dist_m: np.ndarray  # float64

    def __post_init__(self) -> None:
        self._trip_number = {trip_id: i for i, trip_id in enumerate(self.trip_ids)}

    def __len__(self) -> int:
        return len(self.stop_index)

    def schedule(self, trip_id: str) -> TripSchedule:
        """The stop times of ``trip_id``; KeyError when the trip has none."""
        number = self._trip_number[trip_id]
        run = slice(int(self.trip_start[number]), int(self.trip_start[number + 1]))
        return TripSchedule(trip_id, [self.stop_ids[i] for i in self.stop_index[run]],
                            self.stop_sequence[run], self.arrival_s[run],
                            self.departure_s[run], self.shape_dist_m[run])


@dataclass
class Feed:
    """A GTFS feed in memory (see :func:`cityos.apps.transit.gtfs.read_feed`)."""

    agencies: dict[str, Agency]
    stops: dict[str, Stop]
    routes: dict[str, Route]
    trips: dict[str, Trip]
    stop_times: StopTimes
    shapes: dict[str, Shape]
    calendars: dict[str, ServiceCalendar]
    frequencies: dict[str, list[Frequency]] = field(default_factory=dict)

    def schedule(self, trip_id: str) -> TripSchedule:
        """The stop times of one trip."""
        return self.stop_times.schedule(trip_id)

    def shape_of(self, trip_id: str) -> Shape | None:
        """The shape a trip follows (derived from its stops when the feed had none)."""
        shape_id = self.trips[trip_id].shape_id
        return self.shapes.get(shape_id) if shape_id else None

    def services_on(self, day: date) -> set[str]:
        """The ``service_id`` values running on ``day``."""
        return {sid for sid, cal in self.calendars.items() if cal.runs_on(day)}

    def trips_on(self, day: date) -> list[str]:
        """The trip ids that run on ``day``."""
        running = self.services_on(day)
        return [t.trip_id for t in self.trips.values() if t.service_id in running]


# ============================================================================ live data
@dataclass(frozen=True, slots=True)  # millions of them in a simulated day: no __dict__
class Ping:
    """One position report of an AVL device on a bus."""

    vehicle_id: str
    t: float  # POSIX seconds
    lat: float
    lon: float
    speed_mps: float | None = None
    bearing_deg: float | None = None
    trip_id: str | None = None
    driver_id: str | None = None
    passengers_in: int | None = None
    passengers_out: int | None = None
    occupancy: int | None = None
    doors_open: bool | None = None


@dataclass(frozen=True, slots=True)  # millions of them in a simulated day: no __dict__
class ObservedArrival:
    """When a vehicle actually reached and left a stop of a trip (the truth that
    predictions are scored against and that running-time history is learnt from)."""

    trip_id: str
    stop_sequence: int
    stop_id: str
    arrival_t: float  # POSIX seconds
    departure_t: float
    vehicle_id: str
    service_date: date
    boardings: int | None = None
    alightings: int | None = None


@dataclass(frozen=True)
class ArrivalPrediction:
    """A predicted arrival of a trip at one downstream stop, with an interval."""

    trip_id: str
    stop_sequence: int
    stop_id: str
    vehicle_id: str
    predicted_t: float  # POSIX seconds, point estimate
    lower_t: float  # prediction interval (e.g. 10 % .. 90 %)
    upper_t: float
    scheduled_t: float
    made_at: float  # when the prediction was made

    @property
    def horizon_s(self) -> float:
        """How far ahead of the prediction time the arrival is expected."""
        return self.predicted_t - self.made_at


@dataclass
class DayTrace:
    """A simulated (or recorded) service day: what really happened and what the
    devices reported. Produced by :mod:`cityos.apps.transit.synthetic`."""

    service_date: date
    arrivals: list[ObservedArrival]
    pings: list[Ping]
    scenario: str = "normal"
