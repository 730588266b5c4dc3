"""The demo city's bus network: the builder that ``cityos demo`` runs.

:func:`build_transit_demo` writes the synthetic feed
(:func:`~cityos.apps.transit.synthetic.write_demo_gtfs`) as a GTFS zip next to the
demo's SQLite database (``var/`` for another store) and imports it with
:func:`~cityos.apps.transit.entities.import_feed`: stops and routes become entities,
and the tenant's ``transit-feed/current`` document, marked ``demo``, tells the transit
service to run the feed and to learn its predictor from simulated days. The buses
themselves come from the simulator (:func:`cityos.apps.transit.sim.run`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cityos.apps.transit.entities import FEED_DOCUMENT, feed_entities, import_feed
from cityos.apps.transit.gtfs import read_feed
from cityos.apps.transit.synthetic import write_demo_gtfs

DEMO_SEED = 0
FEED_FILE = "demo-city-gtfs.zip"


def demo_feed_path(store) -> Path:
    """Where the demo's GTFS zip goes: beside the SQLite database, else ``var/``."""
    path = getattr(store, "path", None)
    if isinstance(path, str) and path and path != ":memory:" and not path.startswith("file:"):
        return Path(path).resolve().parent / FEED_FILE
    return Path("var").resolve() / FEED_FILE


def build_transit_demo(store, tenant: str, at: datetime) -> list[str]:
    """Write and import the demo city's GTFS feed; return the ids of its entities.

    Idempotent: the zip is written only when missing (it is deterministic), and an
    import already recorded for the same file is not repeated.
    """
    path = demo_feed_path(store)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_demo_gtfs(path, seed=DEMO_SEED)
    document = store.get_document(tenant, *FEED_DOCUMENT)
    if document and document.get("demo") and document.get("path") == str(path):
        return [entity["id"] for entity in feed_entities(read_feed(path))]
    report = import_feed(store, tenant, path)
    document = store.get_document(tenant, *FEED_DOCUMENT) or {}
    document.update(demo=True, seed=DEMO_SEED)
    store.put_document(tenant, *FEED_DOCUMENT, document)
    return [entity["id"] for entity in feed_entities(report.feed)]
