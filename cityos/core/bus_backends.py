"""Event buses that carry entity events between several CityOS processes.

``open_bus(url)`` picks the backend from ``Settings.bus_url``:

- ``memory://``: :class:`~cityos.core.events.InProcessBus`, this process only;
- ``redis://host:port/db``: :class:`RedisBus`, Redis pub/sub on channel ``cityos.events``;
- ``nats://host:port``: :class:`NatsBus`, NATS core pub/sub on subject ``cityos.events``.

Delivery rule, the same for both networked buses: every bus instance (one per worker
process) receives every event exactly once, its own included. An event published on
this bus is delivered to the local handlers at once, in the publisher's thread (so
a process sees its own writes without a network round trip, and keeps working while
the network is down); it is also sent to the server with this bus's ``origin`` id, and
the listener thread skips messages carrying its own origin, delivering the others'
events to the local handlers. Messages are JSON: ``{"origin": ..., "event":
EntityEvent.to_dict()}``.

Pub/sub is at-most-once across processes: a worker that is disconnected, or a server
that is down, misses events (they are logged, never raised into the store write that
caused them). Code that must see every change reads the store's history.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid

import orjson

from cityos.core.events import EntityEvent, EventBus, InProcessBus

log = logging.getLogger(__name__)

CHANNEL = "cityos.events"
_BATCH = 1000  # events sent per round trip by the publisher thread


def open_bus(url: str | None) -> EventBus:
    """Open the event bus named by ``url``.

    Parameters
    ----------
    url : str
        ``memory://`` (or empty), ``redis://host:port/db`` (``rediss://`` for TLS) or
        ``nats://host:port`` (several servers comma-separated, ``tls://`` for TLS).

    Raises
    ------
    ValueError
        For any other scheme.
    """
    if not url or url.startswith("memory:"):
        return InProcessBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBus(url)
    if url.startswith(("nats://", "tls://")):
        return NatsBus(url)
    raise ValueError(f"bus URL {url!r}: expected memory://, redis:// or nats://")


class NetworkBus(EventBus):
    """What the networked buses share: local delivery, origin id, message format."""

    def __init__(self) -> None:
        super().__init__()
        self.origin = uuid.uuid4().hex
        self.received = 0  # events from other processes delivered here
        self.dropped = 0  # events that could not be sent to the server

    def publish(self, event: EntityEvent) -> None:
        """Deliver ``event`` to this process's handlers, then send it to the others."""
        self._deliver(event)
        self._send(orjson.dumps({"origin": self.origin, "event": event.to_dict()}))

    def _send(self, message: bytes) -> None:
        raise NotImplementedError

    def _receive(self, message: bytes) -> None:
        try:
            data = orjson.loads(message)
            if data.get("origin") == self.origin:
                return
            event = EntityEvent.from_dict(data["event"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("event bus: ignoring a malformed message %.200r", message)
            return
        self.received += 1
        self._deliver(event)


class RedisBus(NetworkBus):
    """Entity events over Redis pub/sub.

    Parameters
    ----------
    url : str
        ``redis://host:port/db``.
    channel : str
        Pub/sub channel, ``cityos.events``.

    Notes
    -----
    Publishing never waits for Redis: a publisher thread sends queued events in
    pipelined batches, so a burst of writes costs one round trip per batch.
    """

    def __init__(self, url: str, channel: str = CHANNEL):
        super().__init__()
        import redis

        self.channel = channel
        self._redis = redis.Redis.from_url(url, health_check_interval=30)
        self._pubsub = self._redis.pubsub()
        self._pubsub.subscribe(channel)
        self._await_subscription()
        self._closed = threading.Event()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._listener = threading.Thread(target=self._listen, name="cityos-redis-bus",
                                          daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="cityos-redis-send",
                                        daemon=True)
        self._listener.start()
        self._sender.start()

    def _await_subscription(self, timeout_s: float = 10.0) -> None:
        # publish before the SUBSCRIBE is confirmed would be missed by this worker
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.5)
            if message and message["type"] == "subscribe":
                return
        raise ConnectionError(f"Redis did not confirm the subscription to {self.channel}")

    def _send(self, message: bytes) -> None:
        self._outbox.put(message)

    def _send_loop(self) -> None:
        import redis

        while True:
            first = self._outbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._outbox.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                pipe = self._redis.pipeline(transaction=False)
                for message in batch:
                    pipe.publish(self.channel, message)
                pipe.execute()
            except redis.RedisError as error:
                self.dropped += len(batch)
                log.warning("event bus: %d events not sent to Redis: %s", len(batch), error)

    def _listen(self) -> None:
        import redis

        backoff = 0.1
        while not self._closed.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.25)
                backoff = 0.1
            except (redis.RedisError, OSError, ValueError) as error:
                if self._closed.is_set():
                    return
                log.warning("event bus: Redis listener lost its connection (%s); "
                            "retrying in %.1f s", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if message and message["type"] == "message":
                self._receive(message["data"])

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every event published so far has been handed to Redis."""
        deadline = time.monotonic() + timeout_s
        while not self._outbox.empty() and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        """Send what is queued, stop both threads, close the connections."""
        if self._closed.is_set():
            return
        self._outbox.put(None)
        self._sender.join(timeout=5)
        self._closed.set()
        self._listener.join(timeout=5)
        try:
            self._pubsub.close()
        finally:
            self._redis.close()


class NatsBus(NetworkBus):
    """Entity events over NATS core pub/sub, with nats-py on a background asyncio loop.

    Parameters
    ----------
    url : str
        ``nats://host:port`` (comma-separate several servers of a cluster).
    subject : str
        ``cityos.events``.
    connect_timeout_s : float
        How long to keep trying the first connection before raising ConnectionError
        (later losses are retried for ever).

    Notes
    -----
    The connection is opened with ``no_echo`` so the server does not send this
    process its own events; the origin check stays as a second guard. nats-py
    reconnects by itself when the server goes away.
    """

    def __init__(self, url: str, subject: str = CHANNEL, connect_timeout_s: float = 10.0):
        super().__init__()
        self.subject = subject
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="cityos-nats-bus", daemon=True)
        self._thread.start()
        self._outbox: asyncio.Queue | None = None
        self._nc = None
        self._sender_task = None
        try:
            asyncio.run_coroutine_threadsafe(self._open(url, connect_timeout_s),
                                             self._loop).result()
        except BaseException:
            self._stop_loop()
            raise

    async def _open(self, url: str, connect_timeout_s: float) -> None:
        import nats

        async def on_error(error: Exception) -> None:
            log.warning("event bus: NATS error: %s", error)

        try:
            self._nc = await asyncio.wait_for(nats.connect(
                servers=url.split(","), no_echo=True, name=f"cityos-{self.origin[:8]}",
                max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=on_error,
                connect_timeout=min(5.0, connect_timeout_s), allow_reconnect=True),
                timeout=connect_timeout_s)
        except TimeoutError:
            raise ConnectionError(f"NATS server at {url} did not answer within "
                                  f"{connect_timeout_s:g} s (could not connect)") from None
        await self._nc.subscribe(self.subject, cb=self._on_message)
        await self._nc.flush()  # the SUB is on the server before we return
        self._outbox = asyncio.Queue()
        self._sender_task = asyncio.create_task(self._send_loop())

    async def _on_message(self, msg) -> None:
        self._receive(msg.data)

    def _send(self, message: bytes) -> None:
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, message)

    async def _send_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            try:
                await self._nc.publish(self.subject, message)
            except Exception as error:  # noqa: BLE001  (disconnected, buffer full ...)
                self.dropped += 1
                log.warning("event bus: event not sent to NATS: %s", error)

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every event published so far has reached the NATS server."""
        async def flushed() -> None:
            while not self._outbox.empty():
                await asyncio.sleep(0.002)
            await self._nc.flush(timeout=timeout_s)

        asyncio.run_coroutine_threadsafe(flushed(), self._loop).result(timeout=timeout_s + 1)

    def close(self) -> None:
        """Send what is queued, close the connection, stop the loop thread."""
        if self._nc is None or not self._thread.is_alive():
            return

        async def shut() -> None:
            self._outbox.put_nowait(None)
            try:
                await asyncio.wait_for(self._sender_task, timeout=5)
                await self._nc.drain()
            except Exception as error:  # noqa: BLE001  (already disconnected)
                log.debug("event bus: NATS close: %s", error)
                await self._nc.close()

        try:
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
