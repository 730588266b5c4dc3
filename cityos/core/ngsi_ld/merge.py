"""Writing NGSI-LD Fragments into an entity: merge-patch, update and partial update,
with the NGSI-LD Null (ETSI GS CIM 009, 4.5.5, 5.5.12, 5.6.2, 5.6.4, 5.6.17).

An attribute instance whose ``value`` (Property, GeoProperty), ``object``
(Relationship) or ``languageMap`` (``{"@none": "urn:ngsi-ld:null"}``) is the NGSI-LD
Null deletes the instance with the same ``datasetId`` (the default one when it has
none). Otherwise:

* **merge** (``PATCH /entities/{id}``, batch merge): an attribute the entity lacks is
  added; an existing instance keeps the members the fragment does not name, a JSON
  object value is merged into the stored one as in RFC 7396 (a key set to null, JSON or
  NGSI-LD, is removed), sub-attributes merge the same way;
* **update** (``PATCH /entities/{id}/attrs``): existing instances are replaced, the
  others are reported as not updated;
* **partial** (``PATCH /entities/{id}/attrs/{attr}``): the members named replace those
  of the one instance (``datasetId`` picks it).

Each operation reads, validates and writes the entity in one store transaction, records
the history of the instances written and publishes one ``updated`` event.
"""

from __future__ import annotations

from typing import Any

from cityos.core.entities import (
    ATTRIBUTE_MEMBERS,
    RESERVED_KEYS,
    attribute_instances,
    check_attribute_name,
    check_scopes,
    entity_types,
    normalise_attribute,
)
from cityos.core.errors import BadRequestData, NgsiLdError, ResourceNotFound
from cityos.core.events import EntityEvent
from cityos.core.store.base import (
    DEFAULT_DATASET,
    BatchResult,
    ContextStore,
    UpdateResult,
    tx_tenant,
)
from cityos.core.timefmt import canonical_datetime

NGSI_LD_NULL = "urn:ngsi-ld:null"
_VALUE_MEMBERS = ("value", "object", "languageMap")


def is_null(value: Any) -> bool:
    """True for the NGSI-LD Null (``"urn:ngsi-ld:null"``) and for JSON null."""
    return value is None or value == NGSI_LD_NULL


def is_deletion(instance: Any) -> bool:
    """True when an attribute instance of a fragment asks for its own deletion (its
    value is the NGSI-LD Null; a JSON null value is no value, refused by
    :func:`check_fragment`)."""
    if not isinstance(instance, dict):
        return instance == NGSI_LD_NULL
    for key in _VALUE_MEMBERS:
        if key in instance:
            member = instance[key]
            if key == "languageMap" and isinstance(member, dict) and list(member) == ["@none"]:
                return member["@none"] == NGSI_LD_NULL
            return member == NGSI_LD_NULL
    return False


def check_fragment(fragment: dict) -> None:
    """Refuse, before the entity is looked up, an attribute whose value is JSON null
    (JSON-LD drops it, leaving an attribute without value): BadRequestData."""
    for name, attr in fragment.items():
        if name in RESERVED_KEYS:
            continue
        for instance in attribute_instances(attr) if attr is not None else [None]:
            if instance is None or (isinstance(instance, dict) and any(
                    key in instance and instance[key] is None for key in _VALUE_MEMBERS)):
                raise BadRequestData(f"{name}: null is not a value (delete with the NGSI-LD "
                                     f"Null, {NGSI_LD_NULL!r})")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch of ``patch`` into ``target``, NGSI-LD Null as null."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, member in patch.items():
        if is_null(member):
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), member)
    return out


def _has_nested_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(is_null(v) or _has_nested_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nested_null(v) for v in value)
    return False


def merge_instance(existing: dict | None, patch: dict) -> dict:
    """The instance ``patch`` makes of ``existing`` in a merge (see the module text)."""
    if existing is None or (patch.get("type") is not None
                            and patch.get("type") != existing.get("type")):
        return _without_nulls(patch)  # a new instance, or one of another kind
    out = dict(existing)
    for key, member in patch.items():
        if key == "value" and isinstance(member, dict) and isinstance(out.get("value"), dict) \
                and out.get("type") != "GeoProperty":
            out["value"] = merge_patch(out["value"], member)
        elif key in ATTRIBUTE_MEMBERS:
            out[key] = member
        elif is_deletion(member):
            out.pop(key, None)  # an NGSI-LD Null sub-attribute
        else:
            old = out.get(key)
            out[key] = merge_instance(old if isinstance(old, dict) else None, member) \
                if isinstance(member, dict) else member
    return out


def _without_nulls(instance: dict) -> dict:
    out = {}
    for key, member in instance.items():
        if key == "value" and isinstance(member, dict):
            out[key] = merge_patch({}, member)
        elif key not in ATTRIBUTE_MEMBERS and is_deletion(member):
            continue
        else:
            out[key] = member
    return out


def _dataset(instance: Any) -> str:
    return instance.get("datasetId", DEFAULT_DATASET) if isinstance(instance, dict) \
        else DEFAULT_DATASET


def _put_instance(entity: dict, name: str, instance: dict | None, dataset: str) -> None:
    """Set (or, with None, remove) the instance of ``dataset`` of attribute ``name``."""
    kept = [i for i in attribute_instances(entity[name]) if _dataset(i) != dataset] \
        if name in entity else []
    if instance is not None:
        kept.append(instance)
    if not kept:
        entity.pop(name, None)
    else:
        entity[name] = kept[0] if len(kept) == 1 else kept


def _instance_of(entity: dict, name: str, dataset: str) -> dict | None:
    for instance in attribute_instances(entity.get(name) or []):
        if _dataset(instance) == dataset:
            return instance
    return None


def apply_fragment(entity: dict, fragment: dict, mode: str, *, no_overwrite: bool = False
                   ) -> tuple[UpdateResult, dict[str, list[dict]]]:
    """Write a canonical fragment's attributes into ``entity`` (changed in place).

    Parameters
    ----------
    entity : dict
        The stored entity, canonical.
    fragment : dict
        Attribute name -> instance or list of instances, canonical names, not yet
        validated (reserved keys are skipped).
    mode : str
        ``merge``, ``update`` (see the module text) or ``append`` (instances replaced
        or added whole).
    no_overwrite : bool
        With ``append``: an existing instance is kept and reported as not updated.

    Returns
    -------
    UpdateResult, dict
        What was written or deleted and what was not, and the instances written by
        attribute name (for the history).

    Raises
    ------
    BadRequestData
        When a resulting instance is not valid, naming the attribute.
    """
    result = UpdateResult()
    written: dict[str, list[dict]] = {}
    for name, attr in fragment.items():
        if name in RESERVED_KEYS:
            continue
        check_attribute_name(name)
        if isinstance(attr, list) and not attr:
            raise BadRequestData(f"{name}: an attribute list must not be empty")
        touched = False
        for patch in attribute_instances(attr):
            dataset = _dataset(patch)
            existing = _instance_of(entity, name, dataset)
            if mode == "update" and existing is None:
                result.not_updated.append({"attributeName": name, "reason":
                                           "attribute (or datasetId) does not exist"})
                continue
            if no_overwrite and existing is not None:
                result.not_updated.append({"attributeName": name, "reason":
                                           "attribute exists and noOverwrite is set"})
                continue
            touched = True
            if is_deletion(patch):
                _put_instance(entity, name, None, dataset)
                continue
            if not isinstance(patch, dict):
                raise BadRequestData(f"{name}: an attribute must be an object with a 'type'")
            merged = merge_instance(existing, patch) if mode == "merge" else patch
            instance = normalise_attribute(name, merged)
            _put_instance(entity, name, instance, dataset)
            written.setdefault(name, []).append(instance)
        if touched:
            result.updated.append(name)
    return result, written


def partial_update(entity: dict, name: str, fragment: dict) -> dict[str, list[dict]]:
    """Overwrite members of one instance of attribute ``name`` (5.6.4).

    The NGSI-LD Null as the ``value``/``object``/``languageMap`` deletes the instance;
    inside a compound value it is refused (only merge patches go into values).

    Raises
    ------
    ResourceNotFound
        When the attribute, or its instance of the fragment's ``datasetId``, is absent.
    BadRequestData
        When the fragment or the instance it makes is not valid.
    """
    if name not in entity:
        raise ResourceNotFound(f"entity {entity['id']} has no attribute {name}")
    dataset = _dataset(fragment)
    existing = _instance_of(entity, name, dataset)
    if existing is None:
        raise ResourceNotFound(f"entity {entity['id']} has no instance of {name} with "
                               f"datasetId {dataset}")
    if is_deletion(fragment):
        _put_instance(entity, name, None, dataset)
        return {}
    if _has_nested_null(fragment.get("value")):
        raise BadRequestData(f"{name}.value: the NGSI-LD Null is only allowed inside a "
                             "value in a merge")
    merged = {**existing, **fragment}
    if "value" in fragment and existing.get("type") == "Relationship" and \
            fragment.get("type", "Relationship") == "Relationship":
        merged.pop("value")
        merged["object"] = fragment["value"]
    if fragment.get("type") not in (None, existing.get("type")):
        raise BadRequestData(f"{name}.type: {fragment['type']!r} differs from the "
                             f"attribute's type {existing.get('type')!r}")
    instance = normalise_attribute(name, merged)
    _put_instance(entity, name, instance, dataset)
    return {name: [instance]}


def _add_types(entity: dict, body: dict) -> bool:
    """Union the fragment's ``type`` into the entity's; True when it changed."""
    if "type" not in body:
        return False
    types = entity_types(entity)
    wanted = body["type"] if isinstance(body["type"], list) else [body["type"]]
    added = [t for t in wanted if isinstance(t, str) and t and t not in types]
    if not added:
        return False
    types += added
    entity["type"] = types if len(types) > 1 else types[0]
    return True


def write_fragment(store: ContextStore, tenant: str, entity_id: str, fragment: dict,
                   mode: str, *, no_overwrite: bool = False) -> UpdateResult:
    """Merge (``mode="merge"``), update (``"update"``) or append to (``"append"``) an
    entity with a fragment.

    One transaction: the entity is read, the fragment applied (:func:`apply_fragment`),
    the entity written with the history of the instances written, one event published.

    Raises
    ------
    ResourceNotFound
        When the entity does not exist.
    BadRequestData
        When the fragment makes an invalid attribute.
    """
    def apply(tx, body, now):
        return apply_to_record(store, tx, entity_id, fragment, mode, now,
                               no_overwrite=no_overwrite)

    return store._single(tenant, {"id": entity_id}, apply)


def apply_to_record(store: ContextStore, tx, entity_id: str, fragment: dict, mode: str,
                    now: int, *, no_overwrite: bool = False
                    ) -> tuple[UpdateResult, EntityEvent]:
    """:func:`write_fragment` inside an open transaction (batch merge uses it)."""
    check_fragment(fragment)
    record = store._existing(tx, entity_id)
    entity = dict(record.entity)
    result, written = apply_fragment(entity, fragment, mode, no_overwrite=no_overwrite)
    typed = _add_types(entity, fragment)
    if "scope" in fragment:
        typed = _write_scope(entity, fragment["scope"], mode, no_overwrite, result) or typed
    if "expiresAt" in fragment:  # the entity becomes transient, or durable again (4.22)
        at = fragment["expiresAt"]
        if is_deletion(at):
            typed = entity.pop("expiresAt", None) is not None or typed
        else:
            entity["expiresAt"] = canonical_datetime(at, "expiresAt")
            typed = True
            result.updated.append("expiresAt")  # its event marks the tenant transient
    if result.updated or typed:  # nothing changed: the record and its modifiedAt stay
        store._save(tx, record, entity, now, created=False, written=written)
    return result, EntityEvent(tx_tenant(tx), "updated", entity_id, entity["type"],
                               list(result.updated), entity, record.entity)


def check_scope(scope: Any) -> list[str]:
    """The scopes of a ``scope`` member (a string or a non-empty array of strings)."""
    check_scopes(scope)
    return scope if isinstance(scope, list) else [scope]


def _write_scope(entity: dict, scope: Any, mode: str, no_overwrite: bool,
                 result: UpdateResult) -> bool:
    """Write the ``scope`` of a fragment (4.18): NGSI-LD Null removes it, append with
    noOverwrite adds to it, update only replaces an existing one. True when changed."""
    if is_deletion(scope):
        return entity.pop("scope", None) is not None
    scopes = check_scope(scope)
    if mode == "update" and "scope" not in entity:
        result.not_updated.append({"attributeName": "scope",
                                   "reason": "the entity has no scope to update"})
        return False
    if mode == "append" and no_overwrite and "scope" in entity:
        old = entity["scope"] if isinstance(entity["scope"], list) else [entity["scope"]]
        scopes = old + [s for s in scopes if s not in old]
    entity["scope"] = scopes[0] if len(scopes) == 1 else scopes
    result.updated.append("scope")
    return True


def patch_attribute(store: ContextStore, tenant: str, entity_id: str, name: str,
                    fragment: dict) -> None:
    """Partial update of one attribute instance in one transaction (5.6.4)."""
    def apply(tx, body, now):
        record = store._existing(tx, entity_id)
        entity = dict(record.entity)
        written = partial_update(entity, name, fragment)
        store._save(tx, record, entity, now, created=False, written=written)
        return None, EntityEvent(tx_tenant(tx), "updated", entity_id, entity["type"],
                                 [name], entity, record.entity)

    store._single(tenant, {"id": entity_id}, apply)


def replace_attribute(store: ContextStore, tenant: str, entity_id: str, name: str,
                      instance: dict) -> None:
    """Replace one attribute instance whole (5.6.19); its ``datasetId`` picks it.

    Raises
    ------
    ResourceNotFound
        When the entity, the attribute or its instance of that ``datasetId`` is absent.
    BadRequestData
        When the body is not one valid attribute instance.
    """
    if not isinstance(instance, dict):
        raise BadRequestData(f"{name}: the body must be one attribute instance (an object)")

    def apply(tx, body, now):
        record = store._existing(tx, entity_id)
        entity = dict(record.entity)
        dataset = _dataset(instance)
        if _instance_of(entity, name, dataset) is None:
            raise ResourceNotFound(f"entity {entity_id} has no attribute {name}" + (
                "" if dataset == DEFAULT_DATASET else f" with datasetId {dataset}"))
        new = normalise_attribute(name, instance)
        _put_instance(entity, name, new, dataset)
        store._save(tx, record, entity, now, created=False, written={name: [new]})
        return None, EntityEvent(tx_tenant(tx), "updated", entity_id, entity["type"],
                                 [name], entity, record.entity)

    store._single(tenant, {"id": entity_id}, apply)


def merge_entities(store: ContextStore, tenant: str,
                   fragments: list[tuple[Any, dict | NgsiLdError]]) -> BatchResult:
    """Batch merge (5.6.20): merge each ``(entity id, fragment)`` on its own, in one
    transaction; a fragment given as an error fails its entity with that error."""
    from cityos.core.timefmt import now_utc, to_micros

    result = BatchResult()
    events = []
    now = to_micros(now_utc())
    with store.transaction(tenant) as tx:
        tx.read([i for i, _ in fragments if isinstance(i, str)])  # lock them at once
        for index, (entity_id, fragment) in enumerate(fragments):
            try:
                if isinstance(fragment, NgsiLdError):
                    raise fragment
                _, event = apply_to_record(store, tx, entity_id, fragment, "merge", now)
            except NgsiLdError as error:
                if entity_id is None:
                    error.detail = f"entity {index}: {error.detail}"
                result.fail(entity_id, error)
                continue
            result.success.append(entity_id)
            if event.changed:
                events.append(event)
    store._publish(events)
    return result


def refuse_null(entity: Any, where: str = "") -> None:
    """Refuse the NGSI-LD Null anywhere in an entity to be created or replaced (5.2.1,
    5.5.4): as its id or scope, an attribute's value, object or languageMap, a
    sub-attribute's, or a key's value inside a compound value: BadRequestData naming it."""
    if not isinstance(entity, dict):
        return
    for key in ("id", "scope"):
        values = entity.get(key) if isinstance(entity.get(key), list) else [entity.get(key)]
        if NGSI_LD_NULL in values:
            raise BadRequestData(f"{where}{key}: the NGSI-LD Null cannot be created")
    for name, attr in entity.items():
        if name not in RESERVED_KEYS:
            _refuse_null_attribute(attr, f"{where}{name}")


def _refuse_null_attribute(attr: Any, where: str) -> None:
    for instance in attr if isinstance(attr, list) else [attr]:
        if not isinstance(instance, dict):
            continue
        if is_deletion(instance) or any(
                _has_sentinel(instance.get(k)) for k in _VALUE_MEMBERS if k in instance):
            raise BadRequestData(f"{where}: the NGSI-LD Null ({NGSI_LD_NULL!r}) cannot be "
                                 "created")
        for key, member in instance.items():
            if key not in ATTRIBUTE_MEMBERS and isinstance(member, (dict, list)):
                _refuse_null_attribute(member, f"{where}.{key}")


def _has_sentinel(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v == NGSI_LD_NULL or _has_sentinel(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_sentinel(v) for v in value)
    return False
