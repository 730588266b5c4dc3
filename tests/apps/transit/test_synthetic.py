"""The demo city's synthetic feed and day simulator, against the truth they are built
from; and the demo simulator publishing through a real Mosquitto into a real store.
"""

from __future__ import annotations

import csv
import io
import math
import signal
import threading
import zipfile
from collections import defaultdict
from datetime import date

import numpy as np
import pytest
from pyproj import Transformer

from cityos.apps.transit import synthetic
from cityos.apps.transit.models import service_day_origin
from cityos.apps.transit.synthetic import (
    G_MPS2,
    TIMEZONE,
    demo_feed,
    peak_weight,
    simulate_day,
    write_demo_gtfs,
)

TUESDAY = date(2026, 1, 6)
SATURDAY = date(2026, 1, 10)
HARSH_G = 0.45


@pytest.fixture(scope="module")
def feed():
    return demo_feed()


@pytest.fixture(scope="module")
def congested(feed):
    return simulate_day(feed, TUESDAY, "congested", seed=0)


@pytest.fixture(scope="module")
def normal(feed):
    return simulate_day(feed, TUESDAY, "normal", seed=0)


def by_trip(trace) -> dict[str, list]:
    trips = defaultdict(list)
    for arrival in trace.arrivals:
        trips[arrival.trip_id].append(arrival)
    return trips


def first_trip(feed, prefix: str) -> str:
    """The earliest trip whose id starts with ``prefix`` (route-service-direction)."""
    return min((t for t in feed.trips if t.startswith(prefix)),
               key=lambda t: feed.schedule(t).departure_s[0])


def local_hour(t: float, day: date = TUESDAY) -> float:
    return (t - service_day_origin(day, TIMEZONE)) / 3600.0


# ------------------------------------------------------------------ the feed
def test_demo_feed_is_the_network_the_brief_describes(feed):
    assert [a.timezone for a in feed.agencies.values()] == ["Asia/Kuala_Lumpur"]
    assert sorted(feed.routes) == ["1", "2", "3", "4", "R"]
    assert 60 <= len(feed.stops) <= 120
    directions = {(t.route_id, t.direction_id) for t in feed.trips.values()}
    assert directions == {(r, d) for r in "1234" for d in (0, 1)} | {("R", 0)}
    # the loop starts and ends at the same stop, 14-15 km round
    loop = feed.schedule(first_trip(feed, "R-WD"))
    assert loop.stop_ids[0] == loop.stop_ids[-1]
    assert 14_000 < loop.shape_dist_m[-1] < 15_500
    # routes 1 and 4 run the same way along Lorong 16 and share those stops
    one, four = feed.schedule(first_trip(feed, "1-WD-0")), feed.schedule(first_trip(feed, "4-WD-0"))
    assert len(set(one.stop_ids) & set(four.stop_ids)) >= 5
    assert feed.services_on(TUESDAY) == {"WD"} and feed.services_on(SATURDAY) == {"WE"}
    assert feed.services_on(date(2026, 8, 31)) == {"WE"}  # National Day, a Monday


def test_demo_feed_lies_on_the_basemap_roads(feed):
    import shapely
    from shapely.geometry import LineString, MultiLineString
    from shapely.ops import unary_union

    from cityos.web.basemap import demo_basemap

    roads = unary_union([
        LineString(f["geometry"]["coordinates"]) if f["geometry"]["type"] == "LineString"
        else MultiLineString(f["geometry"]["coordinates"])
        for f in demo_basemap()["features"] if f["properties"]["kind"] == "road"])
    shapely.prepare(roads)
    for shape in feed.shapes.values():
        # every vertex of every shape (~110 m apart, straight between) within ~5 m of a
        # road the dashboard draws
        assert shapely.dwithin(roads, shapely.points(shape.lon, shape.lat), 0.00005).all(), \
            shape.shape_id


def test_timetable_speeds_dwells_headways_and_blocks(feed):
    for trip_id in feed.trips_on(TUESDAY):
        s = feed.schedule(trip_id)
        assert np.all(np.diff(s.arrival_s) > 0) and np.all(s.departure_s >= s.arrival_s)
        run = s.arrival_s[1:] - s.departure_s[:-1]
        speed_kmh = np.diff(s.shape_dist_m) / run * 3.6
        assert np.all((speed_kmh > 19) & (speed_kmh < 26)), trip_id
        assert set((s.departure_s - s.arrival_s)[1:-1]) <= {20, 25}
        assert 6 * 3600 <= s.departure_s[0] <= 23 * 3600
    starts = defaultdict(list)
    for trip_id in feed.trips_on(TUESDAY):
        trip = feed.trips[trip_id]
        starts[(trip.route_id, trip.direction_id)].append(feed.schedule(trip_id).departure_s[0])
    for key, values in starts.items():
        headways = np.diff(np.sort(values)) / 60
        assert headways.min() >= 6 and headways.max() <= 15, key
    # blocks chain trips: the same vehicle never runs two trips at once and turns
    # round at the terminus it arrived at
    blocks = defaultdict(list)
    for trip_id in feed.trips_on(TUESDAY):
        blocks[feed.trips[trip_id].block_id].append(feed.schedule(trip_id))
    assert all(len(chain) >= 2 for chain in blocks.values())
    for chain in blocks.values():
        chain.sort(key=lambda s: s.departure_s[0])
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.departure_s[0] - before.arrival_s[-1] >= synthetic.MIN_LAYOVER_S
            # the same stop, or its twin across the road
            here, there = feed.stops[before.stop_ids[-1]], feed.stops[after.stop_ids[0]]
            assert abs(here.lat - there.lat) + abs(here.lon - there.lon) < 0.0002


def test_written_gtfs_is_complete_and_consistent(tmp_path, feed):
    path = write_demo_gtfs(tmp_path / "demo.zip")
    assert path.read_bytes() == write_demo_gtfs(tmp_path / "again.zip").read_bytes()
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        tables = {name: list(csv.DictReader(io.StringIO(archive.read(name).decode())))
                  for name in names}
    assert {"agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt",
            "calendar.txt", "calendar_dates.txt", "shapes.txt", "feed_info.txt"} <= names
    agencies = {row["agency_id"] for row in tables["agency.txt"]}
    stops = {row["stop_id"] for row in tables["stops.txt"]}
    routes = {row["route_id"]: row for row in tables["routes.txt"]}
    services = {row["service_id"] for row in tables["calendar.txt"]}
    shapes = defaultdict(list)
    for row in tables["shapes.txt"]:
        shapes[row["shape_id"]].append((int(row["shape_pt_sequence"]),
                                        float(row["shape_dist_traveled"])))
    assert all(route["agency_id"] in agencies and route["route_type"] == "3"
               for route in routes.values())
    trips = {row["trip_id"]: row for row in tables["trips.txt"]}
    for trip in trips.values():
        assert trip["route_id"] in routes and trip["service_id"] in services
        assert trip["shape_id"] in shapes and trip["block_id"]
    assert {row["service_id"] for row in tables["calendar_dates.txt"]} <= services
    for points in shapes.values():
        points.sort()
        assert [p[0] for p in points] == list(range(1, len(points) + 1))
        assert all(b[1] >= a[1] for a, b in zip(points, points[1:], strict=False))
    rows = defaultdict(list)
    for row in tables["stop_times.txt"]:
        assert row["stop_id"] in stops and row["trip_id"] in trips
        rows[row["trip_id"]].append(row)
    assert set(rows) == set(trips)

    def seconds(text: str) -> int:
        h, m, s = map(int, text.split(":"))
        return h * 3600 + m * 60 + s

    for trip_id, trip_rows in rows.items():
        sequence = [int(r["stop_sequence"]) for r in trip_rows]
        assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
        times = [t for r in trip_rows for t in (seconds(r["arrival_time"]),
                                                seconds(r["departure_time"]))]
        assert times == sorted(times), trip_id
        shape_end = shapes[trips[trip_id]["shape_id"]][-1][1]
        assert float(trip_rows[-1]["shape_dist_traveled"]) <= shape_end + 0.01
    assert len(tables["stop_times.txt"]) == len(feed.stop_times)


def test_written_gtfs_reads_back_with_the_importer(tmp_path, feed):
    gtfs = pytest.importorskip("cityos.apps.transit.gtfs",
                               reason="the GTFS importer is not there yet")
    back = gtfs.read_feed(write_demo_gtfs(tmp_path / "demo.zip"))
    assert set(back.stops) == set(feed.stops) and set(back.trips) == set(feed.trips)
    for trip_id in (first_trip(feed, "1-WD-0"), first_trip(feed, "R-WE"),
                    first_trip(feed, "3-WD-1")):
        a, b = feed.schedule(trip_id), back.schedule(trip_id)
        assert a.stop_ids == b.stop_ids
        assert np.array_equal(a.arrival_s, b.arrival_s)
        assert np.allclose(a.shape_dist_m, b.shape_dist_m, atol=0.01)
    assert all(back.trips[t].block_id == feed.trips[t].block_id for t in feed.trips)
    assert back.calendars["WD"].runs_on(TUESDAY) and not back.calendars["WE"].runs_on(TUESDAY)


# ------------------------------------------------------------------ the day
def test_same_seed_same_day_and_another_seed_another(feed, congested):
    again = simulate_day(feed, TUESDAY, "congested", seed=0)
    assert again.arrivals == congested.arrivals
    assert again.pings == congested.pings
    other = simulate_day(feed, TUESDAY, "congested", seed=1)
    assert other.arrivals != congested.arrivals


def test_every_trip_of_the_day_runs_in_order(feed, congested):
    trips = by_trip(congested)
    assert set(trips) == set(feed.trips_on(TUESDAY))
    for trip_id, arrivals in trips.items():
        assert [a.stop_sequence for a in arrivals] == \
            feed.schedule(trip_id).stop_sequence.tolist()
        times = [t for a in arrivals for t in (a.arrival_t, a.departure_t)]
        assert times == sorted(times), trip_id
        assert all(a.service_date == TUESDAY for a in arrivals)
        # nobody is left on board at the end, nobody boards there
        assert arrivals[-1].boardings == 0
        assert sum(a.boardings for a in arrivals) == sum(a.alightings for a in arrivals)
    dwell = np.array([a.departure_t - a.arrival_t for a in congested.arrivals])
    boarded = np.array([a.boardings + a.alightings for a in congested.arrivals])
    positive = boarded > 0
    assert np.allclose(dwell[1:][positive[1:]], 8 + 3 * boarded[1:][positive[1:]])


def test_peak_congestion_slows_congested_segments_by_their_factor(congested, normal):
    assert peak_weight(8 * 3600, False) == 1.0 and peak_weight(12 * 3600, False) == 0.0
    plan = congested.congestion
    heavy = {k for k, f in plan.items() if f >= 1.6}
    assert len(heavy) >= 10 and all(f <= 2.2 for f in plan.values())
    assert set(normal.congestion.values()) == {synthetic.MILD_PEAK_FACTOR}
    for trace, keys in ((congested, heavy), (normal, set(normal.congestion))):
        peak, off = defaultdict(list), defaultdict(list)
        for arrivals in by_trip(trace).values():
            for a, b in zip(arrivals, arrivals[1:], strict=False):
                hour = local_hour(a.departure_t)
                run = b.arrival_t - a.departure_t
                if 7.5 <= hour < 8.5 or 17.5 <= hour < 18.5:
                    peak[(a.stop_id, b.stop_id)].append(run)
                elif 10 <= hour < 16:
                    off[(a.stop_id, b.stop_id)].append(run)
        ratios = [np.mean(peak[k]) / np.mean(off[k]) / trace.congestion[k]
                  for k in keys if len(peak[k]) >= 5 and len(off[k]) >= 5]
        assert len(ratios) >= 10
        # the known truth: the peak time is the off-peak time times the factor
        assert abs(np.median(ratios) - 1) < 0.05
        assert np.percentile(np.abs(np.array(ratios) - 1), 80) < 0.15


def test_blocks_chain_and_lateness_carries_into_the_next_trip(feed, congested):
    origin = service_day_origin(TUESDAY, TIMEZONE)
    trips = by_trip(congested)
    carried = 0
    for trip_ids in congested.vehicles.values():
        assert len({feed.trips[t].block_id for t in trip_ids}) == 1
        chain = [trips[t] for t in trip_ids]
        for before, after in zip(chain, chain[1:], strict=False):
            scheduled = origin + feed.schedule(after[0].trip_id).departure_s[0]
            assert after[0].departure_t >= scheduled  # never leaves a terminus early
            assert after[0].arrival_t >= before[-1].departure_t + synthetic.RECOVERY_S
            if after[0].departure_t > scheduled + 60:
                carried += 1  # late only because the vehicle came in late
                assert after[0].arrival_t == pytest.approx(
                    before[-1].departure_t + synthetic.RECOVERY_S)
    assert carried >= 5


def headway_stats(feed, trace) -> tuple[float, float]:
    """Mean coefficient of variation of headways at mid-route stops in the peaks,
    and the share of headways under a quarter of the scheduled one (bunches)."""
    departures = defaultdict(list)
    for trip_id, arrivals in by_trip(trace).items():
        trip = feed.trips[trip_id]
        middle = arrivals[len(arrivals) // 2]
        hour = local_hour(middle.departure_t)
        if 7 <= hour < 10 or 17 <= hour < 20:
            departures[(trip.route_id, trip.direction_id, middle.stop_id, hour < 12)].append(
                middle.departure_t)
    cvs, bunched = [], []
    for times in departures.values():
        headways = np.diff(np.sort(times))
        cvs.append(headways.std() / headways.mean())
        bunched.append(np.mean(headways < 0.25 * np.median(headways)))
    return float(np.mean(cvs)), float(np.mean(bunched))


def test_bunching_appears_in_the_congested_scenario(feed, congested, normal):
    cv_congested, bunched_congested = headway_stats(feed, congested)
    cv_normal, bunched_normal = headway_stats(feed, normal)
    assert cv_congested > 1.2 * cv_normal
    assert bunched_congested > bunched_normal
    assert bunched_congested > 0.01


def test_pings_lie_within_gps_noise_of_the_shape(feed, congested):
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32647", always_xy=True)
    offsets = []
    pings = congested.pings[::7]
    by_shape = defaultdict(list)
    for ping in pings:
        by_shape[feed.trips[ping.trip_id].shape_id].append(ping)
    for shape_id, shape_pings in by_shape.items():
        shape = feed.shapes[shape_id]
        x, y = to_utm.transform(shape.lon, shape.lat)
        px, py = to_utm.transform([p.lon for p in shape_pings], [p.lat for p in shape_pings])
        ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
        for qx, qy in zip(px, py, strict=True):
            share = np.clip(((qx - ax) * (bx - ax) + (qy - ay) * (by - ay))
                            / ((bx - ax) ** 2 + (by - ay) ** 2), 0, 1)
            offsets.append(np.min(np.hypot(ax + share * (bx - ax) - qx,
                                           ay + share * (by - ay) - qy)))
    offsets = np.array(offsets)
    # the across-track error of an 8 m GPS: RMS ~8 m, practically never 40 m
    assert 6.0 < math.sqrt(np.mean(offsets ** 2)) < 10.0
    assert offsets.max() < 40.0


def test_pings_have_outages_duplicates_late_deliveries_and_counts(congested):
    pings = congested.pings
    seen, duplicates, late = set(), 0, 0
    newest = float("-inf")
    for ping in pings:
        duplicates += ping in seen
        seen.add(ping)
        late += ping.t < newest - 25
        newest = max(newest, ping.t)
    assert 0.005 < duplicates / len(pings) < 0.02
    assert 0.005 < late / len(pings) < 0.02
    gaps = defaultdict(list)
    for ping in sorted(seen, key=lambda p: (p.vehicle_id, p.t)):
        gaps[ping.vehicle_id].append(ping.t)
    longest = [np.diff(t).max() for t in gaps.values()]
    assert np.mean(np.array(longest) > 120) > 0.5  # most buses lose the network a while
    counted = [p for p in pings if p.passengers_in is not None]
    assert counted and all(p.doors_open is False and p.speed_mps < 1.0 for p in counted)
    assert any(p.doors_open for p in pings)
    assert all(p.occupancy is not None and 0 <= p.occupancy <= synthetic.CAPACITY
               for p in pings)
    moving = [p for p in pings if p.speed_mps > 3]
    assert not any(p.doors_open for p in moving)


def braking_by_driver(trace) -> dict[str, list[float]]:
    """Decelerations (g) between consecutive pings about a second apart, per driver:
    what the 1 Hz braking bursts show."""
    tracks = defaultdict(dict)
    for ping in trace.pings:
        tracks[ping.vehicle_id][ping.t] = ping  # duplicates collapse
    out = defaultdict(list)
    for track in tracks.values():
        pings = [track[t] for t in sorted(track)]
        for a, b in zip(pings, pings[1:], strict=False):
            if 0.5 <= b.t - a.t <= 1.5 and a.driver_id == b.driver_id:
                out[a.driver_id].append((a.speed_mps - b.speed_mps) / (b.t - a.t) / G_MPS2)
    return out


def test_the_harsh_driver_brakes_over_045_g_and_nobody_else_does(feed, congested):
    braking = braking_by_driver(congested)
    harsh = congested.harsh_driver_id
    assert harsh == synthetic.harsh_driver_id(feed, 0)
    events = [g for g in braking[harsh] if g > HARSH_G]
    assert len(events) >= 20
    assert max(max(values) for driver, values in braking.items() if driver != harsh) < 0.3
    # the same person drives harshly on a Saturday too
    weekend = simulate_day(feed, SATURDAY, "normal", seed=0)
    assert weekend.harsh_driver_id == harsh
    assert sum(g > HARSH_G for g in braking_by_driver(weekend)[harsh]) >= 10


def test_a_weekend_day_runs_the_weekend_timetable(feed):
    trace = simulate_day(feed, SATURDAY, seed=0)
    assert {a.trip_id.split("-")[1] for a in trace.arrivals} == {"WE"}


def test_any_feed_without_blocks_distances_or_timetables_of_its_own(feed):
    """A feed with no blocks, no shape_dist_traveled and a frequency-based route."""
    import dataclasses

    from cityos.apps.transit.models import Frequency

    template = first_trip(feed, "2-WD-0")
    trips = {k: dataclasses.replace(t, block_id=None) for k, t in feed.trips.items()
             if not k.startswith("2-") or k == template}
    start = int(feed.schedule(template).departure_s[0])
    stripped = dataclasses.replace(
        feed, trips=trips, stop_times=dataclasses.replace(
            feed.stop_times, shape_dist_m=np.full(len(feed.stop_times), np.nan)),
        frequencies={template: [Frequency(template, start, start + 3600, 600)]})
    trace = simulate_day(stripped, TUESDAY, seed=3, route_ids=["2", "R"])
    runs = by_trip(trace)
    assert set(runs) == {t for t in stripped.trips_on(TUESDAY) if t[0] in "2R"}
    assert len(trace.vehicles) == len(runs) - 1 + 6  # a vehicle per trip, 6 runs of one
    assert trace.harsh_driver_id in {p.driver_id for p in trace.pings}
    # stop distances found by projection, the loop's closing stop at its far end
    loop = first_trip(feed, "R-WD")
    schedule = feed.schedule(loop)
    shape = feed.shapes[feed.trips[loop].shape_id]
    projected = synthetic._project_stops(
        shape.lon, shape.lat, shape.dist_m,
        np.array([feed.stops[s].lon for s in schedule.stop_ids]),
        np.array([feed.stops[s].lat for s in schedule.stop_ids]))
    assert np.allclose(projected, schedule.shape_dist_m, atol=1.0)


# ------------------------------------------------------- through the real ingest path
@pytest.mark.mqtt
def test_demo_simulator_publishes_vehicles_through_mqtt_into_the_store(tmp_path):
    from cityos.apps.transit import sim
    from cityos.config import Settings
    from cityos.core.ingest.mqtt import MqttIngester
    from cityos.core.store.sqlite import SqliteStore
    from cityos.demo import DemoContext
    from tests.core.ingest.brokers import PrivateBroker, wait_until

    broker = PrivateBroker(tmp_path / "broker").start()
    store = SqliteStore(str(tmp_path / "store.db"))
    ingester = MqttIngester(store, Settings(database_url="sqlite:///unused.db",
                                            mqtt_url=broker.url, bus_url="memory://",
                                            mqtt_client_id="transit-sim-test"))
    demo = DemoContext(base_url="http://127.0.0.1:9", api_key="", tenant="demo",
                       mqtt_url=broker.url, store=store)
    worker = threading.Thread(target=sim.run, args=(demo,), kwargs={"speedup": 30.0})
    try:
        ingester.start()
        assert ingester.wait_until_subscribed(15)
        worker.start()

        def vehicles():
            return [r.entity for r in store.scan("demo", types=["Vehicle"])]

        wait_until(lambda: len(vehicles()) >= 5 and ingester.stats.stored >= 50,
                   timeout_s=60, what="five buses stored")
    finally:
        demo.stop.set()
        worker.join(30)
        ingester.stop()
        broker.stop(signal.SIGKILL)
        store.close() if hasattr(store, "close") else None
    assert not worker.is_alive()
    assert ingester.stats.dead_lettered == 0
    bus = vehicles()[0]
    assert bus["id"].startswith("urn:ngsi-ld:Vehicle:bus-")
    assert bus["location"]["value"]["type"] == "Point"
    for name in ("speed", "bearing", "tripId", "driverId", "occupancy"):
        assert "observedAt" in bus[name], name
    assert bus["tripId"]["value"] in demo_feed().trips
    assert bus["speed"]["unitCode"] == "KMH" and 0 <= bus["speed"]["value"] < 80


# ------------------------------------------------------- real feeds' missing times
UNTIMED_DAY = date(2024, 3, 5)  # a Tuesday
UNTIMED_FEED = {
    "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\n"
                  "BSB,Bas Bandar,http://bus.example,Asia/Brunei\n",
    # four stops due north, 0.0045 deg (~498 m) apart
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
                 "S1,Terminal,4.8900,114.9400\n"
                 "S2,Kianggeh,4.8945,114.9400\n"
                 "S3,Gadong,4.8990,114.9400\n"
                 "S4,Beribi,4.9035,114.9400\n",
    "routes.txt": "route_id,agency_id,route_short_name,route_type\nR1,BSB,1,3\n",
    "trips.txt": "route_id,service_id,trip_id\n"
                 "R1,WK,untimed\nR1,WK,ends\nR1,WK,lonely\nR1,WK,empty\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                      "untimed,,,S1,1\nuntimed,,,S2,2\nuntimed,,,S3,3\nuntimed,,,S4,4\n"
                      "ends,,,S1,1\nends,08:00:00,08:00:00,S2,2\n"
                      "ends,08:02:00,08:02:00,S3,3\nends,,,S4,4\n"
                      "lonely,09:00:00,09:00:00,S1,1\n",
    "calendar.txt": "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
                    "start_date,end_date\nWK,1,1,1,1,1,0,0,20240101,20241231\n",
}


def runs_of(trace) -> dict[tuple[str, str], list]:
    """Arrivals per (trip, vehicle): one run of a trip."""
    runs = defaultdict(list)
    for arrival in trace.arrivals:
        runs[(arrival.trip_id, arrival.vehicle_id)].append(arrival)
    return runs


def assert_runs_are_whole(trace) -> None:
    """No NaN anywhere, every run in stop order and forward in time."""
    assert trace.arrivals and trace.pings
    for arrivals in runs_of(trace).values():
        times = np.array([t for a in arrivals for t in (a.arrival_t, a.departure_t)])
        assert np.isfinite(times).all() and (np.diff(times) >= 0).all()
    fixes = np.array([(p.t, p.lat, p.lon, p.speed_mps) for p in trace.pings])
    assert np.isfinite(fixes).all()


def test_synthetic_timetable_runs_the_path_at_the_typical_speed():
    arrival, departure = synthetic._synthetic_times(np.array([0.0, 500.0, 1000.0]))
    # 500 m at 20 km/h is 90 s; 20 s at the middle stop, none at the ends
    assert arrival.tolist() == [0, 90, 200] and departure.tolist() == [0, 110, 200]


def test_a_feed_with_untimed_stops_and_trips_is_simulated_sensibly(tmp_path):
    from cityos.apps.transit.gtfs import read_feed

    for name, text in UNTIMED_FEED.items():
        (tmp_path / name).write_text(text)
    gtfs = read_feed(tmp_path)
    assert np.isnan(gtfs.schedule("untimed").arrival_s).all()
    trace = simulate_day(gtfs, UNTIMED_DAY, seed=0)
    assert_runs_are_whole(trace)
    origin = service_day_origin(UNTIMED_DAY, "Asia/Brunei")
    runs = runs_of(trace)
    # untimed ends reached at the pace of the timed middle: 498 m in 2 min before 08:00
    (ends,) = [r for (trip, _), r in runs.items() if trip == "ends"]
    assert [a.stop_id for a in ends] == ["S1", "S2", "S3", "S4"]
    assert abs(ends[0].departure_t - (origin + 7 * 3600 + 58 * 60)) < 1.0
    # no times at all: a run every 30 min from a whole minute of 06:00-06:30 to 22:00
    starts = sorted(r[0].departure_t - origin for (trip, _), r in runs.items()
                    if trip == "untimed")
    assert len(starts) == 32 and set(np.diff(starts)) == {1800.0}
    assert 6 * 3600 <= starts[0] < 6.5 * 3600 and starts[0] % 60 == 0
    assert len({v for (trip, v) in runs if trip == "untimed"}) == 32
    # what cannot run is skipped, counted by reason
    assert trace.synthesised_timetables == 1
    # the reader left out the trips with fewer than two stop times: nothing to skip
    assert set(gtfs.trips) == {"untimed", "ends"} and trace.skipped_trips == {}
    assert {trip for trip, _ in runs} == {"untimed", "ends"}


def test_transjakarta_whose_trips_have_no_times_runs_on_synthetic_timetables():
    from cityos.apps.transit.gtfs import read_feed
    from tests.apps.transit.test_gtfs import JAKARTA, _real

    gtfs = read_feed(_real(JAKARTA), skip_invalid=True)
    day = date(2021, 10, 5)  # a Tuesday
    routes = sorted({gtfs.trips[t].route_id for t in gtfs.trips_on(day)})[:4]
    trips = {t for t in gtfs.trips_on(day) if gtfs.trips[t].route_id in routes}
    assert all(np.isnan(gtfs.schedule(t).arrival_s).all() for t in trips)
    trace = simulate_day(gtfs, day, seed=0, route_ids=routes)
    assert_runs_are_whole(trace)
    assert trace.skipped_trips == {} and trace.synthesised_timetables == len(trips)
    runs = runs_of(trace)
    assert {trip for trip, _ in runs} == trips
    assert len(runs) == 32 * len(trips)
    speeds = []
    for (trip, _), arrivals in runs.items():
        along = gtfs.schedule(trip).shape_dist_m
        hours = (arrivals[-1].arrival_t - arrivals[0].departure_t) / 3600
        speeds.append((along[-1] - along[0]) / 1000 / hours)
    # a bus in city traffic: scheduled at 20 km/h with dwells, slower in the rush hours
    assert 5 < min(speeds) and max(speeds) < 30 and 14 < np.median(speeds) < 20


def test_an_expired_feed_is_driven_on_its_last_day_like_today():
    from dataclasses import replace

    from cityos.apps.transit.sim import service_day_like

    feed = synthetic.demo_feed()
    # cut every calendar off at the end of 2021, as an old feed would be
    for calendar in feed.calendars.values():
        calendar.start, calendar.end = date(2021, 1, 1), date(2021, 12, 31)
        calendar.added = {d for d in calendar.added if d.year <= 2021}
    wednesday = date(2026, 11, 25)
    assert not feed.trips_on(wednesday)
    chosen = service_day_like(feed, wednesday)
    assert chosen == date(2021, 12, 29)  # the last Wednesday the feed runs
    assert chosen.weekday() == wednesday.weekday() and feed.trips_on(chosen)
    empty = replace(feed, calendars={})
    assert service_day_like(empty, wednesday) is None
