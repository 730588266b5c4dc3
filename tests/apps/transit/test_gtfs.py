"""GTFS import: real feeds, crafted bad feeds with their exact messages, derived
shapes, times past midnight, the ``cityos transit import`` command and memory use."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cityos.apps.transit.cli import app as transit_app
from cityos.apps.transit.entities import entity_id, feed_entities, import_feed
from cityos.apps.transit.gtfs import (
    GtfsError,
    format_time,
    parse_time,
    project_onto_shape,
    read_feed,
    read_feed_report,
)
from cityos.apps.transit.models import Shape

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "gtfs"
SAMPLE = DATA / "google-sample-feed-1.zip"
KUALA_LUMPUR = DATA / "kuala-lumpur-2014.zip"
JAKARTA = DATA / "transjakarta-2021.zip"


def _real(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real GTFS sample absent: {path}")
    return path


def _rows(path: Path, name: str) -> list[dict]:
    """The rows of one file of a zipped feed, read here with the csv module alone."""
    with zipfile.ZipFile(path) as archive:
        if name not in archive.namelist():
            return []
        with archive.open(name) as raw:
            return list(csv.DictReader(io.TextIOWrapper(raw, "utf-8-sig", newline="")))


def _haversine_m(lat1, lon1, lat2, lon2, radius=6_371_008.8) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


def _stop_offsets_m(feed, trip_id: str) -> np.ndarray:
    """How far each stop is from the point of its shape at its shape_dist_m."""
    schedule, shape = feed.schedule(trip_id), feed.shape_of(trip_id)
    lon = np.interp(schedule.shape_dist_m, shape.dist_m, shape.lon)
    lat = np.interp(schedule.shape_dist_m, shape.dist_m, shape.lat)
    stops = [feed.stops[s] for s in schedule.stop_ids]
    return np.array([_haversine_m(y, x, s.lat, s.lon)
                     for y, x, s in zip(lat, lon, stops, strict=True)])


# ================================================================== real feeds
@pytest.mark.parametrize("path", [SAMPLE, KUALA_LUMPUR], ids=["google-sample", "kuala-lumpur"])
def test_a_real_feed_imports_every_row(path):
    feed = read_feed(_real(path))
    assert len(feed.agencies) == len(_rows(path, "agency.txt"))
    assert len(feed.stops) == len(_rows(path, "stops.txt"))
    assert len(feed.routes) == len(_rows(path, "routes.txt"))
    # a trip with fewer than two stop times cannot run: it is left out (and counted)
    per_trip = Counter(row["trip_id"] for row in _rows(path, "stop_times.txt"))
    runnable = {row["trip_id"] for row in _rows(path, "trips.txt")
                if per_trip[row["trip_id"]] >= 2}
    assert set(feed.trips) == runnable
    assert len(feed.stop_times) == sum(per_trip[t] for t in runnable)
    points = _rows(path, "shapes.txt")
    given = [s for s in feed.shapes.values() if not s.derived]
    assert len(given) == len({p["shape_id"] for p in points})
    assert sum(len(s.lon) for s in given) == len(points)
    assert sum(map(len, feed.frequencies.values())) == len(
        [row for row in _rows(path, "frequencies.txt") if row["trip_id"] in runnable])
    # every trip with stop times that names no shape got one derived from its stops
    timed = set(feed.stop_times.trip_ids)
    for row in _rows(path, "trips.txt"):
        if not row.get("shape_id") and row["trip_id"] in timed:
            assert feed.shapes[feed.trips[row["trip_id"]].shape_id].derived
    # stop times: one sorted run per trip, distances along the shape never decrease
    for trip_id in feed.stop_times.trip_ids:
        schedule = feed.schedule(trip_id)
        assert np.all(np.diff(schedule.stop_sequence) > 0)
        assert np.all(np.diff(schedule.shape_dist_m) >= 0)


def test_the_google_sample_reads_its_times_and_calendar():
    feed = read_feed(_real(SAMPLE))
    schedule = feed.schedule("STBA")
    assert schedule.stop_ids == ["STAGECOACH", "BEATTY_AIRPORT"]
    assert schedule.arrival_s[0] == 6 * 3600  # "6:00:00"
    from datetime import date
    assert "FULLW" in feed.services_on(date(2007, 6, 5))
    assert "FULLW" not in feed.services_on(date(2007, 6, 4))  # calendar_dates removes it
    assert feed.frequencies["STBA"][0].headway_s == 1800


def test_kuala_lumpur_frequencies_including_periods_that_end_at_midnight(tmp_path):
    path = _real(KUALA_LUMPUR)
    feed, warnings = read_feed_report(path)
    rows = _rows(path, "frequencies.txt")
    first = rows[0]
    period = feed.frequencies[first["trip_id"]][0]
    assert (period.start_s, period.end_s, period.headway_s) == (
        parse_time(first["start_time"]), parse_time(first["end_time"]),
        int(first["headway_secs"]))
    midnight = [(n, r) for n, r in enumerate(rows, start=2) if r["end_time"] == "00:00:00"]
    assert midnight
    line = midnight[0][0]
    # the trips of these periods have no stop times in this feed (they are left out):
    # the same period on a trip that runs ends at 24:00:00
    crafted = read_feed(write_feed(tmp_path / "midnight", frequencies_txt=(
        "trip_id,start_time,end_time,headway_secs\nT1,23:00:00,00:00:00,1800\n")))
    assert [f.end_s for f in crafted.frequencies["T1"]] == [24 * 3600]
    [note] = [w for w in warnings if w.file == "frequencies.txt"]
    assert note.line == line and note.field == "end_time" and f"{len(midnight)} in all" in \
        note.message
    # the KL feed writes its calendar dates as YYYY-MM-DD: read, with a warning
    assert feed.calendars["MONFRI"].start.year == 2010
    assert any(w.file == "calendar.txt" and "YYYYMMDD" in w.message for w in warnings)
    assert any(w.file == "imported_stops.txt" and "not a GTFS file" in w.message
               for w in warnings)


def test_transjakarta_trips_of_unknown_routes_stop_a_strict_import():
    path = _real(JAKARTA)
    routes = {r["route_id"] for r in _rows(path, "routes.txt")}
    expected = [f"trips.txt:{line}: route_id: {r['route_id']!r} is not a route_id of "
                "routes.txt" for line, r in enumerate(_rows(path, "trips.txt"), start=2)
                if r["route_id"] not in routes]
    with pytest.raises(GtfsError) as caught:
        read_feed(path)
    assert [str(p) for p in caught.value.problems] == expected
    assert caught.value.total == len(expected) > 0


def test_transjakarta_imports_with_skip_invalid_and_its_big_shapes_fit_the_stops():
    path = _real(JAKARTA)
    routes = {r["route_id"] for r in _rows(path, "routes.txt")}
    trips = _rows(path, "trips.txt")
    good = [t for t in trips if t["route_id"] in routes]
    feed, warnings = read_feed_report(path, skip_invalid=True)
    assert len(feed.trips) == len(good)
    assert len(feed.stops) == len(_rows(path, "stops.txt"))
    # its trip and shape ids are unique only within a route: one trip per definition,
    # and one shape per run of points (a run restarts the sequence)
    points = _rows(path, "shapes.txt")
    runs, previous = 0, None
    for p in points:
        key = (p["shape_id"], int(p["shape_pt_sequence"]))
        runs += previous is None or key[0] != previous[0] or key[1] <= previous[1]
        previous = key
    given = [s for s in feed.shapes.values() if not s.derived]
    assert len(given) == runs
    assert sum(len(s.lon) for s in given) == len(points) > 80_000
    assert "1E:a-b" in feed.trips and feed.trips["1E:a-b"].shape_id == "1E:shp_a-b"
    # each stop projects onto its trip's shape within a few tens of metres
    worst = max(_stop_offsets_m(feed, t).max() for t in feed.stop_times.trip_ids)
    assert worst < 60
    assert any("rows skipped for errors" in w.message and w.field == "route_id"
               for w in warnings)


# ============================================================= crafted feeds
CALENDAR_HEADER = ("service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
                   "start_date,end_date\n")
BASE = {
    "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\n"
                  "BSB,Bas Bandar,http://bus.example,Asia/Brunei\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
                 "S1,Terminal,4.8900,114.9400\n"
                 "S2,Kianggeh,4.8990,114.9400\n"
                 "S3,Gadong,4.9080,114.9500\n",
    "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_type\n"
                  "R1,BSB,1,Central Line,3\n",
    "trips.txt": "route_id,service_id,trip_id\nR1,WK,T1\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                      "T1,08:00:00,08:00:00,S1,1\n"
                      "T1,08:06:00,08:06:30,S2,2\n"
                      "T1,08:12:00,08:12:00,S3,3\n",
    "calendar.txt": CALENDAR_HEADER + "WK,1,1,1,1,1,0,0,20240101,20241231\n",
}


def write_feed(folder: Path, **changes: str | None) -> Path:
    """A tiny feed in ``folder``: BASE with files replaced (``stops_txt="..."``) or
    removed (``None``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(BASE)
    for key, text in changes.items():
        name = key.removesuffix("_txt") + ".txt"
        if text is None:
            files.pop(name, None)
        else:
            files[name] = text
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8", newline="")
    return folder


def problems_of(folder: Path, **kwargs) -> list[str]:
    with pytest.raises(GtfsError) as caught:
        read_feed(folder, **kwargs)
    return [str(p) for p in caught.value.problems]


def test_the_crafted_feed_reads(tmp_path):
    feed = read_feed(write_feed(tmp_path / "ok"))
    schedule = feed.schedule("T1")
    assert schedule.stop_ids == ["S1", "S2", "S3"]
    assert list(schedule.departure_s) == [8 * 3600, 8 * 3600 + 390, 8 * 3600 + 720]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"stop_times_txt": BASE["stop_times.txt"].replace("08:06:00", "25:61:00")},
     "stop_times.txt:3: arrival_time: '25:61:00' is not a time: minutes and seconds "
     "must be 00..59"),
    ({"stop_times_txt": BASE["stop_times.txt"].replace("08:06:30", "8h06")},
     "stop_times.txt:3: departure_time: '8h06' is not a time (HH:MM:SS)"),
    ({"stop_times_txt": BASE["stop_times.txt"].replace("S3,3", "S9,3")},
     "stop_times.txt:4: stop_id: 'S9' is not a stop_id of stops.txt"),
    ({"stop_times_txt": BASE["stop_times.txt"] + "T7,08:20:00,08:20:00,S1,4\n"},
     "stop_times.txt:5: trip_id: 'T7' is not a trip_id of trips.txt"),
    ({"trips_txt": "route_id,service_id,trip_id\nR2,WK,T1\n"},
     "trips.txt:2: route_id: 'R2' is not a route_id of routes.txt"),
    ({"trips_txt": "route_id,service_id,trip_id\nR1,SAT,T1\n"},
     "trips.txt:2: service_id: 'SAT' is not a service_id of calendar.txt or "
     "calendar_dates.txt"),
    ({"stops_txt": BASE["stops.txt"].replace("4.8990", "91.5")},
     "stops.txt:3: stop_lat: 91.5 is out of range [-90, 90]"),
    ({"stops_txt": BASE["stops.txt"].replace("114.9500", "-190")},
     "stops.txt:4: stop_lon: -190.0 is out of range [-180, 180]"),
    ({"stops_txt": BASE["stops.txt"] + "S2,Again,4.9,114.9\n"},
     "stops.txt:5: stop_id: 'S2' repeats line 3"),
    ({"trips_txt": "route_id,service_id,trip_id\nR1,WK,T1\nR1,WK,T1\n"},
     "trips.txt:3: trip_id: 'T1' repeats line 2"),
    ({"stop_times_txt": BASE["stop_times.txt"].replace("S3,3", "S3,2")},
     "stop_times.txt:4: stop_sequence: 2 repeats line 3 of trip 'T1' (it must increase "
     "along the trip)"),
    ({"stop_times_txt": BASE["stop_times.txt"].replace("S3,3", "S3,third")},
     "stop_times.txt:4: stop_sequence: 'third' is not a non-negative integer"),
    ({"routes_txt": None}, "routes.txt: required file is missing"),
    ({"calendar_txt": None}, "calendar.txt: required file is missing (or "
                             "calendar_dates.txt)"),
    ({"stops_txt": "stop_id,stop_name,stop_lon\nS1,Terminal,114.94\n"},
     "stops.txt:1: stop_lat: required column is missing"),
    ({"agency_txt": BASE["agency.txt"].replace("Asia/Brunei", "Mars/Olympus")},
     "agency.txt:2: agency_timezone: 'Mars/Olympus' is not an IANA time zone"),
    ({"routes_txt": BASE["routes.txt"].replace(",3\n", ",bus\n")},
     "routes.txt:2: route_type: 'bus' is not an integer"),
    ({"calendar_txt": CALENDAR_HEADER + "WK,1,1,1,1,1,0,0,20241231,20240101\n"},
     "calendar.txt:2: end_date: 20240101 is before start_date 20241231"),
    ({"frequencies_txt": "trip_id,start_time,end_time,headway_secs\nT1,06:00:00,07:00:00,0\n"},
     "frequencies.txt:2: headway_secs: 0 must be a positive number of seconds"),
    ({"shapes_txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"
                    "SH,4.89,114.94,1\nSH,4.91,114.95,1\n"},
     "shapes.txt:3: shape_pt_sequence: 1 repeats line 2 of shape 'SH'"),
])
def test_a_bad_feed_names_file_line_and_field(tmp_path, changes, expected):
    assert problems_of(write_feed(tmp_path / "bad", **changes)) == [expected]


def test_every_error_is_listed_up_to_a_hundred_then_counted(tmp_path):
    rows = "".join(f"T1,08:{k % 60:02d}:00,08:{k % 60:02d}:00,NOPE{k},{k + 10}\n"
                   for k in range(150))
    folder = write_feed(tmp_path / "many", stop_times_txt=BASE["stop_times.txt"] + rows)
    with pytest.raises(GtfsError) as caught:
        read_feed(folder)
    error = caught.value
    assert error.total == 150 and len(error.problems) == 100
    assert str(error.problems[0]) == "stop_times.txt:5: stop_id: 'NOPE0' is not a stop_id " \
                                     "of stops.txt"
    assert str(error).startswith("150 errors in the GTFS feed:\n")
    assert str(error).endswith("... and 50 more")


def test_skip_invalid_drops_the_bad_rows_and_warns(tmp_path):
    stop_times = BASE["stop_times.txt"] + "T1,08:20:00,08:20:00,S9,4\n"
    feed, warnings = read_feed_report(write_feed(tmp_path / "f", stop_times_txt=stop_times),
                                      skip_invalid=True)
    assert feed.schedule("T1").stop_ids == ["S1", "S2", "S3"]
    assert [str(w) for w in warnings] == [
        "stop_times.txt:5: stop_id: rows skipped for errors (line 5: 'S9' is not a stop_id "
        "of stops.txt)"]


def test_bom_crlf_quotes_missing_optional_columns_and_gtfs_jp_files(tmp_path):
    folder = tmp_path / "jp"
    write_feed(folder)
    (folder / "stops.txt").write_bytes(
        "\ufeffstop_id,stop_name,stop_lat,stop_lon,platform_code,jp_parent_name\r\n"
        '"S1","Terminal, Bay ""A""",4.8900,114.9400,1,\r\n'
        'S2,"Kianggeh\r\nSouth",4.8990,114.9400,,\r\n'
        "S3,Gadong,4.9080,114.9500,,\r\n".encode())
    (folder / "agency_jp.txt").write_text("agency_id,agency_official_name\nBSB,Bas\n")
    (folder / "office_jp.txt").write_text("office_id,office_name\nO1,Depot\n")
    (folder / "notes.txt").write_text("hello\n")
    feed, warnings = read_feed_report(folder)
    assert feed.stops["S1"].name == 'Terminal, Bay "A"'
    assert feed.stops["S2"].name == "Kianggeh\r\nSouth"
    assert feed.stops["S3"].lat == pytest.approx(4.908)
    assert [str(w) for w in warnings] == ["notes.txt: not a GTFS file; ignored"]
    # and the same feed zipped, inside a folder of the archive
    archive = tmp_path / "jp.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in folder.iterdir():
            z.write(file, f"feed/{file.name}")
    assert read_feed(archive).stops["S1"].name == 'Terminal, Bay "A"'


def test_a_bad_value_in_a_multiline_record_is_reported_at_its_first_line(tmp_path):
    folder = write_feed(tmp_path / "m", stops_txt=(
        'stop_id,stop_name,stop_lat,stop_lon\nS1,"Two\nlines",4.89,114.94\n'
        "S2,Kianggeh,north,114.94\nS3,Gadong,4.908,114.95\n"))
    assert problems_of(folder) == ["stops.txt:4: stop_lat: 'north' is not a number"]


# ============================================================ derived shapes
def test_a_feed_without_shapes_gets_shapes_derived_from_its_stops(tmp_path):
    stop_times = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                  "T1,08:00:00,08:00:00,S1,1\nT1,08:06:00,08:06:30,S2,2\n"
                  "T1,08:12:00,08:12:00,S3,3\n"
                  "T2,09:00:00,09:00:00,S1,1\nT2,09:06:00,09:06:30,S2,2\n"
                  "T2,09:12:00,09:12:00,S3,3\n")
    folder = write_feed(tmp_path / "noshape", stop_times_txt=stop_times,
                        trips_txt="route_id,service_id,trip_id\nR1,WK,T1\nR1,WK,T2\n")
    feed = read_feed(folder)
    shape = feed.shape_of("T1")
    assert shape.derived and shape.shape_id.startswith("derived:")
    assert feed.shape_of("T2") is shape  # one shape per stop pattern
    # by hand: S1 -> S2 due north 0.009 degrees, S2 -> S3 north-east
    leg1 = _haversine_m(4.8900, 114.9400, 4.8990, 114.9400)
    leg2 = _haversine_m(4.8990, 114.9400, 4.9080, 114.9500)
    along = feed.schedule("T1").shape_dist_m
    assert along[0] == 0
    assert along[1] == pytest.approx(leg1, rel=0.01)
    assert along[2] == pytest.approx(leg1 + leg2, rel=0.01)
    assert shape.length_m == pytest.approx(leg1 + leg2, rel=0.01)
    assert np.all(np.diff(along) > 0)


def test_missing_times_are_interpolated_by_distance_with_a_warning(tmp_path):
    stop_times = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence,timepoint\n"
                  "T1,08:00:00,08:00:00,S1,1,1\nT1,,,S2,2,0\nT1,08:12:00,08:12:00,S3,3,1\n")
    feed, warnings = read_feed_report(write_feed(tmp_path / "i", stop_times_txt=stop_times))
    along = feed.schedule("T1").shape_dist_m
    expected = 8 * 3600 + 720 * along[1] / along[2]
    assert feed.schedule("T1").arrival_s[1] == pytest.approx(expected)
    assert feed.schedule("T1").departure_s[1] == pytest.approx(expected)
    assert [str(w) for w in warnings] == [
        "stop_times.txt:3: arrival_time: missing at stops between timed ones; interpolated "
        "by distance along the shape (trip T1)"]


def test_a_missing_time_at_a_timepoint_is_an_error(tmp_path):
    stop_times = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence,timepoint\n"
                  "T1,08:00:00,08:00:00,S1,1,1\nT1,,,S2,2,1\nT1,08:12:00,08:12:00,S3,3,1\n")
    assert problems_of(write_feed(tmp_path / "t", stop_times_txt=stop_times)) == [
        "stop_times.txt:3: arrival_time: required value is empty (timepoint is 1)"]


def test_stop_distances_convert_the_feeds_own_unit_to_metres(tmp_path):
    # the feed measures shape_dist_traveled in kilometres
    leg1 = _haversine_m(4.8900, 114.9400, 4.8990, 114.9400) / 1000
    leg2 = _haversine_m(4.8990, 114.9400, 4.9080, 114.9500) / 1000
    shapes = ("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence,shape_dist_traveled\n"
              f"SH,4.8900,114.9400,1,0\nSH,4.8990,114.9400,2,{leg1:.4f}\n"
              f"SH,4.9080,114.9500,3,{leg1 + leg2:.4f}\n")
    stop_times = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence,"
                  "shape_dist_traveled\n"
                  "T1,08:00:00,08:00:00,S1,1,0\n"
                  f"T1,08:06:00,08:06:30,S2,2,{leg1:.4f}\n"
                  f"T1,08:12:00,08:12:00,S3,3,{leg1 + leg2:.4f}\n")
    feed = read_feed(write_feed(tmp_path / "km", shapes_txt=shapes, stop_times_txt=stop_times,
                                trips_txt="route_id,service_id,trip_id,shape_id\nR1,WK,T1,SH\n"))
    along = feed.schedule("T1").shape_dist_m
    assert along[1] == pytest.approx(leg1 * 1000, rel=0.01)
    assert along[2] == pytest.approx((leg1 + leg2) * 1000, rel=0.01)
    assert not feed.shape_of("T1").derived


def test_projection_onto_a_route_that_doubles_back_keeps_stops_in_order():
    # out along the equator 0 -> 0.02 degrees east and back, a little north
    lon = np.array([0.0, 0.01, 0.02, 0.01, 0.0])
    lat = np.array([0.0, 0.0, 0.0, 0.0001, 0.0001])
    steps = [_haversine_m(lat[i], lon[i], lat[i + 1], lon[i + 1]) for i in range(4)]
    shape = Shape("loop", lon, lat, np.r_[0.0, np.cumsum(steps)])
    # stops: start, far end, then back near the start (closest to the outbound leg)
    along = project_onto_shape(shape, np.array([0.0, 0.02, 0.001]),
                               np.array([0.00002, 0.0, 0.00003]))
    assert along[0] == pytest.approx(0.0, abs=5)
    assert along[1] == pytest.approx(sum(steps[:2]), abs=5)
    assert along[2] == pytest.approx(sum(steps) - steps[3] * 0.1, abs=10)


# ========================================================= times over a day
def test_times_past_midnight(tmp_path):
    stop_times = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                  "T1,23:50:00,23:50:00,S1,1\nT1,24:05:00,24:05:30,S2,2\n"
                  "T1,25:30:00,25:30:00,S3,3\n")
    frequencies = "trip_id,start_time,end_time,headway_secs\nT1,23:00:00,26:00:00,1200\n"
    feed = read_feed(write_feed(tmp_path / "late", stop_times_txt=stop_times,
                                frequencies_txt=frequencies))
    schedule = feed.schedule("T1")
    assert list(schedule.arrival_s) == [85800, 86700, 91800]
    assert schedule.departure_s[1] == 86730
    assert feed.frequencies["T1"][0].end_s == 26 * 3600
    assert parse_time("101:00:00") == 363600 and format_time(91800) == "25:30:00"


# ======================================================== entities and the CLI
def test_import_writes_agencies_stops_and_routes(store):
    path = _real(SAMPLE)
    report = import_feed(store, "city", path)
    assert report.entities_written == 1 + 9 + 5
    assert report.counts["stops"] == 9 and report.counts["derived_shapes"] == 9
    stop = store.get_entity("city", entity_id("GtfsStop", "FUR_CREEK_RES"))
    assert stop["type"] == "GtfsStop"
    assert stop["name"]["value"] == "Furnace Creek Resort (Demo)"
    assert stop["location"]["value"] == {"type": "Point",
                                         "coordinates": [-117.133162, 36.425288]}
    route = store.get_entity("city", entity_id("GtfsRoute", "AB"))
    assert route["shortName"]["value"] == "10"
    assert route["routeType"]["value"] == "3"
    assert route["operatedBy"]["object"] == "urn:ngsi-ld:GtfsAgency:DTA"
    assert route["location"]["value"]["type"] == "MultiLineString"
    assert store.get_document("city", "transit-feed", "current")["counts"]["trips"] == 11


def test_ids_with_spaces_become_valid_uris(tmp_path):
    folder = write_feed(tmp_path / "sp", stops_txt=BASE["stops.txt"].replace("S1", "Blok M"),
                        stop_times_txt=BASE["stop_times.txt"].replace("S1", "Blok M"))
    ids = {e["id"] for e in feed_entities(read_feed(folder))}
    assert "urn:ngsi-ld:GtfsStop:Blok%20M" in ids


def _cli(*args: str):
    return CliRunner().invoke(transit_app, list(args))


def test_cli_import_prints_a_summary_and_warnings(tmp_path):
    url = f"sqlite:///{tmp_path / 'city.db'}"
    folder = write_feed(tmp_path / "ok")
    (folder / "notes.txt").write_text("hello\n")
    result = _cli("import", str(folder), "--database-url", url, "--tenant", "bsb")
    assert result.exit_code == 0, result.output
    assert "1 agencies, 3 stops, 1 routes, 1 trips, 3 stop times" in result.output
    assert "notes.txt: not a GTFS file; ignored" in result.output
    from cityos.core.store import open_store
    opened = open_store(url)
    try:
        assert len(list(opened.scan("bsb"))) == 1 + 3 + 1
    finally:
        opened.close()


def test_cli_import_of_a_bad_feed_exits_2_and_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'city.db'}"
    bad = write_feed(tmp_path / "bad", stop_times_txt=BASE["stop_times.txt"].replace(
        "08:06:00", "25:61:00"))
    result = _cli("import", str(bad), "--database-url", url, "--tenant", "bsb")
    assert result.exit_code == 2
    assert ("bad: stop_times.txt:3: arrival_time: '25:61:00' is not a time: minutes and "
            "seconds must be 00..59") in result.output
    assert "nothing was imported" in result.output
    from cityos.core.store import open_store
    opened = open_store(url)
    try:
        assert list(opened.scan("bsb")) == []
    finally:
        opened.close()


# ================================================================ a big feed
_BIG_FEED_READER = """
import json, resource, sys
from cityos.apps.transit.gtfs import read_feed
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
feed = read_feed(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"stop_times": len(feed.stop_times), "trips": len(feed.stop_times.trip_ids),
                  "growth_kib": after - before,
                  "last": float(feed.schedule(feed.stop_times.trip_ids[-1]).arrival_s[-1])}))
"""


def _write_big_feed(path: Path, trips: int, stops_per_trip: int = 40) -> int:
    """A zip with ``trips`` trips of 40 stop times each; returns the stop_times bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in ("agency.txt", "routes.txt", "calendar.txt"):
            archive.writestr(name, BASE[name])
        archive.writestr("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\n" + "".join(
            f"S{i:04d},Stop {i},{4.85 + i * 0.0009:.6f},{114.90 + (i % 7) * 0.0004:.6f}\n"
            for i in range(stops_per_trip + 50)))
        archive.writestr("trips.txt", "route_id,service_id,trip_id\n" + "".join(
            f"R1,WK,T{t:06d}\n" for t in range(trips)))
        size = 0
        with archive.open("stop_times.txt", "w") as out:
            header = b"trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
            out.write(header)
            size += len(header)
            for t in range(trips):
                start, first = 18000 + (t * 37) % 72000, (t % 5) * 10
                rows = []
                for k in range(stops_per_trip):
                    clock = format_time(start + k * 90)
                    rows.append(f"T{t:06d},{clock},{clock},S{first + k:04d},{k + 1}\n")
                chunk = "".join(rows).encode()
                out.write(chunk)
                size += len(chunk)
    return size


@pytest.mark.slow
def test_a_30_mb_stop_times_imports_in_bounded_memory(tmp_path):
    """Streaming into typed arrays: the reader's peak memory grows by well under 5 bytes
    per byte of stop_times.txt (a row per dict would take over 15)."""
    path = tmp_path / "big.zip"
    trips = 20_750
    size = _write_big_feed(path, trips)
    assert size > 28_000_000
    done = subprocess.run([sys.executable, "-c", _BIG_FEED_READER, str(path)],
                          capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(done.stdout)
    assert result["stop_times"] == trips * 40 and result["trips"] == trips
    assert result["last"] == 18000 + ((trips - 1) * 37) % 72000 + 39 * 90
    growth_bytes = result["growth_kib"] * 1024
    assert growth_bytes < 5 * size, f"peak memory grew by {growth_bytes / 1e6:.0f} MB"
