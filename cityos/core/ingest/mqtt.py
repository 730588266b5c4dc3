"""MQTT ingestion: device observations from the broker into the context store.

Delivery guarantee (at-least-once from broker to store, once in the history):

- The ingester is an MQTT v5 client with a fixed client id (``Settings.mqtt_client_id``),
  ``clean_start=False`` and a long session expiry, subscribed to ``cityos/+/+/+`` at
  QoS 1. The broker keeps the session, and every message not yet acknowledged, while
  the ingester or the broker restarts (the broker needs ``persistence true`` to keep
  them over its own restart, and ``max_queued_messages 0`` or a large value so it does
  not drop what queues up while the ingester is away).
- Acknowledgements are manual: one writer thread drains the queue of received
  messages, merges a batch of them into the store in one transaction per tenant, and
  only then sends their PUBACKs. A message received but not stored (crash, database
  down) is redelivered by the broker. A redelivered observation is kept once: history
  rows are unique per (entity, attribute, datasetId, observedAt).
- An attribute sent without ``observedAt`` is stamped with the instant the ingester
  received its message (strictly increasing per message), so two such messages of one
  batch keep two history rows instead of sharing the batch's write time.
- A malformed or unauthorised message is recorded as a dead letter and acknowledged,
  so one bad device never stops ingestion. A store failure (database down, disk full)
  is retried with backoff and never acknowledged.
- Acks of messages received on an earlier connection are never sent: after a
  reconnect the broker resends them and the copies are acked instead (a stale packet
  id could otherwise acknowledge a different message).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

from cityos.core.errors import NgsiLdError
from cityos.core.ingest.deadletters import record_dead_letter
from cityos.core.ingest.observations import (
    TOPIC_FILTER,
    Observation,
    is_transient,
    observation_from_mqtt,
    received_stamped,
    topic_tenant,
)
from cityos.core.timefmt import now_utc

log = logging.getLogger(__name__)

#: Errors of a store that is down or busy: retried, never acknowledged.


@dataclass
class IngestStats:
    """Counters of one ingester, for ``/apps/ingest/stats`` and the benchmarks."""

    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    store_failures: int = 0
    batches: int = 0
    connects: int = 0
    connected: bool = False
    last_store_error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Delivery:
    generation: int  # which connection it came on: acks go back on the same one only
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime | None = None  # the instant of attributes without observedAt


@dataclass
class _Outcome:
    delivery: _Delivery
    observation: Observation | None = None
    reason: str | None = None  # set when dead-lettered
    tenant: str | None = None
    dead: bool = field(default=False)


def broker_address(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """Split ``mqtt://user:password@host:port`` into host, port, TLS, user, password.

    ``mqtts://`` (or ``ssl://``) turns TLS on and defaults the port to 8883.

    Raises
    ------
    ValueError
        For another scheme or a URL without a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
        raise ValueError(f"MQTT URL {url!r}: expected mqtt://host:port or mqtts://host:port")
    tls = parts.scheme in ("mqtts", "ssl")
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, tls, user, password


class MqttIngester:
    """Subscribe to device topics and merge each observation into the store.

    Parameters
    ----------
    store : ContextStore
    settings : Settings
        ``mqtt_url``, ``mqtt_client_id`` and ``mqtt_allowed_tenants`` are used.
    max_batch : int
        Most messages written in one store transaction.
    receive_maximum : int
        Most unacknowledged messages the broker may send before waiting for acks
        (the MQTT v5 flow-control window); a few batches' worth keeps the writer busy.
    session_expiry_s : int
        How long the broker keeps the session (and queues messages) while the
        ingester is away.

    Attributes
    ----------
    stats : IngestStats
    """

    def __init__(self, store, settings, *, max_batch: int = 1000,
                 receive_maximum: int = 4000, session_expiry_s: int = 7 * 24 * 3600):
        if not settings.mqtt_url:
            raise ValueError("mqtt_url is not set (CITYOS_MQTT_URL=mqtt://host:port)")
        self.store = store
        self.settings = settings
        self.allowed_tenants = getattr(settings, "mqtt_allowed_tenants", None)
        self.max_batch = max_batch
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.stats = IngestStats()
        # SimpleQueue (C, lock-free put) costs a fraction of Queue per message
        self._queue: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._last_received: datetime | None = None
        self._client = None
        self._writer: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect (in the background, retrying until the broker answers) and start
        the writer thread."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        host, port, tls, user, password = broker_address(self.settings.mqtt_url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=self.settings.mqtt_client_id,
                             protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        if tls:
            client.tls_set()
        if user:
            client.username_pw_set(user, password)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = self.receive_maximum
        self._client = client
        self._stopping.clear()
        self._writer = threading.Thread(target=self._write_loop, name="cityos-mqtt-writer",
                                        daemon=True)
        self._writer.start()
        client.connect_async(host, port, keepalive=30, clean_start=False,
                             properties=properties)
        client.loop_start()

    def wait_until_subscribed(self, timeout_s: float = 10.0) -> bool:
        """Block until the subscription is confirmed; False on timeout."""
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        """Disconnect and stop the writer. Messages received but not yet stored stay
        unacknowledged, so the broker delivers them again on the next start."""
        self._stopping.set()
        if self._client is not None:
            with self._ack_lock:
                self._generation += 1  # nothing queued now may be acked
            self._client.disconnect()
            self._client.loop_stop()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self._client = None
        self._writer = None
        self.stats.connected = False

    def __enter__(self) -> MqttIngester:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------ paho callbacks
    # (these run in paho's network thread)
    def _on_pre_connect(self, client, userdata) -> None:
        with self._ack_lock:
            self._generation += 1

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker refused the ingester: %s", reason_code)
            return
        self.stats.connects += 1
        self.stats.connected = True
        log.info("MQTT ingester connected (session present: %s)", flags.session_present)
        client.subscribe(TOPIC_FILTER, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if all(not code.is_failure for code in reason_codes):
            self._subscribed.set()
        else:
            log.error("MQTT broker refused the subscription to %s: %s", TOPIC_FILTER,
                      reason_codes)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._ack_lock:
            self._generation += 1
        self.stats.connected = False
        self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("MQTT ingester lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self.stats.received += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", errors="replace")
        received = now_utc()
        if self._last_received is not None and received <= self._last_received:
            received = self._last_received + timedelta(microseconds=1)
        self._last_received = received
        self._queue.put(_Delivery(self._generation, message.mid, message.qos, topic,
                                  message.payload, received))

    # ---------------------------------------------------------- the writer
    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            while True:
                try:
                    self._store_batch(batch)
                    break
                except _Stopping:
                    return
                except Exception:  # a bug must not kill the only writer; nothing is acked
                    log.exception("MQTT ingester: a batch of %d messages failed; retrying",
                                  len(batch))
                    if self._stopping.wait(1.0):
                        return
            self._ack(batch)

    def _store_batch(self, batch: list[_Delivery]) -> None:
        outcomes = [self._parse(delivery) for delivery in batch]
        by_tenant: dict[str, list[_Outcome]] = defaultdict(list)
        for outcome in outcomes:
            if not outcome.dead:
                by_tenant[outcome.tenant].append(outcome)
        for tenant, items in by_tenant.items():
            self._merge(tenant, items)
        for outcome in outcomes:
            if outcome.dead:
                self._retrying(lambda o=outcome: record_dead_letter(
                    self.store, o.tenant, o.delivery.topic, o.delivery.payload, o.reason))
        self.stats.batches += 1
        self.stats.stored += sum(1 for o in outcomes if not o.dead)
        self.stats.dead_lettered += sum(1 for o in outcomes if o.dead)

    def _parse(self, delivery: _Delivery) -> _Outcome:
        try:
            observation = observation_from_mqtt(delivery.topic, delivery.payload,
                                                self.allowed_tenants)
        except NgsiLdError as error:
            tenant = topic_tenant(delivery.topic)
            if self.allowed_tenants is not None and tenant not in self.allowed_tenants:
                tenant = None  # never write into a tenant the device may not use
            return _Outcome(delivery, reason=error.detail, tenant=tenant, dead=True)
        if delivery.received_at is not None:
            observation = Observation(observation.tenant, received_stamped(
                observation.entity, delivery.received_at))
        return _Outcome(delivery, observation, tenant=observation.tenant)

    def _merge(self, tenant: str, items: list[_Outcome]) -> None:
        """Merge the items into the store in one transaction; a failure of one of them
        dead-letters that one; a store that is down is waited for."""
        entities = [item.observation.entity for item in items]
        try:
            result = self._retrying(
                lambda: self.store.upsert_entities(tenant, entities, replace=False))
        except _Stopping:
            raise
        except Exception as error:  # not a store outage: find the message at fault
            if len(items) > 1:
                for item in items:
                    self._merge(tenant, [item])
                return
            log.exception("MQTT ingester: store refused a message on %s", items[0].delivery.topic)
            items[0].dead, items[0].reason = True, f"store error: {type(error).__name__}: {error}"
            return
        if result.errors:
            _assign_errors(items, result.errors)

    def _retrying(self, write):
        """Run ``write`` until it succeeds, waiting out store outages with backoff."""
        backoff = 0.1
        while True:
            try:
                return write()
            except Exception as error:
                if not is_transient(error):
                    raise
                self.stats.store_failures += 1
                self.stats.last_store_error = f"{type(error).__name__}: {error}"
                log.warning("MQTT ingester: store write failed (%s); retrying in %.1f s",
                            error, backoff)
            if self._stopping.wait(backoff):
                raise _Stopping()
            backoff = min(backoff * 2, 5.0)

    def _ack(self, batch: list[_Delivery]) -> None:
        client = self._client
        if client is None:
            return
        with self._ack_lock:  # a reconnect cannot start between the check and the ack
            for delivery in batch:
                if delivery.qos > 0 and delivery.generation == self._generation:
                    client.ack(delivery.mid, delivery.qos)


class _Stopping(Exception):
    """The ingester is stopping while waiting for the store: leave unacked."""


def _assign_errors(items: list[_Outcome], errors: list[dict]) -> None:
    # batch errors name the entity, not the message: give each error to the next
    # message of that entity (messages of one entity in a batch are in arrival order)
    pending: dict[str, list[_Outcome]] = defaultdict(list)
    for item in items:
        pending[item.observation.entity["id"]].append(item)
    for error in errors:
        candidates = pending.get(error.get("entityId"))
        if candidates:
            item = candidates.pop(0)
            item.dead = True
            item.reason = error["error"]["detail"]
