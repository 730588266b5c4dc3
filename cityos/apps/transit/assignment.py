"""Which trip a vehicle is running, when its device does not say.

Candidates are the trips of the service date whose scheduled span (first departure to
last arrival), widened by ``early_s`` before and ``late_s`` after, contains the ping's
time, and whose shape passes within ``max_offset_m`` of it. A headway-based trip
(``frequencies.txt``) stands for one instance per departure; an instance is named
``<trip_id>@<HH:MM:SS>`` after its first departure (hours past 24 after midnight, as in
GTFS), see :func:`instance_id`, and :func:`schedule_of` gives its stop times.

Each candidate is scored on

* position: the vehicle's recent pings snapped to the trip's shape with monotonic
  progress (:meth:`ShapeSnapper.snap_track`, starting again where a ping leaves the
  shape: the pings before belong to another trip); their RMS offset must stay within
  ``max_offset_m``. A vehicle within ``start_radius_m`` of the first stop may also be
  standing there before its departure, whatever it did before;
* direction: when the vehicle has moved more than ``min_move_m``, progress along the
  shape must account for at least half of the displacement (a bus running the other
  way makes no monotonic progress on this shape);
* schedule: how far the vehicle is from where the timetable expects it, as a time
  deviation; running early counts double, waiting at the first stop before departure
  counts ``layover_weight`` per second;
* block: with a block known (given, or that of the previous trip), the previous trip
  and the next trip of the block win ``block_bonus_s`` twice over, other trips of the
  block once. A previous trip whose last stop the vehicle has reached is finished.

The lowest cost wins. The answer is None, and :func:`assign_trip_explained` says why,
when no candidate passes the position, direction and schedule limits, or when the
runner-up is within ``min_margin_s`` of the best (a bus standing at a terminal shared
by several routes: it is known once it moves off, or from its block).

Only the given service date is searched: the caller decides the service date (a ping
at 00:30 may belong to the previous day's trips with times past 24:00).
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from .models import Feed, Ping, Shape, Trip, TripSchedule, service_day_origin
from .pings import distance_m
from .snapping import ShapeSnapper

__all__ = ["Assignment", "CandidateFit", "TripAssigner", "assign_trip", "assign_trip_explained",
           "instance_id", "split_instance_id", "schedule_of", "trip_of"]

_INSTANCE = re.compile(r"^(.*)@(\d{1,3}):([0-5]\d):([0-5]\d)$")


# ========================================================================== instances
def instance_id(trip_id: str, start_s: float) -> str:
    """The id of the instance of a headway-based trip departing at ``start_s``
    (GTFS seconds of the service day): ``<trip_id>@HH:MM:SS``."""
    s = int(round(start_s))
    return f"{trip_id}@{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def split_instance_id(value: str) -> tuple[str, int | None]:
    """``(trip_id, start_s)`` of an instance id; ``(value, None)`` for a plain trip id."""
    match = _INSTANCE.match(value)
    if not match:
        return value, None
    trip, h, m, s = match.groups()
    return trip, int(h) * 3600 + int(m) * 60 + int(s)


def trip_of(feed: Feed, trip_id: str) -> Trip:
    """The feed's trip of a trip id or instance id (KeyError when unknown)."""
    if trip_id in feed.trips:
        return feed.trips[trip_id]
    return feed.trips[split_instance_id(trip_id)[0]]


def schedule_of(feed: Feed, trip_id: str) -> TripSchedule:
    """Stop times of a trip or of an instance of a headway-based trip (times shifted so
    that its first departure is the instance's start).

    Raises
    ------
    KeyError
        When the trip (or the instance's trip) has no stop times.
    """
    if trip_id in feed.trips:
        return feed.schedule(trip_id)
    base, start = split_instance_id(trip_id)
    template = feed.schedule(base)
    if start is None:
        return template
    shift = start - float(template.departure_s[0])
    return TripSchedule(trip_id, template.stop_ids, template.stop_sequence,
                        template.arrival_s + shift, template.departure_s + shift,
                        template.shape_dist_m)


# ========================================================================== results
@dataclass
class CandidateFit:
    """How one candidate trip fits the vehicle's recent pings."""

    trip_id: str
    offset_m: float = math.nan  # RMS offset of the recent pings from the shape
    dist_m: float = math.nan  # progress of the newest ping along the shape
    progress_m: float = math.nan  # progress over the recent pings
    moved_m: float = math.nan  # straight-line displacement over the recent pings
    deviation_s: float = math.nan  # positive late, negative early
    cost: float = math.inf
    rejected: str | None = None  # why it cannot be the trip
    at_end: bool = False  # at (or past) the last stop


@dataclass
class _ShapeEvidence:
    """The recent pings on one shape."""

    dist_m: float = math.nan  # progress of the newest ping (monotonic track)
    offset_m: float = math.nan  # RMS offset of the track
    progress_m: float = math.nan
    moved_m: float = math.nan
    start_dist_m: float = math.nan  # the newest ping on the shape's earliest branch
    start_offset_m: float = math.nan


@dataclass
class Assignment:
    """The chosen trip (or None) and the evidence."""

    trip_id: str | None
    reason: str
    candidates: list[CandidateFit] = field(default_factory=list)


# ========================================================================= the index
@dataclass
class _DayIndex:
    ids: list[str]  # trip or instance ids
    base: list[str]  # feed trip ids
    start_s: np.ndarray
    end_s: np.ndarray
    shift_s: np.ndarray  # instance start minus template departure
    bbox: np.ndarray  # (n, 4) min lat, min lon, max lat, max lon of the shape
    origin: float  # POSIX seconds of the service day's "noon minus 12 h"
    blocks: dict[str, list[int]]  # block id -> entries in order of departure


class TripAssigner:
    """Trip assignment over one feed, with its indexes and snappers kept between calls.

    Parameters
    ----------
    feed : Feed
    early_s, late_s : float
        A trip is a candidate from ``early_s`` before its first departure until
        ``late_s`` after its last arrival; also the largest schedule deviations
        accepted (early, late).
    max_offset_m : float
        Largest RMS offset of the recent pings from a candidate's shape.
    min_move_m : float
        Displacement over the recent pings above which direction is checked.
    lookback_s : float
        Recent pings older than this before the ping are not used.
    max_track_pings : int
        Most pings snapped per candidate shape (the newest, spread over the lookback).
    block_bonus_s : float
        Cost (seconds) taken off for trips of the vehicle's block.
    min_margin_s : float
        How much better than the runner-up the best candidate must be.
    layover_weight : float
        Cost of each second of waiting at the first stop before departure (a layover
        is normal; running early is not).
    start_radius_m : float
        Within this of the first (last) stop a vehicle is at the start (end) of a trip.
    max_speed_mps : float
        Plausible top speed between pings (bounds the snapping window).
    """

    def __init__(self, feed: Feed, *, early_s: float = 1200.0, late_s: float = 1800.0,
                 max_offset_m: float = 60.0, min_move_m: float = 60.0,
                 lookback_s: float = 300.0, max_track_pings: int = 8,
                 block_bonus_s: float = 300.0, min_margin_s: float = 120.0,
                 layover_weight: float = 0.25, start_radius_m: float = 100.0,
                 max_speed_mps: float = 120 / 3.6) -> None:
        self.feed = feed
        self.early_s = early_s
        self.late_s = late_s
        self.max_offset_m = max_offset_m
        self.min_move_m = min_move_m
        self.lookback_s = lookback_s
        self.max_track_pings = max_track_pings
        self.block_bonus_s = block_bonus_s
        self.min_margin_s = min_margin_s
        self.layover_weight = layover_weight
        self.start_radius_m = start_radius_m
        self.max_speed_mps = max_speed_mps
        self._days: dict[tuple[date, str], _DayIndex] = {}
        self._snappers: dict[str, ShapeSnapper | None] = {}
        self._stop_dists: dict[str, np.ndarray] = {}
        self._timetables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        self._blocks: dict[str, list[tuple[float, str]]] | None = None

    # ------------------------------------------------------------------ indexes
    def _shape_key(self, trip_id: str) -> str:
        shape_id = self.feed.trips[trip_id].shape_id
        if shape_id and shape_id in self.feed.shapes:
            return shape_id
        return f"stops:{trip_id}"

    def snapper(self, trip_id: str) -> ShapeSnapper | None:
        """The snapper of a trip's (or instance's) shape; from its stops when the feed
        has no shape for it; None when that is impossible."""
        base = split_instance_id(trip_id)[0] if trip_id not in self.feed.trips else trip_id
        key = self._shape_key(base)
        if key not in self._snappers:
            shape = self.feed.shapes.get(key)
            if shape is None:
                shape = self._shape_from_stops(base)
            try:
                self._snappers[key] = ShapeSnapper(
                    shape, max_offset_m=self.max_offset_m * 2) if shape else None
            except ValueError:
                self._snappers[key] = None
        return self._snappers[key]

    def _shape_from_stops(self, trip_id: str) -> Shape | None:
        try:
            schedule = self.feed.schedule(trip_id)
        except KeyError:
            return None
        stops = [self.feed.stops.get(s) for s in schedule.stop_ids]
        if len(stops) < 2 or any(s is None for s in stops):
            return None
        lat = np.array([s.lat for s in stops])
        lon = np.array([s.lon for s in stops])
        dist = np.asarray(schedule.shape_dist_m, dtype=float)
        if not np.isfinite(dist).all():
            dist = np.zeros(len(stops))  # measured by the snapper
        return Shape(f"stops:{trip_id}", lon, lat, dist, derived=True)

    def _timetable(self, trip_id: str, snapper: ShapeSnapper
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Distance, arrival and departure of the timed stops of a (base) trip."""
        if trip_id not in self._timetables:
            schedule = self.feed.schedule(trip_id)
            arrive = np.asarray(schedule.arrival_s, dtype=float)
            depart = np.asarray(schedule.departure_s, dtype=float)
            timed = np.isfinite(arrive) & np.isfinite(depart)
            stops = self._stop_dists_of(trip_id, snapper)
            self._timetables[trip_id] = \
                (stops[timed], arrive[timed], depart[timed]) if timed.any() else None
        return self._timetables[trip_id]

    def _stop_dists_of(self, trip_id: str, snapper: ShapeSnapper) -> np.ndarray:
        """Distance of each stop of a (base) trip along its shape."""
        if trip_id not in self._stop_dists:
            schedule = self.feed.schedule(trip_id)
            dist = np.asarray(schedule.shape_dist_m, dtype=float)
            if not np.isfinite(dist).all():
                stops = [self.feed.stops[s] for s in schedule.stop_ids]
                got, _ = snapper.snap_track([s.lat for s in stops], [s.lon for s in stops],
                                            max_advance_m=math.inf, max_offset_m=math.inf)
                dist = np.where(np.isfinite(dist), dist, got)
            self._stop_dists[trip_id] = np.maximum.accumulate(np.nan_to_num(dist))
        return self._stop_dists[trip_id]

    def _day(self, service_date: date, timezone: str) -> _DayIndex:
        key = (service_date, timezone)
        index = self._days.get(key)
        if index is not None:
            return index
        feed = self.feed
        st = feed.stop_times
        number = {trip_id: i for i, trip_id in enumerate(st.trip_ids)}
        ids, base, start, end, shift, boxes = [], [], [], [], [], []
        box_of: dict[str, tuple[float, float, float, float]] = {}
        for trip_id in feed.trips_on(service_date):
            i = number.get(trip_id)
            if i is None:
                continue
            lo, hi = int(st.trip_start[i]), int(st.trip_start[i + 1])
            if hi <= lo:
                continue
            times = np.concatenate([st.arrival_s[lo:hi], st.departure_s[lo:hi]])
            if not np.isfinite(times).any():
                continue
            first = float(st.departure_s[lo]) if np.isfinite(st.departure_s[lo]) \
                else float(np.nanmin(times))
            last = float(st.arrival_s[hi - 1]) if np.isfinite(st.arrival_s[hi - 1]) \
                else float(np.nanmax(times))
            shape_key = self._shape_key(trip_id)
            if shape_key not in box_of:
                snapper = self.snapper(trip_id)
                box_of[shape_key] = snapper.bounds if snapper else (math.nan,) * 4
            periods = feed.frequencies.get(trip_id)
            if periods:
                for period in periods:
                    for s in np.arange(period.start_s, period.end_s, max(1, period.headway_s)):
                        ids.append(instance_id(trip_id, s))
                        base.append(trip_id)
                        shift.append(float(s) - first)
                        start.append(float(s))
                        end.append(float(s) - first + last)
                        boxes.append(box_of[shape_key])
            else:
                ids.append(trip_id)
                base.append(trip_id)
                shift.append(0.0)
                start.append(first)
                end.append(last)
                boxes.append(box_of[shape_key])
        blocks: dict[str, list[int]] = {}
        for i in np.argsort(np.array(start, dtype=float), kind="stable"):
            block_id = feed.trips[base[i]].block_id
            if block_id:
                blocks.setdefault(block_id, []).append(int(i))
        index = _DayIndex(ids, base, np.array(start, dtype=float), np.array(end, dtype=float),
                          np.array(shift, dtype=float),
                          np.array(boxes, dtype=float).reshape(-1, 4),
                          service_day_origin(service_date, timezone), blocks)
        if len(self._days) >= 4:
            self._days.pop(next(iter(self._days)))
        self._days[key] = index
        return index

    # ------------------------------------------------------------------ scoring
    def explain(self, ping: Ping, recent: list[Ping], service_date: date, timezone: str, *,
                block_id: str | None = None, previous_trip_id: str | None = None) -> Assignment:
        """Assign a trip and say why; see :func:`assign_trip_explained`."""
        feed = self.feed
        index = self._day(service_date, timezone)
        s = ping.t - index.origin
        named = ping.trip_id
        if named:
            named_base = split_instance_id(named)[0]
            if named in feed.trips and not feed.frequencies.get(named):
                return Assignment(named, "sent by the device")
            if named_base not in feed.trips:
                named = None  # unknown to the feed: assign as if none was sent

        margin_deg = self.max_offset_m / 111_000.0 * 2
        lon_margin = margin_deg / max(0.1, math.cos(math.radians(ping.lat)))
        box = index.bbox
        near = ((box[:, 0] - margin_deg <= ping.lat) & (ping.lat <= box[:, 2] + margin_deg)
                & (box[:, 1] - lon_margin <= ping.lon) & (ping.lon <= box[:, 3] + lon_margin))
        active = ((index.start_s - self.early_s <= s) & (s <= index.end_s + self.late_s)
                  & near)
        chosen = np.flatnonzero(active)
        if named:
            named_base = split_instance_id(named)[0]
            chosen = [i for i in chosen if index.base[i] == named_base]
        if len(chosen) == 0:
            return Assignment(None, "no trip of the day runs near this place at this time")

        pings = self._track_pings(ping, recent)
        lats = np.array([p.lat for p in pings])
        lons = np.array([p.lon for p in pings])
        times = np.array([p.t for p in pings])
        advance = np.concatenate([[0.0], np.diff(times) * self.max_speed_mps + 50.0])

        if block_id is None and previous_trip_id:
            try:
                block_id = trip_of(feed, previous_trip_id).block_id
            except KeyError:
                block_id = None
        favoured: set[str] = set()
        in_block: set[str] = set()
        if block_id:
            members = index.blocks.get(block_id, [])
            block = [index.ids[i] for i in members]
            in_block = set(block)
            if previous_trip_id in in_block:
                favoured.add(previous_trip_id)
                at = block.index(previous_trip_id)
                if at + 1 < len(block):
                    favoured.add(block[at + 1])
            elif members:
                # no previous trip: the block's trip under way now, or due soonest
                due = min(members, key=lambda i: max(index.start_s[i] - s, s - index.end_s[i], 0))
                favoured.add(index.ids[due])

        shapes: dict[str, _ShapeEvidence] = {}
        fits: list[CandidateFit] = []
        for i in chosen:
            trip_id, base = index.ids[i], index.base[i]
            fit = CandidateFit(trip_id)
            fits.append(fit)
            snapper = self.snapper(base)
            if snapper is None:
                fit.rejected = "no shape or stop positions"
                continue
            key = self._shape_key(base)
            if key not in shapes:
                shapes[key] = self._evidence(snapper, lats, lons, advance)
            self._score(fit, shapes[key], base, snapper, index.shift_s[i], s)
            if fit.rejected:
                continue
            if trip_id == previous_trip_id and fit.at_end:
                fit.rejected = "finished"
                continue
            if trip_id in favoured:
                fit.cost -= 2 * self.block_bonus_s
            elif trip_id in in_block:
                fit.cost -= self.block_bonus_s

        fits.sort(key=lambda f: (f.rejected is not None, f.cost))
        if not fits or fits[0].rejected is not None:
            reasons = sorted({f.rejected for f in fits if f.rejected})
            return Assignment(None, "no candidate fits: " + "; ".join(reasons), fits)
        best = fits[0]
        if len(fits) > 1 and fits[1].rejected is None \
                and fits[1].cost - best.cost < self.min_margin_s:
            return Assignment(None, f"ambiguous: {best.trip_id} and {fits[1].trip_id} fit "
                                    f"about as well", fits)
        why = (f"{best.offset_m:.0f} m from the shape, {best.deviation_s / 60:+.1f} min "
               f"against the schedule")
        if best.trip_id in favoured:
            why += ", next in the block"
        elif best.trip_id in in_block:
            why += ", in the block"
        return Assignment(best.trip_id, why, fits)

    def _evidence(self, snapper: ShapeSnapper, lats: np.ndarray,
                  lons: np.ndarray, advance: np.ndarray) -> _ShapeEvidence:
        """What the recent pings say about one shape (shared by its trips)."""
        dist, offset = snapper.snap_track(lats, lons, max_advance_m=advance,
                                          max_offset_m=self.max_offset_m * 2, restart=True)
        on = np.isfinite(offset)
        evidence = _ShapeEvidence()
        if on[-1]:
            first = int(np.flatnonzero(on)[0])
            evidence.dist_m = float(dist[-1])
            evidence.offset_m = float(np.sqrt(np.mean(offset[on] ** 2)))
            evidence.progress_m = float(dist[-1] - dist[first])
            evidence.moved_m = distance_m(lats[first], lons[first], lats[-1], lons[-1])
        branches = snapper.branches(float(lats[-1]), float(lons[-1]), self.max_offset_m)
        if branches:
            evidence.start_dist_m = branches[0].dist_m
            evidence.start_offset_m = branches[0].offset_m
        return evidence

    def _score(self, fit: CandidateFit, evidence: _ShapeEvidence, base: str,
               snapper: ShapeSnapper, shift: float, s: float) -> None:
        """Fill in a candidate's fit: position, direction, schedule and cost."""
        timetable = self._timetable(base, snapper)
        if timetable is None:
            fit.rejected = "no timed stops"
            return
        d_stops, arrive, depart = timetable
        if shift:
            arrive, depart = arrive + shift, depart + shift

        options = []  # (cost, dist, offset, deviation, progress, moved)
        why = "the ping is off this trip's shape"
        if np.isfinite(evidence.dist_m):
            if evidence.offset_m > self.max_offset_m:
                why = f"recent pings {evidence.offset_m:.0f} m from the shape"
            elif evidence.moved_m > self.min_move_m and \
                    evidence.progress_m < 0.5 * evidence.moved_m:
                why = "moving against this trip's direction"
            else:
                d = evidence.dist_m
                if d <= d_stops[0] + self.start_radius_m and s <= depart[0]:
                    deviation = s - depart[0]
                    cost = self.layover_weight * (depart[0] - s)
                else:
                    earliest = float(np.interp(d, d_stops, arrive))
                    latest = float(np.interp(d, d_stops, depart))
                    deviation = s - latest if s > latest else min(0.0, s - earliest)
                    cost = deviation if deviation >= 0 else -2 * deviation
                options.append((cost + 2 * evidence.offset_m, d, evidence.offset_m, deviation,
                                evidence.progress_m, evidence.moved_m))
        # standing at the first stop (the pings before may be of the previous trip)
        if np.isfinite(evidence.start_dist_m) and \
                evidence.start_dist_m <= d_stops[0] + self.start_radius_m:
            deviation = s - depart[0]
            cost = self.layover_weight * -deviation if deviation <= 0 else deviation
            options.append((cost + 2 * evidence.start_offset_m, evidence.start_dist_m,
                            evidence.start_offset_m, deviation, 0.0, 0.0))
        if not options:
            fit.rejected = why
            return
        cost, fit.dist_m, fit.offset_m, fit.deviation_s, fit.progress_m, fit.moved_m = \
            min(options, key=lambda o: o[0])
        fit.deviation_s = float(fit.deviation_s)
        fit.at_end = fit.dist_m >= d_stops[-1] - self.start_radius_m
        if fit.deviation_s > self.late_s or fit.deviation_s < -self.early_s:
            fit.rejected = f"{fit.deviation_s / 60:+.0f} min off its schedule"
            return
        fit.cost = float(cost)

    def _track_pings(self, ping: Ping, recent: list[Ping]) -> list[Ping]:
        """The vehicle's recent pings before ``ping`` (oldest first), then ``ping``."""
        since = ping.t - self.lookback_s
        seen: dict[float, Ping] = {}
        for p in recent:
            if p.vehicle_id == ping.vehicle_id and since <= p.t < ping.t:
                seen.setdefault(p.t, p)
        earlier = [seen[t] for t in sorted(seen)]
        keep = self.max_track_pings - 1
        if len(earlier) > keep:
            picks = np.linspace(0, len(earlier) - 1, keep).round().astype(int)
            earlier = [earlier[k] for k in sorted(set(picks.tolist()))]
        return [*earlier, ping]


# ===================================================================== module verbs
_ASSIGNERS: dict[int, tuple[weakref.ref, TripAssigner]] = {}


def _assigner(feed: Feed) -> TripAssigner:
    entry = _ASSIGNERS.get(id(feed))
    if entry is not None and entry[0]() is feed:
        return entry[1]
    assigner = TripAssigner(feed)
    key = id(feed)
    _ASSIGNERS[key] = (weakref.ref(feed, lambda _ref, table=_ASSIGNERS: table.pop(key, None)),
                       assigner)
    return assigner


def assign_trip_explained(feed: Feed, ping: Ping, recent: list[Ping], service_date: date,
                          timezone: str, *, block_id: str | None = None,
                          previous_trip_id: str | None = None) -> Assignment:
    """Choose the trip a vehicle is running, with the reason and every candidate's fit.

    Parameters
    ----------
    feed : Feed
    ping : Ping
        The newest ping. A ``trip_id`` it carries that the feed knows is taken as is
        (for a headway-based trip, its instance is chosen).
    recent : list of Ping
        The vehicle's earlier pings (others' and older ones are ignored); they give
        direction and a steadier position.
    service_date : date
        The service day whose trips are candidates.
    timezone : str
        The agency's time zone (GTFS times are local).
    block_id : str, optional
        The vehicle's block when the device or the operator gave one.
    previous_trip_id : str, optional
        The trip the vehicle ran (or is running); its block is used when
        ``block_id`` is not given.

    Returns
    -------
    Assignment
        ``trip_id`` None when nothing fits, with ``reason`` saying why.
    """
    return _assigner(feed).explain(ping, recent, service_date, timezone,
                                   block_id=block_id, previous_trip_id=previous_trip_id)


def assign_trip(feed: Feed, ping: Ping, recent: list[Ping], service_date: date,
                timezone: str, *, block_id: str | None = None,
                previous_trip_id: str | None = None) -> str | None:
    """The trip (or headway-based trip instance) id a vehicle is running, or None.

    See :func:`assign_trip_explained` for the parameters and the reasons.
    """
    return assign_trip_explained(feed, ping, recent, service_date, timezone,
                                 block_id=block_id, previous_trip_id=previous_trip_id).trip_id
