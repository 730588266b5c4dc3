#!/usr/bin/env python
"""Core benchmark: the context store, the NGSI-LD API and MQTT ingestion.

Prints one Markdown table, per backend (SQLite and PostgreSQL + PostGIS):

(a) raw backend ceiling: bulk insert rows/s straight into the ``entities`` table of
    prepared JSON documents, no NGSI-LD logic (SQLite: ``executemany`` in one
    transaction; PostgreSQL: ``COPY``, its fastest path) -- the baseline of (b), (c);
(b) HTTP batch upsert observations/s through the real API (``cityos serve`` in a
    subprocess, ``POST /ngsi-ld/v1/entityOperations/upsert?options=update``);
(c) MQTT end to end observations/s, from the first QoS 1 publish until every
    observation is in the store: a private Mosquitto configured as a city's broker, the
    ``MqttIngester`` in a subprocess, the devices one connection of pre-encoded packets;
(d) p50/p99 latency of a ``q`` + ``georel=near`` query among N entities, through the
    store API and through HTTP; baseline: the backend's own bounding-box index query
    for the same place, rows fetched and not decoded;
(e) p50/p99 latency of a temporal query (one entity, one day of 1-minute data) with M
    history rows in the table, store API and HTTP; baseline: the raw SQL range scan.

Set-up data (the entities of (d) go through the store API; the history rows of (e) are
bulk-loaded straight into the history table with ``executemany`` / ``COPY``, series by
series) is not timed. Before the latency figures the planner statistics are refreshed
(as autovacuum would have done) and set-up objects are frozen out of the garbage
collector (as ``cityos serve`` does after start-up). Targets are those of the
platform-core issue (section Speed), stated there for SQLite on the 2-core machine.
docs/performance.md explains each row and what limits it.

Usage::

    python bench/core.py                      # full sizes, both backends
    python bench/core.py --quick              # a smoke run in seconds (SQLite)
    python bench/core.py --backends postgresql --entities 20000 --history-rows 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import math
import os
import random
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench._common import log, markdown, percentile, print_report, yes_no  # noqa: E402
from cityos.core.store import EntityQuery, TemporalQuery, open_store  # noqa: E402
from cityos.core.tenancy import create_key  # noqa: E402
from cityos.core.timefmt import format_datetime, to_micros  # noqa: E402

CENTRE = (101.6958, 3.1466)  # lon, lat of the synthetic city
SPREAD_DEG = 0.1  # entities of (d) lie within +-0.1 degrees (~22 km square)
NEAR_M = 500
HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC)
MINUTES_PER_SERIES = 10_000  # ~6.9 days of 1-minute data per entity in (e)
DAY_MINUTES = 1440
API = "/ngsi-ld/v1"

FULL = {"observations": 20_000, "mqtt_observations": 20_000, "entities": 100_000,
        "history_rows": 10_000_000, "queries": 300}
QUICK = {"observations": 2_000, "mqtt_observations": 2_000, "entities": 2_000,
         "history_rows": 20_000, "queries": 30}


# ---------------------------------------------------------------------- results
@dataclass
class Row:
    """One line of the table."""

    backend: str
    measure: str
    via: str
    figure: str
    target: str = ""
    baseline: str = ""
    ratio: str = ""
    met: str = ""


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    return percentile(samples_s, 0.50) * 1000, percentile(samples_s, 0.99) * 1000


def timed(call: Callable[[], object], repeats: int, warmup: int = 5) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def table(rows: list[Row]) -> str:
    head = ["backend", "measure", "via", "figure", "target (issue 2)", "baseline",
            "ratio to baseline", "target met"]
    return markdown(head, [[r.backend, r.measure, r.via, r.figure, r.target, r.baseline,
                            r.ratio, r.met] for r in rows])


# --------------------------------------------------------------------- backends
class Backend:
    """A throwaway database and the raw SQL the baselines and the set-up need."""

    name = "?"
    url = ""
    placeholder = "?"  # the DB-API parameter marker of the driver

    def raw_insert_entities(self, tenant: str, rows: list[tuple]) -> float:
        """Insert ``(id, types_json, doc_json)`` rows in one transaction; seconds."""
        raise NotImplementedError

    def delete_tenant(self, tenant: str) -> None:
        raise NotImplementedError

    def raw_bbox(self, tenant: str, bbox: tuple[float, float, float, float]) -> int:
        """Fetch (undecoded) the documents whose location box meets ``bbox``."""
        raise NotImplementedError

    def raw_history(self, tenant: str, entity_id: str, start_us: int, end_us: int) -> int:
        raise NotImplementedError

    def bulk_history(self, tenant: str, rows: Iterator[tuple]) -> None:
        """Load ``(entity_id, attribute, dataset, observed_us, type, instance_json,
        number)`` rows straight into the history table."""
        raise NotImplementedError

    def has_history(self, tenant: str, entity_id: str, attribute: str, observed_us: int) -> bool:
        p = self.placeholder
        return self.conn.execute(
            f"SELECT 1 FROM history WHERE tenant = {p} AND entity_id = {p} AND attribute = {p} "
            f"AND dataset_id = '@none' AND observed_us = {p}",
            (tenant, entity_id, attribute, observed_us)).fetchone() is not None

    def count_history(self, tenant: str) -> int:
        return self.conn.execute(
            f"SELECT count(*) FROM history WHERE tenant = {self.placeholder}",
            (tenant,)).fetchone()[0]

    def analyze(self) -> None:
        """Refresh the planner's statistics after a bulk load."""

    def settle(self) -> None:
        """Between set-up and timing: statistics as autovacuum would have them by now,
        and this process's set-up objects frozen out of the cyclic garbage collector,
        as ``cityos serve`` freezes its start-up objects (see :func:`gc.freeze`)."""
        self.analyze()
        gc.collect()
        gc.freeze()

    def close(self) -> None:
        pass


class SqliteBackend(Backend):
    name = "SQLite"
    raw_method = "SQL executemany"

    def __init__(self, workdir: Path):
        self.path = workdir / "bench.db"
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # as the store runs it
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
        return conn

    def raw_insert_entities(self, tenant, rows):
        now = to_micros(datetime.now(UTC))
        params = [(tenant, i, doc.encode(), now, now) for i, _, doc in rows]
        start = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO entities (tenant, id, doc, created_us, modified_us) "
                              "VALUES (?, ?, ?, ?, ?)", params)
        self.conn.execute("COMMIT")
        return time.perf_counter() - start

    def delete_tenant(self, tenant):
        self.conn.execute("DELETE FROM entities WHERE tenant = ?", (tenant,))

    def raw_bbox(self, tenant, bbox):
        return len(self.conn.execute(
            "SELECT e.doc FROM entity_geo g CROSS JOIN entities e ON e.pk = g.pk "
            "WHERE g.max_lon >= ? AND g.min_lon <= ? AND g.max_lat >= ? AND g.min_lat <= ? "
            "AND e.tenant = ?", (bbox[0], bbox[2], bbox[1], bbox[3], tenant)).fetchall())

    def raw_history(self, tenant, entity_id, start_us, end_us):
        return len(self.conn.execute(
            "SELECT observed_us, instance FROM history WHERE tenant = ? AND entity_id = ? "
            "AND attribute = 'depth' AND dataset_id = '@none' AND observed_us >= ? "
            "AND observed_us < ? ORDER BY observed_us",
            (tenant, entity_id, start_us, end_us)).fetchall())

    def bulk_history(self, tenant, rows):
        conn = self.conn
        conn.execute("PRAGMA synchronous=OFF")  # set-up only
        series = set()
        chunk: list[tuple] = []

        def flush() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO history (tenant, entity_id, attribute, "
                             "dataset_id, observed_us, entity_type, instance, number) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk)
            conn.execute("COMMIT")
            chunk.clear()

        for entity_id, attribute, dataset, observed, etype, instance, number in rows:
            series.add((tenant, entity_id, attribute, dataset))
            chunk.append((tenant, entity_id, attribute, dataset, observed, etype,
                          instance.encode(), number))
            if len(chunk) >= 200_000:
                flush()
        if chunk:
            flush()
        conn.executemany("INSERT OR IGNORE INTO history_series VALUES (?, ?, ?, ?)", series)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class PostgresBackend(Backend):
    name = "PostgreSQL"
    raw_method = "SQL COPY"
    placeholder = "%s"

    def __init__(self, admin_url: str):
        import psycopg

        self.admin_url = admin_url
        self.database = f"cityos_bench_{secrets.token_hex(4)}"
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.database
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        self._local = threading.local()
        self._all: list = []

    @property
    def conn(self):
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = psycopg.connect(self.url, autocommit=True)
            self._all.append(conn)
        return conn

    def raw_insert_entities(self, tenant, rows):
        # COPY, PostgreSQL's fastest bulk path (executemany is ~2x slower here)
        now = to_micros(datetime.now(UTC))
        params = [(tenant, i, orjson.loads(types), doc, now, now) for i, types, doc in rows]
        start = time.perf_counter()
        with self.conn.transaction(), self.conn.cursor() as cursor, cursor.copy(
                "COPY entities (tenant, id, types, doc, created_us, modified_us) "
                "FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
        return time.perf_counter() - start

    def delete_tenant(self, tenant):
        self.conn.execute("DELETE FROM entities WHERE tenant = %s", (tenant,))

    def analyze(self):
        # what autovacuum does within a minute of a bulk load; without it the planner
        # still believes the tables empty and ANDs the tenant index into every query
        self.conn.execute("ANALYZE entities")
        self.conn.execute("ANALYZE history")

    def raw_bbox(self, tenant, bbox):
        return len(self.conn.execute(
            "SELECT doc::text FROM entities WHERE tenant = %s "
            "AND location && ST_MakeEnvelope(%s, %s, %s, %s, 4326)",
            (tenant, *bbox)).fetchall())

    def raw_history(self, tenant, entity_id, start_us, end_us):
        return len(self.conn.execute(
            "SELECT observed_us, instance::text FROM history WHERE tenant = %s "
            "AND entity_id = %s AND attribute = 'depth' AND dataset_id = '@none' "
            "AND observed_us >= %s AND observed_us < %s ORDER BY observed_us",
            (tenant, entity_id, start_us, end_us)).fetchall())

    def bulk_history(self, tenant, rows):
        # PostgreSQL's own bulk-load recipe: drop the indexes, COPY, build the indexes
        # again (one sort instead of ten million B-tree descents), then VACUUM, which
        # sets the hint bits and visibility map that autovacuum would set soon after
        # (else the first reads of each page write it back, inside the timed queries)
        conn = self.conn
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes "
                               "WHERE schemaname = 'public' AND tablename = 'history'").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        chunk: list[str] = []
        with conn.cursor() as cursor, cursor.copy(
                "COPY history (tenant, entity_id, attribute, dataset_id, observed_us, "
                "entity_type, instance, number) FROM STDIN") as copy:
            # text format, written a few thousand lines at a time: the documents hold
            # no tab, newline or backslash, so no escaping is needed
            for entity_id, attribute, dataset, observed, etype, instance, number in rows:
                chunk.append(f"{tenant}\t{entity_id}\t{attribute}\t{dataset}\t{observed}\t"
                             f"{etype}\t{instance}\t{number}\n")
                if len(chunk) >= 5000:
                    copy.write("".join(chunk))
                    chunk.clear()
            if chunk:
                copy.write("".join(chunk))
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("RESET maintenance_work_mem")
        conn.execute("VACUUM (ANALYZE) history")

    def close(self):
        import psycopg

        for conn in self._all:
            conn.close()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (self.database,))
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}"')


# ---------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def cityos_server(database_url: str, token: str, workdir: Path) -> Iterator[str]:
    """``cityos serve`` in a subprocess (MQTT off); yields its base URL once it answers."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    env = {**os.environ, "CITYOS_MQTT_URL": ""}
    with open(log_path, "wb") as server_log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cityos.cli", "serve", "--database-url", database_url,
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"cityos serve exited: {log_path.read_text()[-2000:]}")
            try:
                answer = httpx.get(f"{base}{API}/types", timeout=2,
                                   headers={"Authorization": f"Bearer {token}"})
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cityos serve did not answer: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_ingester(database_url: str, mqtt_url: str, client_id: str) -> None:
    """Child-process mode: run an MqttIngester until stdin closes."""
    from cityos.config import Settings
    from cityos.core.ingest.mqtt import MqttIngester

    store = open_store(database_url)
    gc.collect()
    gc.freeze()  # as cityos serve does once started
    settings = Settings(database_url=database_url, mqtt_url=mqtt_url, mqtt_client_id=client_id)
    # a session that ends with the benchmark: no messages are queued for it afterwards
    ingester = MqttIngester(store, settings, session_expiry_s=0)
    ingester.start()
    if not ingester.wait_until_subscribed(30):
        print("not subscribed", flush=True)
        sys.exit(1)
    print("subscribed", flush=True)
    sys.stdin.read()
    ingester.stop()
    store.close()
    print(orjson.dumps(ingester.stats.as_dict()).decode(), flush=True)


@contextlib.contextmanager
def ingester_process(database_url: str, mqtt_url: str) -> Iterator[None]:
    client_id = f"cityos-bench-{os.getpid()}-{secrets.token_hex(3)}"
    process = subprocess.Popen(
        [sys.executable, __file__, "--run-ingester", database_url, mqtt_url, client_id],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        if line != "subscribed":
            raise RuntimeError(f"MQTT ingester did not subscribe ({line or 'no answer'})")
        yield
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def broker_reachable(url: str) -> bool:
    from cityos.cli import mqtt_broker_reachable

    return mqtt_broker_reachable(url)


MOSQUITTO = os.environ.get("CITYOS_BENCH_MOSQUITTO", "/usr/sbin/mosquitto")


@contextlib.contextmanager
def private_broker(workdir: Path) -> Iterator[str | None]:
    """A Mosquitto of the benchmark's own, configured as a city's broker must be
    (``persistence true``, ``max_queued_messages 0``: nothing queued for a slow
    ingester is dropped); yields its URL, or None when there is no mosquitto binary.

    A shared broker would also hand the benchmark's messages to every other ingester
    subscribed to ``cityos/+/+/+``, and its default queue cap (1,000 messages) drops
    QoS 1 messages once the ingester falls that far behind the publisher.
    """
    if not os.access(MOSQUITTO, os.X_OK):
        yield None
        return
    port = free_port()
    directory = workdir / f"broker-{port}"
    directory.mkdir()
    directory.chmod(0o777)  # run as root, mosquitto drops to its own user
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                      f"persistence true\npersistence_location {directory}/\n"
                      "max_queued_messages 0\n"
                      f"log_dest file {directory}/mosquitto.log\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {directory}/mosquitto.log")
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


# ------------------------------------------------------------------ workloads
def observation(sensor: int, minute: int, prefix: str) -> dict:
    """One water-depth observation of sensor ``sensor`` at ``minute`` (normalised)."""
    return {"id": f"urn:ngsi-ld:WaterObserved:{prefix}-{sensor:06d}", "type": "WaterObserved",
            "depth": {"type": "Property", "value": round(10 + (sensor * 7 + minute) % 90, 1),
                      "unitCode": "CMT",
                      "observedAt": format_datetime(HISTORY_START + timedelta(minutes=minute))}}


def observation_batches(count: int, batch: int, prefix: str) -> list[list[dict]]:
    """``count`` observations of ``max(batch, count // 10)`` sensors, ``batch`` a request;
    a sensor appears once per request, with a later observedAt each round."""
    sensors = max(batch, count // 10)
    items = [observation(n % sensors, n // sensors, prefix) for n in range(count)]
    return [items[i:i + batch] for i in range(0, count, batch)]


def bench_raw_insert(backend: Backend, count: int, repeats: int = 3) -> float:
    """Rows/s of the backend's bulk path, the best of ``repeats`` runs: a ceiling (one
    run of 20,000 rows lasts a tenth of a second, so one unlucky run would lower it)."""
    rows = []
    for n in range(count):
        entity = observation(n, 0, "raw")
        rows.append((entity["id"], '["WaterObserved"]', orjson.dumps(entity).decode()))
    best = 0.0
    for _ in range(repeats):
        best = max(best, count / backend.raw_insert_entities("bench-raw", rows))
        backend.delete_tenant("bench-raw")
    return best


def bench_http_upsert(base: str, token: str, count: int, batch: int,
                      clients: int) -> tuple[float, list[str]]:
    """Observations/s of batch upserts by ``clients`` concurrent HTTP clients."""
    bodies = [orjson.dumps(b) for b in observation_batches(count, batch, "http")]
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "NGSILD-Tenant": "bench-http"}
    url = f"{base}{API}/entityOperations/upsert?options=update"
    # the first round creates the sensors: do it before timing, as a city's would be
    sensors = max(batch, count // 10)
    first_round = bodies[:sensors // batch]
    with httpx.Client(timeout=120) as client:
        for body in first_round:
            client.post(url, content=body, headers=headers).raise_for_status()
    timed_bodies = bodies[len(first_round):]

    def worker(share: list[bytes]) -> None:
        with httpx.Client(timeout=120) as client:
            for body in share:
                answer = client.post(url, content=body, headers=headers)
                if answer.status_code not in (200, 201, 204):
                    problems.append(f"HTTP {answer.status_code}: {answer.text[:300]}")

    threads = [threading.Thread(target=worker, args=(timed_bodies[i::clients],))
               for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    observations = sum(len(orjson.loads(b)) for b in timed_bodies)
    return observations / seconds, problems


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _mqtt_packet(first_byte: int, body: bytes) -> bytes:
    """An MQTT control packet: fixed header (remaining length as a varint) + body."""
    size, length = len(body), bytearray()
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([first_byte]) + bytes(length) + body


class DevicePublisher:
    """The devices of (c): one MQTT 3.1.1 connection sending pre-encoded QoS 1 PUBLISH
    packets, at most ``window`` unacknowledged, and counting the broker's PUBACKs.

    The packets are built before the clock starts (as (b) encodes its request bodies
    first), so the load generator costs a few microseconds a message; a paho client
    costs 50-100 us of Python a message here, CPU that the broker and the ingester
    under test would otherwise not get on a 2-core machine.
    """

    def __init__(self, mqtt_url: str, messages: list[tuple[str, bytes]], window: int = 1000):
        from cityos.core.ingest.mqtt import broker_address

        host, port, _, _, _ = broker_address(mqtt_url)
        if len(messages) > 65535:
            raise ValueError("at most 65,535 messages: packet ids must stay unique")
        self.packets = [_mqtt_packet(0x32, _mqtt_string(topic) + mid.to_bytes(2, "big") + payload)
                        for mid, (topic, payload) in enumerate(messages, start=1)]
        self.window = window
        self.acked = 0
        self.error: str | None = None
        self._acks = threading.Condition()
        self._sock = socket.create_connection((host, port), timeout=30)
        client_id = f"cityos-bench-pub-{secrets.token_hex(3)}"
        self._sock.sendall(_mqtt_packet(0x10, _mqtt_string("MQTT") + bytes([4, 2, 0, 60])
                                        + _mqtt_string(client_id)))
        connack = self._recv_exactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"broker refused the publisher: CONNACK {connack.hex()}")
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _recv_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        try:
            while self.acked < len(self.packets):
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                pending += chunk
                whole = len(pending) // 4 * 4  # PUBACK: 0x40 0x02 id(2)
                if pending[:whole:4] != b"\x40" * (whole // 4):
                    raise RuntimeError(f"unexpected packet from the broker: {pending[:8].hex()}")
                with self._acks:
                    self.acked += whole // 4
                    self._acks.notify_all()
                pending = pending[whole:]
        except Exception as error:  # noqa: BLE001 (reported by publish_all)
            with self._acks:
                self.error = f"{type(error).__name__}: {error}"
                self._acks.notify_all()

    def publish_all(self, chunk: int = 100) -> None:
        """Send every packet (``chunk`` per write), never more than ``window`` unacked."""
        for first in range(0, len(self.packets), chunk):
            with self._acks:
                while first - self.acked >= self.window and self.error is None:
                    self._acks.wait(5)
            if self.error:
                return
            self._sock.sendall(b"".join(self.packets[first:first + chunk]))

    def wait_acked(self, timeout_s: float) -> bool:
        with self._acks:
            return self._acks.wait_for(lambda: self.acked >= len(self.packets) or self.error,
                                       timeout_s) and not self.error

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        self._sock.close()


def bench_mqtt(backend: Backend, mqtt_url: str, count: int) -> tuple[float, list[str]]:
    """Observations/s from the first publish until the last one is stored."""
    tenant = "bench-mqtt"
    sensors = max(100, count // 10)
    messages = []
    for n in range(count):
        sensor, minute = n % sensors, n // sensors
        payload = orjson.dumps({"depth": round(10 + (sensor * 7 + minute) % 90, 1),
                                "observedAt": format_datetime(
                                    HISTORY_START + timedelta(minutes=minute))})
        messages.append((f"cityos/{tenant}/WaterObserved/mqtt-{sensor:06d}", payload))
    last_sensor, last_minute = (count - 1) % sensors, (count - 1) // sensors
    last_id = f"urn:ngsi-ld:WaterObserved:mqtt-{last_sensor:06d}"
    last_us = to_micros(HISTORY_START + timedelta(minutes=last_minute))

    publisher = DevicePublisher(mqtt_url, messages)
    problems: list[str] = []
    try:
        start = time.perf_counter()
        sender = threading.Thread(target=publisher.publish_all, daemon=True)
        sender.start()
        deadline = time.monotonic() + 60 + count / 500
        # the broker may deliver a backlog out of publishing order, so the last message
        # stored does not mean all are: wait for the count (an index range, ~1 ms)
        while not (backend.has_history(tenant, last_id, "depth", last_us)
                   and backend.count_history(tenant) >= count):
            if time.monotonic() > deadline or publisher.error:
                problems.append(publisher.error or "timed out waiting for the observations")
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        sender.join(30)
        if not publisher.wait_acked(30):
            problems.append(f"the broker acknowledged {publisher.acked} of {count} messages"
                            + (f" ({publisher.error})" if publisher.error else ""))
    finally:
        publisher.close()
    stored = backend.count_history(tenant)
    if stored != count:
        problems.append(f"{stored} of {count} observations in the history")
    return count / seconds, problems


def load_geo_entities(store, count: int, seed: int = 7) -> float:
    """Set-up of (d): ``count`` sensors with location, depth and status; seconds."""
    rng = random.Random(seed)
    start = time.perf_counter()
    for first in range(0, count, 5000):
        batch = []
        for n in range(first, min(count, first + 5000)):
            lon = CENTRE[0] + rng.uniform(-SPREAD_DEG, SPREAD_DEG)
            lat = CENTRE[1] + rng.uniform(-SPREAD_DEG, SPREAD_DEG)
            batch.append({
                "id": f"urn:ngsi-ld:WaterObserved:geo-{n:07d}", "type": "WaterObserved",
                "location": {"type": "GeoProperty", "value": {
                    "type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}},
                "depth": {"type": "Property", "value": round(rng.uniform(0, 100), 1)},
                "status": {"type": "Property", "value": rng.choice(["ok", "alert"])},
            })
        result = store.create_entities("bench-geo", batch)
        if result.errors:
            raise RuntimeError(f"loading entities: {result.errors[0]}")
    return time.perf_counter() - start


def near_box(lon: float, lat: float, metres: float) -> tuple[float, float, float, float]:
    dlat = metres / 111_320.0
    dlon = metres / (111_320.0 * math.cos(math.radians(lat)))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def bench_geo(store, backend: Backend, base: str | None, token: str,
              queries: int) -> dict[str, tuple[float, float]]:
    """p50/p99 (ms) of ``q`` + near through the store, HTTP and raw SQL."""
    from cityos.core.geo import parse_geo_query

    rng = random.Random(11)
    points = [(CENTRE[0] + rng.uniform(-0.08, 0.08), CENTRE[1] + rng.uniform(-0.08, 0.08))
              for _ in range(queries + 10)]
    q = "depth>50"
    cursor = {"store": 0, "http": 0, "raw": 0}

    def next_point(kind: str) -> tuple[float, float]:
        cursor[kind] += 1
        return points[cursor[kind] % len(points)]

    def via_store() -> None:
        lon, lat = next_point("store")
        geo = parse_geo_query(georel=f"near;maxDistance=={NEAR_M}", geometry="Point",
                              coordinates=f"[{lon},{lat}]")
        store.query_entities("bench-geo", EntityQuery(types=["WaterObserved"], q=q, geo=geo,
                                                      limit=100))

    out = {"store": percentiles(timed(via_store, queries)),
           "raw": percentiles(timed(lambda: backend.raw_bbox(
               "bench-geo", near_box(*next_point("raw"), NEAR_M)), queries))}
    if base is not None:
        with httpx.Client(base_url=base, timeout=60, headers={
                "Authorization": f"Bearer {token}", "NGSILD-Tenant": "bench-geo"}) as client:
            def via_http() -> None:
                lon, lat = next_point("http")
                answer = client.get(f"{API}/entities", params={
                    "type": "WaterObserved", "q": q, "georel": f"near;maxDistance=={NEAR_M}",
                    "geometry": "Point", "coordinates": f"[{lon},{lat}]", "limit": 100})
                answer.raise_for_status()
            out["http"] = percentiles(timed(via_http, queries))
    return out


def check_geo_answer(store, count: int) -> str:
    """Cross-check one query against brute force, so a fast wrong answer is caught."""
    from cityos.core.geo import parse_geo_query

    lon, lat = CENTRE
    geo = parse_geo_query(georel=f"near;maxDistance=={NEAR_M}", geometry="Point",
                          coordinates=f"[{lon},{lat}]")
    found = {r.id for r in store.query_entities("bench-geo", EntityQuery(
        types=["WaterObserved"], q="depth>50", geo=geo, limit=1000)).entities}
    expected = set()
    for record in store.scan("bench-geo"):
        x, y = record.entity["location"]["value"]["coordinates"]
        dx = math.radians(x - lon) * math.cos(math.radians(lat)) * 6_371_008.8
        dy = math.radians(y - lat) * 6_371_008.8
        if record.entity["depth"]["value"] > 50 and math.hypot(dx, dy) <= NEAR_M * 0.995:
            expected.add(record.id)
    missing = expected - found
    return "" if not missing else f"{len(missing)} of {len(expected)} expected matches missing"


def history_rows(series: int, minutes: int) -> Iterator[tuple]:
    """1-minute depth readings, series after series (the table's key order)."""
    base_us = to_micros(HISTORY_START)
    stamps = [format_datetime(HISTORY_START + timedelta(minutes=m)) for m in range(minutes)]
    for s in range(series):
        entity_id = f"urn:ngsi-ld:WaterObserved:hist-{s:05d}"
        for m in range(minutes):
            value = (s * 13 + m * 7) % 1000 / 10
            yield (entity_id, "depth", "@none", base_us + m * 60_000_000, "WaterObserved",
                   f'{{"type":"Property","value":{value},"unitCode":"CMT",'
                   f'"observedAt":"{stamps[m]}"}}', value)


def load_history(store, backend: Backend, total_rows: int) -> tuple[int, int, float]:
    """Set-up of (e): entities + ``total_rows`` history rows; (series, minutes, seconds)."""
    minutes = min(MINUTES_PER_SERIES, max(DAY_MINUTES * 2, total_rows))
    series = max(1, total_rows // minutes)
    start = time.perf_counter()
    entities = [{"id": f"urn:ngsi-ld:WaterObserved:hist-{s:05d}", "type": "WaterObserved",
                 "name": {"type": "Property", "value": f"gauge {s}"}} for s in range(series)]
    for first in range(0, series, 5000):
        result = store.create_entities("bench-hist", entities[first:first + 5000])
        if result.errors:
            raise RuntimeError(f"loading history entities: {result.errors[0]}")
    backend.bulk_history("bench-hist", history_rows(series, minutes))
    return series, minutes, time.perf_counter() - start


def bench_temporal(store, backend: Backend, base: str | None, token: str, series: int,
                   minutes: int, queries: int) -> tuple[dict[str, tuple[float, float]], str]:
    rng = random.Random(5)
    days = minutes // DAY_MINUTES
    picks = [(rng.randrange(series), rng.randrange(days)) for _ in range(queries + 10)]
    cursor = {"store": 0, "http": 0, "raw": 0}
    problems: list[str] = []

    def window(kind: str) -> tuple[str, datetime, datetime]:
        cursor[kind] += 1
        s, day = picks[cursor[kind] % len(picks)]
        start = HISTORY_START + timedelta(days=day)
        return f"urn:ngsi-ld:WaterObserved:hist-{s:05d}", start, start + timedelta(days=1)

    def via_store() -> None:
        entity_id, start, end = window("store")
        found = store.temporal_query("bench-hist", TemporalQuery(
            entity=EntityQuery(ids=[entity_id], limit=1), attrs=["depth"], timerel="between",
            time_at=start, end_time_at=end))
        if len(found[0]["depth"]) != DAY_MINUTES and not problems:
            problems.append(f"store returned {len(found[0]['depth'])} instances, not 1440")

    def via_raw() -> None:
        entity_id, start, end = window("raw")
        backend.raw_history("bench-hist", entity_id, to_micros(start), to_micros(end))

    out = {"store": percentiles(timed(via_store, queries)),
           "raw": percentiles(timed(via_raw, queries))}
    if base is not None:
        with httpx.Client(base_url=base, timeout=60, headers={
                "Authorization": f"Bearer {token}", "NGSILD-Tenant": "bench-hist"}) as client:
            def via_http() -> None:
                entity_id, start, end = window("http")
                answer = client.get(f"{API}/temporal/entities/{entity_id}", params={
                    "attrs": "depth", "timerel": "between", "timeAt": format_datetime(start),
                    "endTimeAt": format_datetime(end)})
                answer.raise_for_status()
                got = len(answer.json().get("depth", []))
                if got != DAY_MINUTES and not problems:
                    problems.append(f"HTTP returned {got} instances, not 1440 "
                                    f"(Content-Range: {answer.headers.get('content-range')})")
            out["http"] = percentiles(timed(via_http, queries))
    return out, "; ".join(problems)


# --------------------------------------------------------------------- driver
def run_backend(backend: Backend, sizes: dict, args, notes: list[str]) -> list[Row]:
    name = backend.name
    rows: list[Row] = []
    store = open_store(backend.url)
    token, _ = create_key(store, "*", "admin", name="bench")
    workdir = Path(args.workdir)

    log(f"{name}: (a) raw insert of {sizes['observations']:,} rows")
    raw = bench_raw_insert(backend, sizes["observations"])
    rows.append(Row(name, "(a) bulk insert, entities table", backend.raw_method,
                    f"{raw:,.0f} rows/s", "-", "-", "1.00 (baseline)", "-"))

    with contextlib.ExitStack() as stack:
        base = None
        try:
            base = stack.enter_context(cityos_server(backend.url, token, workdir))
        except Exception as error:  # noqa: BLE001 (reported in the table)
            notes.append(f"{name}: the HTTP rows are missing: {error}")
            log(f"{name}: no server: {error}")

        if base is not None:
            log(f"{name}: (b) HTTP batch upsert of {sizes['observations']:,} observations")
            per_s, problems = bench_http_upsert(base, token, sizes["observations"], args.batch,
                                                args.http_clients)
            rows.append(Row(name, f"(b) batch upsert, {args.batch}/request", "HTTP",
                            f"{per_s:,.0f} obs/s", ">= 30% of (a)", f"(a) {raw:,.0f} rows/s",
                            f"{per_s / raw:.0%}", yes_no(per_s >= 0.3 * raw and not problems)))
            notes += [f"{name} (b): {p}" for p in problems[:3]]
        else:
            rows.append(Row(name, "(b) batch upsert", "HTTP", "n/a", ">= 30% of (a)"))

        mqtt_count = sizes["mqtt_observations"]
        mqtt_url = args.mqtt_url
        if mqtt_url is None and not args.skip_mqtt:
            mqtt_url = stack.enter_context(private_broker(workdir))
        if args.skip_mqtt or mqtt_url is None or not broker_reachable(mqtt_url):
            rows.append(Row(name, "(c) MQTT publish -> stored", "MQTT QoS 1", "n/a",
                            ">= 10,000 obs/s"))
            notes.append(f"{name} (c): skipped: " + (
                "--skip-mqtt" if args.skip_mqtt else f"no broker at {mqtt_url}"
                if mqtt_url else f"no {MOSQUITTO} for a private broker and no --mqtt-url"))
        else:
            log(f"{name}: (c) MQTT end to end, {mqtt_count:,} observations via {mqtt_url}")
            with ingester_process(backend.url, mqtt_url):
                per_s, problems = bench_mqtt(backend, mqtt_url, mqtt_count)
            rows.append(Row(name, "(c) MQTT publish -> stored", "MQTT QoS 1",
                            f"{per_s:,.0f} obs/s", ">= 10,000 obs/s", f"(a) {raw:,.0f} rows/s",
                            f"{per_s / raw:.0%}", yes_no(per_s >= 10_000 and not problems)))
            notes += [f"{name} (c): {p}" for p in problems]

        entities = sizes["entities"]
        log(f"{name}: (d) loading {entities:,} entities through the store API")
        load_s = load_geo_entities(store, entities)
        notes.append(f"{name} (d) set-up: {entities:,} entities via store.create_entities "
                     f"in {load_s:.1f} s ({entities / load_s:,.0f}/s)")
        wrong = check_geo_answer(store, entities)
        if wrong:
            notes.append(f"{name} (d): WRONG ANSWER: {wrong}")
        backend.settle()
        latencies = bench_geo(store, backend, base, token, sizes["queries"])
        raw_p50, raw_p99 = latencies["raw"]
        for via in ("store", "http"):
            if via not in latencies:
                continue
            p50, p99 = latencies[via]
            rows.append(Row(
                name, f"(d) q + near {NEAR_M} m, {entities:,} entities, p50 / p99",
                "store API" if via == "store" else "HTTP", f"{p50:.1f} / {p99:.1f} ms",
                "p99 < 20 ms", f"SQL bbox p99 {raw_p99:.2f} ms", f"{p99 / raw_p99:.1f}x",
                yes_no(p99 < 20 and not wrong)))

        total = sizes["history_rows"]
        log(f"{name}: (e) bulk-loading {total:,} history rows")
        series, minutes, load_s = load_history(store, backend, total)
        loaded = series * minutes
        notes.append(f"{name} (e) set-up: {loaded:,} history rows ({series:,} entities x "
                     f"{minutes:,} minutes) bulk-loaded with "
                     f"{'COPY' if isinstance(backend, PostgresBackend) else 'executemany'} "
                     f"in {load_s:.0f} s")
        backend.settle()
        latencies, problems = bench_temporal(store, backend, base, token, series, minutes,
                                             sizes["queries"])
        if problems:
            notes.append(f"{name} (e): {problems}")
        raw_p50, raw_p99 = latencies["raw"]
        for via in ("store", "http"):
            if via not in latencies:
                continue
            p50, p99 = latencies[via]
            rows.append(Row(
                name, f"(e) temporal, 1 day of 1-min data, {loaded:,} rows, p50 / p99",
                "store API" if via == "store" else "HTTP", f"{p50:.1f} / {p99:.1f} ms",
                "p99 < 50 ms", f"SQL range p99 {raw_p99:.2f} ms", f"{p99 / raw_p99:.1f}x",
                yes_no(p99 < 50 and not problems)))
    store.close()
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and SQLite only (unless --backends): a smoke run")
    parser.add_argument("--backends", default=None,
                        help="comma-separated: sqlite,postgresql (default: both)")
    parser.add_argument("--observations", type=int, help="observations for (a), (b)")
    parser.add_argument("--mqtt-observations", type=int, help="observations for (c)")
    parser.add_argument("--entities", type=int, help="entities for (d)")
    parser.add_argument("--history-rows", type=int, help="history rows for (e)")
    parser.add_argument("--queries", type=int, help="timed queries per latency figure")
    parser.add_argument("--batch", type=int, default=500, help="entities per HTTP upsert")
    parser.add_argument("--http-clients", type=int, default=2,
                        help="concurrent HTTP clients in (b)")
    parser.add_argument("--mqtt-url", default=None,
                        help="broker for (c) (default: a private mosquitto started and "
                             "stopped by the benchmark)")
    parser.add_argument("--skip-mqtt", action="store_true")
    parser.add_argument("--postgres-admin-url",
                        default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="server where a throwaway database is created and dropped")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up (with a stack dump) after this many seconds "
                             "(default: 300 with --quick, 7200 otherwise)")
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-ingester", nargs=3, metavar=("DB", "MQTT", "CLIENT_ID"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.run_ingester:
        run_ingester(*args.run_ingester)
        return 0
    # a hung service must not hang `make bench` for ever: dump the stacks and leave
    faulthandler.dump_traceback_later(args.timeout or (300 if args.quick else 7200), exit=True)
    sizes = dict(QUICK if args.quick else FULL)
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    backends = (args.backends or ("sqlite" if args.quick else "sqlite,postgresql")).split(",")
    rows: list[Row] = []
    notes: list[str] = []
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cityos-bench-") as workdir:
        args.workdir = workdir
        for kind in backends:
            kind = kind.strip().lower()
            if kind == "sqlite":
                backend: Backend = SqliteBackend(Path(workdir))
            elif kind in ("postgresql", "postgres"):
                backend = PostgresBackend(args.postgres_admin_url)
            else:
                raise SystemExit(f"--backends: {kind!r} is not sqlite or postgresql")
            try:
                rows += run_backend(backend, sizes, args, notes)
            finally:
                backend.close()
    kind = "full" if sizes == FULL else "quick" if sizes == QUICK else "custom"
    print_report("core", kind, started, load_before, table(rows), notes)
    return 1 if any("WRONG" in n or "timed out" in n for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
