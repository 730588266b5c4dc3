"""A trip whose shape does not reach its stops (the Kuala Lumpur 2014 feed has 297
such trips: shapes of a few hundred metres under routes of many kilometres).

Projected onto such a shape, most stops land on its last point, so a bus would pass
them all at once and no prediction could say which stop is next; the reader follows
the stops instead, and says so.
"""

from __future__ import annotations

import numpy as np

from cityos.apps.transit import gtfs
from cityos.apps.transit.gtfs import read_feed_report
from cityos.apps.transit.prediction import _stop_distances


def _write(folder, tables):
    folder.mkdir()
    for name, rows in tables.items():
        (folder / f"{name}.txt").write_text(
            "\n".join(",".join(str(v) for v in row) for row in rows) + "\n", encoding="utf-8")
    return folder


def test_a_shape_far_from_its_stops_is_replaced_by_one_through_the_stops(tmp_path):
    stops = [[f"S{i}", f"Stop {i}", 3.10 + 0.01 * i, 101.60] for i in range(5)]  # 1.1 km apart
    cut = [["CUT", 3.10 + 0.002 * k, 101.60, k + 1] for k in range(4)]  # 670 m of it
    folder = _write(tmp_path / "feed", {
        "agency": [["agency_id", "agency_name", "agency_url", "agency_timezone"],
                   ["A", "Bus", "https://bus.example.my", "Asia/Kuala_Lumpur"]],
        "stops": [["stop_id", "stop_name", "stop_lat", "stop_lon"], *stops],
        "routes": [["route_id", "agency_id", "route_short_name", "route_type"],
                   ["R", "A", "1", 3]],
        "trips": [["route_id", "service_id", "trip_id", "shape_id"],
                  ["R", "D", "T", "CUT"], ["R", "D", "T2", "CUT"]],
        "shapes": [["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"], *cut],
        "stop_times": [["trip_id", "arrival_time", "departure_time", "stop_id",
                        "stop_sequence", "shape_dist_traveled"]]
        + [[t, f"08:{2 * i + m:02d}:00", f"08:{2 * i + m:02d}:00", f"S{i}", i + 1, 0.0]
           for t, m in (("T", 0), ("T2", 30)) for i in range(5)],
        "calendar": [["service_id", "monday", "tuesday", "wednesday", "thursday", "friday",
                      "saturday", "sunday", "start_date", "end_date"],
                     ["D", 1, 1, 1, 1, 1, 1, 1, "20250101", "20261231"]],
    })
    feed, warnings = read_feed_report(folder)
    for trip_id in ("T", "T2"):
        trip = feed.trips[trip_id]
        assert trip.shape_id != "CUT" and feed.shapes[trip.shape_id].derived
        along = feed.schedule(trip_id).shape_dist_m
        straight = _stop_distances(feed, feed.schedule(trip_id).stop_ids)
        assert np.allclose(along - along[0], straight, rtol=0.01)
    assert feed.trips["T"].shape_id == feed.trips["T2"].shape_id  # one derived shape
    message = next(str(w) for w in warnings if "cut shape" in str(w))
    assert f"more than {gtfs.FAR_FROM_SHAPE_M:g} m" in message
    assert "derived from the stops instead" in message
