"""Crash recovery of the real server: nothing acknowledged is lost, nothing is kept twice.

The test starts ``cityos serve`` as a separate process (SQLite file or PostgreSQL, MQTT
ingestion from a private Mosquitto with persistence), streams observations to it over
HTTP and MQTT at once, SIGKILLs it mid-stream, restarts it on the same database and
broker, streams a little more, waits until the ingester has drained what the broker
queued while the server was down, and then reads the store:

- every observation whose HTTP request got a 2xx, and every MQTT message that got a
  PUBACK, is in the attribute history exactly once, with its value;
- nothing is in the history that was never sent.

An HTTP request cut by the crash (a connection error, no status) may or may not have
been committed before the kill. The device here does what a real one must do: it sends
the same batch again until it gets a 2xx; the store keeps an observation once per
(entity, attribute, datasetId, observedAt), so the repeat never adds a second row.
MQTT messages are acknowledged by the broker (PUBACK) independently of the server; the
broker keeps them in the ingester's persistent session and redelivers the ones the
ingester had received but not yet acknowledged, which must not add a second row either.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cityos.core.store import open_store
from cityos.core.timefmt import format_datetime, from_micros, to_micros
from tests.core.ingest.brokers import AckedPublisher, PrivateBroker, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

ENTITY_TYPE = "WeatherObserved"
ATTRIBUTE = "temperature"
ENTITIES_PER_STREAM = 5  # observations rotate over these entities
HTTP_BATCH = ENTITIES_PER_STREAM  # one observation per entity per request
FIRST_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)
ACKED_BEFORE_CRASH = 300  # per stream, before the SIGKILL
ACKED_AFTER_RESTART = 150  # more per stream once the server is back


@dataclass(frozen=True)
class Observation:
    """One measurement, unique by (entity, instant, value)."""

    entity_id: str
    observed_us: int
    value: int


def observation(stream: str, number: int) -> Observation:
    """Observation ``number`` of ``stream`` (``http`` or ``mqtt``): its own instant
    (one millisecond apart) on one of the stream's entities, and ``number`` as value."""
    entity = f"urn:ngsi-ld:{ENTITY_TYPE}:{stream}-{number % ENTITIES_PER_STREAM}"
    instant = FIRST_INSTANT + timedelta(milliseconds=number)
    return Observation(entity, to_micros(instant), number)


def iso(observed_us: int) -> str:
    return format_datetime(from_micros(observed_us))


# ===================================================================== the server
class ServerProcess:
    """``cityos serve`` in its own process, on a fixed port over restarts."""

    def __init__(self, database_url: str, mqtt_url: str, client_id: str, log_path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "cityos.cli", "serve",
                        "--database-url", database_url, "--mqtt-url", mqtt_url,
                        "--mqtt-client-id", client_id, "--host", "127.0.0.1",
                        "--port", str(self.port), "--log-level", "warning"]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log,
                                            env=_server_environment())
        wait_until(self._healthy, 60, "the server answering /health")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"cityos serve exited with {self.process.returncode}:\n"
                                 f"{self.log()[-3000:]}")
        try:
            return httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no last acks."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _server_environment() -> dict:
    # the command line alone configures the server: no CITYOS_* from the caller
    return {k: v for k, v in os.environ.items() if not k.startswith("CITYOS_")}


def create_operator_key(database_url: str, tenant: str) -> str:
    """An operator key for ``tenant``, made with ``cityos keys create``."""
    done = subprocess.run(
        [sys.executable, "-m", "cityos.cli", "keys", "create", "--tenant", tenant,
         "--role", "operator", "--name", "crash test device", "--database-url",
         database_url], capture_output=True, text=True, timeout=60,
        env=_server_environment())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


# ==================================================================== the devices
class HttpDevice(threading.Thread):
    """POSTs batches of observations (upsert, merge) and retries a batch until a 2xx.

    ``acked`` holds what a 2xx confirmed; ``cut`` counts attempts that ended in a
    connection error (their batch may or may not have been committed); ``pending`` is
    the batch still unconfirmed when the device was stopped (at most once in the store).
    """

    def __init__(self, base_url: str, token: str):
        super().__init__(name="http-device", daemon=True)
        self.url = f"{base_url}/ngsi-ld/v1/entityOperations/upsert?options=update"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.acked: list[Observation] = []
        self.pending: list[Observation] = []
        self.cut = 0
        self.refused: list[str] = []
        self.halt = threading.Event()

    def acked_count(self) -> int:
        return len(self.acked)

    def run(self) -> None:
        number = 0
        with httpx.Client(timeout=10) as client:
            while not self.halt.is_set():
                batch = [observation("http", n) for n in range(number, number + HTTP_BATCH)]
                body = [{"id": o.entity_id, "type": ENTITY_TYPE,
                         ATTRIBUTE: {"type": "Property", "value": o.value,
                                     "observedAt": iso(o.observed_us)}} for o in batch]
                self.pending = batch
                while not self.halt.is_set():
                    try:
                        response = client.post(self.url, json=body, headers=self.headers)
                    except httpx.TransportError:
                        self.cut += 1
                        time.sleep(0.05)
                        continue
                    if response.status_code in (201, 204):
                        self.acked.extend(batch)
                        self.pending = []
                        time.sleep(0.01)  # a device's pace; leaves the ingester CPU
                    else:  # a refusal is a failure of the test, not a crash effect
                        self.refused.append(f"{response.status_code} {response.text[:300]}")
                        self.halt.set()
                    break
                number += HTTP_BATCH


class MqttDevice(threading.Thread):
    """Publishes observations at QoS 1 to ``cityos/<tenant>/<type>/<id>``, a few
    hundred a second; the publisher records which ones the broker acknowledged."""

    def __init__(self, broker_url: str, tenant: str):
        super().__init__(name="mqtt-device", daemon=True)
        self.tenant = tenant
        self.publisher = AckedPublisher(broker_url, f"crash-device-{secrets.token_hex(3)}")
        self.sent = 0
        self.halt = threading.Event()

    def acked_count(self) -> int:
        return self.publisher.acked_count()

    def run(self) -> None:
        while not self.halt.is_set():
            o = observation("mqtt", self.sent)
            short_id = o.entity_id.rsplit(":", 1)[1]
            self.publisher.publish(f"cityos/{self.tenant}/{ENTITY_TYPE}/{short_id}",
                                   {ATTRIBUTE: o.value, "observedAt": iso(o.observed_us)},
                                   key=o)
            self.sent += 1
            if self.sent % 10 == 0:
                time.sleep(0.02)


# ===================================================================== the store
def stored_rows(store, tenant: str, stream: str) -> list[Observation]:
    """Every history row of the stream's entities, as observations."""
    rows = []
    for k in range(ENTITIES_PER_STREAM):
        entity_id = f"urn:ngsi-ld:{ENTITY_TYPE}:{stream}-{k}"
        for row in store.history(tenant, entity_id, None, None, None, None):
            assert row.attribute == ATTRIBUTE, row
            rows.append(Observation(entity_id, row.observed_us, row.instance["value"]))
    return rows


def current_values(store, tenant: str, stream: str) -> dict[str, int]:
    ids = [f"urn:ngsi-ld:{ENTITY_TYPE}:{stream}-{k}" for k in range(ENTITIES_PER_STREAM)]
    return {r.id: r.entity[ATTRIBUTE]["value"] for r in store.scan(tenant, ids=ids)}


def wait_for_ingester(store, tenant: str, broker_url: str) -> None:
    """Publish probe observations until one is in the store: the ingester's session
    exists and it is subscribed (before that the broker would drop what devices send)."""
    probe_id = f"urn:ngsi-ld:{ENTITY_TYPE}:probe"
    publisher = AckedPublisher(broker_url, f"crash-probe-{secrets.token_hex(3)}")
    try:
        deadline = time.monotonic() + 30
        number = 0
        while not list(store.scan(tenant, ids=[probe_id])):
            assert time.monotonic() < deadline, "the MQTT ingester never stored a probe"
            publisher.publish(f"cityos/{tenant}/{ENTITY_TYPE}/probe", {ATTRIBUTE: number})
            number += 1
            time.sleep(0.2)
    finally:
        publisher.close()


# ====================================================================== the test
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'city.db'}"
    return request.getfixturevalue("postgres_url")  # each run has its own tenant


def test_sigkill_mid_stream_keeps_every_acknowledged_observation_once(tmp_path, database_url):
    tenant = f"crash-{secrets.token_hex(4)}"
    broker = PrivateBroker(tmp_path / "broker").start()
    server = ServerProcess(database_url, broker.url, f"cityos-ingest-{tenant}",
                           tmp_path / "server.log")
    reader = None
    http = mqtt = None
    try:
        token = create_operator_key(database_url, tenant)
        server.start()
        reader = open_store(database_url)
        wait_for_ingester(reader, tenant, broker.url)
        mqtt = MqttDevice(broker.url, tenant)
        http = HttpDevice(server.base_url, token)
        http.start()
        mqtt.start()

        # both streams busy and some hundreds acknowledged on each: kill it
        wait_until(lambda: http.acked_count() >= ACKED_BEFORE_CRASH
                   and mqtt.acked_count() >= ACKED_BEFORE_CRASH
                   and len(stored_rows(reader, tenant, "mqtt")) > 0,
                   60, "some hundreds of acknowledged observations on both streams")
        server.kill()
        http_at_crash, mqtt_at_crash = http.acked_count(), mqtt.acked_count()
        # while it is down, HTTP requests fail and the broker keeps acknowledging
        # messages that only the restarted ingester can store
        wait_until(lambda: http.cut > 0 and mqtt.acked_count() >= mqtt_at_crash + 50,
                   30, "HTTP failing and MQTT queueing while the server is down")
        assert http.is_alive() and mqtt.is_alive() and not http.refused

        server.start()  # same port, database and broker session
        wait_until(lambda: http.acked_count() >= http_at_crash + ACKED_AFTER_RESTART
                   and mqtt.acked_count() >= mqtt_at_crash + ACKED_AFTER_RESTART,
                   60, "both streams acknowledged again after the restart")
        http.halt.set()
        mqtt.halt.set()
        http.join(30)
        mqtt.join(30)
        # the broker never went away: every message it got is acknowledged soon
        wait_until(lambda: mqtt.acked_count() == mqtt.sent, 30, "PUBACKs of every message")
        mqtt_acked = set(mqtt.publisher.acked)
        try:
            wait_until(lambda: mqtt_acked <= set(stored_rows(reader, tenant, "mqtt")), 30,
                       "the ingester storing every acknowledged MQTT message")
        except AssertionError:
            pass  # assert_stored_once says which are missing
        server.stop()
        assert not http.refused, http.refused

        http_sent = {observation("http", n) for n in range(len(http.acked) + HTTP_BATCH)}
        mqtt_sent = {observation("mqtt", n) for n in range(mqtt.sent)}
        for stream, acked, sent in (("http", set(http.acked), http_sent),
                                    ("mqtt", mqtt_acked, mqtt_sent)):
            assert_stored_once(reader, tenant, stream, acked, sent)
    finally:
        server.stop()
        for device in (http, mqtt):
            if device is not None:
                device.halt.set()
        if mqtt is not None:
            mqtt.publisher.close()
        broker.stop()
        if reader is not None:
            reader.close()


def assert_stored_once(store, tenant: str, stream: str, acked: set[Observation],
                       sent: set[Observation]) -> None:
    """Every acknowledged observation is in the history once; nothing else is there but
    observations that were sent (unacknowledged ones at most once)."""
    rows = stored_rows(store, tenant, stream)
    counts = Counter(rows)
    twice = sorted(o for o, c in counts.items() if c > 1)
    assert not twice, f"{stream}: {len(twice)} observations stored twice, e.g. {twice[:3]}"
    # one row per instant: a second row for an instant would be a re-stamped copy
    per_instant = Counter((o.entity_id, o.observed_us) for o in rows)
    assert max(per_instant.values()) == 1
    lost = sorted(acked - counts.keys(), key=lambda o: o.value)
    assert not lost, f"{stream}: {len(lost)} of {len(acked)} acknowledged " \
                     f"observations are missing, e.g. {lost[:3]}"
    unknown = sorted(counts.keys() - sent, key=lambda o: o.value)
    assert not unknown, f"{stream}: rows nobody sent: {unknown[:3]}"
    # each entity's current value is its newest observation, not a redelivered one
    newest: dict[str, int] = {}
    for o in rows:
        newest[o.entity_id] = max(newest.get(o.entity_id, -1), o.value)
    assert current_values(store, tenant, stream) == newest
