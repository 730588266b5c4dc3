"""The transit demo feed: simulated buses reporting through the real ingest path.

:func:`run` is the demo city's simulator (``run(demo)``, see :mod:`cityos.demo`): it
simulates today's service of :func:`~cityos.apps.transit.synthetic.demo_feed` and
publishes each ping, when its time comes, as a ``Vehicle`` observation, exactly as
an AVL device would: MQTT QoS 1 to ``cityos/<tenant>/Vehicle/<vehicle-id>`` when
the demo has a broker, else ``POST /apps/ingest/observations`` with the demo's key.

:func:`run_feed` replays a simulated day of any feed through any ``publish``
callable, in real or accelerated time; :func:`simulate_feed` does it for a GTFS file
given on the command line.

A ping becomes this observation: keyValues, except speed and bearing which carry
their units (Smart Data Models ``Vehicle`` names: speed in km/h, bearing in degrees
clockwise from north)::

    {"location": {"type": "Point", "coordinates": [lon, lat]},
     "speed": {"type": "Property", "value": 23.4, "unitCode": "KMH"},
     "bearing": {"type": "Property", "value": 87.5, "unitCode": "DD"},
     "tripId": "1-WD-0-0706", "driverId": "drv-1-03-am", "vehicleType": "bus",
     "occupancy": 12, "doorsOpen": false, "observedAt": "2026-01-06T00:12:03.200000Z"}

with ``passengersIn``/``passengersOut`` added on the report sent when the doors close
at a stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from cityos.appkit.publish import HttpPublisher, MqttPublisher, demo_publisher
from cityos.apps.transit.models import Feed, Ping, service_day_origin
from cityos.apps.transit.synthetic import SimulatedDay, demo_feed, simulate_day
from cityos.core.clock import now_datetime
from cityos.core.timefmt import format_datetime

log = logging.getLogger(__name__)

#: How much faster than real time the demo plays (1: the buses run on the clock).
DEMO_SPEEDUP = 1.0
#: Where a replay starts when the clock is outside the day's service: 07:00 local.
FALLBACK_START_S = 7 * 3600
_MPS_TO_KMH = 3.6


def ping_observation(ping: Ping, shift_s: float = 0.0) -> dict:
    """The keyValues body a device publishes for ``ping`` (no ``id``/``type``).

    Parameters
    ----------
    ping : Ping
    shift_s : float
        Added to the ping's time (a replay moved to the present).
    """
    body: dict = {
        "location": {"type": "Point", "coordinates": [round(ping.lon, 7), round(ping.lat, 7)]},
        "vehicleType": "bus",
    }
    # speed and bearing carry their units (the Smart Data Models ones) with them
    if ping.speed_mps is not None:
        body["speed"] = {"type": "Property", "value": round(ping.speed_mps * _MPS_TO_KMH, 1),
                         "unitCode": "KMH"}
    if ping.bearing_deg is not None:
        body["bearing"] = {"type": "Property", "value": round(ping.bearing_deg % 360.0, 1),
                           "unitCode": "DD"}
    if ping.trip_id is not None:
        body["tripId"] = ping.trip_id
    if ping.driver_id is not None:
        body["driverId"] = ping.driver_id
    if ping.occupancy is not None:
        body["occupancy"] = ping.occupancy
    if ping.passengers_in is not None:
        body["passengersIn"] = ping.passengers_in
    if ping.passengers_out is not None:
        body["passengersOut"] = ping.passengers_out
    if ping.doors_open is not None:
        body["doorsOpen"] = ping.doors_open
    body["observedAt"] = format_datetime(
        datetime.fromtimestamp(ping.t + shift_s, tz=UTC))
    return body


# ================================================================= publishers
class PingPublisher:
    """Sends pings as ``Vehicle`` observations through a publisher of
    :mod:`cityos.appkit.publish` (MQTT as a device, or the HTTP ingest as a gateway).

    ``sender(ping, shift_s)`` publishes one ping (:func:`ping_observation`);
    ``flush``, ``close`` and ``published`` are the publisher's.

    Parameters
    ----------
    publisher : MqttPublisher or HttpPublisher
    """

    def __init__(self, publisher):
        self.publisher = publisher

    def __call__(self, ping: Ping, shift_s: float = 0.0) -> None:
        self.publisher.publish("Vehicle", ping.vehicle_id, ping_observation(ping, shift_s))

    @property
    def published(self) -> int:
        return self.publisher.published

    def flush(self) -> None:
        self.publisher.flush()

    def close(self) -> None:
        self.publisher.close()


# ===================================================================== replay
def run_feed(feed: Feed, publish: Callable[..., None], speedup: float = 1.0,
             stop: threading.Event | None = None, *, day: date | None = None,
             start_t: float | None = None, shift_s: float = 0.0,
             scenario: str = "congested", seed: int = 0, timezone: str | None = None,
             trace=None, progress: Callable[[int], None] | None = None) -> int:
    """Replay a simulated service day of ``feed`` through ``publish``, on a clock.

    Parameters
    ----------
    feed : Feed
    publish : callable
        ``publish(ping, shift_s)``, e.g. a :class:`PingPublisher`; its ``flush()`` is
        called after each round of due pings when it has one.
    speedup : float
        Simulated seconds per wall-clock second (1: real time).
    stop : threading.Event, optional
        Set it to end the replay early.
    day : date, optional
        Service day; default today in the feed's time zone.
    start_t : float, optional
        POSIX instant of the simulated day to start from (earlier pings are skipped);
        default the first ping.
    shift_s : float
        Added to every ping's time on the wire (a replay moved in time).
    scenario, seed, timezone
        As :func:`~cityos.apps.transit.synthetic.simulate_day`.
    trace : DayTrace, optional
        An already simulated day to replay instead.
    progress : callable, optional
        Called with the pings published (or skipped before ``start_t``) in each round,
        e.g. :meth:`cityos.core.progress.Progress.advance`.

    Returns
    -------
    int
        How many pings were published.
    """
    if speedup <= 0:
        raise ValueError(f"speedup: {speedup} must be positive")
    stop = stop or threading.Event()
    tz = timezone or _feed_timezone(feed)
    if trace is None:
        day = day or now_datetime().astimezone(ZoneInfo(tz)).date()
        trace = simulate_day(feed, day, scenario=scenario, seed=seed, timezone=tz)
    pings = trace.pings
    if not pings:
        return 0
    # a late-delivered ping goes out when its turn in the delivery order comes
    release = []
    latest = float("-inf")
    for ping in pings:
        latest = max(latest, ping.t)
        release.append(latest)
    sim_start = start_t if start_t is not None else release[0]
    index = next((i for i, r in enumerate(release) if r >= sim_start), len(pings))
    if progress is not None and index:
        progress(index)
    wall_start = time.monotonic()
    flush = getattr(publish, "flush", None)
    sent = 0
    while index < len(pings) and not stop.is_set():
        now = sim_start + (time.monotonic() - wall_start) * speedup
        before = index
        while index < len(pings) and release[index] <= now:
            publish(pings[index], shift_s)
            index += 1
            sent += 1
        if progress is not None and index > before:
            progress(index - before)
        if flush is not None:
            flush()
        if index < len(pings):
            wait = (release[index] - now) / speedup
            stop.wait(min(max(wait, 0.0), 0.5))
    return sent


def _feed_timezone(feed: Feed) -> str:
    return next((a.timezone for a in feed.agencies.values()), None) or "UTC"


def service_day_like(feed: Feed, day: date) -> date | None:
    """The latest date the feed has service on the same weekday as ``day``, for
    driving a feed whose calendar does not cover ``day``; None when there is none.

    Every week of the feed's dates is looked at, from the latest (a calendar's end or
    an added date) back to the earliest: one service that runs years longer than the
    others does not hide the days the others ran.
    """
    dates = [d for cal in feed.calendars.values() for d in (cal.start, cal.end) if d]
    dates += [added for cal in feed.calendars.values() for added in cal.added]
    if not dates:
        return None
    with_trips = {trip.service_id for trip in feed.trips.values()}
    latest, earliest = max(dates), min(dates)
    candidate = latest - timedelta(days=(latest.weekday() - day.weekday()) % 7)
    while candidate >= earliest:
        if feed.services_on(candidate) & with_trips:
            return candidate
        candidate -= timedelta(days=7)
    return None


class NothingToRun(ValueError):
    """The simulator has no bus to drive: the message says why (no service on the
    day, the feed's dates, trips that cannot run, a start after the last bus)."""


@dataclass
class ReplayPlan:
    """What :func:`plan_replay` chose: the simulated day, where the replay starts
    (``start_t``, an instant of that day) and ``shift_s`` added to every ping's time
    so that the replay runs now; ``note`` says why another day than today was
    chosen (empty otherwise)."""

    trace: SimulatedDay
    day: date
    start_t: float
    shift_s: float
    note: str = ""


def feed_dates(feed: Feed) -> str:
    """The feed's dates in words, for a message: ``"its services run from 20160829
    to 20230630"`` (and its added dates)."""
    starts = [c.start for c in feed.calendars.values() if c.start]
    ends = [c.end for c in feed.calendars.values() if c.end]
    added = sorted(d for c in feed.calendars.values() for d in c.added)
    parts = []
    if starts and ends:
        parts.append(f"its calendar runs from {min(starts)} to {max(ends)}")
    if added:
        parts.append(f"{len(added)} added date(s) from {added[0]} to {added[-1]}")
    return " and ".join(parts) if parts else "it has no service dates at all"


def plan_replay(feed: Feed, now: datetime, *, day: date | None = None,
                start_local_s: int | None = None, scenario: str = "congested",
                seed: int = 0) -> ReplayPlan:
    """Which day of ``feed`` to drive at ``now``, from when, shifted how.

    Parameters
    ----------
    feed : Feed
    now : datetime
        The present (aware).
    day : date, optional
        The service day to replay; by default today in the feed's time zone, or,
        when the feed runs nothing today (an expired feed), the latest day of the
        same weekday it ran (:func:`service_day_like`).
    start_local_s : int, optional
        GTFS time of that day to start from; by default the present's time of day
        when buses run then, else the first bus.
    scenario, seed
        As :func:`~cityos.apps.transit.synthetic.simulate_day`.

    Returns
    -------
    ReplayPlan
        The replay starts now: ``shift_s = now - start_t`` (0 when today is driven on
        the clock).

    Raises
    ------
    NothingToRun
        When no bus would run, saying why.
    """
    tz = _feed_timezone(feed)
    now_t = now.timestamp()
    today = now.astimezone(ZoneInfo(tz)).date()
    note = ""
    if day is None:
        day = today
        if not feed.trips_on(day):
            like = service_day_like(feed, day)
            if like is None:
                raise NothingToRun(f"no service today ({today}, a {today:%A}) nor on any "
                                   f"{today:%A} of the feed: {feed_dates(feed)}; give "
                                   "--day")
            note = (f"no service today ({today}, a {today:%A}): {feed_dates(feed)}; "
                    f"replaying {like}, the feed's last {today:%A} with service")
            day = like
    elif not feed.trips_on(day):
        raise NothingToRun(f"no trip runs on {day} (a {day:%A}): {feed_dates(feed)}")
    trace = simulate_day(feed, day, scenario=scenario, seed=seed, timezone=tz)
    if not trace.pings:
        why = ", ".join(f"{n} {reason}" for reason, n in trace.skipped_trips.items())
        raise NothingToRun(f"{len(feed.trips_on(day))} trip(s) run on {day} but none can "
                           f"be driven ({why or 'no pings'})")
    first = min(p.t for p in trace.pings)
    last = max(p.t for p in trace.pings)
    origin = service_day_origin(day, tz)
    if start_local_s is not None:
        start_t = origin + start_local_s
        if start_t > last:
            raise NothingToRun(f"nothing runs on {day} after --start "
                               f"{_hms(start_local_s)}: the last bus reports at "
                               f"{_hms(last - origin)}")
    else:
        # the present's time of day on the replayed day, if buses run then
        start_t = origin + (now_t - service_day_origin(today, tz))
        if not first <= start_t <= last:
            start_t = first
    return ReplayPlan(trace, day, start_t, now_t - start_t, note)


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def replay_window(feed: Feed, now: datetime, seed: int = 0, scenario: str = "congested"):
    """Which simulated day to play at wall-clock ``now`` and how: ``(trace, start_t,
    shift_s)``.

    Within the day's service the buses run on the clock (``shift_s`` 0). Outside it
    (at night) the day is replayed from 07:00 local with every time moved to the
    present, so the demo always has buses moving.
    """
    tz = _feed_timezone(feed)
    local = now.astimezone(ZoneInfo(tz))
    trace = simulate_day(feed, local.date(), scenario=scenario, seed=seed, timezone=tz)
    now_t = now.timestamp()
    times = np.sort(np.array([p.t for p in trace.pings]))
    ahead = np.searchsorted(times, now_t)
    if ahead < len(times) and times[ahead] <= now_t + 600:  # buses are out now
        return trace, now_t, 0.0
    start_t = service_day_origin(local.date(), tz) + FALLBACK_START_S
    if not trace.pings:  # no service today at all: play the next weekday's
        day = local.date()
        for _ in range(7):
            day += timedelta(days=1)
            trace = simulate_day(feed, day, scenario=scenario, seed=seed, timezone=tz)
            if trace.pings:
                break
        start_t = service_day_origin(day, tz) + FALLBACK_START_S
    return trace, start_t, now_t - start_t


def run(demo, speedup: float = DEMO_SPEEDUP, seed: int = 0,
        scenario: str = "congested") -> None:
    """The demo city's bus simulator: publish today's simulated pings through the
    real ingest path until ``demo.stop`` is set.

    Parameters
    ----------
    demo : DemoContext
        MQTT when ``demo.mqtt_url`` is set, else HTTP with ``demo.api_key``.
    speedup : float
        Simulated seconds per wall-clock second.
    """
    feed = demo_feed(seed)
    publisher = _demo_publisher(demo)
    if publisher is None:
        return
    try:
        while not demo.stop.is_set():
            trace, start_t, shift_s = replay_window(feed, now_datetime(), seed, scenario)
            log.info("transit sim: %s pings of %s from %s (shifted %.0f s)",
                     len(trace.pings), trace.service_date,
                     datetime.fromtimestamp(start_t, UTC).isoformat(), shift_s)
            run_feed(feed, publisher, speedup, demo.stop, trace=trace, start_t=start_t,
                     shift_s=shift_s)
            if speedup > 1 or shift_s:
                continue  # an accelerated or shifted replay goes straight on
            demo.stop.wait(60.0)  # the day is over: look again in a minute
    finally:
        publisher.close()


def _demo_publisher(demo) -> PingPublisher | None:
    publisher = demo_publisher(demo, client_id=f"cityos-transit-sim-{demo.tenant}",
                               label="transit sim")
    return PingPublisher(publisher) if publisher is not None else None


def simulate_feed(feed: str | Path | Feed, *, mqtt_url: str | None = None,
                  base_url: str | None = None, api_key: str = "", tenant: str = "default",
                  speedup: float = 1.0, day: date | None = None, start_local_s: int | None = None,
                  scenario: str = "congested", seed: int = 0,
                  stop: threading.Event | None = None, plan: ReplayPlan | None = None,
                  progress: Callable[[int], None] | None = None) -> int:
    """Drive the vehicles of any GTFS feed (a path, read with
    :func:`cityos.apps.transit.gtfs.read_feed`, or a :class:`Feed`) for a day, the
    pings moved to the present (see :func:`plan_replay`).

    Parameters
    ----------
    mqtt_url, base_url : str
        Where to publish: a broker (preferred when both are given) or a server.
    api_key, tenant : str
    speedup : float
        Simulated seconds per wall-clock second.
    day : date, optional
        Default today in the feed's time zone (a day like today for an expired feed).
    start_local_s : int, optional
        GTFS time of day to start from (e.g. ``7 * 3600``); default the present's.
    plan : ReplayPlan, optional
        Already chosen with :func:`plan_replay` (``day``, ``start_local_s``,
        ``scenario`` and ``seed`` are then not used).
    progress : callable, optional
        As :func:`run_feed`.

    Returns
    -------
    int
        Pings published.

    Raises
    ------
    NothingToRun
        When no bus would run (nothing is published, no connection is made).
    """
    if not isinstance(feed, Feed):
        from cityos.apps.transit.gtfs import read_feed

        feed = read_feed(feed)
    if not mqtt_url and not base_url:
        raise ValueError("mqtt_url or base_url: say where to publish the pings")
    if plan is None:
        plan = plan_replay(feed, now_datetime(), day=day, start_local_s=start_local_s,
                           scenario=scenario, seed=seed)
    publisher = PingPublisher(
        MqttPublisher(mqtt_url, tenant, client_id="cityos-transit-sim", label="transit sim")
        if mqtt_url else HttpPublisher(base_url, api_key, tenant, label="transit sim"))
    try:
        return run_feed(feed, publisher, speedup, stop, trace=plan.trace,
                        start_t=plan.start_t, shift_s=plan.shift_s, progress=progress)
    finally:
        publisher.close()
