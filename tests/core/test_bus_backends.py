"""Networked event buses against the real Redis (127.0.0.1:6379) and NATS (:4222).

Two bus instances stand for two API workers: an event published on either is
delivered once on each. Ordering on one channel makes the checks deterministic: when
a later "sentinel" event has arrived, any duplicate of an earlier one would have too.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from cityos.core.bus_backends import NatsBus, RedisBus, open_bus
from cityos.core.events import EntityEvent, InProcessBus

REDIS_URL = os.environ.get("CITYOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("CITYOS_TEST_NATS_URL", "nats://127.0.0.1:4222")


class Inbox:
    """Collects the events a handler got, and waits for one by entity id."""

    def __init__(self) -> None:
        self.events: list[EntityEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: EntityEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def ids(self) -> list[str]:
        with self._changed:
            return [e.entity_id for e in self.events]

    def wait_for(self, entity_id: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while entity_id not in [e.entity_id for e in self.events]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{entity_id} never arrived; got {self.ids()}")
                self._changed.wait(left)


def _event(entity_id: str, kind: str = "updated") -> EntityEvent:
    return EntityEvent("acme", kind, entity_id, "Vehicle", ["speed"],
                       {"id": entity_id, "type": "Vehicle",
                        "speed": {"type": "Property", "value": 3.5}})


@pytest.fixture(params=["redis", "nats"])
def bus_pair(request):
    """Two buses of one backend on the same server: worker A and worker B.

    A private channel per test keeps other test runs on the shared server out.
    """
    url, kind = (REDIS_URL, RedisBus) if request.param == "redis" else (NATS_URL, NatsBus)
    channel = f"cityos.test.{uuid.uuid4().hex}"
    try:
        first = kind(url, channel)
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"{request.param} server at {url} is not reachable: {error}", pytrace=False)
    second = kind(url, channel)
    yield first, second
    first.close()
    second.close()


def test_open_bus_picks_the_backend_by_scheme():
    assert isinstance(open_bus("memory://"), InProcessBus)
    assert isinstance(open_bus(""), InProcessBus)
    with pytest.raises(ValueError, match="expected memory://, redis:// or nats://"):
        open_bus("kafka://localhost:9092")
    redis_bus = open_bus(REDIS_URL)
    nats_bus = open_bus(NATS_URL)
    try:
        assert isinstance(redis_bus, RedisBus)
        assert isinstance(nats_bus, NatsBus)
    finally:
        redis_bus.close()
        nats_bus.close()


def test_event_reaches_every_worker_once(bus_pair):
    worker_a, worker_b = bus_pair
    inbox_a, inbox_b = Inbox(), Inbox()
    worker_a.subscribe(inbox_a)
    worker_b.subscribe(inbox_b)

    worker_a.publish(_event("urn:ngsi-ld:Vehicle:bus-17"))
    # the publisher's own handlers run at once, in its thread
    assert inbox_a.ids() == ["urn:ngsi-ld:Vehicle:bus-17"]
    inbox_b.wait_for("urn:ngsi-ld:Vehicle:bus-17")

    worker_b.publish(_event("urn:ngsi-ld:Vehicle:sentinel-b"))
    inbox_a.wait_for("urn:ngsi-ld:Vehicle:sentinel-b")
    worker_a.publish(_event("urn:ngsi-ld:Vehicle:sentinel-a"))
    inbox_b.wait_for("urn:ngsi-ld:Vehicle:sentinel-a")

    expected = ["urn:ngsi-ld:Vehicle:bus-17", "urn:ngsi-ld:Vehicle:sentinel-b",
                "urn:ngsi-ld:Vehicle:sentinel-a"]
    assert inbox_a.ids() == expected
    assert inbox_b.ids() == expected
    received = inbox_b.events[0]
    assert received == _event("urn:ngsi-ld:Vehicle:bus-17")  # every field survives the trip
    assert worker_a.received == 1 and worker_b.received == 2


def test_a_burst_keeps_its_order_and_count(bus_pair):
    worker_a, worker_b = bus_pair
    inbox_b = Inbox()
    worker_b.subscribe(inbox_b)
    ids = [f"urn:ngsi-ld:Vehicle:bus-{n}" for n in range(2000)]
    for entity_id in ids:
        worker_a.publish(_event(entity_id))
    inbox_b.wait_for(ids[-1])
    assert inbox_b.ids() == ids


def test_unsubscribed_handler_and_failing_handler(bus_pair):
    worker_a, worker_b = bus_pair
    kept, removed = Inbox(), Inbox()

    def broken(event: EntityEvent) -> None:
        raise RuntimeError("a bad subscriber")

    worker_b.subscribe(broken)
    unsubscribe = worker_b.subscribe(removed)
    worker_b.subscribe(kept)
    unsubscribe()
    worker_a.publish(_event("urn:ngsi-ld:Vehicle:bus-1", kind="deleted"))
    kept.wait_for("urn:ngsi-ld:Vehicle:bus-1")  # the raising handler did not stop it
    assert removed.ids() == []
    assert kept.events[0].kind == "deleted"


def test_other_channels_and_foreign_messages_are_ignored():
    import redis

    channel = f"cityos.test.{uuid.uuid4().hex}"
    worker = RedisBus(REDIS_URL, channel)
    inbox = Inbox()
    worker.subscribe(inbox)
    try:
        client = redis.Redis.from_url(REDIS_URL)
        client.publish(channel, b"not json")
        client.publish(channel, b'{"origin": "x", "event": {"bogus": 1}}')
        client.publish(channel + ".other", b'{"origin": "x", "event": {}}')
        other = RedisBus(REDIS_URL, channel)
        other.publish(_event("urn:ngsi-ld:Vehicle:after"))
        inbox.wait_for("urn:ngsi-ld:Vehicle:after")
        other.close()
        client.close()
        assert inbox.ids() == ["urn:ngsi-ld:Vehicle:after"]
    finally:
        worker.close()


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(ConnectionError, match="NATS server at nats://127.0.0.1:1 did not"):
        NatsBus("nats://127.0.0.1:1", connect_timeout_s=1)
    with pytest.raises(Exception, match="(?i)connect|refused"):
        RedisBus("redis://127.0.0.1:1/0")
