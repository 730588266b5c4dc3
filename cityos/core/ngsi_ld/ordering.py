"""Ordering of query results (``orderBy``, ``orderFrom``, ``collation``; clause 4.23).

``orderBy`` is a list of keys, each ``path[;asc|;desc|;dist-asc|;dist-desc]``. A path is
``id``, ``type``, ``createdAt``, ``modifiedAt``, an attribute (its value), an attribute
member or sub-attribute (``name.observedAt``, ``name.subProperty``) or a member of a
compound value (``address[city]``). Values rank numbers before strings before booleans
before other JSON, and an entity without the value comes last whichever the direction.
``dist-asc`` / ``dist-desc`` rank a GeoProperty by its distance in metres from the
``orderFrom`` geometry. Strings compare by code point, or, with a ``collation`` tag,
by their letters first (accents and case only break ties), which is how the Unicode
root collation ranks Latin text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cityos.core.entities import attribute_instances, entity_types
from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.query_params import collation_tag
from cityos.core.store.base import StoredEntity

_KEY = re.compile(r"(?P<name>[^\s\[\];.,]+)(?P<sub>(?:\.[^\s\[\];.,]+)*)"
                  r"(?P<compound>(?:\[[^\s\[\];,]+\])*)(?:;(?P<dir>asc|desc|dist-asc|dist-desc))?")
_ABSENT = (9,)


@dataclass(frozen=True)
class OrderKey:
    """One key of ``orderBy``: where the value is, and the direction."""

    name: str
    sub: tuple[str, ...] = ()
    compound: tuple[str, ...] = ()
    direction: str = "asc"

    @property
    def by_distance(self) -> bool:
        return self.direction.startswith("dist-")

    @property
    def descending(self) -> bool:
        return self.direction.endswith("desc")


def parse_order_by(value: str | list | None, rename: Callable[[str], str],
                   field: str = "orderBy") -> list[OrderKey] | None:
    """Parse ``orderBy`` (comma-separated text, or a list in a body).

    Raises
    ------
    BadRequestData
        For an empty or malformed key, or an unknown direction.
    """
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise BadRequestData(f"{field}: must be a list of keys such as name;desc")
    keys = []
    for part in parts:
        match = _KEY.fullmatch(part.strip())
        if not match:
            raise BadRequestData(f"{field}: {part!r} is not path[;asc|desc|dist-asc|"
                                 "dist-desc]")
        name = match["name"]
        if name not in ("id", "type", "createdAt", "modifiedAt"):
            name = rename(name)
        subs = tuple(s for s in match["sub"].split(".") if s)
        compound = tuple(c[1:-1] for c in re.findall(r"\[[^\]]*\]", match["compound"]))
        keys.append(OrderKey(name, subs, compound, match["dir"] or "asc"))
    if not keys:
        raise BadRequestData(f"{field}: no key given")
    return keys


def _rank(value: Any, collated: bool) -> tuple:
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, _collation_key(value) if collated else value)
    return (3, repr(value))


def _collation_key(text: str) -> tuple:
    decomposed = unicodedata.normalize("NFD", text)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return (base.casefold(), decomposed.casefold() != base.casefold(), base.swapcase())


def _value(record: StoredEntity, key: OrderKey) -> Any:
    entity = record.entity
    if key.name == "id":
        return entity["id"]
    if key.name == "type":
        return entity_types(entity)[0]
    if key.name == "createdAt":
        return record.created_us
    if key.name == "modifiedAt":
        return record.modified_us
    attr = entity.get(key.name)
    if attr is None:
        return None
    instances = attribute_instances(attr)
    instance = next((i for i in instances if "datasetId" not in i), instances[0])
    for sub in key.sub:
        if sub in ("createdAt", "modifiedAt") and sub not in instance:
            # attribute system times are not stored: the entity's stand in
            return record.created_us if sub == "createdAt" else record.modified_us
        found = instance.get(sub)
        if found is None:
            return None
        if isinstance(found, dict | list) and not isinstance(found, str):
            inner = attribute_instances(found)
            instance = inner[0] if inner and isinstance(inner[0], dict) else {"value": found}
        else:
            return found
    value = instance.get("value", instance.get("object", instance.get("languageMap")))
    for member in key.compound:
        if not isinstance(value, dict) or member not in value:
            return None
        value = value[member]
    return value


def order_function(keys: list[OrderKey], *, collation: str | None = None,
                   origin: Any = None) -> Callable[[list[StoredEntity]], list[StoredEntity]]:
    """A function sorting records by ``keys`` (``origin``: a geometry for distances).

    Raises
    ------
    BadRequestData
        When a distance key comes without ``origin``, or ``collation`` is not a tag.
    """
    collated = collation_tag(collation) is not None
    if any(k.by_distance for k in keys) and origin is None:
        raise BadRequestData("orderFrom: distance ordering (dist-asc, dist-desc) needs the "
                             "coordinates of the reference geometry")

    def distance(record: StoredEntity, key: OrderKey) -> float | None:
        from cityos.core.geo import distance_m

        attr = record.entity.get(key.name)
        if attr is None:
            return None
        instances = attribute_instances(attr)
        instance = next((i for i in instances if "datasetId" not in i), instances[0])
        geometry = instance.get("value")
        if instance.get("type") != "GeoProperty" or not isinstance(geometry, dict):
            return None
        return distance_m(origin, geometry)

    def ordered(records: list[StoredEntity]) -> list[StoredEntity]:
        result = list(records)
        for key in reversed(keys):  # stable sorts, last key first
            ranked = []
            for record in result:
                value = distance(record, key) if key.by_distance else _value(record, key)
                ranked.append((value is None, None if value is None else
                               _rank(value, collated), record))
            present = [r for r in ranked if not r[0]]
            absent = [r for r in ranked if r[0]]
            present.sort(key=lambda r: r[1], reverse=key.descending)
            result = [r[2] for r in present] + [r[2] for r in absent]
        return result

    return ordered
