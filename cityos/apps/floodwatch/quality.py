"""Quality checks on flood-watch sensor readings, run online one reading at a time.

A :class:`SensorProfile` says what a sane reading of one kind of sensor looks like
(flood depth in cm, rain in mm per reading interval, or a weather quantity). A
:class:`QualityChecker` holds one sensor's state in plain Python values (no NumPy per
reading: it runs on every reading of every sensor) and gives each reading a
:class:`Verdict`: its flags, whether it may feed alerts and nowcasts (``usable``) and
its cleaned value. :func:`check_series` applies the same rules to a whole series at
once, for back-filling history, and gives the same flags.

The flags (:data:`FLAGS`), in the order a verdict lists them:

``out-of-order``, ``duplicate``
    The reading's time is before, or equal to, the newest time already seen from the
    sensor. The reading is dropped: no other check runs and no state changes.
``range``
    The value is outside ``[min_value, max_value]`` or not a finite number (a sensor's
    error code). It takes no further part in the checks below.
``rate``
    The value differs from the last *usable* reading by more than
    ``max_rate_per_min`` x the minutes between them, an interval shorter than
    ``interval_s`` counting as ``interval_s`` (bursts of readings do not shrink the
    allowance). Comparing with the last usable reading, not the previous one, means the
    good reading after a spike is not blamed for the drop back; the allowance grows
    with time, so a real level shift is accepted once enough time has passed.
``spike``
    A single-reading excursion: ``|v[i] - median(v[i-1], v[i], v[i+1])| >
    spike_threshold``, over consecutive in-range readings not separated by a gap. A
    reading within ``spike_threshold`` of its predecessor can never be a spike, so only
    a reading further than that is *suspect*: it is held (``pending``, not usable) until
    the next in-range reading arrives, and its final verdict comes back then as
    :attr:`Verdict.revised` of the next reading's verdict (or from
    :meth:`QualityChecker.flush`). A suspect with no next neighbour (the series ends, or
    a gap follows) is not a spike: a spike is an excursion seen to come back. The
    cleaned value of a spike is the median of the three. The reading after a spike is
    suspect too (its predecessor is the spike), so it waits one reading more.
``stuck``
    The last ``stuck_count`` in-range readings (this one included) span no more than
    ``stuck_tolerance`` (0: identical). A dry road reads 0 cm and a dry gauge 0 mm for
    hours, so a window whose values are all at or below ``stuck_resting_max`` (the
    sensor's resting state) is never stuck. A sensor that sticks at its resting value
    cannot be told from a dry spell by its own readings; that needs the site's rain
    gauge (a site-level rule, not a per-sensor one).
``gap``
    The reading follows more than ``offline_after`` x ``interval_s`` of silence. The
    reading itself is fine; spike neighbours do not reach across a gap.
``low-battery``
    The reported battery level is below ``battery_low`` (volts or percent). A
    maintenance flag only: the reading stays usable.
``offline``
    Not a reading's flag: :meth:`QualityChecker.is_offline` and
    :func:`offline_sensors` tell a periodic sweep which sensors have been silent for
    more than ``offline_after`` intervals, without waiting for a reading.

A reading is usable when it carries none of :data:`UNUSABLE_FLAGS` and is not pending.
Time is float seconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["FLAGS", "KINDS", "UNUSABLE_FLAGS", "QualityChecker", "QualityError",
           "SensorProfile", "SeriesQuality", "Verdict", "check_series", "offline_sensors"]

#: Sensor kinds a profile can describe.
KINDS = ("depth", "rain", "weather")
#: Every flag, in the order a verdict lists them.
FLAGS = ("out-of-order", "duplicate", "range", "rate", "spike", "stuck", "gap", "low-battery",
         "offline")
#: Flags that keep a reading away from alerts and nowcasts.
UNUSABLE_FLAGS = frozenset({"out-of-order", "duplicate", "range", "rate", "spike", "stuck"})
BATTERY_UNITS = ("V", "%")

_FLAG_ORDER = {name: index for index, name in enumerate(FLAGS)}
# mm/h a tipping-bucket gauge can still count; the rain range scales with the interval
_MAX_RAIN_MM_PER_H = 500.0


class QualityError(ValueError):
    """A bad profile field or reading input; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# ============================================================================ profile
def _kind_defaults(kind: str, interval_s: float) -> dict[str, Any]:
    common = {"interval_s": interval_s, "offline_after": 5, "battery_units": "V",
              "battery_low": 3.3, "stuck_tolerance": 0.0}
    if kind == "depth":
        # ultrasonic/radar depth over a road: a dry road can read a little below zero
        return common | {"units": "cm", "min_value": -5.0, "max_value": 300.0,
                         "max_rate_per_min": 10.0, "spike_threshold": 10.0,
                         "stuck_count": 30, "stuck_resting_max": 1.0}
    if kind == "rain":
        # rain is bursty by nature: a one-minute burst is real, so no rate or spike check
        return common | {"units": "mm", "min_value": 0.0,
                         "max_value": _MAX_RAIN_MM_PER_H * interval_s / 3600.0,
                         "max_rate_per_min": math.inf, "spike_threshold": math.inf,
                         "stuck_count": 60, "stuck_resting_max": 0.0}
    if kind == "weather":
        return common | {"units": "degC", "min_value": -50.0, "max_value": 60.0,
                         "max_rate_per_min": 2.0, "spike_threshold": 5.0,
                         "stuck_count": 60, "stuck_resting_max": None}
    raise QualityError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class SensorProfile:
    """What a sane reading of one kind of sensor looks like.

    Build one with :meth:`for_kind`, which fills the defaults of the kind; every field
    is checked on construction (also by :func:`dataclasses.replace`).

    Parameters
    ----------
    kind : str
        ``"depth"`` (flood depth, cm), ``"rain"`` (mm accumulated per reading) or
        ``"weather"`` (any other scalar, e.g. air temperature).
    units : str
        Units of the value, for people (``"cm"``, ``"mm"``, ``"degC"``).
    min_value, max_value : float
        Valid range of a reading, inclusive.
    max_rate_per_min : float
        Largest believable change per minute, in units per minute (``inf``: no check).
    interval_s : float
        Expected time between readings, s.
    spike_threshold : float
        How far a single reading may stand out from the median of it and its two
        neighbours before it is a spike, in units (``inf``: no check).
    stuck_count : int
        Number of readings in the stuck window (0: no check; otherwise at least 2).
    stuck_tolerance : float
        Largest spread (max - min) of a stuck window, in units (0: identical readings).
    stuck_resting_max : float or None
        A window whose values are all at or below this is the sensor's resting state
        (dry road, dry gauge), never stuck; None exempts nothing.
    offline_after : int
        Missed intervals after which the sensor is offline and the next reading
        follows a gap.
    battery_units : str
        ``"V"`` or ``"%"``.
    battery_low : float
        Battery level below which a reading is flagged ``low-battery``.
    """

    kind: str
    units: str
    min_value: float
    max_value: float
    max_rate_per_min: float
    interval_s: float
    spike_threshold: float
    stuck_count: int
    stuck_tolerance: float
    stuck_resting_max: float | None
    offline_after: int
    battery_units: str
    battery_low: float

    @classmethod
    def for_kind(cls, kind: str, **overrides: Any) -> SensorProfile:
        """The default profile of a kind of sensor, with some fields overridden.

        Parameters
        ----------
        kind : str
            One of :data:`KINDS`.
        **overrides
            Any field of the profile. For rain, the default ``max_value`` follows
            ``interval_s`` (500 mm/h over one interval).

        Returns
        -------
        SensorProfile

        Raises
        ------
        QualityError
            On an unknown kind or field, or a field with a bad value.
        """
        if not isinstance(kind, str):
            raise QualityError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise QualityError(unknown[0], "is not a field of a sensor profile")
        interval = overrides.get("interval_s", 60.0)
        if not _is_number(interval) or not math.isfinite(interval) or interval <= 0:
            raise QualityError("interval_s", f"must be a finite number > 0, got {interval!r}")
        return cls(kind=kind, **(_kind_defaults(kind, float(interval)) | overrides))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise QualityError("kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.units, str) or not self.units.strip():
            raise QualityError("units", f"must be a non-empty string, got {self.units!r}")
        _finite("min_value", self.min_value)
        _finite("max_value", self.max_value)
        if not self.min_value < self.max_value:
            raise QualityError("max_value", f"must be above min_value ({self.min_value}), "
                                            f"got {self.max_value}")
        _positive("max_rate_per_min", self.max_rate_per_min, allow_inf=True)
        _positive("interval_s", self.interval_s, allow_inf=False)
        _positive("spike_threshold", self.spike_threshold, allow_inf=True)
        if (not isinstance(self.stuck_count, int) or isinstance(self.stuck_count, bool)
                or self.stuck_count < 0 or self.stuck_count == 1):
            raise QualityError("stuck_count", f"must be 0 (no check) or a whole number >= 2, "
                                              f"got {self.stuck_count!r}")
        _finite("stuck_tolerance", self.stuck_tolerance)
        if self.stuck_tolerance < 0:
            raise QualityError("stuck_tolerance", f"must be >= 0, got {self.stuck_tolerance}")
        if self.stuck_resting_max is not None:
            _finite("stuck_resting_max", self.stuck_resting_max)
        if (not isinstance(self.offline_after, int) or isinstance(self.offline_after, bool)
                or self.offline_after < 1):
            raise QualityError("offline_after", f"must be a whole number >= 1, "
                                                f"got {self.offline_after!r}")
        if self.battery_units not in BATTERY_UNITS:
            raise QualityError("battery_units", f"must be 'V' or '%', got {self.battery_units!r}")
        _finite("battery_low", self.battery_low)
        if self.battery_low < 0 or (self.battery_units == "%" and self.battery_low > 100):
            limit = "between 0 and 100" if self.battery_units == "%" else ">= 0"
            raise QualityError("battery_low", f"must be {limit}, got {self.battery_low}")

    @property
    def gap_s(self) -> float:
        """Silence, s, beyond which a sensor is offline: ``offline_after * interval_s``."""
        return self.offline_after * self.interval_s


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _finite(name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value):
        raise QualityError(name, f"must be a finite number, got {value!r}")


def _positive(name: str, value: Any, *, allow_inf: bool) -> None:
    if not _is_number(value) or math.isnan(value) or value <= 0 or (
            not allow_inf and math.isinf(value)):
        what = "a number > 0 (inf for no check)" if allow_inf else "a finite number > 0"
        raise QualityError(name, f"must be {what}, got {value!r}")


# ============================================================================ online
@dataclass(frozen=True, slots=True)
class Verdict:
    """The quality verdict on one reading.

    Attributes
    ----------
    t : float
        Time of the reading, s since the epoch.
    value : float
        The value as read.
    flags : tuple of str
        Flags raised, in :data:`FLAGS` order; empty for a clean reading.
    usable : bool
        Whether the reading may feed alerts and nowcasts now. False while pending.
    cleaned : float or None
        The value to use: the reading when usable, the median of three for a spike,
        None otherwise (and while pending).
    pending : bool
        The reading is a suspected spike held until the next in-range reading; its
        final verdict arrives later as ``revised`` (or from ``flush``).
    revised : Verdict or None
        The final verdict of the previous, pending reading, settled by this one.
    """

    t: float
    value: float
    flags: tuple[str, ...]
    usable: bool
    cleaned: float | None
    pending: bool = False
    revised: Verdict | None = field(default=None, repr=False)

    def settled(self) -> list[Verdict]:
        """Final verdicts this one delivers, in time order: the revised previous
        reading, if any, then this reading unless it is pending."""
        out = [] if self.revised is None else [self.revised]
        if not self.pending:
            out.append(self)
        return out


_DUPLICATE, _OUT_OF_ORDER = ("duplicate",), ("out-of-order",)


def _median3(a: float, b: float, c: float) -> float:
    return max(min(a, b), min(max(a, b), c))


class QualityChecker:
    """Online quality checks on one sensor's readings (see the module notes).

    Parameters
    ----------
    profile : SensorProfile
        What a sane reading of this sensor looks like.
    expected_from : float, optional
        When the sensor should start reporting, s since the epoch: before its first
        reading, silence is counted from here for :meth:`is_offline`. Without it a
        sensor that never reported is not called offline.

    Examples
    --------
    >>> checker = QualityChecker(SensorProfile.for_kind("depth"))
    >>> for t, depth_cm in [(0, 5.0), (60, 50.0), (120, 6.0), (180, 6.5)]:
    ...     for final in checker.check(t, depth_cm).settled():
    ...         print(final.t, final.flags, final.usable, final.cleaned)
    0.0 () True 5.0
    60.0 ('rate', 'spike') False 6.0
    120.0 () True 6.0
    180.0 () True 6.5

    The reading at 60 s is held until the one at 120 s shows it was a spike; the one
    at 120 s is itself held (its predecessor is 44 cm away) until 180 s.
    """

    __slots__ = ("profile", "expected_from", "_last_t", "_prev_value", "_ref_t", "_ref_value",
                 "_pending", "_pending_prev", "_window", "_rate_per_s", "_interval_s",
                 "_gap_s", "_min", "_max", "_spike", "_stuck_count", "_stuck_tol",
                 "_resting_max", "_battery_low")

    def __init__(self, profile: SensorProfile, *, expected_from: float | None = None) -> None:
        if not isinstance(profile, SensorProfile):
            raise QualityError("profile", f"must be a SensorProfile, got "
                                          f"{type(profile).__name__}")
        if expected_from is not None:
            _finite("expected_from", expected_from)
            expected_from = float(expected_from)
        self.profile = profile
        self.expected_from = expected_from
        # profile fields copied to slots: attribute look-ups are the per-reading cost
        self._rate_per_s = profile.max_rate_per_min / 60.0
        self._interval_s = float(profile.interval_s)
        self._gap_s = float(profile.gap_s)
        self._min, self._max = float(profile.min_value), float(profile.max_value)
        self._spike = float(profile.spike_threshold)
        self._stuck_count = profile.stuck_count
        self._stuck_tol = float(profile.stuck_tolerance)
        self._resting_max = (None if profile.stuck_resting_max is None
                             else float(profile.stuck_resting_max))
        self._battery_low = float(profile.battery_low)
        self._window: deque[float] = deque(maxlen=max(profile.stuck_count, 1))
        self._last_t: float | None = None      # newest time seen (any accepted reading)
        self._prev_value: float | None = None  # previous in-range value, same segment
        self._ref_t: float | None = None       # last usable reading, for the rate check
        self._ref_value = 0.0
        self._pending: Verdict | None = None   # suspected spike awaiting its next reading
        self._pending_prev = 0.0

    @property
    def last_t(self) -> float | None:
        """Time of the newest reading seen (None before the first)."""
        return self._last_t

    @property
    def pending(self) -> Verdict | None:
        """The reading held as a suspected spike, if any."""
        return self._pending

    def check(self, t: float, value: float, battery: float | None = None) -> Verdict:
        """Check one reading and update the sensor's state.

        Parameters
        ----------
        t : float
            Time of the reading, s since the epoch.
        value : float
            The reading, in the profile's units. NaN or inf are flagged ``range``.
        battery : float, optional
            Battery level in the profile's battery units; None or NaN when not reported.

        Returns
        -------
        Verdict
            This reading's verdict (``pending`` when it is a suspected spike); its
            ``revised`` carries the final verdict of the previous pending reading when
            this one settles it. :meth:`Verdict.settled` lists the final verdicts.

        Raises
        ------
        QualityError
            When ``t`` is not a finite number, or ``value`` or ``battery`` not a number.
        """
        if t.__class__ is not float:
            t = _as_float("t", t)
        if not -math.inf < t < math.inf:
            raise QualityError("t", f"must be finite, got {t}")
        if value.__class__ is not float:
            value = _as_float("value", value)
        if battery is not None and battery.__class__ is not float:
            battery = _as_float("battery", battery)
        last_t = self._last_t
        gap = False
        if last_t is not None:
            if t <= last_t:
                return Verdict(t, value, _DUPLICATE if t == last_t else _OUT_OF_ORDER,
                               False, None)
            gap = t - last_t > self._gap_s
        self._last_t = t
        revised = None
        if gap:
            self._prev_value = None  # spike neighbours do not reach across a gap
            if self._pending is not None:
                revised = self._settle(None)
        flags: list[str] = []
        suspect = False
        in_range = self._min <= value <= self._max  # False for NaN
        if not in_range:
            flags.append("range")
        else:
            if self._pending is not None:
                revised = self._settle(value)
            ref_t = self._ref_t
            if ref_t is not None:
                dt = t - ref_t
                if abs(value - self._ref_value) > self._rate_per_s * (
                        dt if dt > self._interval_s else self._interval_s):
                    flags.append("rate")
            if self._stuck_count and self._is_stuck(value):
                flags.append("stuck")
            prev = self._prev_value
            suspect = prev is not None and abs(value - prev) > self._spike
            self._prev_value = value
        if gap:
            flags.append("gap")
        if battery is not None and battery < self._battery_low:
            flags.append("low-battery")
        if suspect:
            verdict = Verdict(t, value, tuple(flags), False, None, True, revised)
            self._pending, self._pending_prev = verdict, prev
            return verdict
        usable = in_range and not (flags and not UNUSABLE_FLAGS.isdisjoint(flags))
        if usable:
            self._ref_t, self._ref_value = t, value
        return Verdict(t, value, tuple(flags), usable, value if usable else None, False,
                       revised)

    def flush(self) -> Verdict | None:
        """Settle the pending reading, if any, as if no further reading will come
        (not a spike: no return was seen). Returns its final verdict, or None."""
        return None if self._pending is None else self._settle(None)

    def is_offline(self, now: float) -> bool:
        """Whether the sensor has been silent for more than ``offline_after`` intervals
        at ``now`` (s since the epoch)."""
        since = self.offline_since()
        return since is not None and now > since

    def offline_since(self) -> float | None:
        """Time after which, with no new reading, the sensor counts as offline (None
        when it never reported and no ``expected_from`` was given)."""
        last = self._last_t if self._last_t is not None else self.expected_from
        return None if last is None else last + self._gap_s

    def _is_stuck(self, value: float) -> bool:
        window = self._window
        # a change beyond the tolerance since the last reading rules stuck out cheaply
        quick_no = bool(window) and abs(value - window[-1]) > self._stuck_tol
        window.append(value)
        if quick_no or len(window) < self._stuck_count:
            return False
        high = max(window)
        if self._resting_max is not None and high <= self._resting_max:
            return False  # resting state (dry road, dry gauge): never stuck
        return high - min(window) <= self._stuck_tol

    def _settle(self, next_value: float | None) -> Verdict:
        held = self._pending
        assert held is not None
        self._pending = None
        spike, median = False, 0.0
        if next_value is not None:
            median = _median3(self._pending_prev, held.value, next_value)
            spike = abs(held.value - median) > self._spike
        flags = held.flags
        if spike:
            flags = tuple(sorted((*flags, "spike"), key=_FLAG_ORDER.__getitem__))
        usable = UNUSABLE_FLAGS.isdisjoint(flags)
        if usable:
            self._ref_t, self._ref_value = held.t, held.value
        cleaned = held.value if usable else (median if spike else None)
        return Verdict(held.t, held.value, flags, usable, cleaned)


def _as_float(name: str, value: Any) -> float:
    if not _is_number(value):
        raise QualityError(name, f"must be a number, got {value!r}")
    return float(value)


def offline_sensors(checkers: Mapping[str, QualityChecker], now: float) -> list[str]:
    """Ids of the sensors silent for more than ``offline_after`` intervals at ``now``.

    Parameters
    ----------
    checkers : mapping of str to QualityChecker
        The checker of each sensor, by sensor id.
    now : float
        Time of the sweep, s since the epoch.

    Returns
    -------
    list of str
        Sorted sensor ids; the sweep raises their ``offline`` flag.
    """
    _finite("now", now)
    return sorted(sensor_id for sensor_id, checker in checkers.items()
                  if checker.is_offline(now))


# ============================================================================ batch
@dataclass(frozen=True)
class SeriesQuality:
    """Quality verdicts on a whole series, index by index.

    Attributes
    ----------
    t, value : numpy.ndarray
        The series as given.
    flags : tuple of tuple of str
        Each reading's flags, as :attr:`Verdict.flags`.
    usable : numpy.ndarray of bool
        Whether each reading may feed alerts and nowcasts.
    cleaned : numpy.ndarray of float
        Cleaned values, NaN where a reading has none.
    """

    t: np.ndarray
    value: np.ndarray
    flags: tuple[tuple[str, ...], ...]
    usable: np.ndarray
    cleaned: np.ndarray
    _bits: np.ndarray = field(repr=False)

    def flag_mask(self, flag: str) -> np.ndarray:
        """Boolean array: which readings carry ``flag``."""
        if flag not in _FLAG_ORDER:
            raise QualityError("flag", f"must be one of {', '.join(FLAGS)}, got {flag!r}")
        return (self._bits >> _FLAG_ORDER[flag]) & 1 == 1

    def counts(self) -> dict[str, int]:
        """Number of readings carrying each flag (flags never raised are left out)."""
        out = {flag: int(self.flag_mask(flag).sum()) for flag in FLAGS}
        return {flag: n for flag, n in out.items() if n}


def check_series(t: Any, values: Any, profile: SensorProfile,
                 battery: Any = None) -> SeriesQuality:
    """Apply the online quality checks to a whole series at once.

    The same rules as :class:`QualityChecker` fed the readings in array order and then
    flushed, so the flags are the same; most checks are vectorised, the rate check
    (which compares with the last *usable* reading) is a loop over in-range readings.

    Parameters
    ----------
    t : array_like of float
        Reading times, s since the epoch, in arrival order.
    values : array_like of float
        Readings in the profile's units (NaN is flagged ``range``).
    profile : SensorProfile
        What a sane reading looks like.
    battery : array_like of float, optional
        Battery levels, NaN where not reported.

    Returns
    -------
    SeriesQuality

    Raises
    ------
    QualityError
        When the arrays are not 1-D and of equal length, or a time is not finite.
    """
    if not isinstance(profile, SensorProfile):
        raise QualityError("profile", f"must be a SensorProfile, got {type(profile).__name__}")
    t = _series("t", t)
    values = _series("values", values)
    n = t.size
    if values.size != n:
        raise QualityError("values", f"must have the length of t ({n}), got {values.size}")
    if not np.isfinite(t).all():
        raise QualityError("t", f"must be finite, got {t[~np.isfinite(t)][0]} at index "
                                f"{int(np.flatnonzero(~np.isfinite(t))[0])}")
    if battery is None:
        battery = np.full(n, np.nan)
    else:
        battery = _series("battery", battery)
        if battery.size != n:
            raise QualityError("battery", f"must have the length of t ({n}), got "
                                          f"{battery.size}")

    # ordering: a reading is compared with the newest time seen before it
    newest_before = np.full(n, -np.inf)
    if n > 1:
        newest_before[1:] = np.maximum.accumulate(t)[:-1]
    duplicate = t == newest_before
    out_of_order = t < newest_before
    accepted = ~(duplicate | out_of_order)
    gap = accepted & np.isfinite(newest_before) & (t - newest_before > profile.gap_s)
    with np.errstate(invalid="ignore"):
        out_of_range = accepted & ~((values >= profile.min_value) & (values <= profile.max_value))
        low_battery = accepted & (battery < profile.battery_low)
    in_range = np.flatnonzero(accepted & ~out_of_range)
    v, tv = values[in_range], t[in_range]
    segment = np.cumsum(gap)[in_range]  # spike neighbours stay within a segment
    m = v.size

    spike = np.zeros(m, bool)
    median = np.full(m, np.nan)
    if m >= 3:
        a, b, c = v[:-2], v[1:-1], v[2:]
        mid = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
        same = (segment[:-2] == segment[1:-1]) & (segment[2:] == segment[1:-1])
        spike[1:-1] = same & (np.abs(b - a) > profile.spike_threshold) & (
            np.abs(b - mid) > profile.spike_threshold)
        median[1:-1] = mid

    stuck = np.zeros(m, bool)
    k = profile.stuck_count
    if k and m >= k:
        windows = sliding_window_view(v, k)
        high, low = windows.max(axis=1), windows.min(axis=1)
        resting = (high <= profile.stuck_resting_max if profile.stuck_resting_max is not None
                   else np.zeros(high.size, bool))
        stuck[k - 1:] = (high - low <= profile.stuck_tolerance) & ~resting

    # the rate check is recursive (against the last usable reading): a plain loop
    rate = np.zeros(m, bool)
    rate_per_s, interval = profile.max_rate_per_min / 60.0, float(profile.interval_s)
    other_bad = (spike | stuck).tolist()
    ref_t: float | None = None
    ref_value = 0.0
    for i, (ti, vi) in enumerate(zip(tv.tolist(), v.tolist(), strict=True)):
        if ref_t is not None:
            dt = ti - ref_t
            if abs(vi - ref_value) > rate_per_s * (dt if dt > interval else interval):
                rate[i] = True
                continue
        if not other_bad[i]:
            ref_t, ref_value = ti, vi

    masks = {"out-of-order": out_of_order, "duplicate": duplicate, "range": out_of_range,
             "gap": gap, "low-battery": low_battery}
    for name, sub in (("rate", rate), ("spike", spike), ("stuck", stuck)):
        full = np.zeros(n, bool)
        full[in_range] = sub
        masks[name] = full
    bits = np.zeros(n, np.int64)
    for name, mask in masks.items():
        bits |= mask.astype(np.int64) << _FLAG_ORDER[name]
    usable = np.zeros(n, bool)
    usable[in_range] = ~(rate | spike | stuck)
    cleaned = np.full(n, np.nan)
    cleaned[usable] = values[usable]
    spike_at = in_range[spike]
    cleaned[spike_at] = median[spike]
    names = {code: tuple(f for f in FLAGS if (code >> _FLAG_ORDER[f]) & 1)
             for code in np.unique(bits).tolist()}
    flags = tuple(names[code] for code in bits.tolist())
    return SeriesQuality(t, values, flags, usable, cleaned, bits)


def _series(name: str, data: Any) -> np.ndarray:
    try:
        array = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        raise QualityError(name, "must be an array of numbers") from None
    if array.ndim != 1:
        raise QualityError(name, f"must be 1-D, got {array.ndim} dimensions")
    return array
