"""Purge Entities (ETSI GS CIM 009, 5.6.21): delete every entity a query selects, or
only some of their attributes (``drop``), or all but some (``keep``).

The entities are selected like ``GET /entities`` selects them; they are then written
(attributes removed) or deleted in one transaction, each publishing its event as a
single delete would. History stays, as for a single delete.
"""

from __future__ import annotations

from cityos.core.entities import attribute_names
from cityos.core.events import EntityEvent
from cityos.core.store.base import ContextStore, EntityQuery, tx_tenant, with_system_times
from cityos.core.timefmt import now_utc, to_micros


def purge(store: ContextStore, tenant: str, query: EntityQuery, *,
          keep: list[str] | None = None, drop: list[str] | None = None) -> int:
    """Purge the entities matching ``query``; return how many were touched.

    Parameters
    ----------
    keep : list of str, optional
        Stored attribute names to keep; every other attribute is removed and the
        entities stay.
    drop : list of str, optional
        Stored attribute names to remove; the entities stay. Neither ``keep`` nor
        ``drop``: the entities are deleted.
    """
    ids = [record.id for record in store.query_entities(tenant, query).entities]
    if not ids:
        return 0
    now = to_micros(now_utc())
    events: list[EntityEvent] = []
    with store.transaction(tenant) as tx:
        for entity_id, record in tx.read(ids).items():
            entity = record.entity
            if keep is None and drop is None:
                tx.delete(entity_id)
                events.append(EntityEvent(tx_tenant(tx), "deleted", entity_id,
                                          entity["type"], attribute_names(entity), None,
                                          with_system_times(record)))
                continue
            names = attribute_names(entity)
            gone = [n for n in names if (n not in keep if keep is not None else n in drop)]
            if not gone:
                continue
            kept = {k: v for k, v in entity.items() if k not in gone}
            store._save(tx, record, kept, now, created=False, written={})
            events.append(EntityEvent(tx_tenant(tx), "updated", entity_id, entity["type"],
                                      gone, kept, entity))
    store._publish(events)
    return len(events)
