#!/usr/bin/env python
"""Transit benchmark: the live fleet's ping pipeline and the GTFS reader.

Prints one Markdown table:

(i) pings processed per second by :meth:`LiveFleet.process` (clean, trip assignment
    where the device sends none, snap to the shape with monotonic progress, stop
    passages, the Kalman filter on every ping and a forecast of every downstream stop
    at least every 5 s per vehicle) with 2,000 vehicles reporting at 1 Hz. The fleet
    is the demo city replicated side by side (each copy its own stops, shapes, trips
    and blocks) until enough vehicles are in service; its day is the simulator's
    (:func:`simulate_day`, congested weekday), the devices' 10-20 s reports filled in
    to 1 Hz along the reported track, a fifth of the vehicles sending no trip id. The
    predictor is trained on another simulated day. The first ``--warmup`` seconds of
    pings are processed untimed (assignment of every vehicle, plans and snappers),
    the next ``--seconds`` timed. Baseline: the same pings only stored, as ingestion
    does (``upsert_entities(..., replace=False)`` of the ``Vehicle`` observation
    fragments the MQTT ingester builds, 1,000 per batch, into SQLite); the fragments
    are built untimed. Target (the transit issue): at least 5,000 pings/s.
(ii) :func:`gtfs.read_feed` of the largest real feed in ``../shared/data/gtfs/``
    (TransJakarta 2021, ``skip_invalid=True``) and of Kuala Lumpur 2014, each in a
    fresh interpreter: time (best of ``--repeats``) and, in another run, the peak of
    the memory allocated while reading (:mod:`tracemalloc`, which NumPy arrays report
    to). Baseline: the same zip's CSV rows read with :mod:`csv`, nothing parsed,
    measured the same way.
(iii) ``cityos transit evaluate`` (the command's function) on the demo city with 1 and
    with ``--eval-days`` training days, each in a fresh interpreter: the peak resident
    memory (``VmHWM`` of ``/proc/self/status``). The days are simulated one at a
    time and the held-out day is scored into aggregates. Baseline: a fresh
    interpreter that simulates one day of the same routes and holds it. Target (the
    transit issue, after 1.12 GB for 2 days of a 1,128-trip feed): flat in days, at
    most 1.25x the 1-day figure. Each training day is released before the next is
    simulated and the held-out day's predictions are scored into aggregates
    (measured 2026-12-07, 2 CPUs: 221 MB for 1 day, 222 MB for 4, 1.00x).

Usage::

    python bench/transit.py            # full sizes (about 2 minutes)
    python bench/transit.py --quick    # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import log, markdown, print_report, yes_no  # noqa: E402
from cityos.apps.transit.live import LiveFleet  # noqa: E402
from cityos.apps.transit.models import (  # noqa: E402
    Feed,
    ObservedArrival,
    Ping,
    Shape,
    StopTimes,
    service_day_origin,
)
from cityos.apps.transit.prediction import ArrivalPredictor  # noqa: E402
from cityos.apps.transit.sim import ping_observation  # noqa: E402
from cityos.apps.transit.synthetic import TIMEZONE, demo_feed, simulate_day  # noqa: E402
from cityos.core.ingest.observations import entity_urn, observation_entity  # noqa: E402
from cityos.core.store import open_store  # noqa: E402

GTFS_DIR = ROOT.parent / "shared" / "data" / "gtfs"
FEEDS = (("TransJakarta 2021", "transjakarta-2021.zip"), ("Kuala Lumpur 2014", "kuala-lumpur-2014.zip"))
DAY, TRAIN_DAY = date(2025, 3, 5), date(2025, 3, 4)  # Wednesday, Tuesday
START_S = 8 * 3600  # the morning peak, GTFS seconds
COPY_STEP_DEG = 0.06  # the demo city spans ~0.05 degrees: copies side by side
COPY_COLUMNS = 6
SILENT_SHARE = 5  # one vehicle in this many sends no trip id
TARGET_PINGS_S = 5000.0

FULL = {"vehicles": 2000, "seconds": 60, "warmup": 45, "store_pings": 40_000}
QUICK = {"vehicles": 60, "seconds": 10, "warmup": 20, "store_pings": 2_000}


HEAD = ["measure", "figure", "target (transit issue)", "baseline", "ratio to baseline",
        "target met"]


# ===================================================================== a big fleet
def _offset(copy: int) -> tuple[float, float]:
    """(east, north) degrees of a copy of the demo city."""
    return (copy % COPY_COLUMNS) * COPY_STEP_DEG, (copy // COPY_COLUMNS) * COPY_STEP_DEG


def replicated_feed(feed: Feed, copies: int) -> Feed:
    """``copies`` demo cities side by side, ids prefixed ``c<k>:``."""
    stops, routes, trips, shapes = {}, {}, {}, {}
    st = feed.stop_times
    n_stops = len(st.stop_ids)
    stop_ids, trip_ids, starts, index = [], [], [], []
    for k in range(copies):
        p = f"c{k}:"
        dx, dy = _offset(k)
        for stop in feed.stops.values():
            stops[p + stop.stop_id] = dataclasses.replace(
                stop, stop_id=p + stop.stop_id, lat=stop.lat + dy, lon=stop.lon + dx)
        for route in feed.routes.values():
            routes[p + route.route_id] = dataclasses.replace(route, route_id=p + route.route_id)
        for trip in feed.trips.values():
            trips[p + trip.trip_id] = dataclasses.replace(
                trip, trip_id=p + trip.trip_id, route_id=p + trip.route_id,
                shape_id=p + trip.shape_id if trip.shape_id else None,
                block_id=p + trip.block_id if trip.block_id else None)
        for shape in feed.shapes.values():
            shapes[p + shape.shape_id] = Shape(p + shape.shape_id, shape.lon + dx,
                                               shape.lat + dy, shape.dist_m)
        stop_ids += [p + s for s in st.stop_ids]
        trip_ids += [p + t for t in st.trip_ids]
        starts.append(st.trip_start[:-1] + k * len(st))
        index.append(st.stop_index + k * n_stops)
    times = StopTimes(trip_ids, np.concatenate(starts + [[copies * len(st)]]), stop_ids,
                      np.concatenate(index).astype(np.int32),
                      np.tile(st.stop_sequence, copies), np.tile(st.arrival_s, copies),
                      np.tile(st.departure_s, copies), np.tile(st.shape_dist_m, copies))
    return Feed(feed.agencies, stops, routes, trips, times, shapes, feed.calendars)


def replicated_arrivals(arrivals: list[ObservedArrival], copies: int) -> list[ObservedArrival]:
    return [dataclasses.replace(a, trip_id=f"c{k}:{a.trip_id}", stop_id=f"c{k}:{a.stop_id}",
                                vehicle_id=f"c{k}:{a.vehicle_id}")
            for k in range(copies) for a in arrivals]


def one_hertz(pings: list[Ping], t0: float, t1: float, max_gap_s: float = 30.0) -> list[Ping]:
    """Each vehicle's reports in ``[t0, t1)`` filled in to one per second along the
    reported track (an outage stays a gap), in time order."""
    by_vehicle: dict[str, dict[float, Ping]] = {}
    for p in pings:
        if t0 - max_gap_s <= p.t < t1 + max_gap_s:
            by_vehicle.setdefault(p.vehicle_id, {})[p.t] = p
    out: list[Ping] = []
    for own in by_vehicle.values():
        track = [own[t] for t in sorted(own)]
        for a, b in zip(track, track[1:], strict=False):
            if a.t >= t0:
                out.append(a)
            if b.t - a.t > max_gap_s:
                continue
            for s in range(math.floor(a.t) + 1, math.ceil(b.t - 0.5)):
                if not t0 <= s < t1:
                    continue
                w = (s - a.t) / (b.t - a.t)
                speed = None if a.speed_mps is None or b.speed_mps is None else \
                    round(a.speed_mps + w * (b.speed_mps - a.speed_mps), 2)
                out.append(Ping(a.vehicle_id, float(s), a.lat + w * (b.lat - a.lat),
                                a.lon + w * (b.lon - a.lon), speed, a.bearing_deg,
                                a.trip_id, a.driver_id, occupancy=a.occupancy))
    out = [p for p in out if t0 <= p.t < t1]
    out.sort(key=lambda p: p.t)
    return out


def replicated_pings(pings: list[Ping], copy: int) -> list[Ping]:
    p, (dx, dy) = f"c{copy}:", _offset(copy)
    return [dataclasses.replace(q, vehicle_id=p + q.vehicle_id, lat=q.lat + dy,
                                lon=q.lon + dx,
                                trip_id=p + q.trip_id if q.trip_id else None,
                                driver_id=p + q.driver_id if q.driver_id else None)
            for q in pings]


def bench_fleet(sizes: dict, workdir: Path) -> tuple[list[list[str]], list[str]]:
    demo = demo_feed()
    origin = service_day_origin(DAY, TIMEZONE)
    t_warm = origin + START_S
    t_start = t_warm + sizes["warmup"]
    t_end = t_start + sizes["seconds"]
    log("simulating the demo city's training day and test day")
    train = simulate_day(demo, TRAIN_DAY)
    day = simulate_day(demo, DAY)
    window = [p for p in day.pings if t_warm <= p.t < t_end]
    active = sorted({p.vehicle_id for p in window})
    copies = max(1, math.ceil(sizes["vehicles"] / len(active)))
    log(f"{len(active)} vehicles in service per city; {copies} cities side by side")
    feed = replicated_feed(demo, copies)
    predictor = ArrivalPredictor().learn(replicated_arrivals(train.arrivals, copies), feed)
    dense = one_hertz(day.pings, t_warm, t_end)
    pings: list[Ping] = []
    for k in range(copies):
        pings += replicated_pings(dense, k)
    chosen = sorted({p.vehicle_id for p in pings})[:sizes["vehicles"]]
    keep = set(chosen)
    silent = set(chosen[::SILENT_SHARE])
    pings = [dataclasses.replace(p, trip_id=None) if p.vehicle_id in silent else p
             for p in pings if p.vehicle_id in keep]
    pings.sort(key=lambda p: p.t)
    warm = [p for p in pings if p.t < t_start]
    timed = [p for p in pings if p.t >= t_start]
    log(f"{len(keep)} vehicles: {len(warm):,} warm-up pings, {len(timed):,} timed")

    fleet = LiveFleet(feed, predictor)
    for p in warm:
        fleet.process(p)
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    for p in timed:
        fleet.process(p)
    elapsed = time.perf_counter() - started
    gc.unfreeze()
    rate = len(timed) / elapsed
    reporting = len({p.vehicle_id for p in timed})
    on_trips = len(fleet.trip_states())
    predictions = len(fleet.predictions())
    log(f"fleet: {rate:,.0f} pings/s, {on_trips} trips under way, {predictions:,} predictions")

    # baseline: the same pings, only stored as the ingester stores them
    store = open_store(f"sqlite:///{workdir / 'store.db'}")
    tenant = "bench"
    first = {}
    for p in warm + timed:
        first.setdefault(p.vehicle_id, p)
    store.upsert_entities(tenant, [_fragment(p) for p in first.values()], replace=False)
    sample = timed[:sizes["store_pings"]]
    batches = [[_fragment(p) for p in sample[i:i + 1000]] for i in range(0, len(sample), 1000)]
    started = time.perf_counter()
    for batch in batches:
        result = store.upsert_entities(tenant, batch, replace=False)
        if result.errors:
            raise SystemExit(f"store baseline: {result.errors[0]}")
    stored = len(sample) / (time.perf_counter() - started)
    store.close()
    log(f"store only: {stored:,.0f} pings/s")
    rows = [[f"(i) LiveFleet.process, {reporting:,} vehicles at 1 Hz "
             f"({len(timed):,} pings)", f"{rate:,.0f} pings/s", ">= 5,000 pings/s",
             f"store only {stored:,.0f} pings/s", f"{rate / stored:.2f}x",
             "yes" if rate >= TARGET_PINGS_S else "NO"]]
    notes = [f"(i) {copies} demo cities, {len(keep):,} vehicles ({len(silent):,} without "
             f"trip ids), {on_trips:,} trips under way and {predictions:,} stop predictions "
             f"held at the end; {len(fleet.arrivals_log):,} stop passages observed in "
             f"{sizes['warmup'] + sizes['seconds']} s"]
    return rows, notes


def _fragment(ping: Ping) -> dict:
    """The store fragment the MQTT ingester makes of a device's report."""
    return observation_entity(ping_observation(ping), entity_type="Vehicle",
                              entity_id=entity_urn("Vehicle", ping.vehicle_id.replace(":", "-")))


# ====================================================================== GTFS import
_READ = """
import json, sys, time, tracemalloc
from cityos.apps.transit import gtfs
path, how, trace = sys.argv[1], sys.argv[2], sys.argv[3] == "trace"
if trace:
    tracemalloc.start()
started = time.perf_counter()
if how == "read_feed":
    feed = gtfs.read_feed(path, skip_invalid=True)
    size = len(feed.stop_times)
else:
    import csv, io, zipfile
    size = 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(".txt"):
                with archive.open(name) as raw:
                    for _row in csv.reader(io.TextIOWrapper(raw, "utf-8-sig", newline="")):
                        size += 1
elapsed = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1] if trace else 0
print(json.dumps({"s": elapsed, "peak_mb": peak / 2**20, "size": size}))
"""


def _measure(path: Path, how: str, trace: bool = False) -> dict:
    """One fresh interpreter reading ``path``: time, or (traced) peak allocations."""
    run = subprocess.run([sys.executable, "-c", _READ, str(path), how,
                          "trace" if trace else "time"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise SystemExit(f"{path.name} {how}: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_import(repeats: int) -> tuple[list[list[str]], list[str]]:
    rows, notes = [], []
    for label, name in FEEDS:
        path = GTFS_DIR / name
        if not path.exists():
            notes.append(f"(ii) {path} is absent: not measured")
            continue
        log(f"reading {name}")
        ours = min(_measure(path, "read_feed")["s"] for _ in range(repeats))
        plain = min(_measure(path, "csv")["s"] for _ in range(repeats))
        ours_mem = _measure(path, "read_feed", trace=True)
        plain_mem = _measure(path, "csv", trace=True)
        size_mb = path.stat().st_size / 1e6
        rows.append([f"(ii) gtfs.read_feed {label} ({size_mb:.1f} MB zip), time",
                     f"{ours:.2f} s", "", f"csv rows only {plain:.2f} s",
                     f"{ours / plain:.1f}x", ""])
        rows.append([f"(ii) gtfs.read_feed {label}, peak memory",
                     f"{ours_mem['peak_mb']:.1f} MB", "",
                     f"csv rows only {plain_mem['peak_mb']:.1f} MB",
                     f"{ours_mem['peak_mb'] / max(plain_mem['peak_mb'], 0.1):.1f}x", ""])
        notes.append(f"(ii) {label}: {ours_mem['size']:,} stop times from "
                     f"{plain_mem['size']:,} CSV rows")
    return rows, notes


# ======================================================= evaluation memory
_EVALUATE = r"""
import json, sys, time
from datetime import date
from cityos.apps.transit import synthetic
from cityos.apps.transit.evaluate_cli import evaluate_command, service_weekdays
days, routes, how = int(sys.argv[1]), sys.argv[2].split(",") if sys.argv[2] else None, sys.argv[3]
started = time.perf_counter()
predictions = 0
if how == "evaluate":
    report = evaluate_command(days=days, scenario="congested", seed=0, feed_path=None,
                              start="2025-03-03", every_s=30.0, save=None,
                              skip_invalid=False, dropped_list=None, routes=routes)
    predictions = report.predictions
else:  # the floor: one simulated day held in memory
    feed = synthetic.demo_feed(0)
    [day] = service_weekdays(feed, date(2025, 3, 3), 1)
    held = synthetic.simulate_day(feed, day, "congested", seed=0, route_ids=routes)
    predictions = len(held.pings)
# VmHWM: this program's own peak (ru_maxrss keeps the forking parent's after exec)
with open("/proc/self/status") as status:
    peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"peak_mb": peak_mb, "predictions": predictions,
                  "s": time.perf_counter() - started}))
"""


def _evaluate_memory(days: int, routes: list[str] | None, how: str) -> dict:
    """Peak RSS of a fresh interpreter evaluating (or, for the baseline, holding one
    simulated day)."""
    run = subprocess.run([sys.executable, "-c", _EVALUATE, str(days), ",".join(routes or []),
                          how], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise SystemExit(f"evaluate {days} day(s): {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_evaluate(days: int, routes: list[str] | None) -> tuple[list[list[str]], list[str]]:
    log(f"evaluate: 1 and {days} training days" + (f", routes {routes}" if routes else ""))
    floor = _evaluate_memory(1, routes, "hold")
    one = _evaluate_memory(1, routes, "evaluate")
    many = _evaluate_memory(days, routes, "evaluate")
    growth = many["peak_mb"] / one["peak_mb"]
    rows = []
    for label, result in (("1 training day", one), (f"{days} training days", many)):
        rows.append([f"(iii) transit evaluate, {label}, peak memory",
                     f"{result['peak_mb']:.0f} MB", "flat in days (<= 1.25x the 1-day "
                     "figure)", f"one simulated day held {floor['peak_mb']:.0f} MB",
                     f"{result['peak_mb'] / floor['peak_mb']:.2f}x",
                     yes_no(growth <= 1.25) if result is many else ""])
    which = "demo city" + (f", routes {', '.join(routes)}" if routes else "")
    notes = [f"(iii) {which}: {one['predictions']:,} stop predictions scored on the held-out "
             f"day; {days} training days use {growth:.2f}x the memory of 1 "
             f"({one['s']:.0f} s and {many['s']:.0f} s)"]
    return rows, notes


# ============================================================================ main
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--vehicles", type=int, help="vehicles in (i)")
    parser.add_argument("--seconds", type=int, help="seconds of pings timed in (i)")
    parser.add_argument("--warmup", type=int, help="seconds of pings before the timing")
    parser.add_argument("--store-pings", type=int, dest="store_pings",
                        help="pings stored by the baseline of (i)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of each (ii) measurement (best kept)")
    parser.add_argument("--eval-days", type=int, dest="eval_days", default=None,
                        help="training days of the larger (iii) evaluation")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up (with a stack dump) after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    faulthandler.dump_traceback_later(args.timeout or (240 if args.quick else 900), exit=True)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    repeats = args.repeats or (1 if args.quick else 3)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cityos-bench-transit-") as workdir:
        rows, notes = bench_fleet(sizes, Path(workdir))
    more_rows, more_notes = bench_import(repeats)
    rows += more_rows
    notes += more_notes
    more_rows, more_notes = bench_evaluate(args.eval_days or (2 if args.quick else 4),
                                           ["1"] if args.quick else None)
    rows += more_rows
    notes += more_notes
    kind = "full" if sizes == FULL else "quick" if sizes == QUICK else "custom"
    print_report("transit", kind, started, load_before, markdown(HEAD, rows), notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
