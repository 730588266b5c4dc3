"""The transit app's live service: the store's ``Vehicle`` observations turned into
bus operations.

:class:`TransitService` is the background service the server's lifespan runs (see
:func:`cityos.apps.transit.api.services`). Per tenant that has imported a GTFS feed
(the ``transit-feed/current`` document that
:func:`~cityos.apps.transit.entities.import_feed` writes) it keeps a
:class:`TenantTransit`: the feed, an arrival predictor and a
:class:`~cityos.apps.transit.live.LiveFleet`.

How observations flow:

1. The store publishes an event for every write. The service's handler, on the
   publisher's thread, only looks at the event (a ``Vehicle`` created or updated with
   a new ``location``) and puts it on a queue: the device's write never waits for
   predictions.
2. A worker thread turns each event into a :class:`~cityos.apps.transit.models.Ping`
   (:func:`vehicle_ping`: only the attributes that observation wrote, speed converted
   by its ``unitCode``) and hands it to the tenant's fleet: cleaning, snapping, trip
   assignment, predictions for every downstream stop, observed arrivals.
3. Derived state goes back onto the ``Vehicle`` entity in one merge per batch:
   ``delaySeconds`` with its class ``punctuality`` (what the dashboard colours buses
   by), ``currentTripId``, ``routeId``, ``currentStopSequence``. An event whose changed attributes are only
   these is the service's own write and is ignored, so there is no loop. The trip
   the service assigned is ``currentTripId``; the device's own ``tripId`` is never
   overwritten, so an assignment is never mistaken for what the device said.
4. Observed arrivals and driving events are kept in memory for the API and written to
   the store as documents in batches (``transit-arrivals``, ``transit-driving``), so
   analytics and driver scores survive a restart; the arrivals are also what the
   predictor learns from the next time the service starts.

Driving events are found in sweeps over each vehicle's recent pings: a sweep reports
the events that began before ``SETTLE_S`` ago and after the previous sweep's end,
looking back ``OVERLAP_S`` for context, so each event is reported once and a long one
(an idle of several minutes) is seen whole.

With a networked event bus and several API workers, every worker runs its own
service over all events; each holds the same live state.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from cityos.apps.transit import driving
from cityos.apps.transit.entities import FEED_DOCUMENT
from cityos.apps.transit.models import Feed, ObservedArrival, Ping
from cityos.apps.transit.pings import PingError, parse_ping
from cityos.apps.transit.speed_limits import (
    RoadLimitError,
    RoadSpeedLimits,
    segment_from_entity,
)
from cityos.core.clock import now as clock_now
from cityos.core.entities import attribute_instances

log = logging.getLogger(__name__)

__all__ = ["DERIVED_ATTRIBUTES", "TenantTransit", "TransitService", "arrival_from_json",
           "arrival_to_json", "vehicle_ping"]

VEHICLE_TYPE = "Vehicle"
VEHICLE_PREFIX = "urn:ngsi-ld:Vehicle:"
#: Attributes the service writes onto a Vehicle; an event changing only these is its own.
DERIVED_ATTRIBUTES = frozenset({"delaySeconds", "punctuality", "currentTripId", "routeId",
                                "currentStopSequence"})
#: Punctuality classes of a delay, seconds: on time is -1 / +5 min as in the analytics.
EARLY_BELOW_S = -60.0
LATE_FROM_S = 300.0
VERY_LATE_FROM_S = 600.0
#: Document kinds of what the service keeps.
ARRIVALS_KIND = "transit-arrivals"
DRIVING_KIND = "transit-driving"
#: Speed units (UN/CEFACT common codes) to metres per second; Smart Data Models give
#: a Vehicle's speed in km/h, so a speed without unitCode is km/h.
SPEED_UNITS_TO_MPS = {"KMH": 1 / 3.6, "MTS": 1.0, "HM": 0.44704, "KNT": 1852 / 3600}
DEFAULT_SPEED_UNIT = "KMH"
QUEUE_MAX = 200_000
BATCH_MAX = 2_000  # observations per worker round
RELEASE_EVERY_S = 5.0  # let out pings held for reordering of vehicles gone quiet
PERSIST_EVERY_S = 30.0
PERSIST_BATCH = 500  # arrivals per document
SWEEP_EVERY_S = 60.0
SETTLE_S = 600.0  # a driving event is reported once it began this long ago
OVERLAP_S = 600.0  # context looked back on before the previous sweep's end
DERIVED_EVERY_S = 30.0  # rewrite unchanged derived attributes at most this often
DERIVED_DELAY_STEP_S = 15.0  # a delay change this large is written at once
RETENTION_DAYS = 35  # arrivals and driving sweeps loaded back at start
DEFAULT_SPEED_LIMIT_KMH = 50.0  # urban limit, for speeding away from every RoadSegment
ROAD_TYPE = "RoadSegment"
DEMO_HISTORY_DAYS = 2  # simulated days the demo's predictor learns from


# ============================================================ observation -> ping
def _default_instance(attribute) -> dict | None:
    instances = attribute_instances(attribute) if attribute is not None else []
    for instance in instances:
        if "datasetId" not in instance:
            return instance
    return instances[0] if instances else None


def _value(entity: dict, name: str):
    instance = _default_instance(entity.get(name))
    if instance is None:
        return None, None
    if instance.get("type") == "Relationship":
        return instance.get("object"), instance
    return instance.get("value"), instance


def local_vehicle_id(entity_id: str) -> str:
    """The vehicle id GTFS-realtime publishes: the entity id without
    ``urn:ngsi-ld:Vehicle:`` (``urn:ngsi-ld:Vehicle:bus-17`` is ``bus-17``)."""
    return entity_id[len(VEHICLE_PREFIX):] if entity_id.startswith(VEHICLE_PREFIX) else entity_id


def vehicle_ping(entity: dict, changed: Iterable[str] | None = None, *,
                 received_t: float | None = None) -> Ping:
    """The :class:`Ping` of one ``Vehicle`` observation.

    Parameters
    ----------
    entity : dict
        The Vehicle entity after the write (normalised NGSI-LD, as the store's
        events carry it).
    changed : iterable of str, optional
        The attributes the write changed: only these, besides the position, make the
        ping (a ``tripId`` left on the entity by an earlier message is not this
        message's). All attributes when omitted.
    received_t : float, optional
        The time used when the location has no ``observedAt`` (default: now).

    Returns
    -------
    Ping
        Speed in m/s, converted from the attribute's ``unitCode`` (``KMH`` when it
        has none, the Smart Data Models unit); bearing from ``bearing`` or
        ``heading`` in degrees.

    Raises
    ------
    PingError
        Naming the attribute that is missing or wrong.
    """
    wanted = None if changed is None else set(changed)

    def fresh(name: str):
        if wanted is not None and name not in wanted:
            return None, None
        return _value(entity, name)

    location, instance = _value(entity, "location")
    if not isinstance(location, dict) or location.get("type") != "Point":
        raise PingError("location", "must be a GeoJSON Point")
    coordinates = location.get("coordinates") or []
    if len(coordinates) < 2:
        raise PingError("location", "a Point needs [longitude, latitude]")
    payload: dict = {"vehicle_id": local_vehicle_id(entity["id"]),
                     "lon": coordinates[0], "lat": coordinates[1],
                     "t": (instance or {}).get("observedAt")
                     or (received_t if received_t is not None else clock_now())}
    speed, speed_instance = fresh("speed")
    if speed is not None:
        unit = (speed_instance or {}).get("unitCode") or DEFAULT_SPEED_UNIT
        if unit not in SPEED_UNITS_TO_MPS:
            raise PingError("speed", f"unitCode {unit!r} is not one of "
                                     f"{', '.join(SPEED_UNITS_TO_MPS)}")
        if isinstance(speed, (int, float)) and not isinstance(speed, bool):
            speed = speed * SPEED_UNITS_TO_MPS[unit]
        payload["speed_mps"] = speed
    for name in ("bearing", "heading"):
        bearing, _ = fresh(name)
        if bearing is not None:
            payload["bearing_deg"] = bearing
            break
    for attribute, key in (("tripId", "trip_id"), ("driverId", "driver_id"),
                           ("occupancy", "occupancy"), ("passengersIn", "passengers_in"),
                           ("passengersOut", "passengers_out"), ("doorsOpen", "doors_open")):
        value, _ = fresh(attribute)
        if value is not None:
            payload[key] = value
    return parse_ping(payload)


def punctuality(delay_s: float) -> str:
    """``early``, ``onTime``, ``late`` or ``veryLate`` for a schedule deviation."""
    if delay_s < EARLY_BELOW_S:
        return "early"
    if delay_s < LATE_FROM_S:
        return "onTime"
    if delay_s < VERY_LATE_FROM_S:
        return "late"
    return "veryLate"


# ============================================================ arrivals as JSON
def arrival_to_json(arrival: ObservedArrival) -> list:
    """An observed arrival as a compact JSON row (for the arrivals documents)."""
    return [arrival.trip_id, arrival.stop_sequence, arrival.stop_id, arrival.arrival_t,
            arrival.departure_t, arrival.vehicle_id, arrival.service_date.isoformat(),
            arrival.boardings, arrival.alightings]


def arrival_from_json(row: list) -> ObservedArrival:
    """The inverse of :func:`arrival_to_json`."""
    trip_id, sequence, stop_id, arrival_t, departure_t, vehicle_id, day, boardings, \
        alightings = row
    return ObservedArrival(trip_id, int(sequence), stop_id, float(arrival_t),
                           float(departure_t), vehicle_id, date.fromisoformat(day),
                           boardings, alightings)


def _event_to_json(event: driving.DrivingEvent) -> dict:
    return asdict(event)


def _event_from_json(data: dict) -> driving.DrivingEvent:
    return driving.DrivingEvent(**data)


# ===================================================================== per tenant
@dataclass
class _VehicleDriving:
    """Pings of one vehicle not yet swept for driving events."""

    pings: list[Ping] = field(default_factory=list)
    swept_to: float | None = None


class TenantTransit:
    """The live transit state of one tenant: feed, predictor, fleet, history.

    Every method takes :attr:`lock`; the API reads through the same methods.

    Parameters
    ----------
    tenant : str
    feed : Feed
    feed_document : dict
        The tenant's ``transit-feed/current`` document (its ``importedAt`` tells a
        new import).
    predictor : ArrivalPredictor, optional
        The starting predictor; replaced by :meth:`use_predictor` once trained.
    stale_s : float, optional
        Silence after which a vehicle leaves the feeds (the fleet's ``stale_s``).
    """

    def __init__(self, tenant: str, feed: Feed, feed_document: dict, predictor=None,
                 stale_s: float | None = None):
        from cityos.apps.transit.live import STALE_S, LiveFleet

        self.tenant = tenant
        self.feed = feed
        self.feed_document = feed_document
        self.timezone = next((a.timezone for a in feed.agencies.values() if a.timezone),
                             None) or "UTC"
        self.fleet = LiveFleet(feed, predictor, timezone=self.timezone,
                               stale_s=STALE_S if stale_s is None else stale_s)
        self.lock = threading.RLock()
        self.arrivals: list[ObservedArrival] = []
        self.unsaved_arrivals: list[ObservedArrival] = []
        self.driving_events: list[driving.DrivingEvent] = []
        self.km_by_driver: dict[str, dict[str, float]] = {}  # service date -> driver -> km
        self.km_by_vehicle: dict[str, dict[str, float]] = {}
        self.unsaved_driving: list[dict] = []
        self._driving: dict[str, _VehicleDriving] = {}
        self._derived: dict[str, tuple] = {}  # vehicle -> (values, written at)
        self.speed_limit_kmh = DEFAULT_SPEED_LIMIT_KMH
        self.thresholds = driving.DrivingThresholds()
        self.pings_processed = 0
        self.pings_invalid = 0
        self.predictor_trained = False

    # ------------------------------------------------------------------ pings
    def use_predictor(self, predictor) -> None:
        """Hand the fleet a (newly trained) predictor."""
        with self.lock:
            self.fleet.predictor = predictor
            self.predictor_trained = bool(getattr(predictor, "fitted", False))

    def process(self, ping: Ping, now: float) -> object | None:
        """Feed one ping to the fleet; keep what it produced."""
        with self.lock:
            update = self.fleet.process(ping, now=now)
            self.pings_processed += 1
            self._driving.setdefault(ping.vehicle_id, _VehicleDriving()).pings.append(ping)
            self._keep(update)
            return update

    def release_due(self, now: float) -> list:
        """Let out pings held for reordering of vehicles gone quiet."""
        with self.lock:
            released = self.fleet.release_due(now) or []
            updates = released if isinstance(released, list) else [released]
            for update in updates:
                self._keep(update)
            return updates

    def _keep(self, update) -> None:
        if update is None:
            return
        for arrival in getattr(update, "new_arrivals", None) or ():
            self.arrivals.append(arrival)
            self.unsaved_arrivals.append(arrival)

    def derived_attributes(self, updates: Iterable, now: float,
                           force: bool = False) -> list[dict]:
        """The merges that put each updated vehicle's derived state on its entity.

        One fragment per vehicle (its latest update); a vehicle whose trip, route and
        stop are unchanged and whose delay moved less than ``DERIVED_DELAY_STEP_S`` is
        rewritten at most every ``DERIVED_EVERY_S`` seconds.
        """
        latest = {}
        for update in updates:
            if update is not None:
                latest[update.vehicle_id] = update
        fragments = []
        with self.lock:
            for vehicle_id, update in latest.items():
                delay = getattr(update, "delay_s", None)
                values = (update.trip_id, update.route_id, update.current_stop_sequence,
                          None if delay is None or not math.isfinite(delay) else round(delay))
                before = self._derived.get(vehicle_id)
                if before is not None and not force:
                    (trip, route, sequence, old_delay), written_at = before
                    same = (trip, route, sequence) == values[:3]
                    small = ((old_delay is None and values[3] is None) or (
                        old_delay is not None and values[3] is not None
                        and abs(old_delay - values[3]) < DERIVED_DELAY_STEP_S))
                    if same and small and now - written_at < DERIVED_EVERY_S:
                        continue
                self._derived[vehicle_id] = (values, now)
                fragments.append(_derived_fragment(vehicle_id, update, values))
        return fragments

    # ---------------------------------------------------------------- driving
    def sweep_driving(self, final: bool = False) -> int:
        """Find the driving events of the pings that have settled; return how many.

        Parameters
        ----------
        final : bool
            Sweep every ping (at shutdown), not only those older than ``SETTLE_S``.
        """
        found = 0
        with self.lock:
            for vehicle_id, state in self._driving.items():
                if not state.pings:
                    continue
                state.pings.sort(key=lambda p: p.t)
                last_t = state.pings[-1].t
                cutoff = last_t + 1.0 if final else last_t - SETTLE_S
                start = state.pings[0].t if state.swept_to is None else state.swept_to
                if cutoff <= start:
                    continue
                window = [p for p in state.pings if p.t >= start - OVERLAP_S]
                record = driving.monitor_driving(
                    window, thresholds=self.thresholds, speed_limit_kmh=self.speed_limit_kmh,
                    stops=self.feed)
                events = [e for e in record.events if start <= e.t < cutoff]
                km_driver, km_vehicle = _driven_km(
                    [p for p in state.pings if start <= p.t <= cutoff], self.thresholds,
                    self.timezone)
                self.driving_events.extend(events)
                _add_km(self.km_by_driver, km_driver)
                _add_km(self.km_by_vehicle, km_vehicle)
                self.unsaved_driving.append({
                    "vehicle": vehicle_id, "from_t": start, "to_t": cutoff,
                    "events": [_event_to_json(e) for e in events],
                    "km_by_driver": km_driver, "km_by_vehicle": km_vehicle})
                found += len(events)
                state.swept_to = cutoff
                state.pings = [p for p in state.pings if p.t >= cutoff - OVERLAP_S]
        return found

    def driving_record(self, begin_t: float, end_t: float) -> driving.DrivingRecord:
        """Events and kilometres of ``begin_t <= t < end_t`` (kilometres by whole
        service dates in the tenant's time zone)."""
        with self.lock:
            events = [e for e in self.driving_events if begin_t <= e.t < end_t]
            days = _days_between(begin_t, end_t, self.timezone)
            km_driver: dict[str, float] = {}
            km_vehicle: dict[str, float] = {}
            for day in days:
                for who, km in self.km_by_driver.get(day, {}).items():
                    km_driver[who] = km_driver.get(who, 0.0) + km
                for who, km in self.km_by_vehicle.get(day, {}).items():
                    km_vehicle[who] = km_vehicle.get(who, 0.0) + km
        return driving.DrivingRecord(events, km_driver, km_vehicle)

    # ------------------------------------------------------------ persistence
    def persist(self, store) -> None:
        """Write the arrivals and driving sweeps not yet stored, in batches."""
        with self.lock:
            arrivals, self.unsaved_arrivals = self.unsaved_arrivals, []
            sweeps, self.unsaved_driving = self.unsaved_driving, []
        try:
            for start in range(0, len(arrivals), PERSIST_BATCH):
                chunk = arrivals[start:start + PERSIST_BATCH]
                store.put_document(self.tenant, ARRIVALS_KIND, _document_key(), {
                    "savedAt": clock_now(), "arrivals": [arrival_to_json(a) for a in chunk]})
            for sweep in sweeps:
                store.put_document(self.tenant, DRIVING_KIND, _document_key(),
                                   {"savedAt": clock_now(), **sweep})
        except Exception:  # keep them for the next try rather than lose them
            log.exception("transit: storing arrivals and driving events of %s failed",
                          self.tenant)
            with self.lock:
                self.unsaved_arrivals[:0] = arrivals
                self.unsaved_driving[:0] = sweeps

    def restore(self, store, retention_days: int = RETENTION_DAYS) -> None:
        """Load the stored arrivals and driving sweeps of the last ``retention_days``."""
        since = clock_now() - retention_days * 86_400.0
        arrivals = []
        for doc in _all_documents(store, self.tenant, ARRIVALS_KIND):
            if doc.get("savedAt", 0) >= since:
                arrivals.extend(arrival_from_json(row) for row in doc.get("arrivals", ()))
        events = []
        km_driver: dict[str, dict[str, float]] = {}
        km_vehicle: dict[str, dict[str, float]] = {}
        for doc in _all_documents(store, self.tenant, DRIVING_KIND):
            if doc.get("savedAt", 0) < since:
                continue
            events.extend(_event_from_json(e) for e in doc.get("events", ()))
            _add_km(km_driver, doc.get("km_by_driver", {}))
            _add_km(km_vehicle, doc.get("km_by_vehicle", {}))
        with self.lock:
            self.arrivals[:0] = arrivals
            self.driving_events[:0] = events
            _add_km(self.km_by_driver, km_driver)
            _add_km(self.km_by_vehicle, km_vehicle)

    # ------------------------------------------------------------------ reads
    def arrivals_on(self, day: date | None) -> list[ObservedArrival]:
        """The observed arrivals of one service date (every one when ``day`` is None)."""
        with self.lock:
            return [a for a in self.arrivals if day is None or a.service_date == day]

    def today(self, now: float) -> date:
        """The local date at ``now`` in the feed's time zone."""
        return datetime.fromtimestamp(now, ZoneInfo(self.timezone)).date()


def _derived_fragment(vehicle_id: str, update, values: tuple) -> dict:
    trip_id, route_id, sequence, delay = values
    observed = datetime.fromtimestamp(update.t, ZoneInfo("UTC")).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")

    def prop(value, **extra):
        return {"type": "Property", "value": value, "observedAt": observed, **extra}

    fragment: dict = {"id": VEHICLE_PREFIX + vehicle_id if not vehicle_id.startswith("urn:")
                      else vehicle_id, "type": VEHICLE_TYPE}
    # NGSI-LD has no null value: an unknown one is written as "" (text) or left out
    fragment["currentTripId"] = prop(trip_id or "")
    fragment["routeId"] = prop(route_id or "")
    if sequence is not None:
        fragment["currentStopSequence"] = prop(int(sequence))
    if delay is not None:
        fragment["delaySeconds"] = prop(int(delay), unitCode="SEC")
        fragment["punctuality"] = prop(punctuality(delay))
    else:  # off a trip: no class (the map shows the layer's own colour)
        fragment["punctuality"] = prop("noTrip")
    return fragment


def _driven_km(pings: list[Ping], thresholds: driving.DrivingThresholds,
               timezone: str) -> tuple[dict, dict]:
    """Kilometres driven per service date and driver / vehicle (moving steps only)."""
    by_driver: dict[str, dict[str, float]] = {}
    by_vehicle: dict[str, dict[str, float]] = {}
    if len(pings) < 2:
        return by_driver, by_vehicle
    k = driving.vehicle_kinematics(pings, thresholds)
    moving = np.maximum(k.speed_mps[:-1], k.speed_mps[1:]) > thresholds.idle_speed_mps
    driven_m = np.where(moving, k.step_m, 0.0)
    zone = ZoneInfo(timezone)
    for ping, metres in zip(k.pings[:-1], driven_m.tolist(), strict=True):
        day = datetime.fromtimestamp(ping.t, zone).date().isoformat()
        vehicle = by_vehicle.setdefault(day, {})
        vehicle[ping.vehicle_id] = vehicle.get(ping.vehicle_id, 0.0) + metres / 1000.0
        if ping.driver_id is not None:
            drivers = by_driver.setdefault(day, {})
            drivers[ping.driver_id] = drivers.get(ping.driver_id, 0.0) + metres / 1000.0
    return by_driver, by_vehicle


def _add_km(total: dict[str, dict[str, float]], more: dict[str, dict[str, float]]) -> None:
    for day, values in more.items():
        target = total.setdefault(day, {})
        for who, km in values.items():
            target[who] = target.get(who, 0.0) + float(km)


def _days_between(begin_t: float, end_t: float, timezone: str) -> list[str]:
    zone = ZoneInfo(timezone)
    first = datetime.fromtimestamp(begin_t, zone).date()
    last = datetime.fromtimestamp(max(begin_t, end_t - 1e-6), zone).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _document_key() -> str:
    # time first so that keys sort in the order they were written
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _all_documents(store, tenant: str, kind: str, page: int = 1000) -> list[dict]:
    found, offset = [], 0
    while True:
        batch = store.list_documents(tenant, kind, limit=page, offset=offset)
        found.extend(batch)
        if len(batch) < page:
            return found
        offset += page


# ================================================================== feed cache
_feeds: dict[tuple[str, float], Feed] = {}
_feeds_lock = threading.Lock()


def load_feed(path: str | Path) -> Feed:
    """The feed at ``path``, read once per file version (path and modification time)."""
    from cityos.apps.transit.gtfs import read_feed

    resolved = Path(path).resolve()
    key = (str(resolved), resolved.stat().st_mtime)
    with _feeds_lock:
        if key in _feeds:
            return _feeds[key]
    feed = read_feed(resolved)
    with _feeds_lock:
        _feeds[key] = feed
    return feed


# ===================================================================== service
class TransitService:
    """The transit app's background service (see the module's notes).

    Parameters
    ----------
    store : ContextStore
    settings : Settings
    clock : callable, optional
        POSIX seconds now (default: the process clock, ``cityos.core.clock``); tests
        and replays move it.
    """

    def __init__(self, store, settings=None, clock: Callable[[], float] | None = None):
        self.store = store
        self.settings = settings
        self.clock = clock or clock_now
        self._tenants: dict[str, TenantTransit | None] = {}
        self._checked: dict[str, float] = {}  # tenant -> when a missing feed was seen
        self._tenants_lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._stop = threading.Event()
        #: training threads, joined at stop: none goes on simulating after the service
        self._trainers: list[threading.Thread] = []
        self._worker: threading.Thread | None = None
        self._unsubscribe = None
        self._idle = threading.Event()
        self.dropped = 0
        self._roads_changed: set[str] = set()  # tenants whose RoadSegments changed
        self.recheck_s = 10.0  # how often a tenant without a feed is looked at again

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Subscribe to the store's events and start the worker."""
        self._stop.clear()
        self._unsubscribe = self.store.events.subscribe(self._on_event)
        self._worker = threading.Thread(target=self._run, name="transit-service", daemon=True)
        self._worker.start()
        threading.Thread(target=self._load_known_tenants, name="transit-load",
                         daemon=True).start()

    def stop(self) -> None:
        """Stop listening, drain the queue, sweep and store what is left."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        for trainer in self._trainers:  # each stops at its next simulated day
            trainer.join(timeout=30)
        self._trainers = []
        for state in self.tenant_states():
            state.sweep_driving(final=True)
            state.persist(self.store)

    def _load_known_tenants(self) -> None:
        try:
            for tenant in self.store.tenants():
                if self._stop.is_set():
                    return
                self.tenant(tenant)
        except Exception:  # noqa: BLE001 (a broken feed must not stop the service)
            log.exception("transit: loading the tenants' feeds failed")

    # --------------------------------------------------------------- tenants
    def tenant_states(self) -> list[TenantTransit]:
        with self._tenants_lock:
            return [s for s in self._tenants.values() if s is not None]

    def tenant(self, tenant: str) -> TenantTransit | None:
        """The tenant's live state, loaded on first use; None when it has no feed.

        A new import (another ``importedAt``) replaces the state.
        """
        state = self._known(tenant)
        if state is not False:
            return state
        with self._tenants_lock:
            lock = self._load_locks.setdefault(tenant, threading.Lock())
        with lock:
            state = self._known(tenant)  # another thread may have loaded it meanwhile
            if state is not False:
                return state
            document = self.store.get_document(tenant, *FEED_DOCUMENT)
            with self._tenants_lock:
                state = self._tenants.get(tenant)
            if document is not None and (state is None or state.feed_document.get(
                    "importedAt") != document.get("importedAt")):
                state = self._load(tenant, document)
            with self._tenants_lock:
                self._tenants[tenant] = state
                self._checked[tenant] = time.monotonic()
            return state

    def _known(self, tenant: str):
        """The tenant's state when it was looked at recently, else False."""
        with self._tenants_lock:
            checked = self._checked.get(tenant)
            if checked is not None and time.monotonic() - checked < self.recheck_s:
                return self._tenants.get(tenant)
        return False

    def _load(self, tenant: str, document: dict) -> TenantTransit | None:
        from cityos.apps.transit.prediction import ArrivalPredictor

        try:
            feed = load_feed(document["path"])
        except Exception:  # noqa: BLE001 (the document may name a file gone since)
            log.exception("transit: the feed of tenant %s (%s) cannot be read", tenant,
                          document.get("path"))
            return None
        state = TenantTransit(tenant, feed, document, ArrivalPredictor(),
                              stale_s=getattr(self.settings, "transit_vehicle_stale_s", None))
        state.restore(self.store)
        state.speed_limit_kmh = self.road_limits(tenant)
        trainer = threading.Thread(target=self._train, args=(state,), daemon=True,
                                   name=f"transit-train {tenant}")
        self._trainers.append(trainer)
        trainer.start()
        log.info("transit: tenant %s runs feed %s (%d trips)", tenant, document["path"],
                 len(feed.trips))
        return state

    def road_limits(self, tenant: str) -> RoadSpeedLimits:
        """The tenant's speed limits from its ``RoadSegment`` entities (a segment
        that cannot give one is logged and left out)."""
        segments = []
        for entity in (record.entity for record in self.store.scan(tenant, types=[ROAD_TYPE])):
            try:
                segment = segment_from_entity(entity)
            except RoadLimitError as error:
                log.warning("transit: speed limits of %s: %s", tenant, error)
                continue
            if segment is not None:
                segments.append(segment)
        return RoadSpeedLimits(segments, default_kmh=DEFAULT_SPEED_LIMIT_KMH)

    def _train(self, state: TenantTransit) -> None:
        """Learn the predictor from stored arrivals, or from simulated days for the
        demo city, in the background (the fleet predicts from the timetable meanwhile)."""
        from cityos.apps.transit.prediction import ArrivalPredictor

        try:
            history = state.arrivals_on(None)
            if not history and state.feed_document.get("demo"):
                history = demo_history(state.feed, state.timezone,
                                       int(state.feed_document.get("seed", 0)),
                                       state.today(self.clock()), stop=self._stop)
            if not history or self._stop.is_set():
                return
            predictor = ArrivalPredictor().learn(history, state.feed, state.timezone)
            state.use_predictor(predictor)
            log.info("transit: predictor of %s learnt from %d arrivals", state.tenant,
                     len(history))
        except Exception:  # noqa: BLE001
            log.exception("transit: training the predictor of %s failed", state.tenant)

    # ---------------------------------------------------------------- events
    def _on_event(self, event) -> None:
        """On the publisher's thread: keep it quick, never raise."""
        if event.kind not in ("created", "updated", "deleted"):
            return
        if event.kind == "deleted" or event.entity is None:
            if ROAD_TYPE in (event.entity_type if isinstance(event.entity_type, list)
                             else [event.entity_type]):
                self._roads_changed.add(event.tenant)
            return
        types = event.entity_type if isinstance(event.entity_type, list) else [event.entity_type]
        if ROAD_TYPE in types:
            self._roads_changed.add(event.tenant)  # limits reloaded before the next sweep
            return
        if VEHICLE_TYPE not in types:
            return
        changed = set(event.changed or ())
        if changed and changed <= DERIVED_ATTRIBUTES:
            return  # the service's own write
        if changed and "location" not in changed:
            return  # no new position: nothing to place
        try:
            self._queue.put_nowait((event.tenant, event.entity, changed or None,
                                    self.clock()))
            self._idle.clear()
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("transit: live queue full; %d observations not placed live "
                            "(they are stored)", self.dropped)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every observation queued so far is processed (for tests and the
        CLI); True when it was."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    # ---------------------------------------------------------------- worker
    def _run(self) -> None:
        last_release = last_persist = last_sweep = time.monotonic()
        while True:
            items = self._take()
            try:
                if items:
                    self._process(items)
                now = time.monotonic()
                if now - last_release >= RELEASE_EVERY_S:
                    last_release = now
                    self._release()
                if now - last_sweep >= SWEEP_EVERY_S:
                    last_sweep = now
                    self._reload_road_limits()
                    for state in self.tenant_states():
                        state.sweep_driving()
                if now - last_persist >= PERSIST_EVERY_S or (items and any(
                        len(s.unsaved_arrivals) >= PERSIST_BATCH for s in self.tenant_states())):
                    last_persist = now
                    for state in self.tenant_states():
                        state.persist(self.store)
            except Exception:  # noqa: BLE001 (the worker must live on)
                log.exception("transit: processing observations failed")
            finally:
                for _ in items:
                    self._queue.task_done()
            if self._stop.is_set() and self._queue.empty():
                return

    def _reload_road_limits(self) -> None:
        while self._roads_changed:
            tenant = self._roads_changed.pop()
            with self._tenants_lock:
                state = self._tenants.get(tenant)
            if state is not None:
                limits = self.road_limits(tenant)
                with state.lock:
                    state.speed_limit_kmh = limits

    def _take(self) -> list:
        try:
            items = [self._queue.get(timeout=0.5)]
        except queue.Empty:
            return []
        while len(items) < BATCH_MAX:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _process(self, items: list) -> None:
        updates: dict[str, list] = {}
        for tenant, entity, changed, received_t in items:
            state = self.tenant(tenant)
            if state is None:
                continue
            try:
                ping = vehicle_ping(entity, changed, received_t=received_t)
            except PingError as error:
                state.pings_invalid += 1
                log.debug("transit: %s: %s", entity.get("id"), error)
                continue
            update = state.process(ping, self.clock())
            if update is not None:
                updates.setdefault(tenant, []).append(update)
        self._write_derived(updates)

    def _release(self) -> None:
        updates = {}
        for state in self.tenant_states():
            released = state.release_due(self.clock())
            if released:
                updates[state.tenant] = released
        self._write_derived(updates)

    def _write_derived(self, updates: dict[str, list]) -> None:
        for tenant, tenant_updates in updates.items():
            state = self.tenant(tenant)
            if state is None:
                continue
            fragments = state.derived_attributes(tenant_updates, time.monotonic())
            if not fragments:
                continue
            result = self.store.update_entities(tenant, fragments)
            if result.errors:
                log.warning("transit: derived attributes of %d vehicles refused, e.g. %s",
                            len(result.errors), result.errors[0])


def demo_history(feed: Feed, timezone: str, seed: int, today: date,
                 days: int = DEMO_HISTORY_DAYS,
                 stop: threading.Event | None = None) -> list[ObservedArrival]:
    """Simulated past days of the demo city (the same weekday of earlier weeks), the
    history its predictor learns from before any real one is stored; what was
    simulated so far when ``stop`` is set."""
    from cityos.apps.transit.synthetic import simulate_day

    history: list[ObservedArrival] = []
    for week in range(1, days + 1):
        if stop is not None and stop.is_set():
            break
        day = today - timedelta(days=7 * week)
        history.extend(simulate_day(feed, day, seed=seed + week, timezone=timezone).arrivals)
    return history
