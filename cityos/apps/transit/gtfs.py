"""Read a GTFS feed (a zip or a folder) into a :class:`~cityos.apps.transit.models.Feed`.

The reader streams every file through the :mod:`csv` module. Stop times and shape
points, the two big tables, go straight into typed arrays (``array('d')``,
``array('i')``: a few bytes per value, no object per row) and are sorted with NumPy
afterwards, so a feed of 100 MB imports in a few hundred MB of memory.

Every problem is collected with its place, ``file.txt:line: field: what is wrong``
(the header is line 1). Errors (a required file or column missing, a value that
cannot be read, an id that is not defined or is defined twice, a coordinate out of
range, a stop sequence that repeats) stop the import with a :class:`GtfsError`
listing them; warnings (things the reader can work around: missing times it
interpolates, a shape it derives from the stops, files and columns outside GTFS such as
the GTFS-JP extensions) come back with the feed from :func:`read_feed_report`.

Times of day are seconds of the service day (over 86,400 after midnight); every stop
time gets ``shape_dist_m``, metres along its trip's shape, measured on the WGS84
ellipsoid. A trip without a shape gets one derived from its stops
(``Shape.derived``, id ``derived:<hash of the stop pattern>``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pyproj import Geod, Transformer

from cityos.apps.transit.models import (
    WEEKDAYS,
    Agency,
    Feed,
    Frequency,
    Route,
    ServiceCalendar,
    Shape,
    Stop,
    StopTimes,
    Trip,
)
from cityos.core.geo import utm_epsg

__all__ = ["FeedReading", "GtfsError", "GtfsProblem", "dropped_summary", "format_time",
           "last_warnings", "parse_time", "project_onto_shape", "read_feed",
           "read_feed_report", "read_gtfs", "write_dropped"]

#: Errors kept in full; beyond this they are only counted.
MAX_ERRORS = 100
#: A stop further than this from its trip's shape is worth a warning.
FAR_FROM_SHAPE_M = 150.0
#: Warnings kept in full (repeated row-level warnings are summarised first).
MAX_WARNINGS = 500

#: Warnings of the last :func:`read_feed` call.
last_warnings: list[GtfsProblem] = []

_GEOD = Geod(ellps="WGS84")
_NAN = float("nan")
_INT32_MAX = 2**31 - 1

# --------------------------------------------------------------- the GTFS files
_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # file: (required columns, optional columns)
    "agency.txt": (("agency_name", "agency_url", "agency_timezone"),
                   ("agency_id", "agency_lang", "agency_phone", "agency_fare_url",
                    "agency_email", "cemv_support")),
    "stops.txt": (("stop_id", "stop_lat", "stop_lon"),
                  ("stop_code", "stop_name", "tts_stop_name", "stop_desc", "zone_id",
                   "stop_url", "location_type", "parent_station", "stop_timezone",
                   "wheelchair_boarding", "level_id", "platform_code", "stop_access")),
    "routes.txt": (("route_id", "route_type"),
                   ("agency_id", "route_short_name", "route_long_name", "route_desc",
                    "route_url", "route_color", "route_text_color", "route_sort_order",
                    "continuous_pickup", "continuous_drop_off", "network_id",
                    "cemv_support")),
    "trips.txt": (("route_id", "service_id", "trip_id"),
                  ("trip_headsign", "trip_short_name", "direction_id", "block_id",
                   "shape_id", "wheelchair_accessible", "bikes_allowed", "cars_allowed")),
    "stop_times.txt": (("trip_id", "stop_id", "stop_sequence"),
                       ("arrival_time", "departure_time", "location_group_id",
                        "location_id", "stop_headsign", "start_pickup_drop_off_window",
                        "end_pickup_drop_off_window", "pickup_type", "drop_off_type",
                        "continuous_pickup", "continuous_drop_off", "shape_dist_traveled",
                        "timepoint", "pickup_booking_rule_id", "drop_off_booking_rule_id")),
    "calendar.txt": (("service_id", *WEEKDAYS, "start_date", "end_date"), ()),
    "calendar_dates.txt": (("service_id", "date", "exception_type"), ()),
    "shapes.txt": (("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"),
                   ("shape_dist_traveled",)),
    "frequencies.txt": (("trip_id", "start_time", "end_time", "headway_secs"),
                        ("exact_times",)),
}
_REQUIRED_FILES = ("agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt")
#: Files of the GTFS reference that this reader does not need.
_OTHER_GTFS_FILES = frozenset({
    "fare_attributes.txt", "fare_rules.txt", "timeframes.txt", "rider_categories.txt",
    "fare_media.txt", "fare_products.txt", "fare_leg_rules.txt", "fare_leg_join_rules.txt",
    "fare_transfer_rules.txt", "areas.txt", "stop_areas.txt", "networks.txt",
    "route_networks.txt", "transfers.txt", "pathways.txt", "levels.txt",
    "location_groups.txt", "location_group_stops.txt", "locations.geojson",
    "booking_rules.txt", "translations.txt", "feed_info.txt", "attributions.txt",
})
#: The Japanese standard's extension files (GTFS-JP): known, not needed.
_GTFS_JP_FILES = frozenset({"agency_jp.txt", "office_jp.txt", "routes_jp.txt",
                            "pattern_jp.txt"})
_ROUTE_TYPES = frozenset(range(0, 8)) | {11, 12}  # plus the extended 100..1799
_COLOUR = re.compile(r"^[0-9A-Fa-f]{6}$")
_TIME = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})\s*$")


# ------------------------------------------------------------------- problems
@dataclass(frozen=True)
class GtfsProblem:
    """One thing wrong in a feed, where it is.

    ``line`` counts the header as line 1 (None for a whole file); ``field`` is the
    column (None for a whole row or file); ``severity`` is ``error`` or ``warning``.
    """

    file: str
    line: int | None
    field: str | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else \
            f"{where}: {self.message}"


class GtfsError(ValueError):
    """The feed has errors; ``problems`` lists them (the first :data:`MAX_ERRORS`),
    ``total`` counts them all and ``warnings`` holds what else was found."""

    def __init__(self, problems: list[GtfsProblem], total: int | None = None,
                 warnings: list[GtfsProblem] | None = None):
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        self.warnings = list(warnings or [])
        lines = [str(p) for p in self.problems]
        if self.total > len(self.problems):
            lines.append(f"... and {self.total - len(self.problems)} more")
        noun = "error" if self.total == 1 else "errors"
        super().__init__(f"{self.total} {noun} in the GTFS feed:\n" + "\n".join(lines))


class _Problems:
    """Collects errors and warnings; row-level warnings that repeat are tallied into
    one line each (first place, count, a few examples)."""

    def __init__(self, skip_invalid: bool = False) -> None:
        self.skip_invalid = skip_invalid
        self.errors: list[GtfsProblem] = []
        self.error_count = 0
        self.warnings: list[GtfsProblem] = []
        self.warning_count = 0
        #: every row left out of the feed, with why (rows skipped for errors, trips
        #: with fewer than two stop times)
        self.dropped: list[GtfsProblem] = []
        self._tallies: dict[tuple[str, str | None, str], list] = {}

    def error(self, file: str, line: int | None, field: str | None, message: str,
              fatal: bool = False) -> None:
        """An error; with ``skip_invalid`` one that is not ``fatal`` becomes a warning
        (the caller drops the row)."""
        if self.skip_invalid and not fatal:
            self.dropped.append(GtfsProblem(file, line, field, message, "dropped"))
            self.tally(file, line, field, "rows skipped for errors", f"line {line}: {message}")
            return
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(GtfsProblem(file, line, field, message, "error"))

    def warn(self, file: str, line: int | None, field: str | None, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(GtfsProblem(file, line, field, message, "warning"))

    def tally(self, file: str, line: int | None, field: str | None, what: str,
              example: str) -> None:
        """One more instance of a repeated warning (``what``); ``example`` names it."""
        entry = self._tallies.setdefault((file, field, what), [line, 0, []])
        entry[1] += 1
        if len(entry[2]) < 3:
            entry[2].append(example)

    def summarise(self) -> None:
        """Turn the tallies into warnings."""
        for (file, field, what), (line, count, examples) in self._tallies.items():
            more = f", {count} in all" if count > len(examples) else ""
            self.warn(file, line, field, f"{what} ({', '.join(examples)}{more})")
        self._tallies.clear()

    def raise_if_errors(self) -> None:
        if self.error_count:
            self.summarise()
            raise GtfsError(self.errors, self.error_count, self.warnings)


# ------------------------------------------------------------------ the files
class _FeedFiles:
    """The text files of a feed in a zip or a folder (a zip may hold them in one
    folder: some publishers zip the folder rather than its files)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        name = self.path.name
        if self.path.is_dir():
            self._members = {p.name: str(p) for p in sorted(self.path.iterdir())
                             if p.is_file()}
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            members = [i.filename for i in self._zip.infolist() if not i.is_dir()]
            roots = {m.rsplit("/", 1)[0] if "/" in m else "" for m in members
                     if m.rsplit("/", 1)[-1] == "stops.txt"}
            prefix = "" if "" in roots or len(roots) != 1 else roots.pop() + "/"
            self._members = {m[len(prefix):]: m for m in members
                             if m.startswith(prefix) and "/" not in m[len(prefix):]}
        elif self.path.exists():
            raise GtfsError([GtfsProblem(name, None, None, "not a zip file or a folder")])
        else:
            raise GtfsError([GtfsProblem(name, None, None, "no such file or folder")])

    def names(self) -> list[str]:
        return list(self._members)

    def open(self, name: str) -> IO[str] | None:
        """The file as text (UTF-8, a byte-order mark dropped), or None when absent."""
        member = self._members.get(name)
        if member is None:
            return None
        raw = self._zip.open(member) if self._zip is not None else open(member, "rb")  # noqa: SIM115
        return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


class _Table:
    """One CSV file: its header (line 1) and its rows with their line numbers."""

    def __init__(self, name: str, stream: IO[str], problems: _Problems):
        self.name = name
        self.stream = stream
        self.problems = problems
        self.reader = csv.reader(stream)
        try:
            header = next(self.reader, [])
        except (UnicodeDecodeError, csv.Error) as error:
            problems.error(name, 1, None, _unreadable(error), fatal=True)
            header = []
        self.header = [h.strip().lstrip("\ufeff").strip() for h in header]
        self.col: dict[str, int] = {}
        for i, column in enumerate(self.header):
            if column in self.col:
                problems.error(name, 1, column, "the column appears twice", fatal=True)
            elif column:
                self.col[column] = i

    def has_columns(self, required: tuple[str, ...]) -> bool:
        """Report each required column that is missing; True when none is."""
        missing = [c for c in required if c not in self.col]
        for column in missing:
            self.problems.error(self.name, 1, column, "required column is missing", fatal=True)
        return not missing

    def note_extra_columns(self, known: tuple[str, ...]) -> None:
        """One warning naming the columns GTFS does not define (GTFS-JP's ``jp_``
        columns are known and pass silently)."""
        extra = [c for c in self.col if c not in known and not c.startswith("jp_")]
        if extra:
            self.problems.warn(self.name, 1, None,
                               f"columns not in GTFS, ignored: {', '.join(extra)}")

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, values)`` per non-blank row, padded to the header's width."""
        reader = self.reader
        width = len(self.header)
        previous = reader.line_num
        try:
            for row in reader:
                line = previous + 1  # where the record starts (a quoted field may span lines)
                previous = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) < width:
                    row += [""] * (width - len(row))
                yield line, row
        except (UnicodeDecodeError, csv.Error) as error:
            self.problems.error(self.name, previous + 1, None, _unreadable(error), fatal=True)

    def close(self) -> None:
        self.stream.close()


def _unreadable(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text ({error.reason})"
    return f"not valid CSV ({error})"


class _Record:
    """The current row of a small table, with typed getters that report problems."""

    def __init__(self, table: _Table):
        self.table = table
        self.file = table.name
        self.problems = table.problems
        self.line = 1
        self.values: dict[str, str] = {}
        self.bad = False  # an error was found in the current row

    def __iter__(self) -> Iterator[_Record]:
        header = self.table.header
        for line, row in self.table.rows():
            self.line = line
            self.bad = False
            self.values = {h: v.strip() for h, v in zip(header, row, strict=False)}
            yield self

    @property
    def dropped(self) -> bool:
        """True when the row had an error and errors skip rows; a strict read keeps
        it, so that rows referring to it do not report errors of their own."""
        return self.bad and self.problems.skip_invalid

    def error(self, field: str | None, message: str, fatal: bool = False) -> None:
        self.bad = True
        self.problems.error(self.file, self.line, field, message, fatal)

    def warn(self, field: str | None, message: str) -> None:
        self.problems.warn(self.file, self.line, field, message)

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None

    def need(self, name: str) -> str | None:
        value = self.get(name)
        if value is None:
            self.error(name, "required value is empty")
        return value

    def integer(self, name: str, default: int | None = None, *, required: bool = False,
                choices: frozenset[int] | range | None = None) -> int | None:
        text = self.need(name) if required else self.get(name)
        if text is None:
            return default
        try:
            number = int(text)
        except ValueError:
            self.error(name, f"{text!r} is not an integer")
            return default
        if choices is not None and number not in choices:
            self.error(name, f"{number} is not one of {_choices(choices)}")
            return default
        return number

    def real(self, name: str, low: float, high: float, *, required: bool) -> float:
        text = self.need(name) if required else self.get(name)
        if text is None:
            return _NAN
        try:
            number = float(text)
        except ValueError:
            self.error(name, f"{text!r} is not a number")
            return _NAN
        if not low <= number <= high:
            self.error(name, f"{number} is out of range [{low:g}, {high:g}]")
            return _NAN
        return number

    def day(self, name: str) -> date | None:
        text = self.need(name)
        if text is None:
            return None
        try:
            if len(text) == 8 and text.isdigit():
                return date(int(text[:4]), int(text[4:6]), int(text[6:]))
            parsed = date.fromisoformat(text)
        except ValueError:
            self.error(name, f"{text!r} is not a date (YYYYMMDD)")
            return None
        self.problems.tally(self.file, self.line, name,
                            "dates written YYYY-MM-DD where GTFS wants YYYYMMDD; read anyway",
                            f"line {self.line}")
        return parsed

    def clock(self, name: str) -> int | None:
        text = self.need(name)
        if text is None:
            return None
        try:
            return parse_time(text)
        except ValueError as error:
            self.error(name, str(error))
            return None


def _choices(choices: frozenset[int] | range) -> str:
    values = sorted(choices)
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


def _once(seen: dict[str, int], key: str, record: _Record, field: str) -> bool:
    """True the first time ``key`` appears; an error naming the first line otherwise."""
    first = seen.get(key)
    if first is not None:
        record.error(field, f"{key!r} repeats line {first}")
        return False
    seen[key] = record.line
    return True


# ---------------------------------------------------------------------- times
def parse_time(text: str) -> int:
    """Seconds of the service day of a GTFS time ``H:MM:SS`` (hours may pass 24).

    Raises
    ------
    ValueError
        Naming the text, when it is not such a time.
    """
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time (HH:MM:SS)")
    hours, minutes, seconds = (int(g) for g in match.groups())
    if minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a time: minutes and seconds must be 00..59")
    return hours * 3600 + minutes * 60 + seconds


def format_time(seconds: float) -> str:
    """A GTFS time ``HH:MM:SS`` for seconds of the service day (hours may pass 24)."""
    whole = int(round(seconds))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# ------------------------------------------------------------------ the reader
def read_feed(path: str | Path, *, skip_invalid: bool = False) -> Feed:
    """Read a GTFS feed; its warnings are left in :data:`last_warnings`.

    Parameters
    ----------
    path : str or Path
        A GTFS zip, or a folder holding the ``.txt`` files.
    skip_invalid : bool
        Drop the rows that have errors (and the rows that refer to them), each
        reported as a warning, instead of raising; a missing file or column, an
        unreadable file and a bad agency still raise.

    Returns
    -------
    Feed
        Stops, routes, trips, stop times (sorted by trip and stop sequence, times
        interpolated where the feed leaves them out, metres along the shape),
        shapes (derived from the stops where the feed has none), calendars and
        frequencies.

    Raises
    ------
    GtfsError
        When the feed has errors; ``.problems`` lists them.
    """
    feed, warnings = read_feed_report(path, skip_invalid=skip_invalid)
    last_warnings[:] = warnings
    return feed


def read_feed_report(path: str | Path, *, skip_invalid: bool = False
                     ) -> tuple[Feed, list[GtfsProblem]]:
    """Read a GTFS feed and return it with its warnings.

    Parameters
    ----------
    path : str or Path
        A GTFS zip, or a folder holding the ``.txt`` files.
    skip_invalid : bool
        Drop the rows that have errors (and the rows that refer to them), each
        reported as a warning, instead of raising; a missing file or column, an
        unreadable file and a bad agency still raise.

    Returns
    -------
    feed : Feed
    warnings : list of GtfsProblem
        What the reader worked around (severity ``warning``).

    Raises
    ------
    GtfsError
        When the feed has errors (``.problems``, ``.total``, ``.warnings``).
    """
    reading = read_gtfs(path, skip_invalid=skip_invalid)
    return reading.feed, reading.warnings


@dataclass
class FeedReading:
    """A feed read with :func:`read_gtfs`: the feed, its warnings and every row left
    out of it (severity ``dropped``: rows skipped for errors under ``skip_invalid``,
    trips with fewer than two stop times)."""

    feed: Feed
    warnings: list[GtfsProblem]
    dropped: list[GtfsProblem]
    path: Path
    skip_invalid: bool = False


def read_gtfs(path: str | Path, *, skip_invalid: bool = False) -> FeedReading:
    """Read a GTFS feed with its warnings and the list of the rows it dropped.

    Parameters
    ----------
    path : str or Path
        A GTFS zip, or a folder holding the ``.txt`` files.
    skip_invalid : bool
        As :func:`read_feed_report`.

    Returns
    -------
    FeedReading

    Raises
    ------
    GtfsError
        When the feed has errors (``.problems``, ``.total``, ``.warnings``).
    """
    files = _FeedFiles(path)
    try:
        reader = _Reader(files, skip_invalid)
        feed, warnings = reader.read()
        return FeedReading(feed, warnings, reader.problems.dropped, Path(path), skip_invalid)
    finally:
        files.close()


_QUOTED = re.compile(r"'[^']*'")
_NUMBER = re.compile(r"(?<![\d.:])\d+(?![\d.:])")


def _reason(message: str) -> str:
    """A dropped row's message without its own values, to group rows by reason."""
    return _NUMBER.sub("N", _QUOTED.sub("'...'", message))


def dropped_summary(dropped: list[GtfsProblem], examples: int = 2) -> list[str]:
    """How many rows of each file were dropped and why, one line per file.

    Parameters
    ----------
    dropped : list of GtfsProblem
        :attr:`FeedReading.dropped`.
    examples : int
        Lines named per reason.

    Returns
    -------
    list of str
        A row with several errors counts once, for the first. E.g.
        ``"stop_times.txt: 3 rows dropped: 2 arrival_time '...' is not a time
        (HH:MM:SS) (lines 5, 9); 1 stop_id ..."``, files in the order they were met.
    """
    groups: dict[str, dict[tuple[str | None, str], list[int | None]]] = {}
    seen: set[tuple[str, int]] = set()
    for problem in dropped:
        if problem.line is not None:
            if (problem.file, problem.line) in seen:
                continue  # a row with several errors is one row dropped (for its first)
            seen.add((problem.file, problem.line))
        reasons = groups.setdefault(problem.file, {})
        reasons.setdefault((problem.field, _reason(problem.message)), []).append(problem.line)
    lines = []
    for file, reasons in groups.items():
        total = sum(len(where) for where in reasons.values())
        parts = []
        for (field, reason), where in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
            named = [str(n) for n in where[:examples] if n is not None]
            at = f" (line{'s' if len(named) > 1 else ''} {', '.join(named)}" \
                 f"{', ...' if len(where) > len(named) else ''})" if named else ""
            parts.append(f"{len(where)} {field + ': ' if field else ''}{reason}{at}")
        noun = "row" if total == 1 else "rows"
        lines.append(f"{file}: {total} {noun} dropped: " + "; ".join(parts))
    return lines


def write_dropped(dropped: list[GtfsProblem], path: str | Path) -> Path:
    """Write every dropped row as CSV ``file,line,field,reason`` at ``path``.

    Parameters
    ----------
    dropped : list of GtfsProblem
    path : str or Path

    Returns
    -------
    Path
    """
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["file", "line", "field", "reason"])
        for problem in dropped:
            writer.writerow([problem.file, "" if problem.line is None else problem.line,
                             problem.field or "", problem.message])
    return path


class _Reader:
    def __init__(self, files: _FeedFiles, skip_invalid: bool = False):
        self.files = files
        self.problems = _Problems(skip_invalid)

    # -- the whole feed
    def read(self) -> tuple[Feed, list[GtfsProblem]]:
        self._check_files_and_headers()
        agencies = self._agencies()
        stops = self._stops()
        routes = self._routes(agencies)
        calendars = self._calendars()
        trips = self._trips(routes, calendars)
        shape_points = self._shape_points()
        frequencies = self._frequencies(trips)
        columns = self._stop_times(trips, stops)
        self.problems.raise_if_errors()

        stop_times, trip_lines = self._sorted_stop_times(columns, trips, stops)
        self.problems.raise_if_errors()
        shapes, shape_sdt, trips = self._shapes(shape_points, trips, stop_times, stops)
        self.problems.raise_if_errors()
        trips = self._place_stops(stop_times, columns["dist"], trips, stops, shapes,
                                  shape_sdt, trip_lines)
        self._complete_times(stop_times, trip_lines)
        trips, stop_times, frequencies = self._drop_short_trips(trips, stop_times,
                                                                frequencies, trip_lines)
        self.problems.summarise()
        feed = Feed(agencies=agencies, stops=stops, routes=routes, trips=trips,
                    stop_times=stop_times, shapes=shapes, calendars=calendars,
                    frequencies=frequencies)
        return feed, self.problems.warnings

    def _open(self, name: str) -> _Table | None:
        stream = self.files.open(name)
        return None if stream is None else _Table(name, stream, self.problems)

    def _check_files_and_headers(self) -> None:
        """Required files and columns first: without them nothing else can be read."""
        names = set(self.files.names())
        for name in _REQUIRED_FILES:
            if name not in names:
                self.problems.error(name, None, None, "required file is missing", fatal=True)
        if "calendar.txt" not in names and "calendar_dates.txt" not in names:
            self.problems.error("calendar.txt", None, None,
                                "required file is missing (or calendar_dates.txt)", fatal=True)
        for name in sorted(names):
            if name in _COLUMNS:
                table = self._open(name)
                required, optional = _COLUMNS[name]
                if table.has_columns(required):
                    table.note_extra_columns(required + optional)
                table.close()
            elif name in _OTHER_GTFS_FILES or name in _GTFS_JP_FILES:
                continue
            elif name.endswith(".txt"):
                self.problems.warn(name, None, None, "not a GTFS file; ignored")
        self.problems.raise_if_errors()

    # -- small tables
    def _agencies(self) -> dict[str, Agency]:
        table = self._open("agency.txt")
        agencies: dict[str, Agency] = {}
        seen: dict[str, int] = {}
        without_id = 0
        for r in _Record(table):
            agency_id = r.get("agency_id")
            name = r.need("agency_name") or ""
            url = r.need("agency_url") or ""
            zone = r.need("agency_timezone")
            if zone is not None:
                try:
                    ZoneInfo(zone)
                except (ZoneInfoNotFoundError, ValueError):
                    r.error("agency_timezone", f"{zone!r} is not an IANA time zone",
                            fatal=True)
            key = agency_id or name or f"agency-{r.line}"
            without_id += agency_id is None
            if _once(seen, key, r, "agency_id"):
                agencies[key] = Agency(key, name, url, zone or "UTC", r.get("agency_lang"),
                                       r.get("agency_phone"))
        table.close()
        if not agencies and not self.problems.error_count:
            self.problems.error("agency.txt", None, None, "the feed names no agency",
                                fatal=True)
        if len(agencies) > 1 and without_id:
            self.problems.error("agency.txt", None, "agency_id",
                                "required when the feed has several agencies", fatal=True)
        if len({a.timezone for a in agencies.values()}) > 1:
            self.problems.warn("agency.txt", None, "agency_timezone",
                               "agencies of one feed should share a time zone")
        return agencies

    def _stops(self) -> dict[str, Stop]:
        table = self._open("stops.txt")
        stops: dict[str, Stop] = {}
        seen: dict[str, int] = {}
        parents: list[tuple[int, str, str]] = []
        for r in _Record(table):
            stop_id = r.need("stop_id")
            location_type = r.integer("location_type", 0, choices=range(5))
            placed = location_type in (0, 1, 2)  # nodes and boarding areas may omit them
            lat = r.real("stop_lat", -90.0, 90.0, required=placed)
            lon = r.real("stop_lon", -180.0, 180.0, required=placed)
            if lat == 0.0 and lon == 0.0:
                self.problems.tally("stops.txt", r.line, "stop_lat",
                                    "stop placed at 0, 0 (no position?)", f"line {r.line}")
            wheelchair = r.integer("wheelchair_boarding", None, choices=range(3))
            parent = r.get("parent_station")
            if stop_id is None or r.dropped or not _once(seen, stop_id, r, "stop_id"):
                continue
            if parent:
                parents.append((r.line, stop_id, parent))
            stops[stop_id] = Stop(stop_id, r.get("stop_name") or "", lat, lon,
                                  r.get("stop_code"), location_type, parent, wheelchair)
        table.close()
        for line, stop_id, parent in parents:  # parents may come after their children
            if parent not in stops:
                self.problems.error("stops.txt", line, "parent_station",
                                    f"{parent!r} is not a stop_id of stops.txt")
                stops[stop_id] = replace(stops[stop_id], parent_station=None)
        return stops

    def _routes(self, agencies: dict[str, Agency]) -> dict[str, Route]:
        table = self._open("routes.txt")
        routes: dict[str, Route] = {}
        seen: dict[str, int] = {}
        sole_agency = next(iter(agencies)) if len(agencies) == 1 else None
        for r in _Record(table):
            route_id = r.need("route_id")
            route_type = r.integer("route_type", 3, required=True)
            if route_type is not None and not (route_type in _ROUTE_TYPES
                                               or 100 <= route_type <= 1799):
                r.error("route_type", f"{route_type} is not a GTFS route type")
            agency_id = r.get("agency_id")
            if agency_id is None:
                agency_id = sole_agency
                if agency_id is None and agencies:
                    r.error("agency_id", "required when the feed has several agencies")
            elif agency_id not in agencies:
                self.problems.tally("routes.txt", r.line, "agency_id",
                                    "not an agency_id of agency.txt: route kept without "
                                    "an operator", repr(agency_id))
                agency_id = None
            short, long = r.get("route_short_name") or "", r.get("route_long_name") or ""
            if not short and not long:
                self.problems.tally("routes.txt", r.line, "route_short_name",
                                    "route has neither a short nor a long name",
                                    route_id or f"line {r.line}")
            colours = []
            for name in ("route_color", "route_text_color"):
                colour = r.get(name)
                if colour is not None and not _COLOUR.match(colour):
                    r.warn(name, f"{colour!r} is not a colour (six hex digits); ignored")
                    colour = None
                colours.append(colour.upper() if colour else None)
            if route_id is None or r.dropped or not _once(seen, route_id, r, "route_id"):
                continue
            routes[route_id] = Route(route_id, short, long, route_type or 3, agency_id,
                                     colours[0], colours[1])
        table.close()
        return routes

    def _calendars(self) -> dict[str, ServiceCalendar]:
        calendars: dict[str, ServiceCalendar] = {}
        table = self._open("calendar.txt")
        if table is not None:
            seen: dict[str, int] = {}
            for r in _Record(table):
                service_id = r.need("service_id")
                days = tuple(bool(r.integer(d, 0, required=True, choices=range(2)))
                             for d in WEEKDAYS)
                start, end = r.day("start_date"), r.day("end_date")
                if start and end and end < start:
                    r.error("end_date", f"{end:%Y%m%d} is before start_date {start:%Y%m%d}")
                if service_id is None or r.dropped or not _once(seen, service_id, r, "service_id"):
                    continue
                calendars[service_id] = ServiceCalendar(service_id, days, start, end)
            table.close()
        table = self._open("calendar_dates.txt")
        if table is not None:
            seen = {}
            for r in _Record(table):
                service_id = r.need("service_id")
                day = r.day("date")
                kind = r.integer("exception_type", None, required=True, choices=range(1, 3))
                if service_id is None or day is None or kind is None or r.dropped:
                    continue
                if not _once(seen, f"{service_id} {day:%Y%m%d}", r, "date"):
                    continue
                calendar = calendars.setdefault(service_id, ServiceCalendar(service_id))
                (calendar.added if kind == 1 else calendar.removed).add(day)
            table.close()
        return calendars

    def _trips(self, routes: dict[str, Route],
               calendars: dict[str, ServiceCalendar]) -> dict[str, Trip]:
        """Trips; a trip_id repeated under different routes is split (see
        :meth:`_split_repeated_trips`)."""
        table = self._open("trips.txt")
        # every definition of each trip_id: (line, trip, valid), in file order
        definitions: dict[str, list[tuple[int, Trip, bool]]] = {}
        in_file_order: list[tuple[str, int]] = []
        for r in _Record(table):
            trip_id = r.need("trip_id")
            route_id = r.need("route_id")
            service_id = r.get("service_id")
            if route_id is not None and route_id not in routes:
                r.error("route_id", f"{route_id!r} is not a route_id of routes.txt")
            if service_id is None:
                self.problems.tally("trips.txt", r.line, "service_id",
                                    "empty: the trip never runs", trip_id or f"line {r.line}")
            elif service_id not in calendars:
                r.error("service_id", f"{service_id!r} is not a service_id of calendar.txt "
                                      "or calendar_dates.txt")
            direction = r.integer("direction_id", None, choices=range(2))
            if trip_id is None:
                continue
            trip = Trip(trip_id, route_id or "", service_id or "", r.get("shape_id"),
                        direction, r.get("block_id"), r.get("trip_headsign"))
            runs = definitions.setdefault(trip_id, [])
            in_file_order.append((trip_id, len(runs)))
            runs.append((r.line, trip, not r.dropped))
        table.close()
        names = self._split_repeated_trips(definitions)
        trips: dict[str, Trip] = {}
        self.trip_line: dict[str, int] = {}
        #: (trip name, route_id) of every definition using each shape_id, file order
        self.shape_users: dict[str, list[tuple[str, str]]] = {}
        for trip_id, k in in_file_order:
            name = names[trip_id][k] if trip_id in names else trip_id
            line, trip, valid = definitions[trip_id][k]
            if trip.shape_id is not None:
                self.shape_users.setdefault(trip.shape_id, []).append((name, trip.route_id))
            if not valid or name is None or name in trips:
                continue
            trips[name] = trip if name == trip_id else replace(trip, trip_id=name)
            self.trip_line[name] = line
        return trips

    def _split_repeated_trips(self, definitions: dict[str, list[tuple[int, Trip, bool]]]
                              ) -> dict[str, list[str | None]]:
        """Names for trip_ids defined more than once.

        Some publishers make trip_ids (and shape_ids) unique within a route only, and
        write each definition's stop times and shape points as one run, in the order of
        trips.txt. When every definition of a repeated trip_id has its own route, each
        becomes the trip ``<route_id>:<trip_id>`` and takes the matching run of
        stop_times.txt (a warning); otherwise the repeat is an error.
        """
        names: dict[str, list[str | None]] = {}
        self.split_trips: dict[str, list[str]] = {}
        for trip_id, runs in definitions.items():
            if len(runs) == 1:
                continue
            qualified = [f"{trip.route_id}:{trip_id}" for _, trip, _ in runs]
            if len(set(qualified)) == len(runs) and not set(qualified) & definitions.keys():
                names[trip_id] = list(qualified)
                self.split_trips[trip_id] = qualified
                self.problems.tally("trips.txt", runs[1][0], "trip_id",
                                    "repeats under another route: read as one trip per "
                                    "route named <route_id>:<trip_id>, taking the runs of "
                                    "stop_times.txt in file order", trip_id)
                continue
            names[trip_id] = [trip_id] + [None] * (len(runs) - 1)
            for line, _, _ in runs[1:]:
                self.problems.error("trips.txt", line, "trip_id",
                                    f"{trip_id!r} repeats line {runs[0][0]}")
        return names

    def _frequencies(self, trips: dict[str, Trip]) -> dict[str, list[Frequency]]:
        table = self._open("frequencies.txt")
        frequencies: dict[str, list[Frequency]] = {}
        if table is None:
            return frequencies
        for r in _Record(table):
            trip_id = r.need("trip_id")
            start, end = r.clock("start_time"), r.clock("end_time")
            headway = r.integer("headway_secs", None, required=True)
            exact = r.integer("exact_times", 0, choices=range(2))
            if trip_id in self.split_trips:
                r.error("trip_id", f"{trip_id!r} names several trips (it repeats in "
                                   "trips.txt under different routes)")
                continue
            if trip_id is not None and trip_id not in trips:
                r.error("trip_id", f"{trip_id!r} is not a trip_id of trips.txt")
                continue
            if headway is not None and headway <= 0:
                r.error("headway_secs", f"{headway} must be a positive number of seconds")
                continue
            if start is not None and end is not None and end < start <= end + 86400:
                # "23:00:00 to 00:00:00": the period ends at midnight, 24:00:00
                self.problems.tally("frequencies.txt", r.line, "end_time",
                                    "before start_time: read as a time of the next day "
                                    "(00:00:00 as 24:00:00)", f"line {r.line}")
                end += 86400
            if start is not None and end is not None and end <= start:
                r.error("end_time", f"{format_time(end)} is not after start_time "
                                    f"{format_time(start)}")
                continue
            if None in (trip_id, start, end, headway) or r.dropped:
                continue
            frequencies.setdefault(trip_id, []).append(
                Frequency(trip_id, start, end, headway, bool(exact)))
        table.close()
        for periods in frequencies.values():
            periods.sort(key=lambda f: f.start_s)
        return frequencies

    # -- big tables, streamed into typed arrays
    def _shape_points(self) -> dict | None:
        table = self._open("shapes.txt")
        if table is None:
            return None
        col = table.col
        i_id, i_lat, i_lon, i_seq = (col["shape_id"], col["shape_pt_lat"], col["shape_pt_lon"],
                                     col["shape_pt_sequence"])
        i_dist = col.get("shape_dist_traveled")
        number: dict[str, int] = {}
        shape_no, seq, lines, run = array("i"), array("i"), array("i"), array("i")
        run_state: dict[int, list[int]] = {}  # shape: [run number, last sequence]
        previous = -1
        lat, lon, dist = array("d"), array("d"), array("d")
        error, name = self.problems.error, table.name
        for line, row in table.rows():
            shape_id = row[i_id].strip()
            if not shape_id:
                error(name, line, "shape_id", "required value is empty")
                continue
            try:
                y, x = float(row[i_lat]), float(row[i_lon])
            except ValueError:
                which = "shape_pt_lat" if not _is_number(row[i_lat]) else "shape_pt_lon"
                error(name, line, which, f"{row[col[which]]!r} is not a number")
                continue
            if not (-90.0 <= y <= 90.0 and -180.0 <= x <= 180.0):
                which, value, limit = (("shape_pt_lat", y, 90) if not -90.0 <= y <= 90.0
                                       else ("shape_pt_lon", x, 180))
                error(name, line, which, f"{value} is out of range [-{limit}, {limit}]")
                continue
            q = _sequence(row[i_seq], name, line, "shape_pt_sequence", error)
            if q is None:
                continue
            d = _NAN
            if i_dist is not None and row[i_dist].strip():
                d = _distance(row[i_dist], name, line, error)
                if d is None:
                    continue
            k = number.setdefault(shape_id, len(number))
            state = run_state.setdefault(k, [-1, -1])
            if k != previous or q <= state[1]:
                state[0] += 1  # a new run of points (one per definition, if repeated)
            state[1] = q
            previous = k
            shape_no.append(k)
            run.append(state[0])
            seq.append(q)
            lat.append(y)
            lon.append(x)
            dist.append(d)
            lines.append(line)
        table.close()
        return {"ids": list(number), "shape": shape_no, "seq": seq, "lat": lat, "lon": lon,
                "dist": dist, "line": lines, "run": run}

    def _stop_times(self, trips: dict[str, Trip], stops: dict[str, Stop]) -> dict:
        table = self._open("stop_times.txt")
        col = table.col
        i_trip, i_stop, i_seq = col["trip_id"], col["stop_id"], col["stop_sequence"]
        i_arr, i_dep = col.get("arrival_time"), col.get("departure_time")
        i_dist, i_timepoint = col.get("shape_dist_traveled"), col.get("timepoint")
        trip_number = {trip_id: i for i, trip_id in enumerate(trips)}
        # a trip_id split by route (see _split_repeated_trips): its n-th run of rows
        # belongs to its n-th definition
        runs_of = {trip_id: [trip_number.get(name) for name in names]
                   for trip_id, names in self.split_trips.items()}
        for trip_id in runs_of:
            trip_number[trip_id] = -1
        run_state: dict[str, list[int]] = {}  # trip_id: [run number, last stop_sequence]
        previous_trip = None
        stop_number = {stop_id: i for i, stop_id in enumerate(stops)}
        trip_no, stop_no, seq, lines = array("i"), array("i"), array("i"), array("i")
        arrival, departure, dist = array("d"), array("d"), array("d")
        clock_of = {"": _NAN}  # most feeds repeat a few thousand distinct times
        error, name = self.problems.error, table.name

        def clock(text: str, line: int, field: str) -> float | None:
            value = clock_of.get(text)
            if value is None:
                try:
                    value = float(parse_time(text)) if text.strip() else _NAN
                except ValueError as problem:
                    error(name, line, field, str(problem))
                    return None
                if len(clock_of) < 200_000:
                    clock_of[text] = value
            return value

        for line, row in table.rows():
            text = row[i_trip]
            t = trip_number.get(text)
            if t is None:
                text = text.strip()
                t = trip_number.get(text)
                if t is None:
                    error(name, line, "trip_id", f"{text!r} is not a trip_id of trips.txt")
                    previous_trip = text
                    continue
            if t < 0:
                q = _sequence(row[i_seq], name, line, "stop_sequence", error)
                state = run_state.setdefault(text, [-1, -1])
                if q is not None and (text != previous_trip or q <= state[1]):
                    state[0] += 1
                previous_trip = text
                if q is None:
                    continue
                state[1] = q
                if state[0] >= len(runs_of[text]):
                    error(name, line, "trip_id",
                          f"{text!r} repeats in trips.txt under {len(runs_of[text])} routes "
                          f"but this is run {state[0] + 1} of its stop times")
                    continue
                t = runs_of[text][state[0]]
                if t is None:
                    error(name, line, "trip_id", f"{text!r}: run {state[0] + 1} of its stop "
                                                 "times belongs to a trip skipped for errors")
                    continue
            previous_trip = text
            text = row[i_stop]
            s = stop_number.get(text)
            if s is None:
                s = stop_number.get(text.strip())
                if s is None:
                    error(name, line, "stop_id", f"{text!r} is not a stop_id of stops.txt")
                    continue
            q = _sequence(row[i_seq], name, line, "stop_sequence", error)
            a = _NAN if i_arr is None else clock(row[i_arr], line, "arrival_time")
            d = _NAN if i_dep is None else clock(row[i_dep], line, "departure_time")
            if q is None or a is None or d is None:
                continue
            if i_timepoint is not None and (a != a or d != d) \
                    and row[i_timepoint].strip() == "1":
                error(name, line, "arrival_time" if a != a else "departure_time",
                      "required value is empty (timepoint is 1)")
                continue
            m = _NAN
            if i_dist is not None and row[i_dist].strip():
                m = _distance(row[i_dist], name, line, error)
                if m is None:
                    continue
            trip_no.append(t)
            stop_no.append(s)
            seq.append(q)
            arrival.append(a)
            departure.append(d)
            dist.append(m)
            lines.append(line)
        table.close()
        return {"trip": trip_no, "stop": stop_no, "seq": seq, "arr": arrival,
                "dep": departure, "dist": dist, "line": lines,
                "has_dist": i_dist is not None}

    # -- assembling
    def _sorted_stop_times(self, columns: dict, trips: dict[str, Trip],
                           stops: dict[str, Stop]) -> tuple[StopTimes, np.ndarray]:
        """Sort by trip then stop sequence (one run per trip); a stop sequence that
        repeats within a trip is an error."""
        trip_no = np.frombuffer(columns.pop("trip"), dtype=np.int32)
        seq = np.frombuffer(columns.pop("seq"), dtype=np.int32)
        order = np.lexsort((seq, trip_no))
        trip_no, seq = trip_no[order], seq[order]
        lines = np.frombuffer(columns.pop("line"), dtype=np.int32)[order]
        stop_index = np.frombuffer(columns.pop("stop"), dtype=np.int32)[order]
        arrival = np.frombuffer(columns.pop("arr"), dtype=np.float64)[order]
        departure = np.frombuffer(columns.pop("dep"), dtype=np.float64)[order]
        dist = np.frombuffer(columns.pop("dist"), dtype=np.float64)[order]
        columns["dist"] = dist
        del order
        trip_ids_all = list(trips)
        repeats = np.flatnonzero((trip_no[1:] == trip_no[:-1]) & (seq[1:] == seq[:-1]))
        for k in _reported(repeats, self.problems):
            first, again = sorted((int(lines[k]), int(lines[k + 1])))
            self.problems.error("stop_times.txt", again, "stop_sequence",
                                f"{int(seq[k])} repeats line {first} of trip "
                                f"{trip_ids_all[trip_no[k]]!r} (it must increase along "
                                "the trip)")
        if len(repeats) and self.problems.skip_invalid:
            keep = np.ones(len(seq), dtype=bool)
            keep[repeats + 1] = False  # the later of the two rows
            trip_no, seq, lines, stop_index = (trip_no[keep], seq[keep], lines[keep],
                                               stop_index[keep])
            arrival, departure, dist = arrival[keep], departure[keep], dist[keep]
            columns["dist"] = dist
        counts = np.bincount(trip_no, minlength=len(trips))
        present = np.flatnonzero(counts)
        trip_ids = [trip_ids_all[i] for i in present]
        trip_start = np.zeros(len(trip_ids) + 1, dtype=np.int64)
        np.cumsum(counts[present], out=trip_start[1:])
        stop_times = StopTimes(trip_ids=trip_ids, trip_start=trip_start, stop_ids=list(stops),
                               stop_index=stop_index, stop_sequence=seq, arrival_s=arrival,
                               departure_s=departure,
                               shape_dist_m=np.full(len(seq), np.nan))
        self.has_stop_distances = columns["has_dist"]
        return stop_times, lines

    def _shapes(self, points: dict | None, trips: dict[str, Trip], stop_times: StopTimes,
                stops: dict[str, Stop]
                ) -> tuple[dict[str, Shape], dict[str, np.ndarray], dict[str, Trip]]:
        """Shapes from shapes.txt with metres along them; ``shape_sdt`` keeps the feed's
        own ``shape_dist_traveled`` where it is usable (to convert stop distances).

        A shape_id whose points repeat in runs, one run per trip referring to it, each
        trip of its own route, is split like such trips (:meth:`_split_repeated_trips`):
        each run becomes the shape ``<route_id>:<shape_id>`` of the trip whose stops lie
        closest to it.
        """
        shapes: dict[str, Shape] = {}
        shape_sdt: dict[str, np.ndarray] = {}
        if points is None or not points["ids"]:
            return shapes, shape_sdt, trips
        ids = list(points["ids"])
        shape_no = np.frombuffer(points["shape"], dtype=np.int32).copy()
        seq = np.frombuffer(points["seq"], dtype=np.int32)
        order = np.lexsort((seq, shape_no))
        repeats = np.flatnonzero((shape_no[order][1:] == shape_no[order][:-1])
                                 & (seq[order][1:] == seq[order][:-1]))
        if len(repeats):
            run = np.frombuffer(points["run"], dtype=np.int32)
            trips = self._split_repeated_shapes(
                sorted(set(shape_no[order][repeats].tolist())), ids, shape_no, run, points,
                trips, _StopPositions(stop_times, stops))
            order = np.lexsort((seq, shape_no))
        shape_no, seq = shape_no[order], seq[order]
        lines = np.frombuffer(points["line"], dtype=np.int32)[order]
        lat = np.frombuffer(points["lat"], dtype=np.float64)[order]
        lon = np.frombuffer(points["lon"], dtype=np.float64)[order]
        sdt = np.frombuffer(points["dist"], dtype=np.float64)[order]
        repeats = np.flatnonzero((shape_no[1:] == shape_no[:-1]) & (seq[1:] == seq[:-1]))
        for k in _reported(repeats, self.problems):
            first, again = sorted((int(lines[k]), int(lines[k + 1])))
            self.problems.error("shapes.txt", again, "shape_pt_sequence",
                                f"{int(seq[k])} repeats line {first} of shape "
                                f"{ids[shape_no[k]]!r}")
        if len(repeats) and not self.problems.skip_invalid:
            return shapes, shape_sdt, trips
        if len(repeats):
            keep = np.ones(len(seq), dtype=bool)
            keep[repeats + 1] = False
            shape_no, lines, lat, lon, sdt = (shape_no[keep], lines[keep], lat[keep],
                                              lon[keep], sdt[keep])
        step = np.zeros(len(lat))
        if len(lat) > 1:
            step[1:] = _GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])[2]
        starts = np.flatnonzero(np.r_[True, shape_no[1:] != shape_no[:-1]])
        step[starts] = 0.0
        ends = np.r_[starts[1:], len(lat)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            shape_id = ids[shape_no[start]]
            dist_m = np.cumsum(step[start:end])
            shapes[shape_id] = Shape(shape_id, lon[start:end].copy(), lat[start:end].copy(),
                                     dist_m)
            own = sdt[start:end]
            if end - start < 2:
                self.problems.tally("shapes.txt", int(lines[start]), "shape_id",
                                    "shape has a single point", shape_id)
            if np.isnan(own).all():
                continue
            known = own[~np.isnan(own)]  # an empty value is no value, not an error
            if len(known) < 2 or (np.diff(known) < 0).any() or known[-1] <= known[0]:
                self.problems.tally("shapes.txt", int(lines[start]), "shape_dist_traveled",
                                    "does not increase along the shape; distances measured "
                                    "from the points instead", f"shape {shape_id}")
                continue
            shape_sdt[shape_id] = _fill_blanks(own.copy(), dist_m)
        return shapes, shape_sdt, trips

    def _split_repeated_shapes(self, repeated: list[int], ids: list[str],
                               shape_no: np.ndarray, run: np.ndarray, points: dict,
                               trips: dict[str, Trip],
                               positions: _StopPositions) -> dict[str, Trip]:
        """Give each run of a repeated shape its own number and id where the runs
        match the trips using it one to one (``shape_no`` is changed in place)."""
        trips = dict(trips)
        lat = np.frombuffer(points["lat"], dtype=np.float64)
        lon = np.frombuffer(points["lon"], dtype=np.float64)
        for number in repeated:
            shape_id = ids[number]
            users = self.shape_users.get(shape_id, [])
            rows = np.flatnonzero(shape_no == number)
            runs = int(run[rows].max()) + 1
            names = [f"{route_id}:{shape_id}" for _, route_id in users]
            if runs != len(users) or len(set(names)) != runs or set(names) & set(ids):
                continue  # not repairable: reported as repeated sequences
            paths = [rows[run[rows] == k] for k in range(runs)]
            cost = np.array([[positions.misfit(user, lat[path], lon[path]) for path in paths]
                             for user, _ in users])
            for u, k in _pairs(cost):
                shape_no[paths[k]] = len(ids)
                ids.append(names[u])
                user = users[u][0]
                if user in trips:
                    trips[user] = replace(trips[user], shape_id=names[u])
            self.problems.tally("shapes.txt", int(points["line"][rows[0]]), "shape_id",
                                "repeats, once per trip of a different route: read as one "
                                "shape per route named <route_id>:<shape_id>, each run "
                                "given to the trip whose stops lie along it", shape_id)
        return trips

    def _place_stops(self, stop_times: StopTimes, stop_sdt: np.ndarray,
                     trips: dict[str, Trip], stops: dict[str, Stop],
                     shapes: dict[str, Shape], shape_sdt: dict[str, np.ndarray],
                     lines: np.ndarray) -> dict[str, Trip]:
        """Fill ``shape_dist_m`` for every stop time, deriving the shapes trips lack.

        The feed's ``shape_dist_traveled`` is converted to metres through the shape's
        own points where both the stop and the shape have one; otherwise each stop is
        projected onto the shape, in order, so that distances never go back.
        """
        problems = self.problems
        stop_lat = np.array([s.lat for s in stops.values()])
        stop_lon = np.array([s.lon for s in stops.values()])
        starts = stop_times.trip_start
        usable_sdt = _increasing_runs(stop_sdt, starts)
        if not self.has_stop_distances and shapes:
            problems.warn("stop_times.txt", 1, "shape_dist_traveled",
                          "column absent: stops are placed on their shapes by projection")
        placed: dict[tuple[str, bytes], np.ndarray] = {}
        derived_for: dict[bytes, str] = {}
        updated = dict(trips)
        out = stop_times.shape_dist_m
        for number, trip_id in enumerate(stop_times.trip_ids):
            a, b = int(starts[number]), int(starts[number + 1])
            run = stop_times.stop_index[a:b]
            trip = trips[trip_id]
            shape_id = trip.shape_id
            if shape_id is not None and shape_id not in shapes:
                problems.tally("trips.txt", self.trip_line.get(trip_id), "shape_id",
                               "not a shape_id of shapes.txt; shape derived from the stops",
                               f"trip {trip_id}")
                shape_id = None
            def stops_shape(run=run) -> str:
                pattern = run.tobytes()
                derived_id = derived_for.get(pattern)
                if derived_id is None:
                    derived_id = _derived_shape_id(run, stop_times.stop_ids)
                    if derived_id not in shapes:
                        shapes[derived_id] = _shape_from_stops(derived_id, run, stop_lat,
                                                               stop_lon)
                    derived_for[pattern] = derived_id
                return derived_id

            if shape_id is None:
                shape_id = stops_shape()
                updated[trip_id] = replace(trip, shape_id=shape_id)
            shape = shapes[shape_id]
            if usable_sdt[number] and shape_id in shape_sdt:
                along = np.interp(stop_sdt[a:b], shape_sdt[shape_id], shape.dist_m)
                blank = np.isnan(stop_sdt[a:b])
                if blank.any():  # stops without a value: projected, kept in order
                    along[blank] = np.nan
                    along = _between_known(along, _project(shape, stop_lon[run],
                                                           stop_lat[run])[0])
                out[a:b] = along
                continue
            if self.has_stop_distances and not usable_sdt[number] \
                    and not np.isnan(stop_sdt[a:b]).all():
                problems.tally("stop_times.txt", int(lines[a]), "shape_dist_traveled",
                               "does not increase along the trip; stops placed on the shape "
                               "by projection instead", f"trip {trip_id}")
            key = (shape_id, run.tobytes())
            found = placed.get(key)
            if found is None:
                if shape.derived:
                    found = (_derived_stop_distances(shape, run, stop_lat), None)
                else:
                    along, off_m = _project(shape, stop_lon[run], stop_lat[run])
                    found = (along, None)
                    if off_m > FAR_FROM_SHAPE_M:
                        # a vehicle would be off this shape between its stops: follow
                        # the stops instead
                        problems.tally("trips.txt", self.trip_line.get(trip_id), "shape_id",
                                       f"stops lie more than {FAR_FROM_SHAPE_M:g} m from "
                                       "the trip's shape (a wrong or cut shape?); shape "
                                       "derived from the stops instead",
                                       f"trip {trip_id}: {off_m:.0f} m")
                        own = stops_shape()
                        found = (_derived_stop_distances(shapes[own], run, stop_lat), own)
                placed[key] = found
            along, own = found
            if own is not None:
                updated[trip_id] = replace(trip, shape_id=own)
            out[a:b] = along
        return updated

    def _complete_times(self, stop_times: StopTimes, lines: np.ndarray) -> None:
        """Fill a time missing on one side from the other, interpolate the times of
        stops between two timed ones (by metres along the shape, else evenly) and warn
        about what is left unknown or runs backwards."""
        problems = self.problems
        arrival, departure = stop_times.arrival_s, stop_times.departure_s
        only_departure = np.isnan(arrival) & ~np.isnan(departure)
        arrival[only_departure] = departure[only_departure]
        only_arrival = np.isnan(departure) & ~np.isnan(arrival)
        departure[only_arrival] = arrival[only_arrival]
        starts = stop_times.trip_start
        trip_of_row = np.repeat(np.arange(len(stop_times.trip_ids)), np.diff(starts))
        untimed = np.unique(trip_of_row[np.isnan(arrival)])
        for number in untimed.tolist():
            a, b = int(starts[number]), int(starts[number + 1])
            trip_id = stop_times.trip_ids[number]
            timed = np.flatnonzero(~np.isnan(arrival[a:b]))
            if len(timed) == 0:
                problems.tally("stop_times.txt", int(lines[a]), "arrival_time",
                               "trip has no times at all; left unknown", f"trip {trip_id}")
                continue
            if timed[0] != 0 or timed[-1] != b - a - 1:
                problems.tally("stop_times.txt", int(lines[a]), "arrival_time",
                               "first or last stop of the trip has no time; the stops "
                               "beyond the timed ones are left unknown", f"trip {trip_id}")
            if len(timed) < 2:
                continue
            gaps = np.arange(timed[0] + 1, timed[-1])
            gaps = gaps[np.isnan(arrival[a + gaps])]
            if not len(gaps):
                continue
            along = stop_times.shape_dist_m[a:b]
            x = along if np.isfinite(along).all() and (np.diff(along) >= 0).all() \
                else np.arange(b - a, dtype=float)
            after = np.searchsorted(timed, gaps)  # the timed stop after each gap
            before = timed[after - 1]
            after = timed[after]
            leave, reach = departure[a + before], arrival[a + after]
            span = x[after] - x[before]
            share = np.where(span > 0, (x[gaps] - x[before]) / np.where(span > 0, span, 1),
                             (gaps - before) / (after - before))
            arrival[a + gaps] = departure[a + gaps] = leave + share * (reach - leave)
            problems.tally("stop_times.txt", int(lines[a + gaps[0]]), "arrival_time",
                           "missing at stops between timed ones; interpolated by distance "
                           "along the shape", f"trip {trip_id}")
        same_trip = trip_of_row[1:] == trip_of_row[:-1]
        for k in np.flatnonzero(departure < arrival)[:3].tolist():
            problems.warn("stop_times.txt", int(lines[k]), "departure_time",
                          f"{format_time(departure[k])} is before arrival_time "
                          f"{format_time(arrival[k])}")
        backwards = np.flatnonzero(same_trip & (arrival[1:] < departure[:-1]))
        for k in backwards.tolist():
            problems.tally("stop_times.txt", int(lines[k + 1]), "arrival_time",
                           "earlier than the departure from the stop before",
                           f"line {int(lines[k + 1])}")

    def _drop_short_trips(self, trips: dict[str, Trip], stop_times: StopTimes,
                          frequencies: dict[str, list[Frequency]], lines: np.ndarray
                          ) -> tuple[dict[str, Trip], StopTimes, dict[str, list[Frequency]]]:
        """Leave out the trips with fewer than two stop times (no vehicle can run one),
        with their stop time and frequencies, so that the feed's counts are what it
        runs; each is a dropped row of trips.txt."""
        counts = np.diff(stop_times.trip_start)
        timed = dict(zip(stop_times.trip_ids, counts.tolist(), strict=True))
        short = [trip_id for trip_id in trips if timed.get(trip_id, 0) < 2]
        if not short:
            return trips, stop_times, frequencies
        why = "trip dropped: fewer than two stop times"
        for trip_id in short:
            line = self.trip_line.get(trip_id)
            self.problems.tally("trips.txt", line, "trip_id", why, trip_id)
            self.problems.dropped.append(GtfsProblem(
                "trips.txt", line, "trip_id",
                f"{trip_id!r} has fewer than two stop times ({timed.get(trip_id, 0)})",
                "dropped"))
        gone = set(short)
        kept = {trip_id: trip for trip_id, trip in trips.items() if trip_id not in gone}
        frequencies = {trip_id: f for trip_id, f in frequencies.items() if trip_id not in gone}
        keep_trip = np.array([trip_id not in gone for trip_id in stop_times.trip_ids],
                             dtype=bool)
        if keep_trip.all():
            return kept, stop_times, frequencies
        rows = np.repeat(keep_trip, counts)
        for k in np.flatnonzero(~rows).tolist():
            self.problems.dropped.append(GtfsProblem(
                "stop_times.txt", int(lines[k]), "trip_id",
                "the trip has fewer than two stop times", "dropped"))
        trip_ids = [t for t, ok in zip(stop_times.trip_ids, keep_trip.tolist(), strict=True)
                    if ok]
        trip_start = np.zeros(len(trip_ids) + 1, dtype=np.int64)
        np.cumsum(counts[keep_trip], out=trip_start[1:])
        stop_times = StopTimes(trip_ids=trip_ids, trip_start=trip_start,
                               stop_ids=stop_times.stop_ids,
                               stop_index=stop_times.stop_index[rows],
                               stop_sequence=stop_times.stop_sequence[rows],
                               arrival_s=stop_times.arrival_s[rows],
                               departure_s=stop_times.departure_s[rows],
                               shape_dist_m=stop_times.shape_dist_m[rows])
        return kept, stop_times, frequencies


_UNPLACED = 1e12  # misfit of a trip whose stops are unknown


class _StopPositions:
    """Where a trip's stops are, to tell which of several shapes fits it."""

    def __init__(self, stop_times: StopTimes, stops: dict[str, Stop]):
        self.stop_times = stop_times
        self.lat = np.array([s.lat for s in stops.values()])
        self.lon = np.array([s.lon for s in stops.values()])
        self.number = {trip_id: i for i, trip_id in enumerate(stop_times.trip_ids)}

    def misfit(self, trip_id: str, lat: np.ndarray, lon: np.ndarray) -> float:
        """Mean distance (m, locally flat) from the trip's stops to the nearest of the
        points, plus the distances between the ends; a trip without stops fits
        nothing (:data:`_UNPLACED`) and takes what the others leave."""
        number = self.number.get(trip_id)
        if number is None or not len(lat):
            return _UNPLACED
        run = self.stop_times.stop_index[self.stop_times.trip_start[number]:
                                         self.stop_times.trip_start[number + 1]]
        y, x = self.lat[run], self.lon[run]
        if len(y) > 24:  # a sample of the stops is enough to tell routes apart
            y, x = y[np.linspace(0, len(y) - 1, 24).astype(int)], \
                x[np.linspace(0, len(x) - 1, 24).astype(int)]
        scale = math.cos(math.radians(float(np.nanmean(lat))))
        dy = (y[:, None] - lat[None, :]) * 110_574.0
        dx = (x[:, None] - lon[None, :]) * 111_320.0 * scale
        near = np.sqrt(dx * dx + dy * dy)
        score = np.nanmean(near.min(axis=1)) + near[0, 0] + near[-1, -1]
        return float(score) if np.isfinite(score) else _UNPLACED


def _pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    """A one-to-one assignment of rows to columns, cheapest pairs first (greedy)."""
    cost = cost.astype(float).copy()
    pairs = []
    for _ in range(min(cost.shape)):
        row, column = np.unravel_index(int(np.argmin(cost)), cost.shape)
        pairs.append((int(row), int(column)))
        cost[row, :] = np.inf
        cost[:, column] = np.inf
    return pairs


# ------------------------------------------------------------- value helpers
def _reported(rows: np.ndarray, problems: _Problems) -> list[int]:
    """The rows to report one by one: all when they are skipped (tallied), else the
    first :data:`MAX_ERRORS`, the others only counted."""
    if problems.skip_invalid:
        return rows.tolist()
    problems.error_count += max(0, len(rows) - MAX_ERRORS)
    return rows[:MAX_ERRORS].tolist()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sequence(text: str, file: str, line: int, field: str, error) -> int | None:
    try:
        number = int(text)
    except ValueError:
        error(file, line, field, f"{text.strip()!r} is not a non-negative integer")
        return None
    if not 0 <= number <= _INT32_MAX:
        error(file, line, field, f"{number} is not a non-negative integer below 2**31")
        return None
    return number


def _distance(text: str, file: str, line: int, error) -> float | None:
    try:
        value = float(text)
    except ValueError:
        error(file, line, "shape_dist_traveled", f"{text.strip()!r} is not a number")
        return None
    if not value >= 0.0:
        error(file, line, "shape_dist_traveled", f"{value} is negative")
        return None
    return value


def _increasing_runs(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per trip: True when its known values (an empty one is no value: NaN) never
    decrease and do increase, at least two of them."""
    trips = len(starts) - 1
    out = np.zeros(max(trips, 0), dtype=bool)
    for number in range(trips):
        known = values[starts[number]:starts[number + 1]]
        known = known[~np.isnan(known)]
        out[number] = len(known) >= 2 and bool((np.diff(known) >= 0).all()) \
            and known[-1] > known[0]
    return out


def _fill_blanks(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``values`` with the NaN among them filled linearly in ``x`` (between the known
    ones, and at the ends at the pace of the known part); at least two known."""
    known = ~np.isnan(values)
    if known.all():
        return values
    xs, ys = x[known], values[known]
    out = np.interp(x, xs, ys)
    slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0]) if xs[-1] > xs[0] else 0.0
    out = np.where(x < xs[0], ys[0] + (x - xs[0]) * slope, out)
    out = np.where(x > xs[-1], ys[-1] + (x - xs[-1]) * slope, out)
    return np.where(known, values, out)


def _between_known(known: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """``known`` (NaN where unknown) with each unknown taken from ``guess``, held
    between the known values before and after it (so the run never goes back)."""
    unknown = np.isnan(known)
    if not unknown.any():
        return known
    low = np.maximum.accumulate(np.where(unknown, -np.inf, known))
    high = np.minimum.accumulate(np.where(unknown, np.inf, known)[::-1])[::-1]
    return np.where(unknown, np.clip(guess, low, high), known)


# ---------------------------------------------------------------------- shapes
def _derived_shape_id(run: np.ndarray, stop_ids: list[str]) -> str:
    """The id of the shape through a stop pattern: a hash of its stop ids."""
    digest = hashlib.sha1("\x1f".join(stop_ids[i] for i in run.tolist()).encode("utf-8"))
    return f"derived:{digest.hexdigest()[:12]}"


def _shape_from_stops(shape_id: str, run: np.ndarray, lat: np.ndarray,
                      lon: np.ndarray) -> Shape:
    """A shape through the stops of a pattern (those that have a position)."""
    y, x = lat[run], lon[run]
    keep = np.isfinite(y) & np.isfinite(x)
    y, x = y[keep], x[keep]
    dist = np.zeros(len(y))
    if len(y) > 1:
        dist[1:] = np.cumsum(_GEOD.inv(x[:-1], y[:-1], x[1:], y[1:])[2])
    return Shape(shape_id, x.copy(), y.copy(), dist, derived=True)


def _derived_stop_distances(shape: Shape, run: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The stops of a derived shape are its vertices (stops with no position: NaN)."""
    along = np.full(len(run), np.nan)
    keep = np.isfinite(lat[run])
    along[keep] = shape.dist_m
    return along


@lru_cache(maxsize=64)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


#: Candidate positions kept per stop (the closest local minima of the distance).
_CANDIDATES = 8
#: Cost of placing a stop behind the one before: large, so that it is a last resort.
_BACKWARDS_M = 1e9


def project_onto_shape(shape: Shape, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Metres along ``shape`` of a trip's stops, never decreasing.

    Each stop may be near the shape at several places (a loop, a road driven both
    ways); the closest local minima of its distance to the shape are candidates and a
    dynamic programme picks, for the whole trip, the candidates with the least total
    offset whose positions do not go back.

    Parameters
    ----------
    shape : Shape
        The path, with ``dist_m`` (geodesic metres) at each point.
    lon, lat : ndarray
        The stops in trip order (NaN for a stop with no position).

    Returns
    -------
    ndarray
        Metres along the shape, non-decreasing (NaN where the stop has no position).
    """
    return _project(shape, lon, lat)[0]


def _project(shape: Shape, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`project_onto_shape` and the largest distance of a stop from the shape."""
    along = np.full(len(lon), np.nan)
    known = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat))
    if len(shape.dist_m) < 2 or not len(known):
        along[known] = 0.0
        return along, 0.0
    to_xy = _to_utm(utm_epsg(float(shape.lon.mean()), float(shape.lat.mean())))
    sx, sy = to_xy.transform(shape.lon, shape.lat)
    px, py = to_xy.transform(lon[known], lat[known])
    sx, sy, px, py = (np.asarray(v, dtype=float) for v in (sx, sy, px, py))
    dx, dy = np.diff(sx), np.diff(sy)
    length2 = dx * dx + dy * dy
    safe = np.where(length2 > 0, length2, 1.0)
    segment_m = np.diff(shape.dist_m)
    candidates: list[tuple[np.ndarray, np.ndarray]] = []
    rows = max(1, 400_000 // len(dx))  # bound the (stops x segments) work arrays
    for first in range(0, len(known), rows):
        ex = px[first:first + rows, None] - sx[:-1]
        ey = py[first:first + rows, None] - sy[:-1]
        t = np.clip((ex * dx + ey * dy) / safe, 0.0, 1.0)
        offset = np.hypot(ex - t * dx, ey - t * dy)
        positions = shape.dist_m[:-1] + t * segment_m
        padded = np.pad(offset, ((0, 0), (1, 1)), constant_values=np.inf)
        minima = (offset <= padded[:, :-2]) & (offset <= padded[:, 2:])
        for row in range(offset.shape[0]):
            where = np.flatnonzero(minima[row])
            if len(where) > _CANDIDATES:
                where = where[np.argpartition(offset[row, where], _CANDIDATES)[:_CANDIDATES]]
            candidates.append((positions[row, where], offset[row, where]))
    # dynamic programme over the candidates, stop by stop
    cost = candidates[0][1]
    back: list[np.ndarray] = []
    for (previous, _), (position, offset) in zip(candidates, candidates[1:], strict=False):
        backwards = previous[None, :] > position[:, None] + 1e-6
        total = cost[None, :] + _BACKWARDS_M * backwards
        best = np.argmin(total, axis=1)
        back.append(best)
        cost = offset + total[np.arange(len(position)), best]
    choice = int(np.argmin(cost))
    picked = [choice]
    for best in reversed(back):
        choice = int(best[choice])
        picked.append(choice)
    picked.reverse()
    result = np.array([candidates[i][0][c] for i, c in enumerate(picked)])
    along[known] = np.maximum.accumulate(result)
    return along, float(max(candidates[i][1][c] for i, c in enumerate(picked)))
