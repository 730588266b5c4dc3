"""Alerts: NGSI-LD ``Alert`` entities (FIWARE Smart Data Models) and their handling.

Anything raises an alert the same way, by writing an ``Alert`` entity (a device rule,
an app, :func:`raise_alert` here, or a plain ``POST /ngsi-ld/v1/entities``). The
Smart Data Models fields are ``category``, ``subCategory``, ``severity``
(informational, low, medium, high, critical), ``description``, ``dateIssued``,
``location``, ``alertSource``, ``validFrom`` and ``validTo``.

What the operations centre does with an alert is kept on the entity itself, as the
``status`` Property (``open`` -> ``acknowledged`` -> ``resolved``), each write with
sub-properties ``actor`` (the name the operator signed in with), ``keyId`` and
``keyName`` (the API key that was used) and ``comment``. Every write of ``status``
is a row of the store's attribute history, so the audit trail is the temporal API's
history of ``status`` (:func:`alert_audit_trail`).
"""

from __future__ import annotations

from datetime import datetime

from cityos.core.errors import BadRequestData, NgsiLdError, ResourceNotFound
from cityos.core.store.base import DEFAULT_DATASET
from cityos.core.timefmt import format_datetime, now_utc

ALERT_TYPE = "Alert"
SEVERITIES = ("informational", "low", "medium", "high", "critical")
STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_RESOLVED = "open", "acknowledged", "resolved"
#: The status each action leads to, and the statuses it may start from.
ACTIONS = {
    "acknowledge": (STATUS_ACKNOWLEDGED, (STATUS_OPEN,)),
    "resolve": (STATUS_RESOLVED, (STATUS_OPEN, STATUS_ACKNOWLEDGED)),
}
MAX_COMMENT_CHARS = 2000
MAX_ACTOR_CHARS = 120


class AlertStateConflict(NgsiLdError):
    """The alert is not in a state the action can start from (409)."""

    error_type, title, status = "Conflict", "Conflict", 409

    @property
    def type_uri(self) -> str:
        return "https://cityos.org/errors/Conflict"


def alert_entity(alert_id: str, *, category: str, severity: str, description: str,
                 location: dict | None = None, sub_category: str | None = None,
                 alert_source: str | None = None, issued_at: datetime | None = None,
                 valid_to: datetime | None = None) -> dict:
    """A new, open Alert entity in normalised NGSI-LD.

    Parameters
    ----------
    alert_id : str
        The entity id, e.g. ``urn:ngsi-ld:Alert:flood-01-2026010508``.
    category, sub_category : str
        Smart Data Models category (``weather``, ``traffic``, ``environment`` ...)
        and sub-category (``flood``, ``trafficJam`` ...).
    severity : str
        One of :data:`SEVERITIES`.
    description : str
        What the operator reads.
    location : dict, optional
        GeoJSON geometry of the place.
    alert_source : str, optional
        The id of the entity (sensor, vehicle) or the rule that raised it.
    issued_at, valid_to : datetime, optional
        ``dateIssued`` (and ``validFrom``), default now; ``validTo`` when known.

    Raises
    ------
    BadRequestData
        When ``severity`` is not a Smart Data Models severity.
    """
    if severity not in SEVERITIES:
        raise BadRequestData(f"severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
    issued = format_datetime(issued_at or now_utc())
    entity: dict = {
        "id": alert_id, "type": ALERT_TYPE,
        "category": {"type": "Property", "value": category},
        "severity": {"type": "Property", "value": severity},
        "description": {"type": "Property", "value": description},
        "dateIssued": {"type": "Property", "value": issued},
        "validFrom": {"type": "Property", "value": issued},
        "status": {"type": "Property", "value": STATUS_OPEN, "observedAt": issued},
    }
    if sub_category:
        entity["subCategory"] = {"type": "Property", "value": sub_category}
    if alert_source:
        entity["alertSource"] = {"type": "Property", "value": alert_source}
    if location is not None:
        entity["location"] = {"type": "GeoProperty", "value": location}
    if valid_to is not None:
        entity["validTo"] = {"type": "Property", "value": format_datetime(valid_to)}
    return entity


def raise_alert(store, tenant: str, entity: dict) -> dict:
    """Write an Alert (as :func:`alert_entity` makes it) to the store; return it."""
    return store.create_entity(tenant, entity)


def alert_status(entity: dict) -> str:
    """The handling status of an Alert entity; ``open`` when it has none yet."""
    attr = entity.get("status")
    if isinstance(attr, list):
        attr = next((a for a in attr if a.get("datasetId", DEFAULT_DATASET) == DEFAULT_DATASET),
                    attr[0])
    value = attr.get("value") if isinstance(attr, dict) else None
    return value if isinstance(value, str) else STATUS_OPEN


def _clean_text(value, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequestData(f"{field}: must be a string")
    value = value.strip()
    if len(value) > limit:
        raise BadRequestData(f"{field}: longer than {limit} characters")
    return value


def handle_alert(store, tenant: str, alert_id: str, action: str, *, actor: str | None,
                 comment: str | None, key_id: str | None, key_name: str = "",
                 at: datetime | None = None) -> dict:
    """Acknowledge or resolve an alert, recording who did it and why.

    Parameters
    ----------
    store : ContextStore
    tenant : str
    alert_id : str
    action : str
        ``acknowledge`` or ``resolve``.
    actor : str or None
        The operator's name as typed at sign-in; the key's name when empty.
    comment : str or None
    key_id, key_name : str
        The API key that authorised the action (what the audit trail relies on).
    at : datetime, optional
        When it happened (default now).

    Returns
    -------
    dict
        The new ``status`` attribute instance.

    Raises
    ------
    ResourceNotFound
        No such entity, or it is not an Alert.
    AlertStateConflict
        The alert's status does not allow the action (e.g. already resolved).
    BadRequestData
        Unknown action, or a comment / name that is too long.
    """
    if action not in ACTIONS:
        raise BadRequestData(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    comment = _clean_text(comment, "comment", MAX_COMMENT_CHARS)
    actor = _clean_text(actor, "actor", MAX_ACTOR_CHARS) or key_name or (key_id or "")
    entity = store.get_entity(tenant, alert_id)
    types = entity["type"] if isinstance(entity["type"], list) else [entity["type"]]
    if ALERT_TYPE not in types:
        raise ResourceNotFound(f"entity {alert_id} is not an Alert")
    target, allowed_from = ACTIONS[action]
    current = alert_status(entity)
    if current not in allowed_from:
        raise AlertStateConflict(f"alert {alert_id} is {current}; {action} needs it to be "
                                 f"{' or '.join(allowed_from)}")
    instance = {
        "type": "Property", "value": target, "observedAt": format_datetime(at or now_utc()),
        "actor": {"type": "Property", "value": actor},
        "keyId": {"type": "Property", "value": key_id or ""},
        "keyName": {"type": "Property", "value": key_name or ""},
        "comment": {"type": "Property", "value": comment},
    }
    store.append_attributes(tenant, alert_id, {"status": instance})
    return instance


def alert_audit_trail(store, tenant: str, alert_id: str) -> list[dict]:
    """Every recorded status of an alert, oldest first.

    Each item is ``{"status", "at", "actor", "keyId", "keyName", "comment"}``; the
    rows are the store's history of the ``status`` attribute.
    """
    store.get_entity(tenant, alert_id)  # ResourceNotFound when there is no such alert
    trail = []
    for row in store.history(tenant, alert_id, ["status"], None, None, None):
        instance = row.instance
        trail.append({
            "status": instance.get("value"),
            "at": instance.get("observedAt"),
            **{name: (instance.get(name) or {}).get("value", "")
               for name in ("actor", "keyId", "keyName", "comment")},
        })
    return trail
