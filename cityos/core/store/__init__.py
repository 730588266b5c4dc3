"""Context store backends behind one interface; :func:`open_store` picks one by URL."""

from __future__ import annotations

from cityos.core.events import EventBus
from cityos.core.store.base import (  # noqa: F401  (the public names of the package)
    BatchResult,
    ContextStore,
    EntityQuery,
    HistoryRow,
    QueryResult,
    StoredEntity,
    TemporalQuery,
    UpdateResult,
)
from cityos.core.urls import redact_url


def open_store(url: str, events: EventBus | None = None) -> ContextStore:
    """Open the store at ``url``.

    Parameters
    ----------
    url : str
        ``sqlite:///relative/or/absolute.db`` (``sqlite:///:memory:`` for a throwaway
        store) or ``postgresql://user@host:port/dbname``.
    events : EventBus, optional
        Bus on which entity events are published; in-process when omitted.
    """
    if url.startswith("sqlite:"):
        from cityos.core.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///").removeprefix("sqlite://"), events)
    if url.startswith(("postgresql:", "postgres:")):
        from cityos.core.store.postgres import PostgresStore

        return PostgresStore(url, events)
    raise ValueError(f"database URL {redact_url(url)!r}: expected sqlite:/// or postgresql://")
