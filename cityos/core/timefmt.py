"""Date-time parsing and formatting in the one shape NGSI-LD uses on the wire."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cityos.core.clock import now_datetime
from cityos.core.errors import BadRequestData

_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_datetime(text: str, field: str = "dateTime") -> datetime:
    """Parse an ISO 8601 date-time and return it timezone-aware in UTC.

    Parameters
    ----------
    text : str
        For example ``2026-01-05T08:00:00Z`` or ``2026-01-05T17:00:00+09:00``.
        A value without an offset is taken as UTC.
    field : str
        Name reported in the error when ``text`` is not a date-time.

    Raises
    ------
    BadRequestData
        When ``text`` is not an ISO 8601 date-time.
    """
    if not isinstance(text, str) or len(text) < 10:
        raise BadRequestData(f"{field}: {text!r} is not an ISO 8601 date-time")
    try:
        value = datetime.fromisoformat(text if text[-1] != "z" else text[:-1] + "Z")
    except ValueError:
        raise BadRequestData(f"{field}: {text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Format a date-time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat is several times faster than strftime (this runs for every observation)
    # and writes the year with four digits, as ISO 8601 wants
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_datetime(text: str, field: str = "dateTime") -> str:
    """``format_datetime(parse_datetime(text, field))``, quicker for text that is
    already in that form (every observation the platform stamped or relayed).

    Raises
    ------
    BadRequestData
        When ``text`` is not an ISO 8601 date-time.
    """
    if isinstance(text, str) and _CANONICAL.fullmatch(text):
        try:
            datetime.fromisoformat(text)  # the form is right; is the date a real one?
            return text
        except ValueError:
            pass
    return format_datetime(parse_datetime(text, field))


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch, the key of the history tables."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND  # exact integer arithmetic, no float


def from_micros(micros: int) -> datetime:
    """Inverse of :func:`to_micros`."""
    return _EPOCH + timedelta(microseconds=micros)


def now_utc() -> datetime:
    """The current time of the process clock (:mod:`cityos.core.clock`), in UTC."""
    return now_datetime()
