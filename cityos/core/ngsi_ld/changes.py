"""What changed in an entity, as a notification shows it (ETSI GS CIM 009 clause 5.2.12).

An attribute (or one instance of it) that a change removed appears in the notification
with the NGSI-LD Null (``urn:ngsi-ld:null``) as its value, in the member its type
uses; with ``showChanges`` every changed instance also carries its previous value
(``previousValue``, ``previousObject``, ``previousLanguageMap``, ``previousJson``,
``previousVocab``, ``previousValueList``, ``previousObjectList``). A deleted entity
shows all the attributes it had, each as the NGSI-LD Null.
"""

from __future__ import annotations

from typing import Any

from cityos.core.entities import RESERVED_KEYS, VALUE_MEMBERS, attribute_instances
from cityos.core.ngsi_ld.merge import NGSI_LD_NULL
from cityos.core.store.base import DEFAULT_DATASET as _DEFAULT

#: The member that holds an instance's previous value, by the member of its value.
PREVIOUS_MEMBERS = {"value": "previousValue", "object": "previousObject",
                    "languageMap": "previousLanguageMap", "json": "previousJson",
                    "vocab": "previousVocab", "valueList": "previousValueList",
                    "objectList": "previousObjectList"}


def _dataset(instance: dict) -> str:
    return instance.get("datasetId", _DEFAULT)


def _null_value(member: str) -> Any:
    if member == "languageMap":
        return {_DEFAULT: NGSI_LD_NULL}
    if member == "valueList":
        return [NGSI_LD_NULL]
    if member == "objectList":
        return [{"object": NGSI_LD_NULL}]
    return NGSI_LD_NULL


def null_instance(instance: dict, show_changes: bool, deleted_at: str | None = None, *,
                  with_dataset: bool = True) -> dict:
    """A removed attribute instance as the notification shows it: its type (and
    ``datasetId`` with ``with_dataset``), the NGSI-LD Null as the value, with
    ``show_changes`` the value it had, with ``deleted_at`` (sysAttrs) when."""
    kind = instance.get("type", "Property")
    member = VALUE_MEMBERS.get(kind, "value")
    out: dict = {"type": kind}
    if with_dataset and "datasetId" in instance:
        out["datasetId"] = instance["datasetId"]
    out[member] = _null_value(member)
    if show_changes:
        out[PREVIOUS_MEMBERS[member]] = instance.get(member)
    if deleted_at is not None:
        out["deletedAt"] = deleted_at
    return out


def _removed(before: dict | list, kept: set[str], show_changes: bool,
             deleted_at: str | None) -> list[dict]:
    """The removed instances of an attribute: one NGSI-LD Null for the attribute when
    none is left (its default instance's previous value), else one per instance."""
    old = [i for i in attribute_instances(before) if isinstance(i, dict)]
    if not kept:
        first = next((i for i in old if _dataset(i) == _DEFAULT), old[0]) if old else {}
        return [null_instance(first, show_changes, deleted_at, with_dataset=False)]
    return [null_instance(i, show_changes, deleted_at) for i in old
            if _dataset(i) not in kept]


def _with_previous(instance: dict, before: dict) -> dict:
    member = VALUE_MEMBERS.get(before.get("type", "Property"), "value")
    return {**instance, PREVIOUS_MEMBERS[member]: before.get(member)}


def _single(instances: list[dict]) -> dict | list[dict]:
    return instances[0] if len(instances) == 1 else instances


def with_changes(entity: dict, previous: dict | None, changed: list[str], *,
                 show_changes: bool, deleted_at: str | None = None) -> dict:
    """``entity`` (after the change) with the instances the change removed shown as
    the NGSI-LD Null and, with ``show_changes``, the previous values of the changed
    ones; ``deleted_at`` marks the removed ones (sysAttrs). Names only in ``changed``
    are looked at; canonical names throughout."""
    if not previous:
        return entity
    out = dict(entity)
    for name in changed:
        before = previous.get(name)
        if name in RESERVED_KEYS or not isinstance(before, (dict, list)):
            continue
        old = {_dataset(i): i for i in attribute_instances(before) if isinstance(i, dict)}
        now = list(attribute_instances(out[name])) if name in out else []
        if show_changes:
            now = [_with_previous(i, old[_dataset(i)]) if _dataset(i) in old else i
                   for i in now]
        kept = {_dataset(i) for i in now}
        gone = _removed(before, kept, show_changes, deleted_at) if set(old) - kept else []
        if now or gone:
            out[name] = _single(now + gone)
    return out


def deleted_entity(entity_id: str, entity_type: Any, previous: dict | None, deleted_at: str,
                   *, show_changes: bool, attributes: list[str] | None = None,
                   sys_attrs: bool = False) -> dict:
    """A deleted entity in a notification: ``id``, ``type`` and ``deletedAt``; the
    attributes it had as the NGSI-LD Null when the subscription names ``attributes``
    or asks for ``show_changes``; with ``sys_attrs`` its ``createdAt`` (when the event
    knew it) and ``modifiedAt`` (the deletion)."""
    out: dict = {"id": entity_id, "type": entity_type, "deletedAt": deleted_at}
    previous = previous or {}
    if sys_attrs:
        if previous.get("createdAt"):
            out["createdAt"] = previous["createdAt"]
        out["modifiedAt"] = deleted_at
    if not attributes and not show_changes:
        return out
    for name, attr in previous.items():
        if name in RESERVED_KEYS or not isinstance(attr, (dict, list)):
            continue
        if attributes and name not in attributes:
            continue
        out[name] = _single(_removed(attr, set(), show_changes, None))
    return out


def change_kinds(entity: dict | None, previous: dict | None,
                 changed: list[str]) -> set[str]:
    """Which of ``attributeCreated``, ``attributeUpdated`` and ``attributeDeleted`` a
    change of the attributes ``changed`` is (several when it did several things)."""
    kinds: set[str] = set()
    for name in changed:
        if name in RESERVED_KEYS:
            kinds.add("attributeUpdated")
            continue
        before = {_dataset(i) for i in attribute_instances(previous[name])} \
            if previous and name in previous else set()
        after = {_dataset(i) for i in attribute_instances(entity[name])} \
            if entity and name in entity else set()
        if after - before:
            kinds.add("attributeCreated")
        if after & before:
            kinds.add("attributeUpdated")
        if before - after:
            kinds.add("attributeDeleted")
    return kinds
