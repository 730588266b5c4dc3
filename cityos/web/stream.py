"""Live map updates: the event bus of one tenant as a Server-Sent Events stream.

The bus calls its handlers in the writer's thread; :class:`TenantEventStream` hands
each event of its tenant over to the event loop with ``call_soon_threadsafe`` and
the response turns them into ``event: entity`` messages. A client that falls behind
by more than ``max_pending`` events is told to reload (``event: resync``) instead of
being sent a backlog, and a comment line every ``heartbeat_s`` keeps proxies from
closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cityos.core.events import EntityEvent, EventBus
from cityos.web.features import event_message

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
MAX_PENDING = 20_000
#: Most events put into one chunk of the response (bursts go out together).
MAX_BATCH = 500


def sse_message(event: str, data: dict | None = None) -> bytes:
    """One SSE message (``data`` as one line of JSON)."""
    payload = orjson.dumps(data if data is not None else {})
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


class TenantEventStream:
    """The events of one tenant, from the bus's threads to one async consumer.

    Parameters
    ----------
    bus : EventBus
    tenant : str
    max_pending : int
        Events kept for a slow client before it is told to resync instead.
    """

    def __init__(self, bus: EventBus, tenant: str, max_pending: int = MAX_PENDING):
        self.bus = bus
        self.tenant = tenant
        self.max_pending = max_pending
        self._queue: asyncio.Queue[EntityEvent | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._overflowed = False
        self._unsubscribe = bus.subscribe(self._on_event)

    def _on_event(self, event: EntityEvent) -> None:
        if event.tenant != self.tenant:
            return
        try:
            self._loop.call_soon_threadsafe(self._put, event)
        except RuntimeError:  # the loop is closed: the server is going down
            self.close()

    def _put(self, event: EntityEvent) -> None:
        if self._queue.qsize() >= self.max_pending:
            self._overflowed = True
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        """Stop receiving events."""
        self._unsubscribe()

    async def messages(self, heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[bytes]:
        """SSE chunks: a ``hello``, then entity events (batched), resyncs, heartbeats."""
        try:
            yield b"retry: 2000\n" + sse_message("hello", {"tenant": self.tenant})
            while True:
                try:
                    first = await asyncio.wait_for(self._queue.get(), heartbeat_s)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                events = [first]
                while len(events) < MAX_BATCH and not self._queue.empty():
                    events.append(self._queue.get_nowait())
                if self._overflowed:
                    self._overflowed = False
                    while not self._queue.empty():
                        self._queue.get_nowait()
                    yield sse_message("resync", {"reason": "too many pending events"})
                    continue
                chunk = []
                for event in events:
                    try:
                        chunk.append(sse_message("entity", event_message(event)))
                    except Exception:  # noqa: BLE001 (one odd entity must not end the stream)
                        log.exception("cannot send event of %s", event.entity_id)
                yield b"".join(chunk)
        finally:
            self.close()


class EventStreamResponse(StreamingResponse):
    """An endless ``text/event-stream`` response.

    At shutdown the server cancels streams that are still open (``cityos serve`` waits
    5 s for them); that is how such a stream is meant to end, so the cancellation
    stops here instead of being reported as an application error.
    """

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            log.info("event stream closed by the server's shutdown")
            try:  # end the response properly, so the server has nothing to report
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # noqa: BLE001 (the connection may be gone already)
                pass
