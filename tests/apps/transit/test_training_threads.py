"""The transit service's background training ends with the service.

A demo tenant's predictor learns from simulated past days in a thread of its own. That
thread used to outlive the service, simulating on while later tests ran (one crashed
there under the clock matrix); stopping the service now stops and joins it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from cityos.apps.transit.demo import build_transit_demo
from cityos.apps.transit.service import TransitService
from cityos.core.store import open_store

TENANT = "training-city"
NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # a Monday morning


def _trainers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"transit-train {TENANT}"]


def test_stopping_the_service_ends_its_training(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'city.db'}")
    try:
        build_transit_demo(store, TENANT, NOW)
        service = TransitService(store, clock=NOW.timestamp)
        assert service.tenant(TENANT) is not None
        started = _trainers()
        assert started, "the demo tenant trains in the background"
        service.stop()
        assert not any(thread.is_alive() for thread in started)
    finally:
        store.close()
