"""NGSI-LD entities in CityOS's canonical form: validation, normalisation, keyValues.

The canonical form is the normalised NGSI-LD representation with attribute names
compacted against the core and default contexts (``speed``, not
``https://uri.etsi.org/ngsi-ld/default-context/speed``). An attribute is one dict
(``{"type": "Property", "value": ...}``) or, when it has several instances told apart by
``datasetId``, a list of such dicts. System attributes ``createdAt``/``modifiedAt`` are
kept by the store, not in the entity body.
"""

from __future__ import annotations

import re
from typing import Any

from cityos.core.errors import BadRequestData
from cityos.core.ngsi_ld.ids import check_uri, is_uri
from cityos.core.timefmt import canonical_datetime

ATTRIBUTE_TYPES = ("Property", "Relationship", "GeoProperty", "LanguageProperty",
                   "JsonProperty", "VocabProperty", "ListProperty", "ListRelationship")
#: The member holding the value of each attribute type (clause 4.5.2 onwards).
VALUE_MEMBERS = {"Property": "value", "GeoProperty": "value", "Relationship": "object",
                 "LanguageProperty": "languageMap", "JsonProperty": "json",
                 "VocabProperty": "vocab", "ListProperty": "valueList",
                 "ListRelationship": "objectList"}
GEO_ATTRIBUTE_NAMES = ("location", "observationSpace", "operationSpace")
RESERVED_KEYS = {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt",
                 "expiresAt"}
#: Members of an attribute that are not sub-attributes.
ATTRIBUTE_MEMBERS = {
    "type", "value", "object", "languageMap", "observedAt", "unitCode", "datasetId",
    "createdAt", "modifiedAt", "instanceId", "lang", "objectType", "json", "vocab",
    "valueList", "objectList", "expiresAt", "valueType",
}
#: Core terms of attribute instances that cannot name an attribute of an entity.
_META_NAMES = frozenset({"datasetId", "instanceId", "observedAt", "unitCode"})
#: JSON-LD keywords' aliases that cannot name an entity type.
_KEYWORD_NAMES = frozenset({"id", "type", "value", "object"})
GEOJSON_GEOMETRY_TYPES = {
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
}

#: A type or attribute name: no space, no control character, none of NGSI-LD's
#: forbidden characters. (Ids are URIs: cityos.core.ngsi_ld.ids.)
_NAME = re.compile(r"^[^\s\x00-\x1f\x7f-\x9f<>\"'=;()\[\]{}]+\Z")


def check_attribute_name(name: str, where: str = "") -> None:
    """Raise BadRequestData when ``name`` has a character NGSI-LD forbids."""
    if not isinstance(name, str) or not name or not _NAME.match(name) or \
            name.startswith("@"):  # "@..." is a JSON-LD keyword, never a name
        raise BadRequestData(f"{where}attribute name {name!r} is not valid")


def entity_types(entity: dict) -> list[str]:
    """The entity's types as a list (NGSI-LD allows one type or several)."""
    value = entity.get("type")
    return list(value) if isinstance(value, list) else [value]


def normalise_entity(body: Any, *, where: str = "", require_type: bool = True) -> dict:
    """Validate a normalised NGSI-LD entity and return its canonical form.

    Parameters
    ----------
    body : dict
        An entity in the normalised representation; ``@context`` is dropped (the API
        layer has already compacted the names).
    where : str
        Prefix for error details, e.g. ``"entity 3: "``.
    require_type : bool
        False for fragments (update payloads) that carry attributes only.

    Returns
    -------
    dict
        ``id``, ``type`` and the attributes, each validated.

    Raises
    ------
    BadRequestData
        Naming the field that is wrong.
    """
    if not isinstance(body, dict):
        raise BadRequestData(f"{where}an entity must be a JSON object")
    entity: dict = {}
    if "id" in body or require_type:
        entity["id"] = check_uri(body.get("id"), f"{where}id")
    if "type" in body or require_type:
        types = body.get("type")
        names = types if isinstance(types, list) else [types]
        if not names or not all(isinstance(t, str) and t and _NAME.match(t) for t in names):
            raise BadRequestData(f"{where}type: {types!r} is not a valid entity type")
        odd = next((t for t in names if t[0].isdigit() or t in _KEYWORD_NAMES), None)
        if odd is not None:
            raise BadRequestData(f"{where}type: {odd!r} is not a valid entity type (it "
                                 "must start with a letter and not be a keyword)")
        entity["type"] = types if isinstance(types, list) and len(types) > 1 else names[0]
    if "scope" in body:
        entity["scope"] = check_scopes(body["scope"], f"{where}scope")
    if "expiresAt" in body:  # a transient entity (4.22)
        entity["expiresAt"] = canonical_datetime(body["expiresAt"], f"{where}expiresAt")
    entity.update(normalise_attributes(body, where=where))
    return entity


def normalise_attributes(body: dict, *, where: str = "") -> dict:
    """Validate every attribute of ``body`` (reserved keys skipped) and return them."""
    attributes = {}
    for name, value in body.items():
        if name in RESERVED_KEYS:
            continue
        check_attribute_name(name, where)
        if name in _META_NAMES:
            raise BadRequestData(f"{where}{name}: a core term of attribute instances cannot "
                                 "name an attribute")
        attributes[name] = normalise_attribute(name, value, where=where)
        if name == PROOF_NAME:
            _check_proof(attributes[name], f"{where}{name}")
    return attributes


#: The core attribute that holds a W3C Data Integrity proof of the entity (4.5.2.2).
PROOF_NAME = "ngsildproof"


def _check_proof(attr: dict | list, where: str) -> None:
    for instance in attr if isinstance(attr, list) else [attr]:
        if instance.get("type") != "Property" or not isinstance(instance.get("value"), dict):
            raise BadRequestData(f"{where}: a proof is a Property whose value is an object "
                                 "(the W3C Data Integrity proof)")


def normalise_attribute(name: str, value: Any, *, where: str = "") -> dict | list:
    """Validate one attribute (one instance or a list of instances by datasetId)."""
    if isinstance(value, list):
        if not value:
            raise BadRequestData(f"{where}{name}: an attribute list must not be empty")
        instances = [_normalise_instance(name, v, where) for v in value]
        dataset_ids = [i.get("datasetId") for i in instances]
        if len(set(dataset_ids)) != len(dataset_ids):
            raise BadRequestData(f"{where}{name}: two instances share the datasetId "
                                 f"{_first_repeat(dataset_ids)!r}")
        return instances[0] if len(instances) == 1 else instances
    return _normalise_instance(name, value, where)


_TYPED_KINDS = ("JsonProperty", "VocabProperty", "ListProperty", "ListRelationship")
_VALUE_MEMBER_NAMES = frozenset(VALUE_MEMBERS.values())


def _foreign_members(name: str, kind: str, value: dict, where: str) -> None:
    """Refuse the value member of another attribute type (a Property's valueList or
    object, a Relationship's value, a JsonProperty's value ...) and a JsonProperty's
    or Relationship's unitCode (clauses 4.5.1-4.5.24)."""
    own = VALUE_MEMBERS.get(kind)
    for member in _VALUE_MEMBER_NAMES.intersection(value):  # on every write: kept cheap
        if member != own:
            raise BadRequestData(f"{where}{name}: a {kind} has no {member!r} member")
    if kind == "Relationship" and "unitCode" in value:
        raise BadRequestData(f"{where}{name}: a Relationship has no unitCode")
    if kind == "JsonProperty" and "unitCode" in value:
        raise BadRequestData(f"{where}{name}: a JsonProperty has no unitCode (raw JSON is "
                             "unitless)")


def _typed_value(name: str, kind: str, value: dict, where: str) -> dict:
    """The value member of a JsonProperty, VocabProperty, ListProperty or
    ListRelationship, checked."""
    member = VALUE_MEMBERS[kind]
    found = value.get(member)
    if found is None:
        raise BadRequestData(f"{where}{name}: a {kind} needs a {member!r}")
    if kind == "JsonProperty" and not (isinstance(found, dict) or (
            isinstance(found, list) and all(isinstance(f, dict) for f in found))):
        raise BadRequestData(f"{where}{name}: 'json' must be a JSON object or an array of "
                             "objects")
    if kind == "VocabProperty":
        terms = found if isinstance(found, list) else [found]
        if not terms or not all(isinstance(t, str) and t for t in terms):
            raise BadRequestData(f"{where}{name}: 'vocab' must be a term or a list of terms")
    elif kind == "ListProperty" and not isinstance(found, list):
        raise BadRequestData(f"{where}{name}: 'valueList' must be an array")
    elif kind == "ListRelationship":
        objects = [o.get("object") if isinstance(o, dict) else o
                   for o in (found if isinstance(found, list) else [None])]
        if not objects or not all(is_uri(o) for o in objects):
            raise BadRequestData(f"{where}{name}: 'objectList' must be an array of URIs")
        # 4.5.22: bare URIs and {"object": URI} both come in; the stored form is the latter
        found = [o if isinstance(o, dict) else {"object": o} for o in found]
    return {member: found}


def _first_repeat(items: list) -> Any:
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _normalise_instance(name: str, value: Any, where: str) -> dict:
    if not isinstance(value, dict) or "type" not in value:
        raise BadRequestData(f"{where}{name}: an attribute must be an object with a 'type' "
                             f"(Property, Relationship, GeoProperty or LanguageProperty)")
    kind = value["type"]
    if kind not in ATTRIBUTE_TYPES:
        raise BadRequestData(f"{where}{name}: attribute type {kind!r} is not one of "
                             f"{', '.join(ATTRIBUTE_TYPES)}")
    out: dict = {"type": kind}
    _foreign_members(name, kind, value, where)
    if kind == "Relationship":
        obj = value.get("object")
        objects = obj if isinstance(obj, list) else [obj]
        if obj is None or not all(is_uri(o) for o in objects):
            raise BadRequestData(f"{where}{name}: a Relationship needs an 'object' that is a URI")
        out["object"] = obj
    elif kind == "LanguageProperty":
        out["languageMap"] = _language_map(value.get("languageMap"), f"{where}{name}")
        value_type = value.get("valueType")
        if value_type is not None and not (isinstance(value_type, str) and
                                           value_type.rsplit(":", 1)[-1].lower() ==
                                           "langstring"):
            raise BadRequestData(f"{where}{name}.valueType: a LanguageProperty's valueType "
                                 f"is langString, not {value_type!r}")
    elif kind in _TYPED_KINDS:
        out.update(_typed_value(name, kind, value, where))
    else:
        if "value" not in value or value["value"] is None:
            raise BadRequestData(f"{where}{name}: a {kind} needs a 'value'")
        out["value"] = value["value"]
        if kind == "GeoProperty" or name in GEO_ATTRIBUTE_NAMES:
            from cityos.core.geo import validate_geometry

            if kind == "GeoProperty" and isinstance(out["value"], str):
                out["value"] = _geometry_text(out["value"], f"{where}{name}")
            validate_geometry(out["value"], field=f"{where}{name}", simple=False)
            out["type"] = "GeoProperty"
    if "observedAt" in value:
        out["observedAt"] = canonical_datetime(value["observedAt"],
                                               f"{where}{name}.observedAt")
    if "expiresAt" in value:  # a transient attribute instance (4.22)
        out["expiresAt"] = canonical_datetime(value["expiresAt"], f"{where}{name}.expiresAt")
    if "unitCode" in value:
        if not isinstance(value["unitCode"], str) or not value["unitCode"]:
            raise BadRequestData(f"{where}{name}.unitCode must be a non-empty string")
        out["unitCode"] = value["unitCode"]
    if "datasetId" in value and value["datasetId"] != "@none":  # @none: the default one
        check_uri(value["datasetId"], f"{where}{name}.datasetId")
        out["datasetId"] = value["datasetId"]
    for key in ("lang", "objectType", "valueType"):
        if key in value:
            out[key] = value[key]
    for sub_name, sub_value in value.items():
        if sub_name in ATTRIBUTE_MEMBERS:
            continue
        check_attribute_name(sub_name, f"{where}{name}.")
        out[sub_name] = normalise_attribute(sub_name, sub_value, where=f"{where}{name}.")
    return out


def _geometry_text(text: str, where: str) -> Any:
    """A GeoProperty value sent as the JSON text of a geometry (clause 4.7.2): the
    geometry it encodes."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        raise BadRequestData(f"{where}: the value {text[:40]!r} is neither a GeoJSON "
                             "geometry nor the JSON text of one") from None


def _language_map(found: Any, where: str) -> dict:
    """A LanguageProperty's ``languageMap``: language tags (non-empty) to strings or
    arrays of strings (clause 4.5.18)."""
    if not isinstance(found, dict) or not found:
        raise BadRequestData(f"{where}: a LanguageProperty needs a 'languageMap'")
    for tag, text in found.items():
        if not tag:
            raise BadRequestData(f"{where}.languageMap: an empty language tag")
        texts = text if isinstance(text, list) else [text]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise BadRequestData(f"{where}.languageMap[{tag!r}]: {text!r} is not a string "
                                 "or an array of strings")
    return found


#: 4.18: Scope = "/" ScopeLevel *("/" ScopeLevel); a level starts with a letter and
#: holds letters, digits and "_".
_SCOPE = re.compile(r"(?:/[^\W\d_]\w*)+\Z")


def check_scopes(scope: Any, where: str = "scope") -> Any:
    """The ``scope`` of an entity (one scope or a non-empty array), each checked."""
    scopes = scope if isinstance(scope, list) else [scope]
    if not scopes:
        raise BadRequestData(f"{where}: an empty array is not a scope")
    for item in scopes:
        if isinstance(item, dict) and item.get("type") == "Property":
            check_scopes(item.get("value"), where)  # a temporal instance of the scope
            continue
        if not isinstance(item, str) or not _SCOPE.match(item):
            raise BadRequestData(f"{where}: {item!r} is not a scope ('/Madrid/Gran_Via': "
                                 "levels that start with a letter, of letters, digits "
                                 "and '_')")
    return scope


def from_key_values(body: Any, *, where: str = "") -> dict:
    """Turn a keyValues (simplified) entity into the canonical normalised form.

    A GeoJSON geometry becomes a GeoProperty, anything else a Property; a value that
    is already a normalised attribute (an object with an attribute ``type``) is kept.
    """
    if not isinstance(body, dict):
        raise BadRequestData(f"{where}an entity must be a JSON object")
    normal: dict = {k: body[k] for k in ("id", "type", "scope") if k in body}
    for name, value in body.items():
        if name in RESERVED_KEYS:
            continue
        normal[name] = key_value_to_attribute(name, value)
    return normalise_entity(normal, where=where, require_type="type" in body)


def key_value_to_attribute(name: str, value: Any) -> dict:
    """Wrap one simplified value as a normalised attribute instance."""
    if isinstance(value, dict) and value.get("type") in ATTRIBUTE_TYPES:
        return value
    if isinstance(value, dict) and value.get("type") in GEOJSON_GEOMETRY_TYPES:
        return {"type": "GeoProperty", "value": value}
    return {"type": "Property", "value": value}


def to_key_values(entity: dict) -> dict:
    """The simplified (keyValues) representation of a canonical entity."""
    out = {k: entity[k] for k in ("id", "type", "scope") if k in entity}
    for name, attr in entity.items():
        if name in out or name in RESERVED_KEYS:
            continue
        out[name] = [_simple(a) for a in attr] if isinstance(attr, list) else _simple(attr)
    return out


def _simple(instance: dict) -> Any:
    if instance.get("type") == "Relationship":
        return instance.get("object")
    if instance.get("type") == "LanguageProperty":
        return instance.get("languageMap")
    return instance.get("value")


def attribute_instances(attr: dict | list) -> list[dict]:
    """The instances of an attribute as a list, whatever its stored shape."""
    return attr if isinstance(attr, list) else [attr]


def attribute_names(entity: dict) -> list[str]:
    """The names of the entity's attributes (reserved keys excluded)."""
    return [k for k in entity if k not in RESERVED_KEYS]
