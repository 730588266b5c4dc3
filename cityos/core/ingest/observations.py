"""Device observations as canonical entity fragments: the pure part of ingestion.

A device publishes to ``cityos/<tenant>/<entityType>/<entityId>`` a JSON object of
attributes, keyValues (``{"speed": 3.2, "location": {"type": "Point", ...}}``) or
normalised NGSI-LD (``{"speed": {"type": "Property", "value": 3.2}}``), optionally with
a top-level ``observedAt`` that stamps every attribute that has none of its own. The
entity id may be short (``bus-17`` becomes ``urn:ngsi-ld:Vehicle:bus-17``) or a full URI.

Nothing here does I/O; every malformed case raises :class:`BadRequestData` whose
detail is the reason kept in the dead-letter table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cityos.core.entities import (
    ATTRIBUTE_TYPES,
    RESERVED_KEYS,
    key_value_to_attribute,
    normalise_entity,
)
from cityos.core.errors import BadRequestData, NgsiLdError
from cityos.core.ngsi_ld.ids import escaped, uri_problem
from cityos.core.timefmt import canonical_datetime, format_datetime

TOPIC_ROOT = "cityos"
#: What the ingester subscribes to.
TOPIC_FILTER = f"{TOPIC_ROOT}/+/+/+"
TOPIC_SHAPE = f"{TOPIC_ROOT}/<tenant>/<entityType>/<entityId>"

_SHORT_ID = re.compile(r"^[A-Za-z0-9._~\-]+$")
_TENANT = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


@dataclass(frozen=True)
class Observation:
    """One device message, validated: the tenant and the entity fragment to merge."""

    tenant: str
    entity: dict


def entity_urn(entity_type: str, entity_id: str, field: str = "id") -> str:
    """The entity id for ``entity_id``: kept when it is a URI, else made a URN.

    Parameters
    ----------
    entity_type : str
        The entity type, used in ``urn:ngsi-ld:<entityType>:<shortId>``.
    entity_id : str
        A short id (``bus-17``) or a full URI (``urn:ngsi-ld:Vehicle:bus-17``).
    field : str
        Name reported in the error.

    Raises
    ------
    BadRequestData
        When ``entity_id`` is neither a URI nor a short id.
    """
    if isinstance(entity_id, str) and _SHORT_ID.match(entity_id):
        return f"urn:ngsi-ld:{entity_type}:{entity_id}"
    problem = uri_problem(entity_id)
    if problem is None:
        return entity_id
    shown = f"'{escaped(entity_id)}'" if isinstance(entity_id, str) else repr(entity_id)
    because = f": {problem}" if isinstance(entity_id, str) else ""
    raise BadRequestData(f"{field}: {shown} is not a URI or a short id "
                         f"(letters, digits, '-', '_', '.', '~'){because}")


def parse_topic(topic: str, allowed_tenants: list[str] | None = None) -> tuple[str, str, str]:
    """Split ``cityos/<tenant>/<entityType>/<entityId>`` into its three names.

    Returns
    -------
    tuple of str
        ``(tenant, entity_type, entity_id)`` with the id made a URI.

    Raises
    ------
    BadRequestData
        When the topic has the wrong shape, an empty or invalid level, or a tenant
        outside ``allowed_tenants`` (when that is given).
    """
    levels = topic.split("/")
    topic = escaped(topic)  # as shown in the reasons: no raw control character
    if len(levels) != 4:
        raise BadRequestData(f"topic {topic} has {len(levels)} levels, expected {TOPIC_SHAPE}")
    root, tenant, entity_type, entity_id = levels
    if root != TOPIC_ROOT:
        raise BadRequestData(f"topic {topic} does not start with {TOPIC_ROOT}/, "
                             f"expected {TOPIC_SHAPE}")
    for name, value in (("tenant", tenant), ("entityType", entity_type),
                        ("entityId", entity_id)):
        if not value:
            raise BadRequestData(f"topic {topic}: the {name} level is empty, "
                                 f"expected {TOPIC_SHAPE}")
    if not _TENANT.match(tenant):
        raise BadRequestData(f"topic {topic}: tenant {tenant!r} is not a valid tenant name "
                             "(letters, digits, '-', '_', '.', at most 64)")
    if allowed_tenants is not None and tenant not in allowed_tenants:
        raise BadRequestData(f"tenant {tenant!r} is not allowed for this device credential")
    return tenant, entity_type, entity_urn(entity_type, entity_id, f"topic {topic}: entityId")


def topic_tenant(topic: str) -> str | None:
    """The tenant level of a topic when it is a valid tenant name, else None.

    Used to file a dead letter under the tenant a device meant, even when the rest of
    its topic is wrong.
    """
    levels = topic.split("/")
    if len(levels) >= 2 and levels[0] == TOPIC_ROOT and _TENANT.match(levels[1]):
        return levels[1]
    return None


def decode_payload(payload: bytes | str) -> Any:
    """Parse a message payload as JSON; BadRequestData with the parser's reason."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequestData(f"payload is not UTF-8: {error}") from None
    try:  # the standard parser words its reasons better than orjson does
        return json.loads(payload, parse_constant=_reject_constant)
    except ValueError as error:
        raise BadRequestData(f"payload is not JSON: {error}") from None


def _reject_constant(name: str) -> Any:
    # json accepts NaN and Infinity, which JSON (and the store) do not
    raise ValueError(f"{name} is not a JSON number")


def observation_entity(body: Any, *, entity_type: str | None = None,
                       entity_id: str | None = None, where: str = "") -> dict:
    """Turn one observation body into a canonical entity fragment.

    Parameters
    ----------
    body : dict
        keyValues or normalised attributes (mixing is allowed), optionally with
        ``id``, ``type`` and a top-level ``observedAt``.
    entity_type, entity_id : str, optional
        From the MQTT topic; when given, ``body`` may omit ``id``/``type`` and must
        agree with them when it has them.
    where : str
        Prefix of error details, e.g. ``"entity 3: "``.

    Returns
    -------
    dict
        Canonical entity: ``id``, ``type`` and the attributes, each stamped with the
        top-level ``observedAt`` unless it has its own.

    Raises
    ------
    BadRequestData
        Naming the field at fault.
    """
    if not isinstance(body, dict):
        raise BadRequestData(f"{where}payload must be a JSON object of attributes, "
                             f"got {_json_kind(body)}")
    type_ = body.get("type", entity_type)
    if type_ is None:
        raise BadRequestData(f"{where}type is missing")
    if entity_type is not None and type_ != entity_type:
        raise BadRequestData(f"{where}type {type_!r} does not match the topic's entity "
                             f"type {entity_type!r}")
    if not isinstance(type_, str | list):
        raise BadRequestData(f"{where}type: {type_!r} is not a valid entity type")
    raw_id = body.get("id", entity_id)
    if raw_id is None:
        raise BadRequestData(f"{where}id is missing")
    first_type = type_[0] if isinstance(type_, list) and type_ else type_
    if not isinstance(first_type, str):
        raise BadRequestData(f"{where}type: {type_!r} is not a valid entity type")
    full_id = entity_urn(first_type, raw_id, f"{where}id")
    if entity_id is not None and full_id != entity_id:
        raise BadRequestData(f"{where}id {full_id!r} does not match the topic's entity "
                             f"{entity_id!r}")
    observed = body.get("observedAt")
    stamp = None
    if observed is not None:
        stamp = canonical_datetime(observed, f"{where}observedAt")
    fragment: dict = {"id": full_id, "type": type_}
    for name, value in body.items():
        if name in RESERVED_KEYS or name == "observedAt":
            continue
        attribute = _as_attribute(name, value)
        if stamp is not None:
            attribute = _stamped(attribute, stamp)
        fragment[name] = attribute
    if len(fragment) == 2:
        raise BadRequestData(f"{where}payload has no attributes to store")
    return normalise_entity(fragment, where=where)


def observation_from_mqtt(topic: str, payload: bytes | str,
                          allowed_tenants: list[str] | None = None) -> Observation:
    """Validate one MQTT message and return the tenant and entity fragment it writes.

    Raises
    ------
    BadRequestData
        With the reason the message is dead-lettered for.
    """
    tenant, entity_type, entity_id = parse_topic(topic, allowed_tenants)
    body = decode_payload(payload)
    return Observation(tenant, observation_entity(body, entity_type=entity_type,
                                                  entity_id=entity_id))


def _as_attribute(name: str, value: Any) -> Any:
    # a list of normalised instances (several datasetIds) stays a list; any other list
    # is a keyValues value
    if isinstance(value, list) and value and all(
            isinstance(v, dict) and v.get("type") in ATTRIBUTE_TYPES for v in value):
        return value
    return key_value_to_attribute(name, value)


def _stamped(attribute: Any, stamp: str) -> Any:
    if isinstance(attribute, list):  # several instances by datasetId
        return [_stamped(a, stamp) for a in attribute]
    if isinstance(attribute, dict) and "observedAt" not in attribute:
        return {**attribute, "observedAt": stamp}
    return attribute


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


#: Exception class names of a store that is away for a moment (retry, never dead-letter).
_TRANSIENT_NAMES = {"OperationalError", "InterfaceError", "PoolTimeout", "ConnectionTimeout"}


def is_transient(error: Exception) -> bool:
    """True when a store error is worth retrying (the database is away for a moment),
    False for a bad observation, which is dead-lettered."""
    if isinstance(error, NgsiLdError | BadRequestData):
        return False
    return isinstance(error, OSError | TimeoutError) or any(
        cls.__name__ in _TRANSIENT_NAMES for cls in type(error).__mro__)


def received_stamped(entity: dict, received_at: datetime) -> dict:
    """The entity with ``observedAt`` = ``received_at`` on every attribute without one.

    The store would give every such attribute of a batch the batch's one write time,
    so later observations of the batch would find their history row taken.
    """
    if all(_has_observed_at(value) for name, value in entity.items()
           if name not in RESERVED_KEYS):
        return entity
    stamp = format_datetime(received_at)
    return {name: value if name in RESERVED_KEYS else _stamped(value, stamp)
            for name, value in entity.items()}


def _has_observed_at(attribute) -> bool:
    if isinstance(attribute, list):
        return all(_has_observed_at(instance) for instance in attribute)
    return not isinstance(attribute, dict) or "observedAt" in attribute
