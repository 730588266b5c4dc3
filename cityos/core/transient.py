"""Transient entities and attributes (ETSI GS CIM 009, 4.22): ``expiresAt``.

An entity with an ``expiresAt`` in the past, or an attribute instance with one, is no
longer valid: reads leave it out at once, and the id of an expired entity is free for a
new one (a create replaces it). Expired data is not swept in the background; it goes
when its entity is next written or replaced.

Most tenants never store transient data, so a query does not look into every entity for
``expiresAt``: a tenant that has written some is marked once (a ``transient`` document),
and only the queries of marked tenants filter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityos.core.entities import RESERVED_KEYS, attribute_instances
from cityos.core.events import EntityEvent
from cityos.core.store.base import StoredEntity, instant_micros

if TYPE_CHECKING:
    from cityos.core.store.base import ContextStore

_MARK = ("transient", "present")


def may_expire(entity: dict) -> bool:
    """True when the entity or one of its attribute instances has an ``expiresAt``
    (cheap: the common durable entity costs one look per attribute)."""
    if "expiresAt" in entity:
        return True
    for value in entity.values():
        kind = type(value)
        if kind is dict:
            if "expiresAt" in value:
                return True
        elif kind is list and any(type(i) is dict and "expiresAt" in i for i in value):
            return True
    return False


def _expired(member: dict | str | None, now_us: int) -> bool:
    at = member.get("expiresAt") if isinstance(member, dict) else member
    return isinstance(at, str) and instant_micros(at) <= now_us


def entity_expired(record: StoredEntity, now_us: int) -> bool:
    """True when the entity itself has expired at ``now_us``."""
    return _expired(record.entity.get("expiresAt"), now_us)


def alive(record: StoredEntity, now_us: int) -> StoredEntity | None:
    """The record as valid at ``now_us``: None when the entity has expired, else without
    its expired attribute instances (the record itself when nothing expires)."""
    entity = record.entity
    if not may_expire(entity):
        return record
    if entity_expired(record, now_us):
        return None
    kept: dict = {}
    for name, value in entity.items():
        if name in RESERVED_KEYS:
            kept[name] = value
            continue
        instances = [i for i in attribute_instances(value) if not _expired(i, now_us)]
        if instances:
            kept[name] = instances[0] if len(instances) == 1 else instances
    return StoredEntity(kept, record.created_us, record.modified_us)


def _marked(store: ContextStore) -> set[str]:
    marked = getattr(store, "_transient_tenants", None)
    if marked is None:
        marked = set()
        store._transient_tenants = marked  # type: ignore[attr-defined]
    return marked


def note_transient(store: ContextStore, events: list[EntityEvent]) -> None:
    """Mark the tenants of ``events`` whose entity has an ``expiresAt`` somewhere (after
    the write committed; once per tenant and store)."""
    marked = _marked(store)
    for event in events:
        if event.tenant in marked or event.entity is None or not may_expire(event.entity):
            continue
        store.put_document(event.tenant, *_MARK, {"since": "first transient write"})
        marked.add(event.tenant)


def has_transient(store: ContextStore, tenant: str) -> bool:
    """True when ``tenant`` has ever stored a transient entity or attribute."""
    marked = _marked(store)
    if tenant in marked:
        return True
    if store.get_document(tenant, *_MARK) is not None:
        marked.add(tenant)
        return True
    return False
