"""Flood-depth alerts: a state machine per sensor, fed quality-checked readings.

:class:`AlertLevels` sets ascending depth levels (default 10, 20 and 30 cm), the
hysteresis and hold times that keep noise around a level from making alerts flap, and
a rate-of-rise threshold. :class:`AlertTracker` holds one sensor's state;
:meth:`AlertTracker.update` takes each reading in time order with the ``usable``
verdict from :mod:`cityos.apps.floodwatch.quality` and returns the
:class:`AlertEvent` it causes:

``level``
    Depth reached a level above the active one (straight to the highest level reached:
    5 cm to 35 cm raises the top level once). With ``raise_after_s`` the depth must
    stay at or above the level, over usable readings, that long first.
``lowered``
    Depth fell below ``level - hysteresis_cm`` of the active level, and stayed there
    ``clear_after_s``, but still holds a lower level (operators reopen a road to some
    traffic on the way down).
``all-clear``
    The same for the lowest level: no level holds any more.
``rate-of-rise``
    The least-squares slope of depth over the last ``rate_window_s`` of usable readings
    reached ``rate_of_rise_cm_per_10min``. Raised once per rise: it re-arms only when
    the slope falls back to zero or below (the rise stopped).

Unusable readings change nothing: they never raise, clear or enter the slope. Severities
are the platform's alert severities (Smart Data Models ``Alert.severity``:
:data:`SEVERITIES`); by default 10 cm is ``informational``, 20 cm ``high`` (a warning)
and 30 cm ``critical``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVENT_KINDS", "SEVERITIES", "AlertError", "AlertEvent", "AlertLevel",
           "AlertLevels", "AlertTracker"]

#: Alert severities of the platform (cityos.core.alerts.SEVERITIES), least urgent first.
SEVERITIES = ("informational", "low", "medium", "high", "critical")
EVENT_KINDS = ("level", "lowered", "all-clear", "rate-of-rise")


class AlertError(ValueError):
    """A bad alert setting or reading; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _finite(name: str, value: Any) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value)):
        raise AlertError(name, f"must be a finite number, got {value!r}")


def _severity(name: str, value: Any) -> None:
    if value not in SEVERITIES:
        raise AlertError(name, f"must be one of {', '.join(SEVERITIES)}, got {value!r}")


def _reading(name: str, value: Any) -> float:
    if value.__class__ is not float:
        try:
            if isinstance(value, (bool, str, bytes)):
                raise TypeError
            value = float(value)
        except (TypeError, ValueError):
            raise AlertError(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise AlertError(name, f"must be finite, got {value}")
    return value


@dataclass(frozen=True)
class AlertLevel:
    """One flood-depth alert level.

    Parameters
    ----------
    name : str
        What operators call it (``"warning"``).
    depth_cm : float
        Depth at or above which the level is reached, cm.
    severity : str
        One of :data:`SEVERITIES`.
    """

    name: str
    depth_cm: float
    severity: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise AlertError("name", f"must be a non-empty string, got {self.name!r}")
        _finite("depth_cm", self.depth_cm)
        _severity("severity", self.severity)


DEFAULT_LEVELS = (AlertLevel("advisory", 10.0, "informational"),
                  AlertLevel("warning", 20.0, "high"),
                  AlertLevel("danger", 30.0, "critical"))


@dataclass(frozen=True)
class AlertLevels:
    """Alert settings of a flood-depth sensor.

    Parameters
    ----------
    levels : tuple of AlertLevel
        Strictly ascending by depth, unique names.
    hysteresis_cm : float
        A level clears only when depth falls below ``depth_cm - hysteresis_cm``; at
        least 0 and below the lowest level's depth.
    raise_after_s : float
        Time depth must stay at or above a level before it is raised (0: at once).
    clear_after_s : float
        Time depth must stay below a level minus the hysteresis before it clears.
    rate_of_rise_cm_per_10min : float or None
        Slope that raises a rate-of-rise alert, cm per 10 minutes; None: no check.
    rate_window_s : float
        Window of the slope, s.
    rate_min_readings : int
        Usable readings the window needs (at least 2); the window must also span at
        least half of ``rate_window_s``, so two close readings cannot make a slope.
    rate_severity, lowered_severity, all_clear_severity : str
        Severities of those events.
    """

    levels: tuple[AlertLevel, ...] = DEFAULT_LEVELS
    hysteresis_cm: float = 2.0
    raise_after_s: float = 0.0
    clear_after_s: float = 300.0
    rate_of_rise_cm_per_10min: float | None = 5.0
    rate_window_s: float = 600.0
    rate_min_readings: int = 3
    rate_severity: str = "high"
    lowered_severity: str = "informational"
    all_clear_severity: str = "informational"

    def __post_init__(self) -> None:
        levels = self.levels
        if isinstance(levels, list):
            object.__setattr__(self, "levels", levels := tuple(levels))
        if (not isinstance(levels, tuple) or not levels
                or not all(isinstance(level, AlertLevel) for level in levels)):
            raise AlertError("levels", "must be a non-empty sequence of AlertLevel")
        for lower, upper in zip(levels, levels[1:], strict=False):
            if not upper.depth_cm > lower.depth_cm:
                raise AlertError("levels", f"depths must be strictly ascending, got "
                                           f"{lower.depth_cm} then {upper.depth_cm}")
        names = [level.name for level in levels]
        if len(set(names)) != len(names):
            raise AlertError("levels", f"names must be unique, got {names}")
        _finite("hysteresis_cm", self.hysteresis_cm)
        if not 0 <= self.hysteresis_cm < levels[0].depth_cm:
            raise AlertError("hysteresis_cm", f"must be >= 0 and below the lowest level "
                                              f"({levels[0].depth_cm} cm), got "
                                              f"{self.hysteresis_cm}")
        for name in ("raise_after_s", "clear_after_s"):
            value = getattr(self, name)
            _finite(name, value)
            if value < 0:
                raise AlertError(name, f"must be >= 0, got {value}")
        rate = self.rate_of_rise_cm_per_10min
        if rate is not None:
            _finite("rate_of_rise_cm_per_10min", rate)
            if rate <= 0:
                raise AlertError("rate_of_rise_cm_per_10min", f"must be > 0, got {rate}")
        _finite("rate_window_s", self.rate_window_s)
        if self.rate_window_s <= 0:
            raise AlertError("rate_window_s", f"must be > 0, got {self.rate_window_s}")
        if (not isinstance(self.rate_min_readings, int)
                or isinstance(self.rate_min_readings, bool) or self.rate_min_readings < 2):
            raise AlertError("rate_min_readings", f"must be a whole number >= 2, got "
                                                  f"{self.rate_min_readings!r}")
        for name in ("rate_severity", "lowered_severity", "all_clear_severity"):
            _severity(name, getattr(self, name))


@dataclass(frozen=True)
class AlertEvent:
    """Something operators should hear about one sensor.

    Attributes
    ----------
    kind : str
        One of :data:`EVENT_KINDS`.
    t : float
        Time of the reading that caused it, s since the epoch.
    depth_cm : float
        Depth of that reading, cm.
    level : int
        Index of the active level after the event (-1: none).
    level_name : str or None
        Its name.
    severity : str
        One of :data:`SEVERITIES`.
    message : str
        What the operator reads.
    rate_cm_per_10min : float or None
        The slope, for ``rate-of-rise`` events.
    """

    kind: str
    t: float
    depth_cm: float
    level: int
    level_name: str | None
    severity: str
    message: str
    rate_cm_per_10min: float | None = field(default=None)


class AlertTracker:
    """Flood-depth alert state of one sensor (see the module notes).

    Parameters
    ----------
    levels : AlertLevels, optional
        The alert settings (defaults: 10/20/30 cm, 2 cm hysteresis).
    place : str, optional
        Where the sensor is, for messages (``"River Bridge underpass"``).

    Examples
    --------
    >>> tracker = AlertTracker(AlertLevels(clear_after_s=0), place="Elm St")
    >>> for minute, depth_cm in enumerate([4, 5, 4, 5, 5, 9, 14, 21, 19, 19, 12, 7]):
    ...     for event in tracker.update(60.0 * minute, depth_cm, usable=True):
    ...         print(minute, event.kind, event.level_name, event.severity)
    5 rate-of-rise None high
    6 level advisory informational
    7 level warning high
    10 lowered advisory informational
    11 all-clear None informational
    """

    __slots__ = ("config", "place", "_level", "_above_since", "_below_since", "_last_t",
                 "_window", "_rate_armed", "_depths")

    def __init__(self, levels: AlertLevels | None = None, *, place: str = "sensor") -> None:
        if levels is None:
            levels = AlertLevels()
        if not isinstance(levels, AlertLevels):
            raise AlertError("levels", f"must be AlertLevels, got {type(levels).__name__}")
        if not isinstance(place, str) or not place.strip():
            raise AlertError("place", f"must be a non-empty string, got {place!r}")
        self.config = levels
        self.place = place
        self._depths = [level.depth_cm for level in levels.levels]
        n = len(self._depths)
        self._level = -1
        # per level: start of the current run of usable readings at/above the level,
        # and of the run below level - hysteresis (None when no such run is going on)
        self._above_since: list[float | None] = [None] * n
        self._below_since: list[float | None] = [None] * n
        self._last_t: float | None = None
        self._window: deque[tuple[float, float]] = deque()
        self._rate_armed = True

    @property
    def level(self) -> int:
        """Index of the active level (-1: none)."""
        return self._level

    @property
    def level_name(self) -> str | None:
        """Name of the active level (None: none)."""
        return None if self._level < 0 else self.config.levels[self._level].name

    def update(self, t: float, depth_cm: float, usable: bool) -> list[AlertEvent]:
        """Take one reading, in time order, and return the events it causes.

        Parameters
        ----------
        t : float
            Time of the reading, s since the epoch.
        depth_cm : float
            Depth, cm.
        usable : bool
            The quality verdict; an unusable reading is ignored (and not checked).

        Returns
        -------
        list of AlertEvent
            Level changes first, then a rate-of-rise alert; usually empty.

        Raises
        ------
        AlertError
            When a usable reading's ``t`` or ``depth_cm`` is not a finite number, or
            ``t`` is not after the previous usable reading's.
        """
        if not usable:
            return []
        t = _reading("t", t)
        depth = _reading("depth_cm", depth_cm)
        if self._last_t is not None and t <= self._last_t:
            raise AlertError("t", f"must be after the previous usable reading "
                                  f"({self._last_t}), got {t}")
        self._last_t = t
        events: list[AlertEvent] = []
        cfg = self.config
        held = -1  # highest level still raised (or reached) after this reading
        for index, level_depth in enumerate(self._depths):
            if depth >= level_depth:
                if self._above_since[index] is None:
                    self._above_since[index] = t
            else:
                self._above_since[index] = None
            if depth < level_depth - cfg.hysteresis_cm:
                if self._below_since[index] is None:
                    self._below_since[index] = t
            else:
                self._below_since[index] = None
            above = self._above_since[index]
            below = self._below_since[index]
            reached = above is not None and t - above >= cfg.raise_after_s
            holds = index <= self._level and (below is None or t - below < cfg.clear_after_s)
            if reached or holds:
                held = index
        if held != self._level:
            events.append(self._level_event(held, t, depth))
            self._level = held
        rate_event = self._rate_of_rise(t, depth)
        if rate_event is not None:
            events.append(rate_event)
        return events

    def _level_event(self, new: int, t: float, depth: float) -> AlertEvent:
        cfg, old = self.config, self._level
        if new > old:
            level = cfg.levels[new]
            return AlertEvent("level", t, depth, new, level.name, level.severity,
                              f"{self.place}: water {depth:.1f} cm deep, {level.name} level "
                              f"({level.depth_cm:g} cm) reached")
        left = cfg.levels[old]
        if new < 0:
            return AlertEvent("all-clear", t, depth, -1, None, cfg.all_clear_severity,
                              f"{self.place}: all clear, water down to {depth:.1f} cm, "
                              f"below the {left.name} level ({left.depth_cm:g} cm)")
        level = cfg.levels[new]
        return AlertEvent("lowered", t, depth, new, level.name, cfg.lowered_severity,
                          f"{self.place}: water down to {depth:.1f} cm, below the "
                          f"{left.name} level ({left.depth_cm:g} cm); {level.name} level "
                          f"({level.depth_cm:g} cm) still holds")

    def _rate_of_rise(self, t: float, depth: float) -> AlertEvent | None:
        cfg = self.config
        if cfg.rate_of_rise_cm_per_10min is None:
            return None
        window = self._window
        window.append((t, depth))
        while window[0][0] < t - cfg.rate_window_s:
            window.popleft()
        if len(window) < cfg.rate_min_readings or t - window[0][0] < cfg.rate_window_s / 2:
            return None
        # least-squares slope in one pass; times from the newest reading keep the sums
        # small (under rate_window_s), so the one-pass formula loses no precision
        sx = sy = sxx = sxy = 0.0
        for ti, di in window:
            x = ti - t
            sx += x
            sy += di
            sxx += x * x
            sxy += x * di
        n = len(window)
        rate = (sxy - sx * sy / n) / (sxx - sx * sx / n) * 600.0
        if rate <= 0:
            self._rate_armed = True
            return None
        if not self._rate_armed or rate < cfg.rate_of_rise_cm_per_10min:
            return None
        self._rate_armed = False
        name = self.level_name
        return AlertEvent("rate-of-rise", t, depth, self._level, name, cfg.rate_severity,
                          f"{self.place}: water rising {rate:.1f} cm per 10 min, now "
                          f"{depth:.1f} cm deep", rate_cm_per_10min=rate)
