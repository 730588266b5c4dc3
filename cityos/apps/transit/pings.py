"""Vehicle position reports from AVL devices: validation and cleaning.

:func:`parse_ping` turns a device's payload (MQTT or HTTP JSON) into a
:class:`~cityos.apps.transit.models.Ping`, with an error naming the field when the
payload is wrong.

:class:`PingCleaner` is one object for the whole fleet, keyed by vehicle id (it works
just as well with one per vehicle). Per vehicle it

* drops duplicates: the same timestamp again (``duplicate``), or the same position
  within ``near_duplicate_m`` less than ``near_duplicate_s`` apart (``near_duplicate``);
* reorders late pings: pings wait in a small buffer until the vehicle's newest ping is
  ``reorder_s`` seconds newer or more than ``reorder_count`` are waiting, and leave in
  time order; a ping older than one already released is dropped (``late``);
* rejects impossible jumps: further from the last released ping than ``max_speed_mps``
  allows, plus ``position_tolerance_m`` of GPS error (``jump``). After
  ``reanchor_after`` consecutive rejected pings that agree with each other, the last
  one is accepted as the vehicle's new position (the old anchor was the wrong one);
* rejects a null fix at 0°, 0° (``null_position``), non-finite or out-of-range
  coordinates (``invalid``) and, when the caller gives the receive time, timestamps
  more than ``max_future_s`` ahead of it (``future``).

Rejections are counted per vehicle and reason in :attr:`PingCleaner.stats`.
Time in the cleaner is the pings' own timestamps; there is no clock: call
:meth:`PingCleaner.release_due` on a timer to let out pings of vehicles gone quiet.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .models import Ping

__all__ = ["PingError", "parse_ping", "PingCleaner", "VehiclePingStats", "REJECT_REASONS",
           "distance_m"]

#: Why a ping can be dropped.
REJECT_REASONS = ("duplicate", "near_duplicate", "late", "jump", "null_position", "invalid",
                  "future")

_EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres between two WGS84 positions."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


# ============================================================================ parsing
class PingError(ValueError):
    """A device payload that is not a valid ping; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# accepted spellings of each Ping field, first is canonical
_ALIASES: dict[str, tuple[str, ...]] = {
    "vehicle_id": ("vehicle_id", "vehicleId", "vehicle"),
    "t": ("t", "time", "timestamp"),
    "lat": ("lat", "latitude"),
    "lon": ("lon", "lng", "longitude"),
    "speed_mps": ("speed_mps", "speed"),
    "bearing_deg": ("bearing_deg", "bearing", "heading"),
    "trip_id": ("trip_id", "tripId", "trip"),
    "driver_id": ("driver_id", "driverId", "driver"),
    "passengers_in": ("passengers_in", "boardings"),
    "passengers_out": ("passengers_out", "alightings"),
    "occupancy": ("occupancy", "passengers"),
    "doors_open": ("doors_open", "doors"),
}

# epoch values above this are milliseconds (1e11 s is the year 5138)
_EPOCH_MS_ABOVE = 1e11


def _lookup(payload: Mapping[str, Any], name: str) -> tuple[str, Any]:
    for key in _ALIASES[name]:
        if key in payload and payload[key] is not None:
            return key, payload[key]
    return _ALIASES[name][0], None


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise PingError(key, f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PingError(key, f"must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise PingError(key, f"must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise PingError(key, f"must be finite, got {value}")
    return value


def _count(key: str, value: Any) -> int:
    number = _number(key, value)
    if number < 0 or number != int(number):
        raise PingError(key, f"must be a whole number >= 0, got {value!r}")
    return int(number)


def _text(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PingError(key, f"must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise PingError(key, "must not be empty")
    return text


def _instant(key: str, value: Any, timezone: str | None) -> float:
    if isinstance(value, str):
        text = value.strip()
        try:
            return _epoch(key, float(text))
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise PingError(key, f"must be ISO 8601 or epoch seconds, got {value!r}") from None
        if moment.tzinfo is None:
            if timezone is None:
                raise PingError(key, f"needs a UTC offset (e.g. 'Z' or '+08:00'), got {value!r}")
            moment = moment.replace(tzinfo=ZoneInfo(timezone))
        return moment.timestamp()
    return _epoch(key, _number(key, value))


def _epoch(key: str, seconds: float) -> float:
    if not math.isfinite(seconds):
        raise PingError(key, f"must be finite, got {seconds}")
    if seconds > _EPOCH_MS_ABOVE:
        seconds /= 1000.0
    if seconds <= 0:
        raise PingError(key, f"must be after 1970, got {seconds}")
    return seconds


def _doors(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("open", "opened", "true", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("closed", "close", "false", "0"):
        return False
    raise PingError(key, f"must be true/false or 'open'/'closed', got {value!r}")


def parse_ping(payload: Mapping[str, Any], *, vehicle_id: str | None = None,
               timezone: str | None = None) -> Ping:
    """Validate an AVL device's payload into a :class:`Ping`.

    Parameters
    ----------
    payload : mapping
        JSON object with ``vehicle_id`` (or ``vehicleId``/``vehicle``), ``t`` (or
        ``time``/``timestamp``: ISO 8601 with an offset, or epoch seconds; values
        above 1e11 are read as epoch milliseconds), ``lat``/``latitude``,
        ``lon``/``lng``/``longitude``, and optionally ``speed_mps`` (or ``speed`` in
        m/s, or ``speed_kmh``), ``bearing_deg``/``bearing``/``heading`` (degrees,
        0-360), ``trip_id``, ``driver_id``, ``passengers_in``/``boardings``,
        ``passengers_out``/``alightings``, ``occupancy``, ``doors_open``/``doors``
        (bool or ``"open"``/``"closed"``). Other keys are ignored.
    vehicle_id : str, optional
        The vehicle when the transport names it (e.g. the MQTT topic), used when the
        payload has none.
    timezone : str, optional
        IANA zone for ISO times without an offset; without it such times are errors.

    Returns
    -------
    Ping

    Raises
    ------
    PingError
        Naming the first field that is missing or wrong.
    """
    if not isinstance(payload, Mapping):
        raise PingError("payload", f"must be a JSON object, got {type(payload).__name__}")
    key, value = _lookup(payload, "vehicle_id")
    if value is None:
        if vehicle_id is None:
            raise PingError(key, "is required")
        value = vehicle_id
    vehicle = _text(key, value)

    key, value = _lookup(payload, "t")
    if value is None:
        raise PingError(key, "is required")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PingError("timezone", f"unknown time zone {timezone!r}") from None
    t = _instant(key, value, timezone)

    coords = {}
    for name, bound in (("lat", 90.0), ("lon", 180.0)):
        key, value = _lookup(payload, name)
        if value is None:
            raise PingError(key, "is required")
        number = _number(key, value)
        if not -bound <= number <= bound:
            raise PingError(key, f"must be between -{bound:g} and {bound:g}, got {number:g}")
        coords[name] = number

    speed = None
    if payload.get("speed_kmh") is not None:
        speed = _number("speed_kmh", payload["speed_kmh"]) / 3.6
        key = "speed_kmh"
    else:
        key, value = _lookup(payload, "speed_mps")
        if value is not None:
            speed = _number(key, value)
    if speed is not None and speed < 0:
        raise PingError(key, f"must be >= 0, got {speed:g}")

    bearing = None
    key, value = _lookup(payload, "bearing_deg")
    if value is not None:
        bearing = _number(key, value)
        if not 0.0 <= bearing <= 360.0:
            raise PingError(key, f"must be between 0 and 360, got {bearing:g}")

    optional: dict[str, Any] = {}
    for name in ("trip_id", "driver_id"):
        key, value = _lookup(payload, name)
        optional[name] = None if value is None or value == "" else _text(key, value)
    for name in ("passengers_in", "passengers_out", "occupancy"):
        key, value = _lookup(payload, name)
        optional[name] = None if value is None else _count(key, value)
    key, value = _lookup(payload, "doors_open")
    optional["doors_open"] = None if value is None else _doors(key, value)

    return Ping(vehicle, t, coords["lat"], coords["lon"], speed_mps=speed,
                bearing_deg=bearing, **optional)


# =========================================================================== cleaning
@dataclass
class VehiclePingStats:
    """What the cleaner did with one vehicle's pings."""

    received: int = 0
    released: int = 0
    reanchored: int = 0
    rejected: Counter = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        """All pings of the vehicle dropped, for any reason."""
        return sum(self.rejected.values())


class _VehicleState:
    __slots__ = ("held", "newest_t", "last", "recent_t", "jump_run", "stats")

    def __init__(self, memory: int) -> None:
        self.held: list[tuple[float, int, Ping]] = []  # heap by time
        self.newest_t = -math.inf
        self.last: Ping | None = None  # last released ping: the jump anchor
        self.recent_t: deque[float] = deque(maxlen=memory)  # released timestamps
        self.jump_run: list[Ping] = []  # consecutive jump rejections
        self.stats = VehiclePingStats()


class PingCleaner:
    """Drop duplicate, late and impossible pings; release the rest in time order.

    One cleaner serves the whole fleet; state and counts are kept per vehicle.

    Parameters
    ----------
    max_speed_mps : float
        Fastest plausible speed between consecutive pings (default 120 km/h).
    reorder_s : float
        How long (in ping time) a ping waits for earlier pings arriving late; 0
        releases every ping at once (no reordering).
    reorder_count : int
        Most pings waiting per vehicle; the oldest leaves when there are more.
    near_duplicate_m, near_duplicate_s : float
        A ping within this distance of, and less than this many seconds from, a
        waiting or the last released ping is a duplicate.
    position_tolerance_m : float
        GPS error allowed on top of ``max_speed_mps`` before a move is a jump.
    reanchor_after : int
        Consecutive rejected pings consistent with each other after which the last
        is accepted as the new position (0 never).
    max_future_s : float
        With ``now`` given to :meth:`accept`, pings further ahead are ``future``.
    """

    def __init__(self, max_speed_mps: float = 120 / 3.6, *, reorder_s: float = 2.0,
                 reorder_count: int = 5, near_duplicate_m: float = 1.0,
                 near_duplicate_s: float = 0.5, position_tolerance_m: float = 30.0,
                 reanchor_after: int = 3, max_future_s: float = 60.0) -> None:
        if max_speed_mps <= 0:
            raise ValueError(f"max_speed_mps: must be > 0, got {max_speed_mps}")
        if reorder_s < 0 or reorder_count < 0:
            raise ValueError("reorder_s and reorder_count must be >= 0")
        self.max_speed_mps = float(max_speed_mps)
        self.reorder_s = float(reorder_s)
        self.reorder_count = int(reorder_count)
        self.near_duplicate_m = float(near_duplicate_m)
        self.near_duplicate_s = float(near_duplicate_s)
        self.position_tolerance_m = float(position_tolerance_m)
        self.reanchor_after = int(reanchor_after)
        self.max_future_s = float(max_future_s)
        self._vehicles: dict[str, _VehicleState] = {}
        self._order = count()  # ties in the heap: arrival order

    # ---------------------------------------------------------------- reporting
    @property
    def stats(self) -> dict[str, VehiclePingStats]:
        """Counts per vehicle id."""
        return {vid: state.stats for vid, state in self._vehicles.items()}

    @property
    def rejected(self) -> dict[str, dict[str, int]]:
        """Rejected pings per vehicle id and reason (see :data:`REJECT_REASONS`)."""
        return {vid: dict(state.stats.rejected) for vid, state in self._vehicles.items()}

    def held(self, vehicle_id: str) -> int:
        """How many pings of a vehicle are waiting in the reorder buffer."""
        state = self._vehicles.get(vehicle_id)
        return len(state.held) if state else 0

    # ---------------------------------------------------------------- intake
    def accept(self, ping: Ping, now: float | None = None) -> list[Ping]:
        """Take one ping; return the pings of its vehicle now released, oldest first.

        Parameters
        ----------
        ping : Ping
            As received, in any order.
        now : float, optional
            Receive time (POSIX seconds), to reject device clocks far in the future.

        Returns
        -------
        list of Ping
            Possibly empty (the ping waits, or was dropped and counted).
        """
        state = self._vehicles.get(ping.vehicle_id)
        if state is None:
            state = self._vehicles[ping.vehicle_id] = _VehicleState(16)
        stats = state.stats
        stats.received += 1
        reason = self._screen(ping, state, now)
        if reason is not None:
            stats.rejected[reason] += 1
            return []
        heapq.heappush(state.held, (ping.t, next(self._order), ping))
        if ping.t > state.newest_t:
            state.newest_t = ping.t
        return self._release(state, state.newest_t - self.reorder_s)

    def release_due(self, now: float) -> list[Ping]:
        """Release, for every vehicle, pings older than ``now - reorder_s``.

        Call on a timer so that the last pings of a vehicle that stopped reporting
        are not held for ever.
        """
        out: list[Ping] = []
        for state in self._vehicles.values():
            if state.held:
                out.extend(self._release(state, now - self.reorder_s))
        return out

    def flush(self, vehicle_id: str | None = None) -> list[Ping]:
        """Release every waiting ping (of one vehicle, or of all)."""
        states = ([self._vehicles[vehicle_id]] if vehicle_id in self._vehicles else []) \
            if vehicle_id is not None else list(self._vehicles.values())
        out: list[Ping] = []
        for state in states:
            out.extend(self._release(state, math.inf))
        return out

    # ---------------------------------------------------------------- internals
    def _screen(self, ping: Ping, state: _VehicleState, now: float | None) -> str | None:
        """Why a ping is dropped on arrival, or None."""
        lat, lon, t = ping.lat, ping.lon, ping.t
        if not (math.isfinite(lat) and math.isfinite(lon) and math.isfinite(t)
                and -90 <= lat <= 90 and -180 <= lon <= 180):
            return "invalid"
        if lat == 0.0 and lon == 0.0:
            return "null_position"
        if now is not None and t > now + self.max_future_s:
            return "future"
        if t in state.recent_t or any(held_t == t for held_t, _, _ in state.held):
            return "duplicate"
        near_s = self.near_duplicate_s
        for _, _, other in state.held:
            if abs(other.t - t) < near_s and self._close(ping, other):
                return "near_duplicate"
        last = state.last
        if last is not None:
            if abs(last.t - t) < near_s and self._close(ping, last):
                return "near_duplicate"
            if t < last.t:
                return "late"
        return None

    def _close(self, a: Ping, b: Ping) -> bool:
        # equirectangular is exact enough at metre scale
        dy = (a.lat - b.lat) * 111_195.0
        dx = (a.lon - b.lon) * 111_195.0 * math.cos(math.radians(a.lat))
        return dx * dx + dy * dy <= self.near_duplicate_m ** 2

    def _plausible(self, frm: Ping, to: Ping) -> bool:
        dt = to.t - frm.t
        reach = self.max_speed_mps * dt + self.position_tolerance_m
        return distance_m(frm.lat, frm.lon, to.lat, to.lon) <= reach

    def _release(self, state: _VehicleState, before_t: float) -> list[Ping]:
        out: list[Ping] = []
        held = state.held
        while held and (held[0][0] <= before_t or len(held) > self.reorder_count):
            ping = heapq.heappop(held)[2]
            if state.last is not None and not self._plausible(state.last, ping):
                run = state.jump_run
                if run and not self._plausible(run[-1], ping):
                    run.clear()
                run.append(ping)
                if not self.reanchor_after or len(run) < self.reanchor_after:
                    state.stats.rejected["jump"] += 1
                    continue
                # the rejected pings agree among themselves: the anchor was the outlier
                state.stats.reanchored += 1
            state.jump_run.clear()
            state.last = ping
            state.recent_t.append(ping.t)
            state.stats.released += 1
            out.append(ping)
        return out
