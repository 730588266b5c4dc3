"""The ``ContextStore`` interface: what the city knows now and what it knew before.

The API and the apps use this class, never SQL. The NGSI-LD semantics (merging
attributes by ``datasetId``, append vs. update vs. replace, query evaluation, history
recording, events) live here once; a backend supplies only a few primitives:
transactions over entity records, a candidate scan with type / id / bounding-box
prefilters, history rows and small JSON documents (subscriptions, keys, dead letters).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from cityos.core.entities import (
    attribute_instances,
    attribute_names,
    entity_types,
    normalise_attribute,
    normalise_attributes,
    normalise_entity,
)
from cityos.core.errors import (
    AlreadyExists,
    BadRequestData,
    NgsiLdError,
    ResourceNotFound,
)
from cityos.core.events import EntityEvent, EventBus, InProcessBus
from cityos.core.timefmt import format_datetime, from_micros, now_utc, parse_datetime, to_micros

DEFAULT_DATASET = "@none"


@dataclass
class StoredEntity:
    """An entity as a backend keeps it: the canonical body and its system times."""

    entity: dict
    created_us: int
    modified_us: int

    @property
    def id(self) -> str:
        return self.entity["id"]


@dataclass
class HistoryRow:
    """One attribute instance at one instant: a row of the history table.

    ``dataset_id`` is ``"@none"`` for the default instance. ``number`` is the value
    as a float when it is numeric (for aggregation), else None.
    """

    entity_id: str
    entity_type: str
    attribute: str
    dataset_id: str
    observed_us: int
    instance: dict
    number: float | None = None
    #: ``instance`` as JSON when it was encoded ahead of the write (backends use it
    #: instead of encoding again)
    encoded: bytes | None = field(default=None, repr=False, compare=False)


@dataclass
class EntityQuery:
    """A query over current entities (``GET /entities``).

    ``q`` and ``geo`` are parsed objects from :mod:`cityos.core.ngsi_ld.qlang` and
    :mod:`cityos.core.geo`, or strings that the store parses. ``where`` is one more
    predicate on the record (type expressions, scope queries); ``order`` a sort key of
    the records, applied to all matches before the page is cut.
    """

    types: list[str] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    q: Any = None
    geo: Any = None
    attrs: list[str] | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False
    where: Callable[[StoredEntity], bool] | None = None
    order: Callable[[list[StoredEntity]], list[StoredEntity]] | None = None


@dataclass
class QueryResult:
    """Matching entities (one page) and, when asked for, the total count."""

    entities: list[StoredEntity]
    count: int | None = None


@dataclass
class UpdateResult:
    """Which attributes an append/update wrote and which it did not, with why."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[dict] = field(default_factory=list)


@dataclass
class BatchResult:
    """Per-entity outcome of a batch operation; ``created`` names the successes that
    created their entity (an upsert's 201 lists them)."""

    success: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def fail(self, entity_id: Any, error: NgsiLdError) -> None:
        self.errors.append({"entityId": entity_id, "error": error.problem()})


@dataclass
class TemporalQuery:
    """A query over attribute history (``GET /temporal/entities``)."""

    entity: EntityQuery = field(default_factory=EntityQuery)
    attrs: list[str] | None = None
    timerel: str | None = None  # before | after | between
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    last_n: int | None = None


class StoreTransaction(ABC):
    """One backend transaction: read records (locked for update), write, delete."""

    @abstractmethod
    def read(self, entity_ids: list[str]) -> dict[str, StoredEntity]:
        """Return the stored records among ``entity_ids``, locking them for update."""

    @abstractmethod
    def put(self, record: StoredEntity, *, created: bool) -> None:
        """Insert (``created``) or overwrite the record."""

    @abstractmethod
    def delete(self, entity_id: str) -> None:
        """Remove the entity record (its history stays)."""

    @abstractmethod
    def add_history(self, rows: list[HistoryRow]) -> None:
        """Append history rows; a row whose (entity, attribute, dataset, instant) is
        already stored is ignored, so a redelivered observation is kept once."""

    def delete_history_rows(self, entity_id: str, attribute: str,
                            dataset_id: str | None = None,
                            observed_us: int | None = None) -> int:
        """Remove history rows of one attribute (of one ``dataset_id`` and one instant
        when given) before this transaction's own ``add_history`` rows are written;
        return how many were removed."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete history rows")


class ContextStore(ABC):
    """The context store with NGSI-LD semantics over a backend's primitives.

    Parameters
    ----------
    events : EventBus, optional
        Where entity events are published after each committed write.
    """

    backend = "abstract"

    def __init__(self, events: EventBus | None = None):
        self.events = events or InProcessBus()

    # ------------------------------------------------------------- primitives
    @abstractmethod
    def transaction(self, tenant: str) -> AbstractContextManager[StoreTransaction]:
        """A transaction scoped to ``tenant``: commits on exit, rolls back on error."""

    @abstractmethod
    def scan(self, tenant: str, *, types: list[str] | None = None,
             ids: list[str] | None = None, id_pattern: str | None = None,
             bbox: tuple[float, float, float, float] | None = None) -> Iterator[StoredEntity]:
        """Yield the tenant's entities in id order, pre-filtered.

        ``types`` (any of), ``ids`` (any of) and ``bbox`` (lon/lat box that the
        ``location`` GeoProperty must intersect) are applied by the backend's indexes;
        ``id_pattern`` may be applied here or by the backend. The caller applies the
        exact predicates.
        """

    @abstractmethod
    def history(self, tenant: str, entity_id: str, attrs: list[str] | None,
                start_us: int | None, end_us: int | None,
                last_n: int | None) -> list[HistoryRow]:
        """History rows of one entity, ``start_us <= t < end_us``, ascending time.

        With ``last_n``, only the last N rows of each (attribute, dataset) in range.
        """

    @abstractmethod
    def delete_history(self, tenant: str, entity_id: str) -> int:
        """Remove the entity's history (temporal DELETE); return rows removed."""

    @abstractmethod
    def put_document(self, tenant: str, kind: str, key: str, doc: dict) -> None:
        """Store a JSON document (subscription, API key, dead letter ...) by key."""

    @abstractmethod
    def get_document(self, tenant: str, kind: str, key: str) -> dict | None:
        """The document, or None."""

    @abstractmethod
    def list_documents(self, tenant: str, kind: str, limit: int = 1000,
                       offset: int = 0, *, newest_first: bool = False) -> list[dict]:
        """Documents of one kind, oldest first (newest first with ``newest_first``)."""

    @abstractmethod
    def delete_document(self, tenant: str, kind: str, key: str) -> bool:
        """Remove a document; True when it existed."""

    @abstractmethod
    def tenants(self) -> list[str]:
        """Every tenant that has entities."""

    def close(self) -> None:  # noqa: B027 - optional hook: a backend without connections keeps it
        """Release connections."""

    # ---------------------------------------------------------- entity writes
    def create_entity(self, tenant: str, entity: dict) -> dict:
        """Create an entity; AlreadyExists when the id is taken. Returns it, canonical."""
        result = self.create_entities(tenant, [entity])
        if result.errors:
            raise _error_from_problem(result.errors[0]["error"])
        for record in self.scan(tenant, ids=[_entity_id(entity)]):
            return record.entity  # as stored, even when created already expired
        raise ResourceNotFound(f"entity {_entity_id(entity)} does not exist")

    def create_entities(self, tenant: str, entities: list[dict]) -> BatchResult:
        """Batch create: each entity succeeds or fails on its own."""
        return self._batch(tenant, entities, self._apply_create)

    def upsert_entities(self, tenant: str, entities: list[dict], *,
                        replace: bool = True) -> BatchResult:
        """Batch upsert: create, or replace (``replace=True``) / merge attributes."""
        if replace:
            return self._batch(tenant, entities, self._apply_replace_or_create)
        return self._batch(tenant, entities, self._apply_merge_or_create,
                           prepare=_prepared_attributes)

    def update_entities(self, tenant: str, entities: list[dict], *,
                        no_overwrite: bool = False) -> BatchResult:
        """Batch update: append attributes to existing entities."""
        def apply(tx, body, now, attrs):
            return self._apply_append(tx, body, now, no_overwrite=no_overwrite, attrs=attrs)
        return self._batch(tenant, entities, apply, prepare=_prepared_attributes)

    def delete_entities(self, tenant: str, entity_ids: list[str]) -> BatchResult:
        """Batch delete."""
        result = BatchResult()
        events = []
        with self.transaction(tenant) as tx:
            found = tx.read(list(entity_ids))
            for entity_id in entity_ids:
                record = found.pop(entity_id, None)
                if record is None:
                    result.fail(entity_id, ResourceNotFound(f"entity {entity_id} does not exist"))
                    continue
                tx.delete(entity_id)
                result.success.append(entity_id)
                events.append(EntityEvent(tenant, "deleted", entity_id,
                                          record.entity["type"],
                                          attribute_names(record.entity), None,
                                          with_system_times(record)))
        self._publish(events)
        return result

    def replace_entity(self, tenant: str, entity_id: str, body: dict) -> None:
        """Replace all attributes of an existing entity (PUT /entities/{id})."""
        body = dict(body, id=entity_id)
        self._single(tenant, body, self._apply_replace)

    def delete_entity(self, tenant: str, entity_id: str) -> None:
        """Delete an entity; ResourceNotFound when there is none."""
        result = self.delete_entities(tenant, [entity_id])
        if result.errors:
            raise _error_from_problem(result.errors[0]["error"])

    def append_attributes(self, tenant: str, entity_id: str, attrs: dict, *,
                          no_overwrite: bool = False) -> UpdateResult:
        """Add or overwrite attributes (POST /entities/{id}/attrs)."""
        body = dict(attrs, id=entity_id)
        return self._single(tenant, body, lambda tx, b, now: self._apply_append(
            tx, b, now, no_overwrite=no_overwrite))

    def update_attributes(self, tenant: str, entity_id: str, attrs: dict) -> UpdateResult:
        """Overwrite existing attributes only (PATCH /entities/{id}/attrs)."""
        body = dict(attrs, id=entity_id)
        return self._single(tenant, body, self._apply_update)

    def patch_attribute(self, tenant: str, entity_id: str, name: str, fragment: dict) -> None:
        """Partial update of one attribute instance (PATCH /entities/{id}/attrs/{name})."""
        if not isinstance(fragment, dict):
            raise BadRequestData(f"{name}: the fragment must be a JSON object")

        def apply(tx, body, now):
            record = self._existing(tx, entity_id)
            entity = dict(record.entity)  # the record's stays the previous state
            if name not in entity:
                raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
            dataset = fragment.get("datasetId", DEFAULT_DATASET)
            instances = attribute_instances(entity[name])
            for index, inst in enumerate(instances):
                if inst.get("datasetId", DEFAULT_DATASET) == dataset:
                    merged = {**inst, **fragment}
                    if "value" in fragment and inst["type"] == "Relationship":
                        merged.pop("value")
                        merged["object"] = fragment["value"]
                    instances[index] = normalise_attribute(name, merged)
                    break
            else:
                raise ResourceNotFound(f"entity {entity_id} has no instance of {name} "
                                       f"with datasetId {dataset}")
            entity[name] = instances[0] if len(instances) == 1 else instances
            self._save(tx, record, entity, now, created=False, written={name: [instances[index]]})
            return None, _updated_event(tx, entity, [name], record.entity)

        self._single(tenant, {"id": entity_id}, apply)

    def delete_attribute(self, tenant: str, entity_id: str, name: str, *,
                         dataset_id: str | None = None, delete_all: bool = False) -> None:
        """Remove an attribute, one instance of it, or all its instances."""
        def apply(tx, body, now):
            record = self._existing(tx, entity_id)
            entity = dict(record.entity)  # the record's stays the previous state
            if name not in entity:
                raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
            if delete_all:
                del entity[name]
            else:
                wanted = dataset_id or DEFAULT_DATASET
                kept = [i for i in attribute_instances(entity[name])
                        if i.get("datasetId", DEFAULT_DATASET) != wanted]
                if len(kept) == len(attribute_instances(entity[name])):
                    raise ResourceNotFound(f"entity {entity_id} has no instance of {name} "
                                           f"with datasetId {wanted}")
                if kept:
                    entity[name] = kept[0] if len(kept) == 1 else kept
                else:
                    del entity[name]
            self._save(tx, record, entity, now, created=False, written={})
            return None, _updated_event(tx, entity, [name], record.entity)

        self._single(tenant, {"id": entity_id}, apply)

    # ----------------------------------------------------------------- reads
    def get_entity(self, tenant: str, entity_id: str) -> dict:
        """The entity in canonical form; ResourceNotFound when absent."""
        return self.get_record(tenant, entity_id).entity

    def get_record(self, tenant: str, entity_id: str) -> StoredEntity:
        """The stored record with system times; ResourceNotFound when absent."""
        from cityos.core.transient import alive

        for record in self.scan(tenant, ids=[entity_id]):
            record = alive(record, to_micros(now_utc()))  # an expired entity is gone
            if record is not None:
                return record
        raise ResourceNotFound(f"entity {entity_id} does not exist")

    def query_entities(self, tenant: str, query: EntityQuery) -> QueryResult:
        """Entities matching type, id, idPattern, q and geo-query, one page of them."""
        from cityos.core.geo import GeoQuery, geo_matches, parse_geo_query
        from cityos.core.ngsi_ld.qlang import parse_q, q_matches
        from cityos.core.transient import alive, has_transient, may_expire

        now_us = to_micros(now_utc())
        transient = has_transient(self, tenant)  # else no record needs looking at
        q = parse_q(query.q) if isinstance(query.q, str) else query.q
        geo = query.geo
        if isinstance(geo, dict):
            geo = parse_geo_query(**geo)
        bbox = geo.prefilter_bbox() if isinstance(geo, GeoQuery) and \
            geo.geoproperty == "location" else None
        pattern = re.compile(query.id_pattern) if query.id_pattern else None
        page: list[StoredEntity] = []
        total = 0
        stop_at = query.offset + query.limit
        for record in self.scan(tenant, types=query.types, ids=query.ids,
                                id_pattern=query.id_pattern, bbox=bbox):
            entity = record.entity
            if transient and may_expire(entity):  # leave out what has expired (4.22)
                record = alive(record, now_us)
                if record is None:
                    continue
                entity = record.entity
            if pattern and not pattern.search(entity["id"]):
                continue  # a regular expression matched anywhere in the id, as in ECMA
            if geo is not None and not geo_matches(geo, entity):
                continue
            if q is not None and not q_matches(q, entity):
                continue
            if query.attrs and not any(name in entity for name in query.attrs):
                continue  # NGSI-LD: attrs also selects entities having one of them
            if query.where is not None and not query.where(record):
                continue
            if query.order is not None:
                page.append(record)  # all of them: sorted and cut below
                continue
            if query.offset <= total < stop_at:
                page.append(record)
            total += 1
            if total >= stop_at and not query.count:
                break
        if query.order is not None:
            total = len(page)
            page = query.order(page)[query.offset:stop_at]
        return QueryResult(page, total if query.count else None)

    def entity_types_summary(self, tenant: str) -> dict[str, dict]:
        """Per entity type: count and the attribute names (with their kinds) in use."""
        summary: dict[str, dict] = {}
        for record in self.scan(tenant):
            for type_name in entity_types(record.entity):
                info = summary.setdefault(type_name, {"count": 0, "attributes": {}})
                info["count"] += 1
                for name in attribute_names(record.entity):
                    kinds = info["attributes"].setdefault(name, set())
                    kinds.update(i["type"] for i in attribute_instances(record.entity[name]))
        return summary

    def temporal_query(self, tenant: str, query: TemporalQuery) -> list[dict]:
        """Temporal representation of the entities that match ``query.entity``.

        Returns a list of ``{"id", "type", attr: [instance, ...]}`` where each instance
        carries ``observedAt``; instances ascend in time (NGSI-LD's lastN semantics:
        the last N of the range, still in ascending order).
        """
        start_us, end_us = temporal_window(query.timerel, query.time_at, query.end_time_at)
        entity_query = query.entity
        result = []
        unlimited = EntityQuery(types=entity_query.types, ids=entity_query.ids,
                                id_pattern=entity_query.id_pattern, q=entity_query.q,
                                geo=entity_query.geo, limit=entity_query.limit,
                                offset=entity_query.offset, where=entity_query.where)
        for record in self.query_entities(tenant, unlimited).entities:
            rows = self.history(tenant, record.id, query.attrs, start_us, end_us, query.last_n)
            temporal: dict = {"id": record.id, "type": record.entity["type"]}
            for row in rows:
                temporal.setdefault(row.attribute, []).append(row.instance)
            result.append(temporal)
        return result

    # ------------------------------------------------------------- internals
    def _publish(self, events: list[EntityEvent]) -> None:
        if events:
            from cityos.core.transient import note_transient

            note_transient(self, events)
            self.events.publish_many(events)

    def _batch(self, tenant: str, entities: Iterable[dict], apply,
               prepare=None) -> BatchResult:
        """Apply ``apply(tx, body, now)`` to each entity in one transaction.

        With ``prepare``, ``prepare(body, now)`` runs for every entity *before* the
        transaction (validation that needs no stored state: it then runs while another
        request holds the write lock) and ``apply`` gets its outcome as a fourth
        argument.
        """
        result = BatchResult()
        events: list[EntityEvent] = []
        now = to_micros(now_utc())
        entities = list(entities)
        prepared = [prepare(body, now) for body in entities] if prepare is not None else None
        with self.transaction(tenant) as tx:
            ids = [e.get("id") for e in entities if isinstance(e, dict)]
            tx.read([i for i in ids if isinstance(i, str)])  # lock them all at once
            for index, body in enumerate(entities):
                entity_id = body.get("id") if isinstance(body, dict) else None
                try:
                    if prepared is None:
                        event = apply(tx, body, now)
                    else:
                        event = apply(tx, body, now, prepared[index])
                except NgsiLdError as error:
                    if not isinstance(error.detail, str) or entity_id is None:
                        error.detail = f"entity {index}: {error.detail}"
                    result.fail(entity_id, error)
                    continue
                result.success.append(entity_id)
                if isinstance(event, tuple):
                    event = event[1]
                if event is not None and event.kind == "created":
                    result.created.append(entity_id)
                if event is not None and event.changed:
                    events.append(event)
        self._publish(events)
        return result

    def _single(self, tenant: str, body: dict, apply):
        now = to_micros(now_utc())
        with self.transaction(tenant) as tx:
            outcome = apply(tx, body, now)
        if isinstance(outcome, tuple):
            update, event = outcome
            if event.changed:
                self._publish([event])
            return update
        if outcome is not None:
            self._publish([outcome])
        return None

    def _existing(self, tx: StoreTransaction, entity_id: str) -> StoredEntity:
        record = tx.read([entity_id]).get(entity_id)
        if record is None:
            raise ResourceNotFound(f"entity {entity_id} does not exist")
        return record

    def _save(self, tx, record: StoredEntity | None, entity: dict, now: int, *,
              created: bool, written: dict[str, list[dict]],
              rows: list[HistoryRow] | None = None) -> StoredEntity:
        """Write the entity and the history rows of the instances ``written`` (or the
        ``rows`` made of them ahead of the transaction)."""
        new = StoredEntity(entity, record.created_us if record else now, now)
        tx.put(new, created=created)
        tx.add_history(history_rows(entity, written, now) if rows is None else rows)
        return new

    def _apply_create(self, tx, body, now):
        from cityos.core.transient import entity_expired

        entity = normalise_entity(body)
        found = tx.read([entity["id"]]).get(entity["id"])
        if found is not None:
            if not entity_expired(found, now):
                raise AlreadyExists(f"entity {entity['id']} already exists")
            tx.delete(entity["id"])  # an expired entity's id is free again
        self._save(tx, None, entity, now, created=True, written=_all_instances(entity))
        return EntityEvent(tx_tenant(tx), "created", entity["id"], entity["type"],
                           attribute_names(entity), entity)

    def _apply_replace(self, tx, body, now):
        entity = normalise_entity(body, require_type="type" in body)
        record = self._existing(tx, entity["id"])
        if "type" not in entity:
            entity = {"id": entity["id"], "type": record.entity["type"], **{
                k: v for k, v in entity.items() if k != "id"}}
        self._save(tx, record, entity, now, created=False, written=_all_instances(entity))
        changed = sorted(set(attribute_names(entity)) | set(attribute_names(record.entity)))
        return EntityEvent(tx_tenant(tx), "updated", entity["id"], entity["type"], changed, entity,
                           record.entity)

    def _apply_replace_or_create(self, tx, body, now):
        entity_id = body.get("id") if isinstance(body, dict) else None
        if isinstance(entity_id, str) and tx.read([entity_id]):
            return self._apply_replace(tx, body, now)
        return self._apply_create(tx, body, now)

    def _apply_merge_or_create(self, tx, body, now, attrs=None):
        entity_id = body.get("id") if isinstance(body, dict) else None
        if isinstance(entity_id, str):
            found = tx.read([entity_id])
            if found:
                return self._apply_append(tx, body, now, no_overwrite=False, attrs=attrs,
                                          record=found[entity_id])
        return self._apply_create(tx, body, now)

    def _apply_append(self, tx, body, now, *, no_overwrite: bool, attrs=None, record=None):
        """Merge attributes into an existing entity. ``attrs`` is what
        :func:`_prepared_attributes` made of ``body`` ahead of the transaction (the
        validated attributes, or the error to raise); None validates here. ``record``
        is the entity's record when the caller has just read it."""
        if not isinstance(body, dict):
            raise BadRequestData("an entity must be a JSON object")
        if record is None:
            record = self._existing(tx, body.get("id"))
        history = None
        if attrs is None:
            attrs = normalise_attributes(body)
        elif isinstance(attrs, NgsiLdError):
            raise attrs
        elif isinstance(attrs, _PreparedMerge):
            attrs, history = attrs.attrs, attrs.history
        entity = dict(record.entity)
        result = UpdateResult()
        written: dict[str, list[dict]] = {}
        for name, attr in attrs.items():
            if no_overwrite and name in entity:
                result.not_updated.append({"attributeName": name,
                                           "reason": "attribute exists and noOverwrite is set"})
                continue
            entity[name] = _merge_instances(entity.get(name), attr)
            written[name] = attr if isinstance(attr, list) else [attr]
            result.updated.append(name)
        if "type" in body and body["type"] != record.entity["type"]:
            types = entity_types(record.entity)
            types += [t for t in (body["type"] if isinstance(body["type"], list)
                                  else [body["type"]]) if t not in types]
            entity["type"] = types if len(types) > 1 else types[0]
        if written or entity["type"] != record.entity["type"]:
            # nothing written: leave the record and its modifiedAt alone
            rows = None
            if history is not None:
                types = entity["type"]
                first_type = types if isinstance(types, str) else entity_types(entity)[0]
                rows = []
                for name in written:
                    for row in history[name]:
                        row.entity_type = first_type
                        rows.append(row)
            self._save(tx, record, entity, now, created=False, written=written, rows=rows)
        return result, _updated_event(tx, entity, result.updated, record.entity)

    def _apply_update(self, tx, body, now):
        record = self._existing(tx, body["id"])
        attrs = normalise_attributes(body)
        entity = dict(record.entity)
        result = UpdateResult()
        written: dict[str, list[dict]] = {}
        for name, attr in attrs.items():
            existing = entity.get(name)
            known = {i.get("datasetId", DEFAULT_DATASET)
                     for i in attribute_instances(existing)} if existing else set()
            new = attribute_instances(attr)
            missing = [i for i in new if i.get("datasetId", DEFAULT_DATASET) not in known]
            if missing:
                result.not_updated.append({"attributeName": name,
                                           "reason": "attribute (or datasetId) does not exist"})
                continue
            entity[name] = _merge_instances(existing, attr)
            written[name] = new
            result.updated.append(name)
        if written:  # nothing written: leave the record and its modifiedAt alone
            self._save(tx, record, entity, now, created=False, written=written)
        return result, _updated_event(tx, entity, result.updated, record.entity)


def _updated_event(tx: StoreTransaction, entity: dict, changed: list[str],
                   previous: dict | None) -> EntityEvent:
    return EntityEvent(tx_tenant(tx), "updated", entity["id"], entity["type"], list(changed),
                       entity, previous)


def with_system_times(record: StoredEntity) -> dict:
    """The record's entity with its ``createdAt`` / ``modifiedAt`` (a deleted entity's
    last state, for the notifications that show its system times)."""
    return {**record.entity, "createdAt": format_datetime(from_micros(record.created_us)),
            "modifiedAt": format_datetime(from_micros(record.modified_us))}


def tx_tenant(tx: StoreTransaction) -> str:
    """The tenant a backend transaction is scoped to (backends set ``tx.tenant``)."""
    return tx.tenant  # type: ignore[attr-defined]


def _entity_id(entity: Any) -> Any:
    return entity.get("id") if isinstance(entity, dict) else None


def _all_instances(entity: dict) -> dict[str, list[dict]]:
    return {name: attribute_instances(entity[name]) for name in attribute_names(entity)}


@dataclass
class _PreparedMerge:
    """A merge body validated ahead of its transaction: its attributes and, by
    attribute name, the history rows of their instances (JSON encoded, the entity
    type left to fill in: it comes from the stored entity)."""

    attrs: dict
    history: dict[str, list[HistoryRow]] | None


def _prepared_attributes(body: Any, now_us: int) -> _PreparedMerge | NgsiLdError | None:
    """What a merge body becomes before its transaction (see :class:`_PreparedMerge`),
    or the error validating it raised (raised later, in the entity's turn); None for a
    body that is not an object."""
    if not isinstance(body, dict):
        return None
    try:
        attrs = normalise_attributes(body)
        if not isinstance(body.get("id"), str):
            return _PreparedMerge(attrs, None)  # fails in its turn, or validates as new
        stand_in = {"id": body["id"], "type": ""}
        dumps = orjson.dumps
        history = {}
        for name, attr in attrs.items():
            rows = history_rows(stand_in, {name: attr if isinstance(attr, list) else [attr]},
                                now_us)
            for row in rows:
                row.encoded = dumps(row.instance)
            history[name] = rows
    except NgsiLdError as error:
        return error
    return _PreparedMerge(attrs, history)


def _merge_instances(existing: dict | list | None, new: dict | list) -> dict | list:
    """Replace instances with the same datasetId, keep the others, add the new ones."""
    if existing is None:
        return new
    if type(existing) is dict and type(new) is dict and \
            existing.get("datasetId", DEFAULT_DATASET) == new.get("datasetId", DEFAULT_DATASET):
        return new  # the common case: a new reading of a single-instance attribute
    by_dataset = {i.get("datasetId", DEFAULT_DATASET): i for i in attribute_instances(existing)}
    for instance in attribute_instances(new):
        by_dataset[instance.get("datasetId", DEFAULT_DATASET)] = instance
    merged = list(by_dataset.values())
    return merged[0] if len(merged) == 1 else merged


def history_rows(entity: dict, written: dict[str, list[dict]], now_us: int) -> list[HistoryRow]:
    """History rows for the attribute instances just written.

    The instant of a row is the instance's ``observedAt`` when it has one (what the
    sensor measured when), else the time of the write.
    """
    rows = []
    types = entity["type"]
    first_type = types if isinstance(types, str) else entity_types(entity)[0]
    entity_id = entity["id"]
    now_text = None
    for name, instances in written.items():
        for instance in instances:
            observed = instance.get("observedAt")
            if observed:
                # the instance is not changed afterwards (a later write replaces the
                # instance, never edits it), so the row may share it
                stamped = instance
                instant = instant_micros(observed)
            else:
                instant = now_us
                if now_text is None:
                    now_text = format_datetime(from_micros(instant))
                stamped = dict(instance)
                stamped["observedAt"] = now_text
            value = instance.get("value")
            kind = type(value)
            if kind is float or kind is int:
                number = float(value)
            elif kind is not bool and isinstance(value, (int, float)):
                number = float(value)
            else:
                number = None
            rows.append(HistoryRow(entity_id, first_type, name,
                                   instance.get("datasetId", DEFAULT_DATASET), instant,
                                   stamped, number))
    return rows


_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def instant_micros(text: str) -> int:
    """Microseconds since the epoch of a date-time, quickest for the canonical form.

    ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the form validation stores) is read as a naive
    UTC date-time, without building a time zone aware one; any other form goes through
    :func:`parse_datetime`.

    Raises
    ------
    BadRequestData
        When ``text`` is not an ISO 8601 date-time.
    """
    if len(text) == 27 and text[26] == "Z" and text[19] == ".":
        try:
            return (datetime.fromisoformat(text[:26]) - _EPOCH_NAIVE) // _MICROSECOND
        except (ValueError, TypeError):  # not a date; an offset inside (aware - naive)
            pass
    return to_micros(parse_datetime(text))


def temporal_window(timerel: str | None, time_at: datetime | None,
                    end_time_at: datetime | None) -> tuple[int | None, int | None]:
    """Turn ``timerel``/``timeAt``/``endTimeAt`` into a half-open microsecond range.

    ``before`` is ``t < timeAt``; ``after`` is ``t >= timeAt`` (NGSI-LD says after,
    CityOS includes the instant itself so that consecutive windows tile the
    timeline); ``between`` is ``timeAt <= t < endTimeAt``.
    """
    if timerel is None:
        return None, None
    if time_at is None:
        raise BadRequestData("timeAt is required with timerel")
    if timerel == "before":
        return None, to_micros(time_at)
    if timerel == "after":
        return to_micros(time_at), None
    if timerel == "between":
        if end_time_at is None:
            raise BadRequestData("endTimeAt is required with timerel=between")
        if end_time_at <= time_at:
            raise BadRequestData("endTimeAt must be later than timeAt")
        return to_micros(time_at), to_micros(end_time_at)
    raise BadRequestData(f"timerel: {timerel!r} is not one of before, after, between")


def _error_from_problem(problem: dict) -> NgsiLdError:
    from cityos.core import errors

    name = problem["type"].rsplit("/", 1)[-1]
    cls = getattr(errors, name, NgsiLdError)
    return cls(problem["detail"])
