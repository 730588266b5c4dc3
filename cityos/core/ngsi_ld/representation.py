"""The representations of an entity in a response (ETSI GS CIM 009 clause 4.5).

``normalized`` is the stored form; ``concise`` drops the attribute ``type`` and keeps a
Property with nothing but a value as the bare value; ``simplified`` (``keyValues``) keeps
only values. A GeoJSON answer (clause 4.5.16) is a Feature (or a FeatureCollection) whose
geometry is the default instance of ``geometryProperty``; it carries ``@context`` in
the body like JSON-LD. Language filtering (``lang``, clause 4.15) runs before any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import Response

from cityos.core.entities import RESERVED_KEYS, VALUE_MEMBERS, attribute_instances
from cityos.core.ngsi_ld.context import GEO_JSON, JSON_LD, LdContext, compact_entity
from cityos.core.ngsi_ld.languages import LanguagePreference, filter_languages
from cityos.core.ngsi_ld.projection import Projection, is_empty, project
from cityos.core.store.base import StoredEntity
from cityos.core.timefmt import format_datetime, from_micros

_VALUE_MEMBERS = VALUE_MEMBERS
#: Attribute types whose simplified value is wrapped in its member (clause 4.5.4).
_WRAPPED = ("LanguageProperty", "JsonProperty", "VocabProperty")


def simplified_value(instance: dict) -> Any:
    """One attribute instance in the simplified form: the bare value, object, list,
    or ``{"languageMap" | "json" | "vocab": ...}``."""
    kind = instance.get("type")
    member = _VALUE_MEMBERS.get(kind, "value")
    if kind in _WRAPPED:
        return {member: instance.get(member)}
    if kind == "ListRelationship":
        return [o.get("object") if isinstance(o, dict) else o
                for o in instance.get(member) or []]
    return instance.get(member)


def to_simplified(entity: dict) -> dict:
    """The simplified (keyValues) representation of a canonical entity; an attribute
    with several instances is a dataset map (``{"dataset": {datasetId: value}}``, the
    default instance under ``@none``)."""
    # system members present in the entity itself stay (a deleted entity's deletedAt
    # and times in a notification); a stored entity carries none of them
    out = {k: entity[k] for k in ("id", "type", "scope", "createdAt", "modifiedAt",
                                  "deletedAt") if k in entity}
    for name, attr in entity.items():
        if name in out or name in RESERVED_KEYS:
            continue
        if isinstance(attr, list):
            out[name] = {"dataset": {i.get("datasetId", "@none"): simplified_value(i)
                                     for i in attr}}
        else:
            out[name] = simplified_value(attr)
    return out


def concise_attribute(instance: dict) -> Any:
    """One attribute instance in the concise form (clause 4.5.4)."""
    kind = instance.get("type")
    member = _VALUE_MEMBERS.get(kind)
    rest = {k: v for k, v in instance.items() if k != "type"}
    if kind in ("Property", "GeoProperty") and set(rest) == {"value"}:
        return rest["value"]
    out = {}
    for key, value in rest.items():
        if key not in (member, "objectType") and _is_attribute(value):
            out[key] = _concise_value(value)
        else:
            out[key] = value
    return out


def _is_attribute(value: Any) -> bool:
    first = value[0] if isinstance(value, list) and value else value
    return isinstance(first, dict) and first.get("type") in _VALUE_MEMBERS


def _concise_value(attr: dict | list) -> Any:
    if isinstance(attr, list):
        return [concise_attribute(i) for i in attr]
    return concise_attribute(attr)


def to_concise(entity: dict) -> dict:
    """The concise representation of a canonical entity."""
    out = {}
    for name, value in entity.items():
        out[name] = value if name in RESERVED_KEYS else _concise_value(value)
    return out


@dataclass
class Renderer:
    """Turns stored records into response entities: attrs, lang, form, sysAttrs,
    names in the client's context, then pick / omit."""

    context: LdContext
    form: str = "normalized"
    sys_attrs: bool = False
    attrs: list[str] | None = None
    lang: LanguagePreference | None = None
    pick: Projection | None = None
    omit: Projection | None = None
    #: instances to keep by ``datasetId`` (``@none``: the default instance)
    dataset_ids: set[str] | None = None
    _wanted: set[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.attrs is not None:
            self._wanted = set(self.attrs)

    def canonical(self, record: StoredEntity) -> dict:
        """The record's entity after ``attrs`` and ``lang`` (canonical names)."""
        entity = record.entity
        if self._wanted is not None:
            wanted = self._wanted
            entity = {k: v for k, v in entity.items() if k in RESERVED_KEYS or k in wanted}
        if self.dataset_ids is not None:
            entity = _keep_datasets(entity, self.dataset_ids)
        if self.lang is not None:
            entity = filter_languages(entity, self.lang)
        return entity

    def render(self, record: StoredEntity, pick: Projection | None = None,
               omit: Projection | None = None, *, top: bool = True) -> dict:
        """One entity in the asked-for representation, names compacted, projected
        with ``pick`` / ``omit`` (the renderer's own at the top level)."""
        entity = self.canonical(record)
        if self.form == "simplified":
            out = to_simplified(entity)
        elif self.form == "concise":
            out = to_concise(entity)
        else:
            out = dict(entity)
        if self.sys_attrs:
            out["createdAt"] = format_datetime(from_micros(record.created_us))
            out["modifiedAt"] = format_datetime(from_micros(record.modified_us))
        out = compact_entity(out, self.context)
        if top:
            pick, omit = self.pick, self.omit
        if pick is not None or omit is not None:
            out = project(out, pick, omit)
        return out

    def feature(self, record: StoredEntity, rendered: dict, geometry_property: str) -> dict:
        """One entity as a GeoJSON Feature; geometry from the default instance of
        ``geometry_property`` (canonical name), else its first instance."""
        geometry = None
        attr = record.entity.get(geometry_property)
        if attr is not None:
            instances = attribute_instances(attr)
            chosen = next((i for i in instances if "datasetId" not in i), instances[0])
            if chosen.get("type") == "GeoProperty":
                geometry = chosen.get("value")
        properties = {k: v for k, v in rendered.items() if k not in ("id", "@context")}
        return {"id": record.id, "type": "Feature", "geometry": geometry,
                "properties": properties}


def _keep_datasets(entity: dict, wanted: set[str]) -> dict:
    out = {}
    for name, attr in entity.items():
        if name in RESERVED_KEYS:
            out[name] = attr
            continue
        kept = [i for i in attribute_instances(attr) if i.get("datasetId", "@none") in wanted]
        if kept:
            out[name] = kept[0] if len(kept) == 1 else kept
    return out


def empty(entity: dict) -> bool:
    """True when projection left nothing of an entity."""
    return is_empty(entity)


def respond_entities(content: Any, media: str, context: LdContext, status: int = 200,
                     headers: dict | None = None) -> Response:
    """An entity (list) response; ``@context`` in the body for JSON-LD and GeoJSON
    (a FeatureCollection carries it once), in a ``Link`` header for JSON."""
    headers = dict(headers or {})
    ld = context.response_context()
    if media == JSON_LD:
        if isinstance(content, list):
            content = [{**item, "@context": ld} if isinstance(item, dict) else item
                       for item in content]
        elif isinstance(content, dict):
            content = {**content, "@context": ld}
    elif media == GEO_JSON and isinstance(content, dict):
        content = {**content, "@context": ld}
    else:
        links = headers.get("Link")
        headers["Link"] = context.link_header() + (f", {links}" if links else "")
    return Response(orjson.dumps(content), status_code=status, headers=headers,
                    media_type=media)
