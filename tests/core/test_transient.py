"""Transient entities and attributes (expiresAt, ETSI GS CIM 009 4.22) on SQLite and
PostgreSQL, with the process clock pinned."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cityos.core.errors import AlreadyExists, ResourceNotFound
from cityos.core.ngsi_ld import merge
from cityos.core.store.base import EntityQuery

CITY = "tallinn"
KIOSK = "urn:ngsi-ld:Kiosk:pop-up"


def instant(minute: int) -> datetime:
    return datetime(2026, 3, 1, 12, minute, tzinfo=UTC)


def kiosk(**extra) -> dict:
    return {"id": KIOSK, "type": "Kiosk", "name": {"type": "Property", "value": "market"},
            **extra}


def ids(store) -> list[str]:
    return [r.id for r in store.query_entities(CITY, EntityQuery(types=["Kiosk"])).entities]


def test_an_expired_entity_is_gone_and_its_id_free(store, clock):
    clock.set(instant(0))
    store.create_entity(CITY, kiosk(expiresAt="2026-03-01T12:10:00Z"))
    assert store.get_entity(CITY, KIOSK)["expiresAt"] == "2026-03-01T12:10:00.000000Z"
    with pytest.raises(AlreadyExists):
        store.create_entity(CITY, kiosk())
    clock.set(instant(10))
    with pytest.raises(ResourceNotFound):
        store.get_entity(CITY, KIOSK)
    assert ids(store) == []
    store.create_entity(CITY, kiosk())  # durable now
    clock.set(instant(59))
    assert "expiresAt" not in store.get_entity(CITY, KIOSK)


def test_expired_instances_leave_their_durable_siblings(store, clock):
    clock.set(instant(0))
    store.create_entity(CITY, kiosk(speed=[
        {"type": "Property", "value": "durable"},
        {"type": "Property", "value": "ephemeral", "datasetId": "urn:ngsi-ld:Dataset:e",
         "expiresAt": "2026-03-01T12:05:00Z"}],
        note={"type": "Property", "value": "today only", "expiresAt": "2026-03-01T12:05:00Z"}))
    assert len(store.get_entity(CITY, KIOSK)["speed"]) == 2
    clock.set(instant(5))
    entity = store.get_entity(CITY, KIOSK)
    assert entity["speed"] == {"type": "Property", "value": "durable"}
    assert "note" not in entity and entity["name"]["value"] == "market"


def test_merge_sets_and_clears_the_expiry(store, clock):
    clock.set(instant(0))
    store.create_entity(CITY, kiosk())
    merge.write_fragment(store, CITY, KIOSK, {"expiresAt": "2020-01-01T00:00:00Z"}, "merge")
    with pytest.raises(ResourceNotFound):
        store.get_entity(CITY, KIOSK)
    store.create_entity(CITY, kiosk(expiresAt="2026-03-01T12:30:00Z"))
    merge.write_fragment(store, CITY, KIOSK, {"expiresAt": merge.NGSI_LD_NULL}, "merge")
    clock.set(instant(45))
    assert ids(store) == [KIOSK]


def test_an_entity_created_already_expired_is_never_served(store, clock):
    clock.set(instant(0))
    created = store.create_entity(CITY, kiosk(expiresAt="2020-01-01T00:00:00Z"))
    assert created["id"] == KIOSK
    with pytest.raises(ResourceNotFound):
        store.get_entity(CITY, KIOSK)
    store.create_entity(CITY, kiosk(expiresAt="2020-01-01T00:00:00Z"))  # the id is free
