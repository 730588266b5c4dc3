#!/usr/bin/env python
"""Flood watch benchmark: quality checks and alerts on every reading, alert latency,
nowcasts of every sensor.

Prints one Markdown table. The city is synthetic (:mod:`cityos.apps.floodwatch.synthetic`):
``--sites`` flood-depth sensors (10,000) on a grid over a 10 km square, each with one of
``--responses`` known site responses (:func:`sample_site_params`), and a convective storm
(110 mm/h peak) whose cell covers about a third of the city and crosses it from west to
east. Each site's depth is :func:`site_response` to its own rain, read by a noisy sensor
(:func:`sensor_depth`) once a minute. Most sites stay dry, about one in ten floods past
10 cm, a few past 30 cm; one reading in a thousand is a spike (+25-60 cm) and one in two
thousand the sensor's error code (655.35 cm). Readings are written as the MQTT ingester
writes them: ``store.upsert_entities(tenant, [{"id", "type": "WaterObserved", "depth":
{..., "observedAt"}}], replace=False)``, into SQLite in a temporary directory, the sites
registered first with :func:`api.site_entities` (untimed). Reading times follow the
wall clock, so the service's offline sweep sees live sensors.

(i) readings/s through the live :class:`FloodWatchService` (the event handler, quality
    checks, alert state machines, quality flags and flood levels written back, Alert
    entities raised), ``--minutes`` minutes of every site's readings in batches of 1,000
    after ``--warmup`` untimed minutes (the tenant loads, the rate-of-rise windows
    fill), each minute timed from its first write until
    :meth:`FloodWatchService.wait_idle` returns. Baseline: the same readings
    stored, the same way, into a second store that no service watches (plain
    ingestion); the two are timed minute by minute in turn, so a change in the
    machine's load hits both. Ratio: time with the service over plain ingestion's
    time. Target (the floodwatch issue): at most 2x. Also the cost of the checks and
    alert state machines alone (:meth:`TenantFloodWatch.take` over the same readings,
    no store), per reading; and a cross-check that the live service flagged and alerted
    exactly as that loop did.
(ii) p50/p95/p99 delay from a reading to the webhook notification of the alert it
    raises: with the core :class:`SubscriptionManager` running, subscriptions on
    ``Alert`` (every alert) and on the probe sites' ``WaterObserved`` ``depth``, both
    notifying a real HTTP receiver in another process, and the other sites' readings
    flowing ``--speedup`` times faster than real time (the writer takes what has
    arrived, up to 1,000 readings a batch, as the MQTT ingester does), ``--probes``
    dry sites each get a reading at 6 cm, then, one by one at random moments, one at
    12 cm that crosses the 10 cm level. Delay: from just before that reading is written
    until the receiver (its own clock is the same ``CLOCK_MONOTONIC``) has the flood
    Alert naming the site. Baseline: the platform's own notification latency, the delay
    until the receiver has the same reading through the ``WaterObserved`` subscription.
    Target: p99 under 1 s.
(iii) nowcast time for every sensor: one :class:`SiteNowcaster` fitted per site
    response on ``--history-days`` of synthetic history (untimed), then a nowcast of
    all sites from their last 3 h of readings on the 1-minute grid (the gauge's tips
    and the sensor's depth), ending at the last reading of (i). The per-site
    :meth:`SiteNowcaster.predict` loop is timed on ``--nowcast-sample`` sites and scaled
    to all; :func:`nowcast_sites` (every site's calibrated conceptual model stepped
    together over arrays) is timed on all. Baseline: persistence for all sites,
    :class:`PersistenceNowcaster` per site (the same input checks). Target: within the
    one-minute reporting interval, for the path the live service takes
    (:class:`~cityos.apps.floodwatch.control.NowcastTask` steps the sites whose chosen
    model is the conceptual one together with :func:`nowcast_sites`). The vectorised nowcasts are checked against the
    per-site conceptual ones, and scored against the true depth 30 min later.

Usage::

    python bench/floodwatch.py            # full sizes (about 3 minutes)
    python bench/floodwatch.py --quick    # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import log, markdown, percentile, print_report, yes_no  # noqa: E402
from cityos.apps.floodwatch.api import site_entities  # noqa: E402
from cityos.apps.floodwatch.models import SITE_TYPE, Site  # noqa: E402
from cityos.apps.floodwatch.nowcast import (  # noqa: E402
    PersistenceNowcaster,
    ReservoirParams,
    SiteNowcaster,
    calibrate_reservoir,
    nowcast_sites,
)
from cityos.apps.floodwatch.service import (  # noqa: E402
    FloodWatchService,
    Reading,
    TenantFloodWatch,
)
from cityos.apps.floodwatch.synthetic import (  # noqa: E402
    SiteParams,
    Storm,
    sample_site_params,
    sensor_depth,
    site_response,
    storm_rain,
    synthetic_catchment,
    tipping_bucket,
)
from cityos.config import Settings  # noqa: E402
from cityos.core import subscriptions as subs  # noqa: E402
from cityos.core.store import open_store  # noqa: E402
from cityos.core.timefmt import format_datetime  # noqa: E402
from cityos.demo import CITY_CENTRE  # noqa: E402

TENANT = "bench"
DT_S = 60.0
CITY_KM = 10.0  # the sites cover a square this wide
KM_PER_DEG_LAT = 111.32
HISTORY_MIN = 180  # readings a nowcast starts from (3 h)
AFTER_MIN = 60  # minutes simulated after the first reading of (i)
CELL = (3.5, 6.0, 1.6)  # storm cell centre (km east, km north) and size (sd, km)
CELL_SPEED_MIN_PER_KM = 2.0  # the cell crosses the city west to east at 30 km/h
DRY_FACTOR = 0.08  # sites the cell gives less than this share of its rain stay dry
STORM = {"start_min": -25.0, "duration_min": 70.0, "peak_mm_per_h": 110.0,
         "peak_fraction": 0.3}
SPIKE_SHARE, ERROR_SHARE = 0.001, 0.0005
ERROR_CODE_CM = 655.35  # what an ultrasonic sensor reports when it sees no echo
PRE_CM, CROSSING_CM = 6.0, 12.0  # probe readings of (ii): below, then past 10 cm
LEVELS_CM = [10.0, 20.0, 30.0]
TARGET_RATIO = 2.0
TARGET_P99_S = 1.0
TARGET_NOWCAST_S = 60.0
PROBE_WAIT_S = 10.0

FULL = {"sites": 10_000, "warmup": 5, "minutes": 5, "probes": 300, "speedup": 2.0,
        "responses": 4, "history_days": 14.0, "nowcast_sample": 200}
QUICK = {"sites": 1_000, "warmup": 2, "minutes": 3, "probes": 30, "speedup": 2.0,
         "responses": 2, "history_days": 6.0, "nowcast_sample": 30}


HEAD = ["measure", "figure", "target (floodwatch issue)", "baseline",
        "ratio to baseline", "target met"]


# ===================================================================== the city
@dataclass
class StormCity:
    """The benchmark's sites and one storm over them, minute by minute.

    Arrays are ``(sites, minutes)`` over ``t_s``; minute ``first`` is the first
    reading written (the first warm-up minute of (i)).
    """

    t_s: np.ndarray
    first: int
    local_ids: list[str]
    lon: np.ndarray
    lat: np.ndarray
    response: np.ndarray  # index into ``responses`` per site
    responses: list[SiteParams]
    rain_mm: np.ndarray  # the gauge's tips
    depth_true_cm: np.ndarray
    depth_cm: np.ndarray  # what the sensor reads, before faults
    reported_cm: np.ndarray  # what it reports: with spikes and error codes
    wet: np.ndarray  # sites the storm reaches
    probes: np.ndarray  # dry sites kept for (ii)

    @property
    def site_ids(self) -> list[str]:
        return [f"urn:ngsi-ld:{SITE_TYPE}:{local}" for local in self.local_ids]

    def stamp(self, minute: int) -> str:
        return format_datetime(datetime.fromtimestamp(float(self.t_s[minute]), UTC))


def storm_city(sites: int, responses: int, probes: int, first_t_s: float,
               seed: int = 7) -> StormCity:
    """A storm over ``sites`` sensors; the first reading written falls at ``first_t_s``."""
    rng = np.random.default_rng(seed)
    params = [sample_site_params(rng) for _ in range(responses)]
    columns = math.ceil(math.sqrt(sites))
    spacing = CITY_KM / columns
    index = np.arange(sites)
    x_km = (index % columns + 0.5) * spacing
    y_km = (index // columns + 0.5) * spacing
    cx, cy, sd = CELL
    share = np.exp(-0.5 * ((x_km - cx) ** 2 + (y_km - cy) ** 2) / sd**2)
    factor = share * np.exp(0.35 * rng.standard_normal(sites) - 0.35**2 / 2)
    wet = factor >= DRY_FACTOR
    lag_min = (x_km - cx) * CELL_SPEED_MIN_PER_KM
    minutes = np.arange(-HISTORY_MIN - 30, AFTER_MIN + 1)
    t = first_t_s + DT_S * minutes
    first = int(np.searchsorted(minutes, 0))
    storm = Storm(first_t_s + 60.0 * STORM["start_min"], STORM["duration_min"],
                  STORM["peak_mm_per_h"], STORM["peak_fraction"])
    rain_true = np.zeros((sites, t.size))
    for s in np.flatnonzero(wet):
        rain_true[s] = storm_rain(t, [storm], DT_S, seed=seed * 100_003 + int(s),
                                  intensity_factor=factor[s], lag_min=lag_min[s])
    response = index % responses
    depth_true = site_response([params[r] for r in response], rain_true, DT_S).depth_cm
    depth = sensor_depth(depth_true, params[0], rng)  # the sensors share noise and steps
    dry = np.flatnonzero(~wet)
    if probes > dry.size:
        raise SystemExit(f"--probes: {probes} probe sites wanted, only {dry.size} dry sites")
    chosen = dry[np.linspace(0, dry.size - 1, probes).astype(int)] if probes else dry[:0]
    # faults on the readings written (never on a probe site: its readings are scripted)
    reported = depth.copy()
    live = np.zeros(depth.shape, dtype=bool)
    live[:, first:] = True
    live[chosen] = False
    draw = rng.random(depth.shape)
    spikes = live & (draw < SPIKE_SHARE)
    errors = live & (draw >= SPIKE_SHARE) & (draw < SPIKE_SHARE + ERROR_SHARE)
    reported[spikes] += np.round(rng.uniform(25.0, 60.0, int(spikes.sum())), 1)
    reported[errors] = ERROR_CODE_CM
    lon = CITY_CENTRE[0] + (x_km - CITY_KM / 2) / (
        KM_PER_DEG_LAT * math.cos(math.radians(CITY_CENTRE[1])))
    lat = CITY_CENTRE[1] + (y_km - CITY_KM / 2) / KM_PER_DEG_LAT
    return StormCity(t, first, [f"fw-bench-{s:05d}" for s in range(sites)], lon, lat,
                     response, params, tipping_bucket(rain_true, 0.2), depth_true,
                     np.round(depth, 1), np.round(reported, 2), wet, chosen)


def register(store, city: StormCity) -> None:
    """The sites as an operator registers them (a Device and a WaterObserved each)."""
    entities = []
    for local, lon, lat in zip(city.local_ids, city.lon.tolist(), city.lat.tolist(),
                               strict=True):
        entities += site_entities({"id": local, "name": f"Road sag {local[-5:]}",
                                   "lon": round(lon, 6), "lat": round(lat, 6),
                                   "alertLevels": LEVELS_CM})
    for first in range(0, len(entities), 5000):
        result = store.upsert_entities(TENANT, entities[first:first + 5000])
        if result.errors:
            raise SystemExit(f"registering the sites: {result.errors[0]}")


def reading(site_id: str, depth_cm: float, stamp: str) -> dict:
    """A depth reading as the MQTT ingester merges it into the site's entity."""
    return {"id": site_id, "type": SITE_TYPE,
            "depth": {"type": "Property", "value": depth_cm, "unitCode": "CMT",
                      "observedAt": stamp}}


def minute_readings(city: StormCity, minute: int, sites: list[int] | None = None) -> list[dict]:
    ids = city.site_ids
    stamp = city.stamp(minute)
    values = city.reported_cm[:, minute].tolist()
    chosen = range(len(ids)) if sites is None else sites
    return [reading(ids[s], values[s], stamp) for s in chosen]


def write_batches(store, fragments: list[dict], batch: int = 1000) -> None:
    for first in range(0, len(fragments), batch):
        result = store.upsert_entities(TENANT, fragments[first:first + batch], replace=False)
        if result.errors:
            raise SystemExit(f"storing readings: {result.errors[0]}")


# ==================================================== (i) readings through the service
def bench_ingest(city: StormCity, warmup: int, minutes: int, workdir: Path):
    """(i); returns the rows, the notes, and the watched store with its running service."""
    n_sites = len(city.local_ids)
    plain = open_store(f"sqlite:///{workdir / 'plain.db'}")
    watched = open_store(f"sqlite:///{workdir / 'watched.db'}")
    log(f"registering {n_sites:,} sites in each of two stores")
    register(plain, city)
    register(watched, city)
    service = FloodWatchService(watched)
    service.start()
    warm = range(city.first, city.first + warmup)
    start = warm.stop  # the first timed minute
    log(f"{warmup} warm-up minutes (the service loads the tenant, its windows fill)")
    for minute in warm:
        write_batches(plain, minute_readings(city, minute))
        write_batches(watched, minute_readings(city, minute))
        if not service.wait_idle(300):
            raise SystemExit("(i) the service did not finish a warm-up minute in 300 s")
    plain_s = watched_s = 0.0
    notes: list[str] = []
    for minute in range(start, start + minutes):
        batches = [minute_readings(city, minute), minute_readings(city, minute)]
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        write_batches(plain, batches[0])
        plain_s += time.perf_counter() - started
        started = time.perf_counter()
        write_batches(watched, batches[1])
        idle = service.wait_idle(300)
        watched_s += time.perf_counter() - started
        gc.unfreeze()
        if not idle:
            raise SystemExit("(i) the service did not catch up within 300 s")
    plain.close()
    timed = n_sites * minutes
    plain_rate, watched_rate = timed / plain_s, timed / watched_s
    log(f"plain {plain_rate:,.0f} readings/s, with the flood watch {watched_rate:,.0f}/s")

    # the checks and alert state machines alone, over the same readings, no store
    sites = [Site.from_entity(site_entities({"id": local, "lon": lon, "lat": lat,
                                             "alertLevels": LEVELS_CM})[1])
             for local, lon, lat in zip(city.local_ids, city.lon.tolist(),
                                        city.lat.tolist(), strict=True)]
    alone = TenantFloodWatch(TENANT, sites, {}, [])
    ids = city.site_ids

    def readings_of(minute: int) -> list[Reading]:
        t = float(city.t_s[minute])
        return [Reading(TENANT, ids[s], SITE_TYPE, t, v)
                for s, v in enumerate(city.reported_cm[:, minute].tolist())]

    events = []
    for r in [r for minute in warm for r in readings_of(minute)]:
        events += alone.take(r)[1]
    loop = [r for minute in range(start, start + minutes) for r in readings_of(minute)]
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    for r in loop:
        events += alone.take(r)[1]
    take_s = time.perf_counter() - started
    gc.unfreeze()
    take_us, plain_us = take_s / timed * 1e6, plain_s / timed * 1e6

    state = service.tenant(TENANT)
    opened, open_sites = 0, set()
    for watch, event in events:
        if event.kind == "rate-of-rise":
            opened += 1
        elif event.kind == "level" and watch.site.site_id not in open_sites:
            open_sites.add(watch.site.site_id)
            opened += 1
        elif event.kind == "all-clear":
            open_sites.discard(watch.site.site_id)
    kinds = {}
    for _, event in events:
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
    wrong = []
    if state.flagged != alone.flagged:
        wrong.append(f"the service flagged {state.flagged:,} readings, the loop {alone.flagged:,}")
    if state.alerts_raised != opened:
        wrong.append(f"the service raised {state.alerts_raised:,} alerts, the loop {opened:,}")
    if service.dropped:
        wrong.append(f"the service dropped {service.dropped:,} readings (queue full)")
    delays = list(service.alert_delays_s)
    ratio = watched_s / plain_s
    rows = [[f"(i) readings through the flood watch service, {n_sites:,} sites x {minutes} "
             f"min ({timed:,} readings)", f"{watched_rate:,.0f} readings/s",
             f"<= {TARGET_RATIO:.0f}x plain ingestion's time",
             f"plain ingestion {plain_rate:,.0f} readings/s", f"{ratio:.2f}x",
             yes_no(ratio <= TARGET_RATIO and not wrong)],
            [f"(i) quality + alerting alone (TenantFloodWatch.take, no store), "
             f"{timed:,} readings", f"{take_us:.1f} us/reading ({timed / take_s:,.0f}/s)", "",
             f"plain ingestion {plain_us:.1f} us/reading", f"{take_us / plain_us:.2f}x", ""]]
    notes.append(f"(i) {int(city.wet.sum()):,} of {n_sites:,} sites under the storm, "
                 f"{int((city.depth_true_cm[:, start:start + minutes] >= 10).any(axis=1).sum()):,}"
                 f" at 10 cm or more in the timed minutes; {alone.flagged:,} readings flagged, "
                 f"alert events " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))
                 + f", {state.alerts_raised:,} Alert entities raised (warm-up "
                 f"included); service and loop agree: {'no' if wrong else 'yes'}")
    if delays:
        notes.append(f"(i) in the service, reading queued -> alert written: p50 "
                     f"{percentile(delays, 0.5) * 1000:.0f} ms, p99 "
                     f"{percentile(delays, 0.99) * 1000:.0f} ms over {len(delays):,} alert "
                     "events (readings written as fast as the store takes them)")
    notes += [f"(i) WRONG: {w}" for w in wrong]
    return rows, notes, watched, service


# ===================================================== (ii) reading -> notification
_RECEIVER = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()

def value(entity, name):
    attribute = entity.get(name)
    return attribute.get("value") if isinstance(attribute, dict) else attribute

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real webhook receiver

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        at = time.monotonic()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        seen = []
        for entity in json.loads(raw).get("data", []):
            depth = entity.get("depth")
            seen.append([entity.get("type"), entity.get("id"), value(entity, "alertSource"),
                         value(entity, "subCategory"),
                         depth.get("observedAt") if isinstance(depth, dict) else None])
        with lock:
            sys.stdout.write(json.dumps([at, seen]) + "\n")
            sys.stdout.flush()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
"""


class ReceiverProcess:
    """A webhook receiver in its own process; notes when each probe's notifications
    arrive (``time.monotonic`` there, the same system-wide clock as here)."""

    def __init__(self, probe_ids: dict[str, str]) -> None:
        self.probe_ids = probe_ids  # site id -> stamp of its crossing reading
        self.alert_at: dict[str, float] = {}
        self.reading_at: dict[str, float] = {}
        self.other_alerts = 0
        self.changed = threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-c", _RECEIVER], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self.port = int(self.process.stdout.readline())
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    def _read(self) -> None:
        for line in self.process.stdout:
            at, seen = json.loads(line)
            with self.changed:
                for kind, entity_id, source, sub_category, observed in seen:
                    if kind == "Alert" and sub_category == "flood" and source in self.probe_ids:
                        self.alert_at.setdefault(source, at)
                    elif kind == "Alert":
                        self.other_alerts += 1
                    elif kind == SITE_TYPE and observed == self.probe_ids.get(entity_id):
                        self.reading_at.setdefault(entity_id, at)
                self.changed.notify_all()

    def wait_for(self, site_id: str, timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: site_id in self.alert_at
                                         and site_id in self.reading_at, timeout_s)

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.reader.join(5)


class BackgroundReadings(threading.Thread):
    """The other sites' readings arriving ``speedup`` x faster than real time, each
    sensor at its own moment of the minute, written in what-has-arrived batches."""

    def __init__(self, store, city: StormCity, first_minute: int, speedup: float) -> None:
        super().__init__(daemon=True, name="bench-background")
        self.store, self.city, self.minute = store, city, first_minute
        self.speedup = speedup
        probes = set(city.probes.tolist())
        self.sites = [s for s in range(len(city.local_ids)) if s not in probes]
        self.offsets = np.sort(np.random.default_rng(5).uniform(0, DT_S, len(self.sites)))
        self.stop_flag = threading.Event()
        self.written = 0
        self.batches = 0
        self.ran_out = False

    def run(self) -> None:
        started = time.monotonic()
        first_minute = self.minute
        scale = 1.0 / self.speedup
        while not self.stop_flag.is_set():
            if self.minute >= self.city.t_s.size:
                self.ran_out = True
                return
            fragments = minute_readings(self.city, self.minute, self.sites)
            base = started + (self.minute - first_minute) * DT_S * scale
            done = 0
            while done < len(fragments) and not self.stop_flag.is_set():
                wait = base + self.offsets[done] * scale - time.monotonic()
                if wait > 0:
                    self.stop_flag.wait(wait)
                    continue
                arrived = int(np.searchsorted(self.offsets, (time.monotonic() - base) / scale,
                                              side="right"))
                upto = min(max(arrived, done + 1), done + 1000)
                result = self.store.upsert_entities(TENANT, fragments[done:upto],
                                                    replace=False)
                if result.errors:
                    log(f"background readings: {result.errors[0]}")
                self.written += upto - done
                self.batches += 1
                done = upto
            self.minute += 1


def bench_alert_latency(city: StormCity, store, service, first_minute: int, probes: int,
                        speedup: float) -> tuple[list[list[str]], list[str]]:
    ids = city.site_ids
    probe_sites = [ids[s] for s in city.probes.tolist()][:probes]
    pre_minute = first_minute  # the probes skip the background's minutes from here on
    pre_stamp, cross_stamp = city.stamp(pre_minute), city.stamp(pre_minute + 1)
    receiver = ReceiverProcess({site: cross_stamp for site in probe_sites})
    manager = subs.SubscriptionManager(store, Settings(
        database_url="sqlite:///unused.db", mqtt_url=None, bus_url="memory://",
        auth_required=False))
    manager.start()
    background = None
    notes: list[str] = []
    try:
        subs.create_subscription(store, TENANT, {
            "entities": [{"type": "Alert"}],
            "notification": {"endpoint": {"uri": receiver.url()}}})
        pattern = "|".join(local for local in (ids[s].rsplit(":", 1)[1]
                                                for s in city.probes.tolist()[:probes]))
        subs.create_subscription(store, TENANT, {
            "entities": [{"type": SITE_TYPE,
                          "idPattern": f"urn:ngsi-ld:{SITE_TYPE}:({pattern})"}],
            "watchedAttributes": ["depth"],
            "notification": {"endpoint": {"uri": receiver.url()}}})
        rng = random.Random(11)
        write_batches(store, [reading(site, round(PRE_CM + rng.uniform(-0.5, 0.5), 1),
                                      pre_stamp) for site in probe_sites])
        service.wait_idle(60)
        manager.flush(60)
        background = BackgroundReadings(store, city, first_minute, speedup)
        background.start()
        time.sleep(2.0)  # the background flow settles
        log(f"(ii) {probes} probes, background {speedup:g}x real time")
        alert_s, reading_s, missed = [], [], 0
        gc.collect()
        gc.freeze()
        for site in probe_sites:
            time.sleep(rng.uniform(0.0, 0.1))  # land anywhere between background batches
            fragment = reading(site, round(CROSSING_CM + rng.uniform(-0.5, 0.5), 1),
                               cross_stamp)
            written_at = time.monotonic()
            result = store.upsert_entities(TENANT, [fragment], replace=False)
            if result.errors:
                raise SystemExit(f"(ii) probe reading: {result.errors[0]}")
            if not receiver.wait_for(site, PROBE_WAIT_S):
                missed += 1
                continue
            alert_s.append(receiver.alert_at[site] - written_at)
            reading_s.append(receiver.reading_at[site] - written_at)
        gc.unfreeze()
    finally:
        if background is not None:
            background.stop_flag.set()
            background.join(30)
        service.wait_idle(60)
        manager.flush(30)
        manager.stop()
        receiver.close()
    if not alert_s:
        return [["(ii) reading -> alert notification", "n/a", "p99 < 1 s", "", "", "NO"]], \
            [f"(ii) WRONG: no notification of {probes} probes arrived"]
    p = {q: percentile(alert_s, q) * 1000 for q in (0.5, 0.95, 0.99)}
    base = {q: percentile(reading_s, q) * 1000 for q in (0.5, 0.95, 0.99)}
    rows = [[f"(ii) reading -> flood alert notification (webhook), p50 / p95 / p99, "
             f"n = {len(alert_s)}", f"{p[0.5]:.0f} / {p[0.95]:.0f} / {p[0.99]:.0f} ms",
             f"p99 < {TARGET_P99_S:g} s",
             f"reading's own notification p50 {base[0.5]:.0f} / p99 {base[0.99]:.0f} ms",
             f"{p[0.99] / base[0.99]:.1f}x",
             yes_no(p[0.99] < TARGET_P99_S * 1000 and not missed)]]
    elapsed_min = background.written / max(len(background.sites), 1)
    notes.append(f"(ii) background: {background.written:,} readings of "
                 f"{len(background.sites):,} sites ({elapsed_min:.1f} min of readings) in "
                 f"{background.batches:,} batches at {speedup:g}x real time; "
                 f"{receiver.other_alerts:,} other Alert notifications delivered meanwhile"
                 + ("; the simulated readings ran out" if background.ran_out else ""))
    if missed:
        notes.append(f"(ii) WRONG: {missed} of {probes} probes not notified within "
                     f"{PROBE_WAIT_S:g} s")
    return rows, notes


# ============================================================= (iii) nowcasts
def bench_nowcast(city: StormCity, end_minute: int, history_days: float,
                  sample: int) -> tuple[list[list[str]], list[str]]:
    n_sites = len(city.local_ids)
    log(f"(iii) fitting {len(city.responses)} site nowcasters on {history_days:g} days")
    history = synthetic_catchment(seed=23, days=history_days, site_params=city.responses,
                                  storms_per_day=1.0)
    started = time.perf_counter()
    models, params, notes = [], [], []
    for r in range(len(city.responses)):
        model = SiteNowcaster().fit(history.t_s, history.rain_mm[r], history.depth_cm[r])
        models.append(model)
        conceptual = model.models.get("conceptual")
        if conceptual is not None:
            params.append(conceptual.params)
        else:  # the vectorised path needs a calibration; try it directly
            calibration = calibrate_reservoir(history.t_s, history.rain_mm[r],
                                              history.depth_cm[r])
            params.append(calibration.params)
    fit_s = time.perf_counter() - started
    window = slice(end_minute - HISTORY_MIN, end_minute + 1)
    t = city.t_s[window]
    rain, depth = city.rain_mm[:, window], city.depth_cm[:, window]
    rain_rows, depth_rows = list(rain), list(depth)

    gc.collect()
    gc.freeze()
    persistence = PersistenceNowcaster()
    started = time.perf_counter()
    for s in range(n_sites):
        persistence.predict_series(t, rain_rows[s], depth_rows[s])[-1]
    persistence_s = time.perf_counter() - started

    picks = np.linspace(0, n_sites - 1, min(sample, n_sites)).astype(int).tolist()
    casts = {}
    started = time.perf_counter()
    for s in picks:
        casts[s] = models[city.response[s]].predict(t, rain_rows[s], depth_rows[s])
    loop_s = (time.perf_counter() - started) / len(picks) * n_sites

    usable = [s for s in range(n_sites) if params[city.response[s]] is not None]
    if not usable:
        raise SystemExit("(iii) no site response could be calibrated: lengthen "
                         "--history-days")
    site_params: list[ReservoirParams] = [params[city.response[s]] for s in usable]
    started = time.perf_counter()
    vectorised = nowcast_sites(site_params, rain[usable], depth[usable], DT_S)
    vector_s = time.perf_counter() - started
    gc.unfreeze()

    row_of = {s: k for k, s in enumerate(usable)}
    gaps = [float(np.max(np.abs(vectorised[row_of[s]] - casts[s].by_model["conceptual"])))
            for s in picks if s in row_of and "conceptual" in casts[s].by_model]
    wrong = [f"nowcast_sites differs from SiteNowcaster's conceptual model by up to "
             f"{max(gaps):.3g} cm"] if gaps and max(gaps) > 1e-6 else []
    # skill at 30 min against the truth, over the sites with water on the road
    truth = city.depth_true_cm[usable, end_minute + 30]
    now = city.depth_true_cm[usable, end_minute]
    flooded = (truth >= 1.0) | (now >= 1.0)
    rmse = lambda v: float(np.sqrt(np.mean((v[flooded] - truth[flooded]) ** 2)))  # noqa: E731
    skill = (f"; at 30 min over the {int(flooded.sum()):,} sites with water, RMSE against the "
             f"true depth: vectorised conceptual {rmse(vectorised[:, -1]):.2f} cm, "
             f"persistence {rmse(depth[usable, -1]):.2f} cm") if flooded.any() else ""
    chosen = {}
    for s in picks:
        chosen[casts[s].model] = chosen.get(casts[s].model, 0) + 1
    notes.append(f"(iii) {len(models)} site responses fitted in {fit_s:.1f} s (untimed), "
                 "chosen " + ", ".join(m.chosen for m in models) + "; sampled sites use "
                 + ", ".join(f"{k} {v}" for k, v in sorted(chosen.items()))
                 + f"; nowcast_sites agrees with the per-site conceptual nowcasts to "
                 f"{max(gaps) if gaps else math.nan:.1g} cm" + skill)
    notes += [f"(iii) WRONG: {w}" for w in wrong]
    rows = [[f"(iii) nowcast all {n_sites:,} sites one by one, SiteNowcaster.predict "
             f"(every candidate model; timed on {len(picks)}, scaled)", f"{loop_s:.1f} s",
             "", f"persistence {persistence_s:.2f} s", f"{loop_s / persistence_s:.0f}x", ""],
            [f"(iii) nowcast all {len(usable):,} sites together, nowcast_sites (the live "
             "service's step for conceptual sites)", f"{vector_s:.2f} s",
             f"< {TARGET_NOWCAST_S:g} s (reporting interval)",
             f"persistence {persistence_s:.2f} s", f"{vector_s / persistence_s:.1f}x",
             yes_no(vector_s < TARGET_NOWCAST_S and not wrong)]]
    return rows, notes


# ============================================================================ main
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--sites", type=int, help="flood-depth sensors")
    parser.add_argument("--warmup", type=int, help="minutes of readings before the timing")
    parser.add_argument("--minutes", type=int, help="minutes of readings timed in (i)")
    parser.add_argument("--probes", type=int, help="level-crossing readings in (ii)")
    parser.add_argument("--speedup", type=float,
                        help="background readings of (ii), times real time")
    parser.add_argument("--responses", type=int, help="distinct site responses (models)")
    parser.add_argument("--history-days", type=float, dest="history_days",
                        help="synthetic history the nowcasters of (iii) learn from")
    parser.add_argument("--nowcast-sample", type=int, dest="nowcast_sample",
                        help="sites the per-site nowcast loop of (iii) is timed on")
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
    for key in ("sites", "warmup", "minutes"):
        if sizes[key] < 1:
            raise SystemExit(f"--{key}: must be at least 1")
    if not 0 < sizes["speedup"] <= 100:
        raise SystemExit("--speedup: must be above 0 and at most 100")
    if sizes["warmup"] + sizes["minutes"] + 2 + 30 > AFTER_MIN:
        raise SystemExit(f"--warmup + --minutes: at most {AFTER_MIN - 32}")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    first_t = math.floor(time.time() / DT_S) * DT_S
    log(f"simulating a storm over {sizes['sites']:,} sites")
    city = storm_city(sizes["sites"], sizes["responses"], sizes["probes"], first_t)
    last = city.first + sizes["warmup"] + sizes["minutes"] - 1  # the last minute of (i)
    with tempfile.TemporaryDirectory(prefix="cityos-bench-floodwatch-") as workdir:
        rows, notes, store, service = bench_ingest(city, sizes["warmup"], sizes["minutes"],
                                                   Path(workdir))
        try:
            more_rows, more_notes = bench_alert_latency(city, store, service, last + 1,
                                                        sizes["probes"], sizes["speedup"])
        finally:
            service.stop()
            store.close()
    rows += more_rows
    notes += more_notes
    more_rows, more_notes = bench_nowcast(city, last, sizes["history_days"],
                                          sizes["nowcast_sample"])
    rows += more_rows
    notes += more_notes
    kind = "full" if sizes == FULL else "quick" if sizes == QUICK else "custom"
    print_report("floodwatch", kind, started, load_before, markdown(HEAD, rows), notes)
    return 1 if any("WRONG" in n for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
