"""What an import keeps and drops, said the same way by every ``cityos transit`` command.

Feeds written in the test: rows with date and time errors (as in the Thailand and Laos
feeds), a trip with one stop time, and a US city feed (``America/Los_Angeles``)
whose ``shape_dist_traveled`` is blank at each trip's first stop.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cityos.apps.transit.cli import app as transit_app
from cityos.apps.transit.gtfs import read_feed_report, read_gtfs
from tests.apps.transit.city_feeds import SPACING_M, write_city_feed
from tests.apps.transit.test_gtfs import BASE, CALENDAR_HEADER, write_feed


def _cli(*args: str):
    return CliRunner().invoke(transit_app, list(args))


def _broken_feed(folder: Path) -> Path:
    """BASE plus a second trip on a service whose start date is written DDMMYYYY, a
    third with an impossible time and a fourth with a single stop time."""
    stop_times = BASE["stop_times.txt"] + (
        "T2,09:00:00,09:00:00,S1,1\nT2,09:06:00,09:06:00,S2,2\n"
        "T3,10:00:00,10:00:00,S1,1\nT3,19:70:00,19:70:00,S2,2\nT3,10:12:00,10:12:00,S3,3\n"
        "T4,11:00:00,11:00:00,S1,1\n")
    return write_feed(
        folder, stop_times_txt=stop_times,
        trips_txt="route_id,service_id,trip_id\nR1,WK,T1\nR1,OLD,T2\nR1,WK,T3\nR1,WK,T4\n",
        calendar_txt=BASE["calendar.txt"] + "OLD,1,1,1,1,1,0,0,01012010,20101231\n")


def test_a_trip_with_one_stop_time_is_left_out_and_not_counted(tmp_path):
    stop_times = BASE["stop_times.txt"] + "T2,09:00:00,09:00:00,S1,1\n"
    folder = write_feed(tmp_path / "one", stop_times_txt=stop_times,
                        trips_txt="route_id,service_id,trip_id\nR1,WK,T1\nR1,WK,T2\n")
    reading = read_gtfs(folder)
    assert set(reading.feed.trips) == {"T1"} and len(reading.feed.stop_times) == 3
    assert [(d.file, d.line, d.field) for d in reading.dropped] == [
        ("trips.txt", 3, "trip_id"), ("stop_times.txt", 5, "trip_id")]
    listing = tmp_path / "dropped.csv"
    result = _cli("import", str(folder), "--database-url", f"sqlite:///{tmp_path / 'c.db'}",
                  "--dropped-list", str(listing))
    assert result.exit_code == 0, result.output
    assert "1 agencies, 3 stops, 1 routes, 1 trips, 3 stop times" in result.output
    assert "one: trips.txt: 1 row dropped: 1 trip_id:" in result.output
    assert "one: stop_times.txt: 1 row dropped: 1 trip_id: the trip has fewer than two " \
           "stop times (line 5)" in result.output
    assert f"every dropped row, with its line and reason: {listing}" in result.output


def test_skip_invalid_says_how_many_rows_of_each_file_were_dropped_and_why(tmp_path):
    folder = _broken_feed(tmp_path / "th")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    strict = _cli("import", str(folder), "--database-url", url)
    assert strict.exit_code == 2
    assert "th: stop_times.txt:8: arrival_time: '19:70:00' is not a time" in strict.output
    assert "th: calendar.txt:3: start_date: '01012010' is not a date" in strict.output
    listing = tmp_path / "dropped.csv"
    result = _cli("import", str(folder), "--database-url", url, "--skip-invalid",
                  "--dropped-list", str(listing))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "dropped" in line]
    # grouped by file and reason, in the order the files are read
    assert lines[0] == "th: calendar.txt: 1 row dropped: 1 start_date: '...' is not a " \
                       "date (YYYYMMDD) (line 3)"
    assert lines[1] == "th: trips.txt: 2 rows dropped: 1 service_id: '...' is not a " \
                       "service_id of calendar.txt or calendar_dates.txt (line 3); 1 " \
                       "trip_id: '...' has fewer than two stop times (N) (line 5)"
    assert lines[2] == "th: stop_times.txt: 4 rows dropped: 2 trip_id: '...' is not a " \
                       "trip_id of trips.txt (lines 5, 6); 1 arrival_time: '...' is not a " \
                       "time: minutes and seconds must be 00..59 (line 8); 1 trip_id: the " \
                       "trip has fewer than two stop times (line 10)"
    assert "2 trips, 5 stop times" in result.output  # T1, and T3 less its bad row
    with listing.open(encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 1 + 2 + 5  # line 8 twice: its arrival and departure times
    assert {"file": "stop_times.txt", "line": "8", "field": "arrival_time",
            "reason": "'19:70:00' is not a time: minutes and seconds must be 00..59"} in rows


def test_evaluate_and_sim_read_a_repaired_feed_like_import(tmp_path):
    folder = write_city_feed(tmp_path / "la", "America/Los_Angeles")
    with (folder / "stop_times.txt").open("ab") as out:
        out.write(b"A0-0360, 6:61:00, 6:61:00,A5,99,\r\n")
    base = ["--feed", str(folder), "--days", "1", "--start", "2025-03-06",
            "--dropped-list", str(tmp_path / "d.csv")]
    strict = _cli("evaluate", *base)
    assert strict.exit_code == 2
    assert "stop_times.txt:" in strict.output and "arrival_time: ' 6:61:00' is not a time" in strict.output
    repaired = _cli("evaluate", *base, "--skip-invalid", "--scenario", "normal")
    assert repaired.exit_code == 0, repaired.output
    # the bad row, and the stop time of the city feed's trip with only one
    assert "la: stop_times.txt: 2 rows dropped: 1 arrival_time: '...' is not a time" \
        in repaired.output
    assert "| 0-5 min |" in repaired.output
    sim = _cli("sim", str(folder), "--mqtt-url", "mqtt://127.0.0.1:1", "--day", "2025-03-08")
    assert sim.exit_code == 2 and "' 6:61:00' is not a time" in sim.output


def test_a_blank_first_shape_dist_traveled_is_no_value_and_the_distances_are_kept(tmp_path):
    feed, warnings = read_feed_report(write_city_feed(tmp_path / "salem",
                                                      "America/Los_Angeles"))
    assert not [w for w in warnings if w.field == "shape_dist_traveled"], warnings
    schedule = feed.schedule("A0-0360")
    # the feed's metres converted through the shape's own values; the first stop,
    # with none, is placed by projection, at the start
    expected = np.arange(len(schedule)) * SPACING_M
    shape = feed.shapes["A-0"]
    assert abs(shape.length_m / expected[-1] - 1) < 0.005
    assert np.allclose(schedule.shape_dist_m, expected * shape.length_m / expected[-1],
                       atol=0.5)
    assert np.all(np.diff(schedule.shape_dist_m) > 0)


def test_a_shape_with_a_blank_first_value_keeps_its_own_distances(tmp_path):
    shapes = ("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence,shape_dist_traveled\n"
              "SH,4.8900,114.9400,1,\nSH,4.8990,114.9400,2,1.0\nSH,4.9080,114.9500,3,2.5\n")
    stop_times = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence,"
                  "shape_dist_traveled\nT1,08:00:00,08:00:00,S1,1,\n"
                  "T1,08:06:00,08:06:30,S2,2,1.0\nT1,08:12:00,08:12:00,S3,3,2.5\n")
    folder = write_feed(tmp_path / "f", shapes_txt=shapes, stop_times_txt=stop_times,
                        trips_txt="route_id,service_id,trip_id,shape_id\nR1,WK,T1,SH\n",
                        calendar_txt=CALENDAR_HEADER + "WK,1,1,1,1,1,0,0,20240101,20241231\n")
    feed, warnings = read_feed_report(folder)
    assert not [w for w in warnings if w.field == "shape_dist_traveled"], warnings
    shape = feed.shapes["SH"]
    assert np.allclose(feed.schedule("T1").shape_dist_m, shape.dist_m, atol=0.5)
