"""Date-time parsing and formatting in the one shape NGSI-LD uses on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

from cityos.core.errors import BadRequestData


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
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequestData(f"{field}: {text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Format a date-time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch, the key of the history tables."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(round(value.timestamp() * 1_000_000))


def from_micros(micros: int) -> datetime:
    """Inverse of :func:`to_micros`."""
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def now_utc() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)
