"""Entities from files: NGSI-LD JSON / JSON-LD and GeoJSON, parsed and checked.

What ``cityos import`` reads. :func:`entities_from_document` turns a parsed file into
its numbered raw entities (a GeoJSON Feature becomes an NGSI-LD entity; an NGSI-LD
document is canonicalised with its ``@context``); :func:`validate_import` checks every
one of them and returns all the problems (``entity N: what is wrong``), not just the
first, so a file is written all or nothing.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

from cityos.core.errors import NgsiLdError


class ImportProblem(Exception):
    """One entity of an import file is wrong; the message names what."""


def read_import_file(path: Path) -> typing.Any:
    """Parse the JSON of ``path``; ImportProblem with the line when it is not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ImportProblem(f"cannot read it: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportProblem(f"line {error.lineno}: not valid JSON: {error.msg}") from None


def detect_format(document: typing.Any) -> str:
    """``geojson`` for a Feature or FeatureCollection, else ``ngsi-ld``."""
    if isinstance(document, dict) and document.get("type") in ("FeatureCollection", "Feature"):
        return "geojson"
    return "ngsi-ld"


def ngsi_ld_bodies(document: typing.Any) -> list:
    """The entities of an NGSI-LD JSON / JSON-LD document: one, an array, or
    a JSON-LD ``@graph`` (whose top-level ``@context`` applies to each entity)."""
    if isinstance(document, dict) and "@graph" in document:
        document = document["@graph"]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise ImportProblem("expected an entity (JSON object) or an array of entities")


def canonical_body(body: typing.Any, context: typing.Any = None) -> typing.Any:
    """Drop ``@context`` and rename the entity's names to the stored (canonical) names
    with :mod:`cityos.core.ngsi_ld.context`: its own ``@context``, else ``context``
    (a JSON-LD document's top-level one), else the core context; never fetched."""
    if not isinstance(body, dict):
        return body
    from cityos.core.ngsi_ld.context import canonical_entity, resolve_context

    own = body.get("@context")
    if own is not None and context is not None:  # JSON-LD: an inner context extends
        own = [*_as_list(context), *_as_list(own)]
    return canonical_entity(body, resolve_context(own if own is not None else context))


def _as_list(value: typing.Any) -> list:
    return value if isinstance(value, list) else [value]


def feature_to_entity(feature: typing.Any, entity_type: str | None) -> dict:
    """One GeoJSON Feature as an NGSI-LD entity.

    The id is ``feature.id`` or ``properties.id`` (a value that is not a URI becomes
    ``urn:ngsi-ld:<type>:<value>``), the type ``entity_type`` or ``properties.type``,
    the geometry the ``location`` GeoProperty and every other non-null property a
    Property (a property that already is an NGSI-LD attribute is kept as it is).
    """
    from cityos.core.entities import is_uri, key_value_to_attribute

    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ImportProblem("not a GeoJSON Feature (type must be 'Feature')")
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise ImportProblem("properties: must be a JSON object")
    kind = entity_type or properties.get("type")
    if not kind:
        raise ImportProblem("no entity type: give --type or a 'type' property")
    local_id = feature.get("id", properties.get("id"))
    if local_id is None or local_id == "":
        raise ImportProblem("no id: the feature needs an 'id' or an 'id' property")
    entity_id = local_id if is_uri(local_id) else f"urn:ngsi-ld:{kind}:{local_id}"
    entity: dict = {"id": entity_id, "type": kind}
    for name, value in properties.items():
        if name in ("id", "type") or value is None:
            continue
        entity[name] = key_value_to_attribute(name, value)
    if feature.get("geometry") is not None:
        entity["location"] = {"type": "GeoProperty", "value": feature["geometry"]}
    return entity


def entities_from_document(document: typing.Any, file_format: str,
                           entity_type: str | None, key_values: bool) -> list[tuple[int, typing.Any]]:
    """``(number, raw entity or ImportProblem)`` for each entity in the file, 1-based."""
    if file_format == "auto":
        file_format = detect_format(document)
    found: list[tuple[int, typing.Any]] = []
    if file_format == "geojson":
        if isinstance(document, dict) and document.get("type") == "Feature":
            features = [document]
        elif isinstance(document, dict) and isinstance(document.get("features"), list):
            features = document["features"]
        else:
            raise ImportProblem("expected a GeoJSON FeatureCollection with a 'features' array")
        for number, feature in enumerate(features, start=1):
            try:
                found.append((number, feature_to_entity(feature, entity_type)))
            except ImportProblem as problem:
                found.append((number, problem))
        return found
    from cityos.core.entities import from_key_values

    top_context = document.get("@context") if isinstance(document, dict) else None
    for number, body in enumerate(ngsi_ld_bodies(document), start=1):
        try:
            body = canonical_body(body, top_context)
            if entity_type and isinstance(body, dict) and "type" not in body:
                body = {**body, "type": entity_type}
            if key_values and isinstance(body, dict):
                body = from_key_values(body)
        except NgsiLdError as error:
            body = ImportProblem(error.detail)
        found.append((number, body))
    return found


def validate_import(raw: list[tuple[int, typing.Any]]) -> tuple[list[dict], list[str]]:
    """Validate every entity; return the canonical entities and the problems
    (``entity N: what is wrong``), all of them, not just the first."""
    from cityos.core.entities import normalise_entity

    entities: list[dict] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for number, body in raw:
        if isinstance(body, ImportProblem):
            problems.append(f"entity {number}: {body}")
            continue
        try:
            entity = normalise_entity(body)
        except NgsiLdError as error:
            problems.append(f"entity {number}: {error.detail}")
            continue
        if entity["id"] in first_seen:
            problems.append(f"entity {number}: id {entity['id']} repeats entity "
                            f"{first_seen[entity['id']]}")
            continue
        first_seen[entity["id"]] = number
        entities.append(entity)
    return entities, problems
