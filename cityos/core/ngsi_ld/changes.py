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

NGSI_LD_NULL = "urn:ngsi-ld:null"
#: The member that holds an instance's previous value, by the member of its value.
PREVIOUS_MEMBERS = {"value": "previousValue", "object": "previousObject",
                    "languageMap": "previousLanguageMap", "json": "previousJson",
                    "vocab": "previousVocab", "valueList": "previousValueList",
                    "objectList": "previousObjectList"}
_DEFAULT = "@none"


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


def null_instance(instance: dict, show_changes: bool) -> dict:
    """A removed attribute instance as the notification shows it: its type and
    ``datasetId``, the NGSI-LD Null as the value, and with ``show_changes`` the value
    it had."""
    kind = instance.get("type", "Property")
    member = VALUE_MEMBERS.get(kind, "value")
    out: dict = {"type": kind}
    if "datasetId" in instance:
        out["datasetId"] = instance["datasetId"]
    out[member] = _null_value(member)
    if show_changes:
        out[PREVIOUS_MEMBERS[member]] = instance.get(member)
    return out


def _with_previous(instance: dict, before: dict) -> dict:
    member = VALUE_MEMBERS.get(before.get("type", "Property"), "value")
    return {**instance, PREVIOUS_MEMBERS[member]: before.get(member)}


def _single(instances: list[dict]) -> dict | list[dict]:
    return instances[0] if len(instances) == 1 else instances


def with_changes(entity: dict, previous: dict | None, changed: list[str], *,
                 show_changes: bool) -> dict:
    """``entity`` (after the change) with the instances the change removed shown as
    the NGSI-LD Null and, with ``show_changes``, the previous values of the changed
    ones. Names only in ``changed`` are looked at; canonical names throughout."""
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
        gone = [null_instance(i, show_changes) for d, i in old.items() if d not in kept]
        if now or gone:
            out[name] = _single(now + gone)
    return out


def deleted_entity(entity_id: str, entity_type: Any, previous: dict | None, deleted_at: str,
                   *, show_changes: bool) -> dict:
    """A deleted entity in a notification: ``id``, ``type``, ``deletedAt`` and every
    attribute it had as the NGSI-LD Null."""
    out: dict = {"id": entity_id, "type": entity_type, "deletedAt": deleted_at}
    for name, attr in (previous or {}).items():
        if name in RESERVED_KEYS or not isinstance(attr, (dict, list)):
            continue
        out[name] = _single([null_instance(i, show_changes)
                             for i in attribute_instances(attr) if isinstance(i, dict)])
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
