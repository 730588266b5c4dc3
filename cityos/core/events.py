"""The event bus: entity created / updated / deleted, as apps and subscriptions see it.

``InProcessBus`` is the embedded default. ``RedisBus`` and ``NatsBus``
(``cityos.core.bus_backends``) carry the same events between several API workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)


@dataclass
class EntityEvent:
    """What changed in the store.

    Attributes
    ----------
    tenant : str
    kind : str
        ``created``, ``updated`` or ``deleted``.
    entity_id : str
    entity_type : str or list of str
    changed : list of str
        Names of the attributes written or removed by the operation.
    entity : dict or None
        The entity (canonical form) after the change; None when deleted.
    previous : dict or None
        The entity before the change; None when created (or not known). Notifications
        show deleted attributes and, with ``showChanges``, previous values from it.
    """

    tenant: str
    kind: str
    entity_id: str
    entity_type: str | list[str]
    changed: list[str] = field(default_factory=list)
    entity: dict | None = None
    previous: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EntityEvent:
        return cls(**data)


Handler = Callable[[EntityEvent], None]


class EventBus:
    """Publish/subscribe of :class:`EntityEvent`.

    Handlers run synchronously in the publisher's thread for the in-process bus, so
    they must be quick and must not raise (a raising handler is logged and skipped,
    never allowed to fail the store write that caused the event).
    """

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Register ``handler`` for every event; return a function that unregisters it."""
        with self._lock:
            self._handlers.append(handler)

        def unsubscribe() -> None:
            with self._lock:
                if handler in self._handlers:
                    self._handlers.remove(handler)

        return unsubscribe

    def publish(self, event: EntityEvent) -> None:
        """Deliver ``event`` to every subscriber (of this process or, for networked
        backends, of every process)."""
        self._deliver(event)

    def publish_many(self, events: list[EntityEvent]) -> None:
        """Publish the events of one write (a batch), in order.

        The same as publishing each; a bus that delivers only in process looks its
        handlers up once for the lot.
        """
        if type(self).publish is not EventBus.publish:
            for event in events:  # a networked bus sends each event on as well
                self.publish(event)
            return
        with self._lock:
            handlers = list(self._handlers)
        for event in events:
            self._call(handlers, event)

    def _deliver(self, event: EntityEvent) -> None:
        with self._lock:
            handlers = list(self._handlers)
        self._call(handlers, event)

    @staticmethod
    def _call(handlers: list[Handler], event: EntityEvent) -> None:
        for handler in handlers:
            try:
                handler(event)
            except Exception:  # a bad subscriber must not break the write path
                log.exception("event handler %r failed on %s %s", handler, event.kind,
                              event.entity_id)

    def close(self) -> None:
        """Release connections (nothing to do in process)."""


class InProcessBus(EventBus):
    """The embedded default: handlers in this process only."""
