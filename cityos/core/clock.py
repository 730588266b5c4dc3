"""The process clock: the one place CityOS reads "now" in the city's sense.

Everything that stamps, replays or predicts by the time of day (observation stamps,
sessions, the transit live boards, the simulators) asks :func:`now` or
:func:`now_datetime` instead of ``time.time()``, so that a test (or a demo of a given
morning) can pin the whole process to one instant. Durations and timeouts keep
``time.monotonic()``: they measure the machine, not the city.

The clock is, in order of precedence:

* whatever :func:`set_clock` / :func:`use_clock` installed (tests use a
  :class:`FixedClock`; ``create_app`` installs a :class:`StartedClock` when
  ``Settings.clock_start`` is set);
* a :class:`StartedClock` from the ``CITYOS_CLOCK_START`` environment variable (an
  ISO 8601 instant), read on first use, so that every ``cityos`` command of a test
  run agrees with its server;
* the system clock.

>>> from datetime import UTC, datetime
>>> with use_clock(FixedClock(datetime(2026, 12, 7, 7, 30, tzinfo=UTC))) as clock:
...     _ = clock.advance(60)
...     now_datetime().isoformat()
'2026-12-07T07:31:00+00:00'
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

CLOCK_START_ENV = "CITYOS_CLOCK_START"


@runtime_checkable
class Clock(Protocol):
    """A source of the current instant."""

    def now(self) -> float:
        """The current instant in Unix seconds."""
        ...


class SystemClock:
    """The machine's wall clock (``time.time()``)."""

    def now(self) -> float:
        """The current instant in Unix seconds."""
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class StartedClock:
    """A clock that reads ``start`` when made and then advances at the real rate.

    The rate comes from ``time.monotonic()``, so the clock ticks (timeouts, staleness
    and "due in N min" still move) while the instant it shows is pinned by ``start``.

    Parameters
    ----------
    start : datetime
        The instant the clock shows at creation; a naive value is taken as UTC.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.start = start
        self._start_s = start.timestamp()
        self._origin = time.monotonic()

    def now(self) -> float:
        """The current instant in Unix seconds."""
        return self._start_s + (time.monotonic() - self._origin)

    def __repr__(self) -> str:
        return f"StartedClock({self.start.isoformat()!r})"


class FixedClock:
    """A clock that stands still until told to move: for unit tests.

    Parameters
    ----------
    at : datetime or float
        The instant it shows (a naive datetime is taken as UTC; a float is Unix seconds).
    """

    def __init__(self, at: datetime | float) -> None:
        self._lock = threading.Lock()
        self._t = _seconds(at)

    def now(self) -> float:
        """The current instant in Unix seconds."""
        return self._t

    def set(self, at: datetime | float) -> None:
        """Move the clock to ``at``."""
        with self._lock:
            self._t = _seconds(at)

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new instant (Unix seconds)."""
        with self._lock:
            self._t += seconds
            return self._t

    def __repr__(self) -> str:
        return f"FixedClock({datetime.fromtimestamp(self._t, UTC).isoformat()!r})"


def _seconds(at: datetime | float) -> float:
    if isinstance(at, datetime):
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()
    return float(at)


def parse_clock_start(text: str, field: str = "clock_start") -> datetime:
    """Parse a clock start (an ISO 8601 instant; without an offset, UTC).

    Raises
    ------
    ValueError
        Naming ``field`` when ``text`` is not an ISO 8601 date-time.
    """
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except (ValueError, AttributeError):
        raise ValueError(f"{field}: {text!r} is not an ISO 8601 date-time, "
                         "e.g. 2026-12-07T07:30:00+08:00") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def clock_from_start(start: str | datetime | None) -> Clock:
    """The clock a ``clock_start`` setting asks for: started there, or the system's."""
    if start is None or start == "":
        return SystemClock()
    if isinstance(start, str):
        start = parse_clock_start(start)
    return StartedClock(start)


_clock: Clock | None = None
_clock_lock = threading.Lock()


def get_clock() -> Clock:
    """The process clock (made from ``CITYOS_CLOCK_START`` on first use)."""
    global _clock
    clock = _clock
    if clock is None:
        with _clock_lock:
            if _clock is None:
                _clock = clock_from_start(os.environ.get(CLOCK_START_ENV))
            clock = _clock
    return clock


def set_clock(clock: Clock | None) -> Clock | None:
    """Install ``clock`` as the process clock; None goes back to the default on next
    use. Returns the clock it replaced (None when none was made yet)."""
    global _clock
    with _clock_lock:
        previous, _clock = _clock, clock
    return previous


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the process clock inside the block (tests); yields it."""
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


def now() -> float:
    """The current instant of the process clock, in Unix seconds."""
    return get_clock().now()


def now_datetime() -> datetime:
    """The current instant of the process clock, timezone-aware in UTC."""
    return datetime.fromtimestamp(get_clock().now(), UTC)


def describe_clock() -> str:
    """One line saying which clock the process runs on (for logs and CI output)."""
    return repr(get_clock())
