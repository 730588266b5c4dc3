"""Entities as the map draws them: light GeoJSON features, and live events for the map.

A map feature carries the entity's id, its first type, its ``location`` geometry and
its scalar attribute values (keyValues); the entity panel fetches the full entity
and its history from the NGSI-LD API when a feature is clicked.
"""

from __future__ import annotations

from cityos.core.entities import attribute_instances, entity_types, to_key_values
from cityos.core.events import EntityEvent

#: Longest text value copied onto a map feature.
MAX_TEXT_CHARS = 200


def entity_geometry(entity: dict) -> dict | None:
    """The GeoJSON geometry of the entity's ``location`` (default instance), or None."""
    attr = entity.get("location")
    if attr is None:
        return None
    for instance in attribute_instances(attr):
        if instance.get("type") == "GeoProperty" and isinstance(instance.get("value"), dict):
            return instance["value"]
    return None


def map_feature(entity: dict) -> dict:
    """The map's GeoJSON Feature of an entity (``geometry`` None when it has none).

    ``properties`` holds ``type`` and the attributes whose simplified value is a
    number, a boolean or a short text.
    """
    properties: dict = {"type": entity_types(entity)[0]}
    for name, value in to_key_values(entity).items():
        if name in ("id", "type", "scope", "location"):
            continue
        if isinstance(value, bool) or isinstance(value, (int, float)):
            properties[name] = value
        elif isinstance(value, str):
            properties[name] = value[:MAX_TEXT_CHARS]
    return {"type": "Feature", "id": entity["id"], "geometry": entity_geometry(entity),
            "properties": properties}


def map_features(store, tenant: str, types: list[str] | None = None) -> dict:
    """Every entity of ``tenant`` that has a location, as one FeatureCollection."""
    features = []
    for record in store.scan(tenant, types=types):
        feature = map_feature(record.entity)
        if feature["geometry"] is not None:
            features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def event_message(event: EntityEvent) -> dict:
    """What the browser gets for one store event: ``kind``, ``id``, ``type`` and, unless
    the entity was deleted, its map ``feature``."""
    types = event.entity_type if isinstance(event.entity_type, list) else [event.entity_type]
    message = {"kind": event.kind, "id": event.entity_id, "type": types[0],
               "changed": list(event.changed)}
    if event.entity is not None:
        message["feature"] = map_feature(event.entity)
    return message
