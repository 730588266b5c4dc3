"""The demo city as apps see it: where it lies, its tenant, its clock, a simulator's inputs.

``cityos demo`` builds a deterministic synthetic city ("Demo City", at Kuala Lumpur's
latitude and longitude) from every app's demo builder and runs every app's simulator
(see :mod:`cityos.demo`). An app's builder places its data around
:data:`CITY_CENTRE` and derives every instant from the ``at`` it is given (see
:func:`demo_anchor`); its simulator receives a :class:`DemoContext`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["CITY_CENTRE", "CITY_NAME", "DEMO_TENANT", "DemoContext", "demo_anchor"]

CITY_NAME = "Demo City"
#: Centre of the synthetic city (lon, lat): Kuala Lumpur-like coordinates.
CITY_CENTRE = (101.6958, 3.1466)
#: The tenant ``cityos demo`` writes into.
DEMO_TENANT = "default"


@dataclass
class DemoContext:
    """What a demo simulator gets: where to send its data and when to stop.

    Attributes
    ----------
    base_url : str
        The running server, e.g. ``http://127.0.0.1:8000``.
    api_key : str
        An admin key of ``tenant`` for HTTP calls.
    tenant : str
    mqtt_url : str or None
        The broker the ingester listens on, None when MQTT is off.
    store : ContextStore
        For reading what is there (writes go through the ingest path).
    stop : threading.Event
        Set when the demo shuts down.
    """

    base_url: str
    api_key: str
    tenant: str
    mqtt_url: str | None
    store: object
    stop: threading.Event = field(default_factory=threading.Event)


def demo_anchor(now: datetime) -> datetime:
    """The instant the sample history ends: ``now`` floored to the hour, so a rerun
    within the same hour writes the same history rows (it is idempotent)."""
    return now.replace(minute=0, second=0, microsecond=0)
