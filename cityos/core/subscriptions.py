"""NGSI-LD subscriptions and the notifier (ETSI GS CIM 009, clauses 5.2.12 and 5.8).

A subscription says which entity changes a client wants to hear about (``entities``,
``watchedAttributes``, ``q``, ``geoQ``) and where to send them (``notification.endpoint``:
``http(s)://`` receives a POST, ``mqtt(s)://host:port/topic`` a publish). Definitions are
JSON documents of the store (kind ``subscription``); what the notifier did with them
(``timesSent``, ``lastFailure`` ...) is kept in a second document (kind
``subscription-status``) so that delivery never races with a client's PATCH.

:class:`SubscriptionManager` listens to the store's event bus. Its event handler only
enqueues; a matcher thread evaluates the tenant's subscriptions and schedules
notifications, and a few delivery threads send them, retrying failures with
exponential backoff. Pending notifications live in memory: a notification not yet
sent when the process stops is lost (NGSI-LD notifications are best effort).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import queue
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from cityos.core.clock import now as clock_now
from cityos.core.entities import (
    RESERVED_KEYS,
    check_attribute_name,
    entity_types,
    is_uri,
)
from cityos.core.errors import (
    AlreadyExists,
    BadRequestData,
    ContextUnreachable,
    NgsiLdError,
    ResourceNotFound,
)
from cityos.core.events import EntityEvent
from cityos.core.ngsi_ld.changes import change_kinds, deleted_entity, with_changes
from cityos.core.ngsi_ld.context import CORE_CONTEXT_URL, JSONLD_CONTEXT_REL
from cityos.core.ngsi_ld.entity_filters import (
    is_type_expression,
    rename_type_expression,
    types_match,
)
from cityos.core.ngsi_ld.ids import check_uri, uri_problem
from cityos.core.store.base import StoredEntity
from cityos.core.timefmt import format_datetime, now_utc, parse_datetime

log = logging.getLogger(__name__)

__all__ = [
    "SUBSCRIPTION_KIND", "STATUS_KIND", "SubscriptionManager", "count_subscriptions",
    "create_subscription", "delete_subscription", "get_subscription", "list_subscriptions",
    "mqtt_endpoint", "update_subscription", "validate_subscription",
]

SUBSCRIPTION_KIND = "subscription"
STATUS_KIND = "subscription-status"
#: Where a stored subscription keeps the client's ``@context`` (not shown to clients).
CONTEXT_MEMBER = "_ldContext"
#: ``keyValues`` and ``simplified`` name the same representation.
FORMATS = ("normalized", "concise", "keyValues", "simplified")
ACCEPTS = ("application/json", "application/ld+json")
#: NGSI-LD 1.8 ``notificationTrigger`` values; the default leaves deletions out.
TRIGGERS = ("entityCreated", "entityUpdated", "entityDeleted", "attributeCreated",
            "attributeUpdated", "attributeDeleted")
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
#: Members a client may send; the notifier's own counters are read-only.
_STATUS_MEMBERS = ("status", "timesSent", "timesFailed", "lastNotification", "lastFailure",
                   "lastSuccess")
#: Seconds a worker trusts its cached subscriptions before re-reading them (other
#: workers may have changed them).
CACHE_TTL_S = 5.0
#: Seconds between writes of the delivery counters to the store.
STATUS_WRITE_INTERVAL_S = 0.5
#: Events waiting for the matcher beyond this are dropped (with a warning), so a
#: flood of writes cannot exhaust memory.
MAX_QUEUED_EVENTS = 100_000
_RETRYABLE_HTTP = {408, 425, 429}
#: Seconds between the periodic notifier's looks at ``timeInterval`` subscriptions.
PERIODIC_TICK_S = 0.5
#: Seconds between two listings of the store's tenants by the periodic notifier.
TENANTS_REFRESH_S = 30.0
#: Most entities one periodic notification carries.
MAX_PERIODIC_ENTITIES = 1000


# =================================================================== validation
def validate_subscription(body: Any, context: Any = None, *, max_q_length: int = 4096,
                          now: Any = None) -> dict:
    """Check an NGSI-LD Subscription and return its stored form.

    Parameters
    ----------
    body : dict
        The subscription as a client sends it (normalised names, ``@context`` ignored).
        ``id`` is generated (``urn:ngsi-ld:Subscription:<uuid>``) when absent.
    context : LdContext, optional
        The client's ``@context`` (:mod:`cityos.core.ngsi_ld.context`); entity types and
        attribute names are stored under their canonical names. Core context if None.
    max_q_length : int
        Longest accepted ``q``.
    now : datetime, optional
        The current time (``expiresAt`` must be later); the clock when omitted.

    Returns
    -------
    dict
        ``id``, ``type`` and the members given, checked and normalised: ``q`` as its
        canonical text, ``isActive`` (when given; true if not), ``notification.format``
        (default ``normalized``), ``expiresAt`` in UTC.

    Raises
    ------
    BadRequestData
        Naming the member that is wrong.
    ContextUnreachable
        For a ``jsonldContext`` this broker cannot read (504).
    """
    if not isinstance(body, dict):
        raise BadRequestData("a subscription must be a JSON object")
    body = canonical_subscription(body, context, max_q_length=max_q_length)
    sub: dict = {}
    sub_id = body.get("id")
    if sub_id is None:
        sub_id = f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    else:
        check_uri(sub_id, "id")
    sub["id"] = sub_id
    if body.get("type", "Subscription") != "Subscription":
        raise BadRequestData(f"type: {body['type']!r} must be 'Subscription'")
    sub["type"] = "Subscription"
    for name in ("subscriptionName", "name", "description"):
        if name in body and not isinstance(body[name], str):
            raise BadRequestData(f"{name}: must be a string")
    if "subscriptionName" in body or "name" in body:
        sub["subscriptionName"] = body.get("subscriptionName", body.get("name"))
    if "description" in body:
        sub["description"] = body["description"]
    if body.get("timeInterval") is not None:
        sub["timeInterval"] = _seconds(body["timeInterval"], "timeInterval")
        if body.get("watchedAttributes") is not None:
            raise BadRequestData("timeInterval: a periodic subscription cannot also have "
                                 "watchedAttributes (clause 5.2.12)")
        if body.get("throttling") is not None:
            raise BadRequestData("throttling: a periodic subscription (timeInterval) cannot "
                                 "be throttled")
    if body.get("entities") is not None:
        sub["entities"] = _entity_selectors(body["entities"])
    if body.get("watchedAttributes") is not None:
        sub["watchedAttributes"] = _names(body["watchedAttributes"], "watchedAttributes")
    if "entities" not in sub and "watchedAttributes" not in sub:
        raise BadRequestData("entities: a subscription needs entities or watchedAttributes")
    if body.get("q") is not None:
        sub["q"] = _q_text(body["q"], max_q_length)
    if body.get("geoQ") is not None:
        sub["geoQ"] = _geo_q(body["geoQ"])
    sub["notification"] = _notification(body.get("notification"))
    if body.get("notificationTrigger") is not None:
        triggers = body["notificationTrigger"]
        if not isinstance(triggers, list) or not triggers or \
                not all(t in TRIGGERS for t in triggers):
            raise BadRequestData(f"notificationTrigger: expected a non-empty list of "
                                 f"{', '.join(TRIGGERS)}")
        sub["notificationTrigger"] = list(dict.fromkeys(triggers))
    if body.get("throttling") is not None:
        sub["throttling"] = _seconds(body["throttling"], "throttling")
    if body.get("csf") is not None:
        sub["csf"] = _csf(body["csf"], max_q_length)
    if body.get("jsonldContext") is not None:
        sub["jsonldContext"] = _jsonld_context(body["jsonldContext"])
    if body.get("datasetId") is not None:
        sub["datasetId"] = _dataset_ids(body["datasetId"])
    if context is not None and not getattr(context, "is_core", True):
        sub[CONTEXT_MEMBER] = context.source  # names in notifications are compacted with it
    elif body.get(CONTEXT_MEMBER) is not None:
        sub[CONTEXT_MEMBER] = body[CONTEXT_MEMBER]  # kept through an update
    if body.get("expiresAt") is not None:
        expires = parse_datetime(body["expiresAt"], "expiresAt")
        if expires <= (now or now_utc()):
            raise BadRequestData(f"expiresAt: {body['expiresAt']!r} is not in the future")
        sub["expiresAt"] = format_datetime(expires)
    if body.get("isActive") is not None:  # shown only when given; true by default
        if not isinstance(body["isActive"], bool):
            raise BadRequestData(f"isActive: {body['isActive']!r} is not true or false")
        sub["isActive"] = body["isActive"]
    return sub


def canonical_subscription(body: dict, context: Any, *, max_q_length: int = 4096) -> dict:
    """Rename the entity types and attribute names a client wrote in its ``@context``
    to the stored (canonical) names; shapes are left for validation to judge."""
    if context is None or getattr(context, "is_core", True):
        return body
    rename = context.to_canonical
    out = dict(body)
    if isinstance(out.get("entities"), list):
        out["entities"] = [{**e, "type": rename_type_expression(e["type"], rename,
                                                                f"entities[{i}].type")}
                           if isinstance(e, dict) and isinstance(e.get("type"), str) else e
                           for i, e in enumerate(out["entities"])]
    if isinstance(out.get("watchedAttributes"), list):
        out["watchedAttributes"] = [rename(n) if isinstance(n, str) and n else n
                                    for n in out["watchedAttributes"]]
    notification = out.get("notification")
    if isinstance(notification, dict):
        notification = dict(notification)
        for member in ("attributes", "pick", "omit"):  # pick/omit: id and type stay
            if isinstance(notification.get(member), list):
                notification[member] = [
                    rename(n) if isinstance(n, str) and n and n not in ("id", "type") else n
                    for n in notification[member]]
        out["notification"] = notification
    geo = out.get("geoQ")
    if isinstance(geo, dict) and isinstance(geo.get("geoproperty"), str):
        out["geoQ"] = {**geo, "geoproperty": rename(geo["geoproperty"])}
    if isinstance(out.get("q"), str):
        from cityos.core.ngsi_ld.context import canonical_q
        from cityos.core.ngsi_ld.qlang import parse_q

        out["q"] = str(canonical_q(parse_q(out["q"], max_q_length), context))
    return out


def _seconds(value: Any, field: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadRequestData(f"{field}: {value!r} is not a positive number of seconds")
    return value


def _dataset_ids(value: Any) -> list[str]:
    """``datasetId``: the attribute instances notifications keep (``@none``: the
    default instance)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequestData("datasetId: expected a URI or a non-empty list of URIs")
    for index, item in enumerate(items):
        if item != "@none":
            check_uri(item, f"datasetId[{index}]")
    return list(dict.fromkeys(items))


def _csf(text: Any, max_q_length: int) -> str:
    """A context source filter: a query string of clause 4.9 (parsed like ``q``)."""
    from cityos.core.ngsi_ld.qlang import parse_q

    if not isinstance(text, str) or not text:
        raise BadRequestData("csf: must be a non-empty query string")
    try:
        parse_q(text, max_q_length)
    except BadRequestData as error:
        raise BadRequestData(f"csf: {error.detail}") from None
    return text


def _jsonld_context(url: Any) -> str:
    """``jsonldContext``: the URI of the context notifications are compacted with; it
    must be one the broker can read (offline: a registered or core context)."""
    from cityos.core.ngsi_ld.context import CORE_CONTEXT_URLS, known_context

    if not isinstance(url, str) or "://" not in url or uri_problem(url) is not None:
        raise BadRequestData(f"jsonldContext: {url!r} is not an absolute URI")
    if url not in CORE_CONTEXT_URLS and known_context(url) is None:
        raise ContextUnreachable(f"jsonldContext: {url} cannot be retrieved (it is not "
                                 "one of the contexts this broker holds)")
    return url


def _names(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRequestData(f"{field}: expected a non-empty list of attribute names")
    for name in value:
        check_attribute_name(name, f"{field}: ")
    return list(dict.fromkeys(value))


def _entity_selectors(value: Any) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise BadRequestData("entities: expected a non-empty list of {type, id?, idPattern?}")
    selectors = []
    for index, item in enumerate(value):
        where = f"entities[{index}]"
        if not isinstance(item, dict):
            raise BadRequestData(f"{where}: expected an object with type, id or idPattern")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind or not kind.isprintable() or " " in kind:
            raise BadRequestData(f"{where}.type: {kind!r} is not an entity type")
        if is_type_expression(kind):  # clause 4.17: (A|B);C ... checked, kept as written
            rename_type_expression(kind, str, f"{where}.type")
        selector = {"type": kind}
        if item.get("id") is not None:
            check_uri(item["id"], f"{where}.id")
            selector["id"] = item["id"]
        if item.get("idPattern") is not None:
            pattern = item["idPattern"]
            try:
                re.compile(pattern)
            except (re.error, TypeError) as error:
                raise BadRequestData(f"{where}.idPattern: {pattern!r} is not a regular "
                                     f"expression: {error}") from None
            selector["idPattern"] = pattern
        selectors.append(selector)
    return selectors


def _q_text(text: Any, max_q_length: int) -> str:
    from cityos.core.ngsi_ld.qlang import parse_q

    if not isinstance(text, str):
        raise BadRequestData("q: must be a string")
    return str(parse_q(text, max_q_length))


def _geo_q(value: Any) -> dict:
    from cityos.core.geo import parse_geo_query

    if not isinstance(value, dict):
        raise BadRequestData("geoQ: expected an object with georel, geometry and coordinates")
    for name in ("georel", "geometry", "coordinates"):
        if value.get(name) is None:
            raise BadRequestData(f"geoQ.{name} is required")
    geo = {"georel": value["georel"], "geometry": value["geometry"],
           "coordinates": value["coordinates"]}
    if value.get("geoproperty") is not None:
        if not isinstance(value["geoproperty"], str):
            raise BadRequestData("geoQ.geoproperty: must be an attribute name")
        geo["geoproperty"] = value["geoproperty"]
    try:
        parsed = parse_geo_query(geo["georel"], geo["geometry"], geo["coordinates"],
                                 geo.get("geoproperty"))
    except BadRequestData as error:
        raise BadRequestData(f"geoQ.{error.detail}") from None
    del parsed  # checked; the document keeps the client's form
    if isinstance(geo["coordinates"], str):
        geo["coordinates"] = orjson.loads(geo["coordinates"])
    return geo


def _notification(value: Any) -> dict:
    if not isinstance(value, dict):
        raise BadRequestData("notification: expected an object with an endpoint")
    from cityos.core.ngsi_ld.projection import check_projections, parse_projection

    out: dict = {}
    if value.get("attributes") is not None:
        out["attributes"] = _names(value["attributes"], "notification.attributes")
    trees = {}
    for member in ("pick", "omit"):
        if value.get(member) is not None:
            trees[member] = parse_projection(value[member], f"notification.{member}")
            out[member] = list(value[member]) if isinstance(value[member], list) \
                else value[member].split(",")
    check_projections(trees.get("pick"), trees.get("omit"), out.get("attributes"),
                      join_level=99)
    fmt = value.get("format", "normalized")
    if fmt not in FORMATS:
        raise BadRequestData(f"notification.format: {fmt!r} is not one of {', '.join(FORMATS)}")
    out["format"] = fmt
    for flag in ("sysAttrs", "showChanges"):
        if value.get(flag) is not None:
            if not isinstance(value[flag], bool):
                raise BadRequestData(f"notification.{flag}: {value[flag]!r} is not true or "
                                     "false")
            out[flag] = value[flag]
    if out.get("showChanges") and fmt in ("keyValues", "simplified"):
        raise BadRequestData(f"notification.showChanges: cannot be true with format {fmt!r} "
                             "(the simplified form has no place for previous values)")
    out["endpoint"] = _endpoint(value.get("endpoint"))
    return out


def _endpoint(value: Any) -> dict:
    if not isinstance(value, dict):
        raise BadRequestData("notification.endpoint: expected an object with a uri")
    uri = value.get("uri")
    if not isinstance(uri, str) or not is_uri(uri):
        raise BadRequestData(f"notification.endpoint.uri: {uri!r} is not a URI")
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        if not urlsplit(uri).hostname:
            raise BadRequestData(f"notification.endpoint.uri: {uri!r} has no host")
    elif scheme in ("mqtt", "mqtts"):
        mqtt_endpoint(uri)  # raises naming the field
    else:
        raise BadRequestData(f"notification.endpoint.uri: scheme {scheme!r} is not supported; "
                             "use http://, https://, mqtt:// or mqtts://")
    endpoint: dict = {"uri": uri}
    accept = value.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise BadRequestData(f"notification.endpoint.accept: {accept!r} is not one of "
                             f"{', '.join(ACCEPTS)}")
    endpoint["accept"] = accept
    for name in ("receiverInfo", "notifierInfo"):
        if value.get(name) is not None:
            endpoint[name] = _key_values(value[name], f"notification.endpoint.{name}")
    qos = _info(endpoint.get("notifierInfo"), "MQTT-QoS") or \
        _info(endpoint.get("receiverInfo"), "MQTT-QoS")
    if qos is not None and str(qos) not in ("0", "1", "2"):
        raise BadRequestData(f"notification.endpoint.notifierInfo: MQTT-QoS {qos!r} is not "
                             "0, 1 or 2")
    return endpoint


def _key_values(value: Any, field: str) -> list[dict]:
    """NGSI-LD KeyValuePair lists; a plain object ``{key: value}`` is accepted too."""
    if isinstance(value, dict):
        value = [{"key": k, "value": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise BadRequestData(f"{field}: expected a list of {{key, value}}")
    pairs = []
    for index, pair in enumerate(value):
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str) or \
                not pair["key"] or not isinstance(pair.get("value"), str):
            raise BadRequestData(f"{field}[{index}]: expected {{\"key\": string, "
                                 f"\"value\": string}}")
        pairs.append({"key": pair["key"], "value": pair["value"]})
    return pairs


def _info(pairs: list[dict] | None, key: str) -> str | None:
    for pair in pairs or ():
        if pair["key"].lower() == key.lower():
            return pair["value"]
    return None


@dataclass(frozen=True)
class MqttTarget:
    """Where an MQTT notification goes: broker address, credentials and topic."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    topic: str

    @property
    def broker(self) -> tuple:
        return self.host, self.port, self.tls, self.username, self.password


def mqtt_endpoint(uri: str) -> MqttTarget:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]/topic`` (NGSI-LD MQTT binding).

    Raises
    ------
    BadRequestData
        Naming ``notification.endpoint.uri`` when host or topic is missing, the topic
        has a wildcard, or the port is not a number.
    """
    parts = urlsplit(uri)
    field = "notification.endpoint.uri"
    if not parts.hostname:
        raise BadRequestData(f"{field}: {uri!r} has no broker host")
    try:
        port = parts.port
    except ValueError:
        raise BadRequestData(f"{field}: {uri!r} has an invalid port") from None
    topic = unquote(parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else ""))
    if parts.fragment or uri.endswith("#"):  # urlsplit reads "#" as a fragment
        topic += "#"
    if not topic:
        raise BadRequestData(f"{field}: {uri!r} names no topic (mqtt://host:port/topic)")
    if "+" in topic or "#" in topic:
        raise BadRequestData(f"{field}: topic {topic!r} must not contain the wildcards + or #")
    tls = parts.scheme.lower() == "mqtts"
    return MqttTarget(parts.hostname, port or (8883 if tls else 1883), tls,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, topic)


# ===================================================================== storage
def create_subscription(store, tenant: str, body: Any, context: Any = None, *,
                        max_q_length: int = 4096) -> dict:
    """Validate and store a new subscription; return it (as :func:`get_subscription`).

    Raises
    ------
    AlreadyExists
        When the tenant already has a subscription with this ``id``.
    BadRequestData, ContextUnreachable
        From :func:`validate_subscription`.
    """
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != CONTEXT_MEMBER}
    sub = validate_subscription(body, context, max_q_length=max_q_length)
    if store.get_document(tenant, SUBSCRIPTION_KIND, sub["id"]) is not None:
        raise AlreadyExists(f"subscription {sub['id']} already exists")
    stamp = format_datetime(now_utc())
    sub["createdAt"] = sub["modifiedAt"] = stamp
    store.put_document(tenant, SUBSCRIPTION_KIND, sub["id"], sub)
    store.delete_document(tenant, STATUS_KIND, sub["id"])  # left by an old namesake
    _invalidate(store, tenant)
    return _with_status(sub, {})


def get_subscription(store, tenant: str, subscription_id: str) -> dict:
    """The subscription with its notification status; ResourceNotFound when absent."""
    sub = store.get_document(tenant, SUBSCRIPTION_KIND, subscription_id)
    if sub is None:
        raise ResourceNotFound(f"subscription {subscription_id} does not exist")
    status = store.get_document(tenant, STATUS_KIND, subscription_id) or {}
    return _with_status(sub, status)


def list_subscriptions(store, tenant: str, limit: int = 20, offset: int = 0) -> list[dict]:
    """One page of the tenant's subscriptions, oldest first, with their status."""
    subs = store.list_documents(tenant, SUBSCRIPTION_KIND, limit=limit, offset=offset)
    return [_with_status(s, store.get_document(tenant, STATUS_KIND, s["id"]) or {})
            for s in subs]


def count_subscriptions(store, tenant: str) -> int:
    """How many subscriptions the tenant has."""
    return len(store.list_documents(tenant, SUBSCRIPTION_KIND, limit=1_000_000))


def update_subscription(store, tenant: str, subscription_id: str, fragment: Any,
                        context: Any = None, *, max_q_length: int = 4096) -> dict:
    """Merge ``fragment`` into a subscription (PATCH) and return the result.

    Top-level members replace the stored ones whole (``notification`` too, so it
    must carry its ``endpoint``); a member set to ``null`` is removed.
    The merged subscription is validated as a whole.
    """
    if not isinstance(fragment, dict):
        raise BadRequestData("a subscription fragment must be a JSON object")
    stored = store.get_document(tenant, SUBSCRIPTION_KIND, subscription_id)
    if stored is None:
        raise ResourceNotFound(f"subscription {subscription_id} does not exist")
    if fragment.get("id", subscription_id) != subscription_id:
        raise BadRequestData(f"id: {fragment['id']!r} differs from {subscription_id!r} "
                             "in the URL")
    fragment = {k: v for k, v in fragment.items()
                if k not in ("@context", "id", CONTEXT_MEMBER)}
    if "name" in fragment:
        fragment["subscriptionName"] = fragment.pop("name")
    fragment = canonical_subscription(fragment, context, max_q_length=max_q_length)
    merged = {k: v for k, v in stored.items() if k not in ("createdAt", "modifiedAt")}
    for key, value in fragment.items():
        if key in _STATUS_MEMBERS:
            continue  # the notifier's to keep
        if value is None:
            merged.pop(key, None)
        elif key == "notification" and isinstance(value, dict):
            # clause 5.8.2: a member is replaced whole, so it must bring its endpoint
            merged["notification"] = {k: v for k, v in value.items()
                                      if k not in _STATUS_MEMBERS and v is not None}
        else:
            merged[key] = value
    merged["id"] = subscription_id
    # a stored expiresAt that has passed stays acceptable; a new one must be ahead
    sub = validate_subscription(merged, None, max_q_length=max_q_length,
                                now=None if "expiresAt" in fragment else _EPOCH)
    sub["createdAt"] = stored.get("createdAt")
    sub["modifiedAt"] = format_datetime(now_utc())
    store.put_document(tenant, SUBSCRIPTION_KIND, subscription_id, sub)
    _invalidate(store, tenant)
    return get_subscription(store, tenant, subscription_id)


_EPOCH = parse_datetime("1970-01-01T00:00:00Z")


def delete_subscription(store, tenant: str, subscription_id: str) -> None:
    """Remove a subscription and its status; ResourceNotFound when absent."""
    if not store.delete_document(tenant, SUBSCRIPTION_KIND, subscription_id):
        raise ResourceNotFound(f"subscription {subscription_id} does not exist")
    store.delete_document(tenant, STATUS_KIND, subscription_id)
    _invalidate(store, tenant)


def subscription_state(sub: dict, now: Any = None) -> str:
    """``expired`` past ``expiresAt``, ``paused`` when not ``isActive``, else ``active``."""
    expires = sub.get("expiresAt")
    if expires and parse_datetime(expires) <= (now or now_utc()):
        return "expired"
    return "active" if sub.get("isActive", True) else "paused"


def _with_status(sub: dict, status: dict) -> dict:
    out = {k: v for k, v in sub.items() if k != CONTEXT_MEMBER}
    source = sub.get(CONTEXT_MEMBER)
    if "jsonldContext" not in out and isinstance(source, (str, list)):
        urls = [source] if isinstance(source, str) else source
        if len(urls) == 1 and isinstance(urls[0], str):
            out["jsonldContext"] = urls[0]  # clause 5.2.12: the context it was made with
    notification = dict(out.get("notification") or {})
    notification["timesSent"] = status.get("timesSent", 0)
    notification["timesFailed"] = status.get("timesFailed", 0)
    for key in ("status", "lastNotification", "lastFailure", "lastSuccess"):
        if status.get(key) is not None:
            notification[key] = status[key]
    out["notification"] = notification
    out["status"] = subscription_state(sub)
    return out


# ===================================================================== matching
@dataclass
class _Compiled:
    """A subscription ready for matching: parsed q, geo-query and patterns."""

    doc: dict
    tenant: str
    q: Any = None
    geo: Any = None
    patterns: list = field(default_factory=list)
    expires_s: float | None = None
    created_s: float = 0.0
    renderer: Any = None

    @classmethod
    def build(cls, tenant: str, doc: dict) -> _Compiled:
        from cityos.core.geo import parse_geo_query
        from cityos.core.ngsi_ld.qlang import parse_q

        compiled = cls(doc, tenant)
        if doc.get("q"):
            compiled.q = parse_q(doc["q"], max(len(doc["q"]), 1))
        if doc.get("geoQ"):
            geo = doc["geoQ"]
            compiled.geo = parse_geo_query(geo["georel"], geo["geometry"], geo["coordinates"],
                                           geo.get("geoproperty"))
        compiled.patterns = [re.compile(s["idPattern"]) if "idPattern" in s else None
                             for s in doc.get("entities") or ()]
        if doc.get("expiresAt"):
            compiled.expires_s = parse_datetime(doc["expiresAt"]).timestamp()
        if doc.get("createdAt"):
            compiled.created_s = parse_datetime(doc["createdAt"]).timestamp()
        compiled.renderer = notification_renderer(doc)
        return compiled

    @property
    def id(self) -> str:
        return self.doc["id"]

    def live(self, now_s: float, event_s: float) -> bool:
        """Active, unexpired, and created before the event happened."""
        return self.doc.get("isActive", True) and self.created_s <= event_s and \
            (self.expires_s is None or now_s < self.expires_s)

    def matches(self, event: EntityEvent) -> bool:
        """True when ``event`` is one this subscription asks to hear about."""
        triggers = self.doc.get("notificationTrigger") or DEFAULT_TRIGGERS
        if event.kind == "deleted":  # deleting an entity deletes its attributes too
            if "entityDeleted" not in triggers and "attributeDeleted" not in triggers:
                return False
        elif event.kind == "created":
            if "entityCreated" not in triggers and "attributeCreated" not in triggers:
                return False
        elif "entityUpdated" not in triggers:
            if event.previous is None:  # not known: any attribute trigger will do
                kinds = {"attributeUpdated", "attributeCreated", "attributeDeleted"}
            else:
                kinds = change_kinds(event.entity, event.previous, event.changed)
            if not kinds & set(triggers):
                return False
        if not self._selects(event):
            return False
        watched = self.doc.get("watchedAttributes")
        if watched and not set(watched) & set(event.changed):
            return False
        entity = event.entity
        if entity is None:  # deleted: q and geoQ cannot hold on what is gone
            return self.q is None and self.geo is None
        from cityos.core.geo import geo_matches
        from cityos.core.ngsi_ld.qlang import q_matches

        if self.q is not None and not q_matches(self.q, entity):
            return False
        return self.geo is None or geo_matches(self.geo, entity)

    def _selects(self, event: EntityEvent) -> bool:
        selectors = self.doc.get("entities")
        if not selectors:
            return True
        types = event.entity_type if isinstance(event.entity_type, list) \
            else [event.entity_type]
        for selector, pattern in zip(selectors, self.patterns, strict=True):
            if not types_match(selector["type"], types):
                continue
            if "id" in selector:
                if selector["id"] == event.entity_id:
                    return True
                continue
            if pattern is None or pattern.fullmatch(event.entity_id):
                return True
        return False


def periodic_entities(store, sub: _Compiled) -> list[StoredEntity]:
    """The entities a periodic notification of ``sub`` carries: those its
    ``entities`` selectors, ``q`` and ``geoQ`` select now, in id order, at most
    :data:`MAX_PERIODIC_ENTITIES`."""
    from cityos.core.geo import geo_matches
    from cityos.core.ngsi_ld.qlang import q_matches

    found: dict[str, StoredEntity] = {}
    selectors = sub.doc.get("entities") or [{}]
    patterns = sub.patterns or [None]
    for selector, pattern in zip(selectors, patterns, strict=True):
        kind = selector.get("type")
        for record in store.scan(sub.tenant,
                                 types=[kind] if kind and not is_type_expression(kind)
                                 else None,
                                 ids=[selector["id"]] if "id" in selector else None,
                                 id_pattern=selector.get("idPattern")):
            if pattern is not None and not pattern.fullmatch(record.id):
                continue
            if kind and not types_match(kind, entity_types(record.entity)):
                continue
            if sub.q is not None and not q_matches(sub.q, record.entity):
                continue
            if sub.geo is not None and not geo_matches(sub.geo, record.entity):
                continue
            found[record.id] = record
            if len(found) >= MAX_PERIODIC_ENTITIES:
                log.warning("subscriptions: periodic %s selects more than %d entities; "
                            "the notification carries the first", sub.id,
                            MAX_PERIODIC_ENTITIES)
                return sorted(found.values(), key=lambda r: r.id)
    return sorted(found.values(), key=lambda r: r.id)


def subscription_context(sub: dict):
    """The context notifications of ``sub`` are compacted with: its ``jsonldContext``,
    else the ``@context`` it was created with, else the core context."""
    from cityos.core.ngsi_ld.context import resolve_context

    if sub.get("jsonldContext"):
        return resolve_context(sub["jsonldContext"])
    return resolve_context(sub.get(CONTEXT_MEMBER))


_FORMS = {"normalized": "normalized", "concise": "concise", "keyValues": "simplified",
          "simplified": "simplified"}


def notification_renderer(sub: dict, context: Any = None):
    """A :class:`~cityos.core.ngsi_ld.representation.Renderer` for the entities of
    ``sub``'s notifications: format, ``attributes``, ``pick``/``omit``, ``sysAttrs``,
    ``datasetId`` and names in the subscription's context."""
    from cityos.core.ngsi_ld.projection import parse_projection
    from cityos.core.ngsi_ld.representation import Renderer

    notification = sub.get("notification") or {}
    datasets = sub.get("datasetId")
    context = context or subscription_context(sub)

    def projection(member: str):
        # stored canonical; projected on the rendered entity, whose names are the context's
        names = notification.get(member)
        if names is None:
            return None
        return parse_projection([n if n in ("id", "type") else context.from_canonical(n)
                                 for n in names], f"notification.{member}")

    return Renderer(context, form=_FORMS.get(notification.get("format"), "normalized"),
                    sys_attrs=bool(notification.get("sysAttrs")),
                    attrs=notification.get("attributes"),
                    pick=projection("pick"), omit=projection("omit"),
                    dataset_ids=set(datasets) if datasets else None)


def notification_data(sub: dict, event: EntityEvent, now_text: str,
                      record: StoredEntity | None = None, renderer: Any = None) -> dict:
    """The entity of a notification in the subscription's representation (deleted
    entities carry ``deletedAt``). ``record`` gives the system times for ``sysAttrs``."""
    renderer = renderer or notification_renderer(sub)
    notification = sub.get("notification") or {}
    show_changes = bool(notification.get("showChanges"))
    entity = event.entity
    if entity is None:
        shown = notification.get("attributes")
        triggers = sub.get("notificationTrigger") or DEFAULT_TRIGGERS
        if not shown and "entityDeleted" not in triggers:  # attributeDeleted: which ones
            shown = sub.get("watchedAttributes") or [
                n for n in (event.previous or {}) if n not in RESERVED_KEYS]
        gone = deleted_entity(event.entity_id, event.entity_type, event.previous, now_text,
                              show_changes=show_changes, attributes=shown,
                              sys_attrs=renderer.sys_attrs)
        return _without_times(renderer).render(StoredEntity(gone, 0, 0))
    entity = with_changes(entity, event.previous, event.changed, show_changes=show_changes,
                          deleted_at=now_text if renderer.sys_attrs else None)
    if record is None:
        return _without_times(renderer).render(StoredEntity(entity, 0, 0))
    return renderer.render(StoredEntity(entity, record.created_us, record.modified_us))


def _without_times(renderer: Any) -> Any:
    """The renderer without ``sysAttrs``, for an entity whose times are not known."""
    return dataclasses.replace(renderer, sys_attrs=False) if renderer.sys_attrs else renderer


def build_notification(sub: dict, entities: list[dict], now_text: str) -> dict:
    """An NGSI-LD Notification (clause 5.3.1) for ``entities``."""
    return {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
            "subscriptionId": sub["id"], "notifiedAt": now_text, "data": entities}


# ===================================================================== delivery
@dataclass
class _Delivery:
    tenant: str
    subscription_id: str
    endpoint: dict
    notification: dict
    #: the ``@context`` of a JSON-LD notification and the ``Link`` of a JSON one
    ld_context: Any = CORE_CONTEXT_URL
    link: str = f'<{CORE_CONTEXT_URL}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'
    attempt: int = 0
    first_attempt_text: str | None = None
    last_failure_text: str | None = None
    last_error: str = ""


class DeliveryError(Exception):
    """A notification attempt failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class _Schedule:
    """Deliveries by due time (a heap), for the delivery threads."""

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, delivery: _Delivery, due_s: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due_s, next(self._seq), delivery))
            self._cond.notify()

    def get(self) -> _Delivery | None:
        """The next due delivery, waiting for it; None once closed."""
        with self._cond:
            while not self._closed:
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def close(self) -> int:
        """Stop handing out deliveries; return how many were still waiting."""
        with self._cond:
            self._closed = True
            left = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
            return left


class _MqttPublisher:
    """One paho client per broker, connected on first use and kept open."""

    def __init__(self, connect_timeout_s: float) -> None:
        self._clients: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.connect_timeout_s = connect_timeout_s

    def _client(self, target: MqttTarget):
        with self._lock:
            client = self._clients.get(target.broker)
            if client is not None and client.is_connected():
                return client
            if client is not None:  # lost and not back: start afresh
                client.loop_stop()
                client.disconnect()
            client = self._connect(target)
            self._clients[target.broker] = client
            return client

    def _connect(self, target: MqttTarget):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"cityos-notifier-{uuid.uuid4().hex[:12]}")
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()

        def on_connect(client, userdata, flags, reason_code, properties):
            if not reason_code.is_failure:
                connected.set()

        client.on_connect = on_connect
        try:
            client.connect(target.host, target.port, keepalive=30)
        except OSError as error:
            raise DeliveryError(f"MQTT broker {target.host}:{target.port}: {error}") from None
        client.loop_start()
        if not connected.wait(self.connect_timeout_s):
            client.loop_stop()
            client.disconnect()
            raise DeliveryError(f"MQTT broker {target.host}:{target.port} did not accept the "
                                "connection")
        return client

    def publish(self, target: MqttTarget, payload: bytes, qos: int,
                timeout_s: float) -> None:
        client = self._client(target)
        info = client.publish(target.topic, payload, qos=qos)
        if info.rc != 0:
            raise DeliveryError(f"MQTT publish to {target.topic!r} failed (rc {info.rc})")
        try:
            info.wait_for_publish(timeout_s)  # QoS 1/2: until the broker's PUBACK/PUBCOMP
        except (RuntimeError, ValueError) as error:
            raise DeliveryError(f"MQTT publish to {target.topic!r} failed: {error}") from None
        if not info.is_published():
            raise DeliveryError(f"MQTT broker did not acknowledge the publish to "
                                f"{target.topic!r} within {timeout_s:g} s")

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                try:
                    client.disconnect()
                    client.loop_stop()
                except Exception:  # closing must not fail shutdown
                    log.debug("closing an MQTT notifier client failed", exc_info=True)
            self._clients.clear()


# ====================================================================== manager
_managers: weakref.WeakSet = weakref.WeakSet()


def _invalidate(store, tenant: str) -> None:
    """Tell this process's managers over ``store`` that ``tenant``'s subscriptions
    changed (other processes notice within :data:`CACHE_TTL_S`)."""
    for manager in list(_managers):
        if manager.store is store:
            manager.invalidate(tenant)


class SubscriptionManager:
    """Matches entity events against subscriptions and delivers the notifications.

    Parameters
    ----------
    store : ContextStore
        Subscriptions are read from its documents; events come from ``store.events``.
    settings : Settings
        ``notification_retries`` (attempts after the first), ``notification_backoff_s``
        (the first retry's delay, doubled each time), and optionally
        ``notification_timeout_s`` and ``notification_workers``.

    Notes
    -----
    When several worker processes share a networked event bus, every worker sees every
    event; the manager then listens with ``events.subscribe_local`` when the bus offers
    it, so that only the worker that made a change notifies about it.
    """

    def __init__(self, store, settings) -> None:
        self.store = store
        self.settings = settings
        self.retries = max(0, int(getattr(settings, "notification_retries", 5)))
        self.backoff_s = float(getattr(settings, "notification_backoff_s", 0.5))
        self.timeout_s = float(getattr(settings, "notification_timeout_s", 10.0))
        self.workers = max(1, int(getattr(settings, "notification_workers", 4)))
        #: seconds between the periodic thread's rounds (see :meth:`notify_periodic`)
        self.periodic_tick_s = PERIODIC_TICK_S
        self._tenants_read_s = -1.0
        self._known_tenants: set[str] = set()
        self._changed_tenants: set[str] = set()
        self.dropped_events = 0
        self._events: queue.Queue = queue.Queue(MAX_QUEUED_EVENTS)
        self._schedule = _Schedule()
        self._cache: dict[str, tuple[float, list[_Compiled]]] = {}
        self._cache_lock = threading.Lock()
        self._last_sent: dict[tuple[str, str], float] = {}
        self._status: dict[tuple[str, str], dict] = {}
        self._status_lock = threading.Lock()
        self._status_write_lock = threading.Lock()  # one read-add-write at a time
        self._pending = 0
        self._pending_cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._unsubscribe = None
        self._stopping = threading.Event()
        self._http = None
        self._mqtt = _MqttPublisher(min(self.timeout_s, 10.0))

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Listen to the store's events and start the matcher and delivery threads."""
        import httpx

        if self._threads:
            return
        self._stopping.clear()
        self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        threads = [threading.Thread(target=self._match_loop, name="cityos-subs-matcher",
                                    daemon=True)]
        threads.append(threading.Thread(target=self._periodic_loop, daemon=True,
                                        name="cityos-subs-periodic"))
        threads += [threading.Thread(target=self._deliver_loop, daemon=True,
                                     name=f"cityos-subs-notifier-{n}")
                    for n in range(self.workers)]
        for thread in threads:
            thread.start()
        self._threads = threads
        events = self.store.events
        subscribe = getattr(events, "subscribe_local", None) or events.subscribe
        self._unsubscribe = subscribe(self.on_event)
        _managers.add(self)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening, stop the threads, write the counters, close connections.

        Notifications still waiting (a retry's backoff, say) are dropped.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        _managers.discard(self)
        self._stopping.set()
        try:
            self._events.put_nowait(None)  # wakes the matcher
        except queue.Full:
            pass  # the matcher is busy and will see the flag
        left = self._schedule.close()
        if left:
            log.warning("subscriptions: %d notification(s) dropped at shutdown", left)
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []
        self._write_status()
        if self._http is not None:
            self._http.close()
            self._http = None
        self._mqtt.close()
        self._schedule = _Schedule()  # a later start() gets a fresh one
        with self._pending_cond:
            self._pending = 0
            self._pending_cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event seen so far is matched and every notification it
        caused is delivered or given up; write the counters. True when drained."""
        deadline = time.monotonic() + timeout
        with self._pending_cond:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._pending_cond.wait(left)
            drained = self._pending == 0
        self._write_status()
        return drained

    def invalidate(self, tenant: str | None = None) -> None:
        """Forget the cached subscriptions of ``tenant`` (of all tenants if None)."""
        with self._cache_lock:
            if tenant is None:
                self._cache.clear()
                self._tenants_read_s = -1.0  # read the tenants again
            else:
                self._cache.pop(tenant, None)
                self._changed_tenants.add(tenant)

    # ------------------------------------------------------------- events
    def on_event(self, event: EntityEvent) -> None:
        """Bus handler: enqueue only, so the store's write path never waits."""
        if self._stopping.is_set():
            return
        self._add_pending(1)
        try:
            self._events.put_nowait((clock_now(), event))
        except queue.Full:
            self._add_pending(-1)
            self.dropped_events += 1
            if self.dropped_events % 10_000 == 1:
                log.warning("subscriptions: event queue full, %d event(s) dropped",
                            self.dropped_events)

    def _add_pending(self, delta: int) -> None:
        with self._pending_cond:
            self._pending += delta
            if self._pending <= 0:
                self._pending_cond.notify_all()

    def _match_loop(self) -> None:
        last_write = time.monotonic()
        while True:
            try:
                event = self._events.get(timeout=STATUS_WRITE_INTERVAL_S)
            except queue.Empty:
                event = False
            if event is None or self._stopping.is_set():
                if event:
                    self._add_pending(-1)
                if self._stopping.is_set():
                    self._drain_events()
                    return
                continue
            if event is not False:
                event_s, event = event
                try:
                    self._match(event, event_s)
                except Exception:  # one bad subscription must not stop the notifier
                    log.exception("subscriptions: matching %s %s failed", event.kind,
                                  event.entity_id)
                finally:
                    self._add_pending(-1)
            if time.monotonic() - last_write >= STATUS_WRITE_INTERVAL_S:
                self._write_status()
                last_write = time.monotonic()

    def _drain_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event is not None:
                self._add_pending(-1)

    def _subscriptions(self, tenant: str) -> list[_Compiled]:
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(tenant)
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            return cached[1]
        compiled = []
        for doc in self.store.list_documents(tenant, SUBSCRIPTION_KIND, limit=1_000_000):
            try:
                compiled.append(_Compiled.build(tenant, doc))
            except NgsiLdError as error:  # stored before a stricter check: skip it
                log.warning("subscriptions: %s of tenant %s is unusable: %s", doc.get("id"),
                            tenant, error.detail)
        with self._cache_lock:
            self._cache[tenant] = (now, compiled)
        return compiled

    def _match(self, event: EntityEvent, event_s: float) -> None:
        now_s = clock_now()
        now_text = None
        for sub in self._subscriptions(event.tenant):
            if sub.doc.get("timeInterval") or not sub.live(now_s, event_s) or \
                    not sub.matches(event):
                continue  # a periodic subscription is not notified of changes
            throttling = sub.doc.get("throttling")
            key = (event.tenant, sub.id)
            tick = time.monotonic()
            if throttling and tick - self._last_sent.get(key, -1e18) < throttling:
                continue  # NGSI-LD throttling: skipped, not queued
            self._last_sent[key] = tick
            now_text = now_text or format_datetime(now_utc())
            record = None
            if sub.renderer.sys_attrs and event.entity is not None:
                record = self._record_of(event)
            data = notification_data(sub.doc, event, now_text, record, sub.renderer)
            self._queue(sub, [data], now_text, tick)

    # ----------------------------------------------------------- periodic
    def _periodic_loop(self) -> None:
        while not self._stopping.wait(self.periodic_tick_s):
            try:
                self.notify_periodic()
            except Exception:  # the store may be closing; the next round tries again
                log.exception("subscriptions: a round of periodic notifications failed")

    def notify_periodic(self, tick: float | None = None, now_s: float | None = None) -> None:
        """Notify every periodic subscription whose ``timeInterval`` has passed since
        its last notification (the first one at once) of the entities it selects.

        The periodic thread calls it every :attr:`periodic_tick_s`; ``tick`` (monotonic
        seconds) and ``now_s`` (the clock, for ``expiresAt``) default to the present.
        """
        tick = time.monotonic() if tick is None else tick
        now_s = clock_now() if now_s is None else now_s
        for tenant in self._periodic_tenants(tick):
            for sub in self._subscriptions(tenant):
                interval = sub.doc.get("timeInterval")
                if not interval or not sub.live(now_s, now_s):
                    continue
                key = (tenant, sub.id)
                last = self._last_sent.get(key)
                if last is not None and tick - last < interval:
                    continue
                self._last_sent[key] = tick
                records = periodic_entities(self.store, sub)
                if records:
                    now_text = format_datetime(now_utc())
                    self._queue(sub, [sub.renderer.render(r) for r in records], now_text,
                                tick)

    def _periodic_tenants(self, tick: float) -> set[str]:
        """The tenants to look at for periodic subscriptions: the store's tenants, read
        again every :data:`TENANTS_REFRESH_S` (listing them scans the entities), and
        every tenant whose subscriptions changed here since."""
        if tick - self._tenants_read_s >= TENANTS_REFRESH_S or self._tenants_read_s < 0:
            self._tenants_read_s = tick
            self._known_tenants = set(self.store.tenants())
        with self._cache_lock:
            self._known_tenants |= self._changed_tenants
            self._changed_tenants = set()
        return set(self._known_tenants)

    def _queue(self, sub: _Compiled, data: list[dict], now_text: str, due_s: float) -> None:
        context = sub.renderer.context
        named = sub.doc.get("jsonldContext")  # echoed as the client named it
        delivery = _Delivery(sub.tenant, sub.id, sub.doc["notification"]["endpoint"],
                             build_notification(sub.doc, data, now_text),
                             ld_context=named or context.response_context(),
                             link=context.link_header() if named is None else
                             f'<{named}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"')
        self._add_pending(1)
        self._schedule.put(delivery, due_s)

    def _record_of(self, event: EntityEvent) -> StoredEntity | None:
        """The stored record of an event's entity, for its system times."""
        try:
            return self.store.get_record(event.tenant, event.entity_id)
        except NgsiLdError:
            return None  # deleted since

    # ----------------------------------------------------------- delivery
    def _deliver_loop(self) -> None:
        while True:
            delivery = self._schedule.get()
            if delivery is None:
                return
            try:
                self._attempt(delivery)
            except Exception:  # never lose a delivery thread
                log.exception("subscriptions: delivery for %s failed unexpectedly",
                              delivery.subscription_id)
                self._add_pending(-1)

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        now_text = format_datetime(now_utc())
        delivery.first_attempt_text = delivery.first_attempt_text or now_text
        try:
            self._send(delivery)
        except DeliveryError as error:
            delivery.last_failure_text = now_text
            delivery.last_error = str(error)
            self._record_failed_attempt(delivery, now_text)
            if error.retry and delivery.attempt <= self.retries and \
                    not self._stopping.is_set():
                delay = self.backoff_s * 2 ** (delivery.attempt - 1)
                log.info("subscriptions: notification for %s failed (%s); retry %d in %.2f s",
                         delivery.subscription_id, error, delivery.attempt, delay)
                self._schedule.put(delivery, time.monotonic() + delay)
                return
            log.warning("subscriptions: notification for %s failed after %d attempt(s): %s",
                        delivery.subscription_id, delivery.attempt, error)
            self._record(delivery, ok=False, now_text=now_text)
        else:
            self._record(delivery, ok=True, now_text=now_text)
        self._add_pending(-1)

    def _send(self, delivery: _Delivery) -> None:
        endpoint = delivery.endpoint
        body = dict(delivery.notification)
        accept = endpoint.get("accept", "application/json")
        if accept == "application/ld+json":  # the context in the body and in each entity
            ld = delivery.ld_context
            body["@context"] = ld
            body["data"] = [{**e, "@context": ld} for e in body.get("data", [])]
        payload = orjson.dumps(body)
        headers = {"Content-Type": accept, "NGSILD-Tenant": delivery.tenant}
        if accept == "application/json":
            headers["Link"] = delivery.link
        for pair in endpoint.get("receiverInfo") or ():
            headers[pair["key"]] = pair["value"]
        uri = endpoint["uri"]
        if uri.lower().startswith(("mqtt:", "mqtts:")):
            self._send_mqtt(endpoint, uri, headers, body)
        else:
            self._send_http(uri, headers, payload)

    def _send_http(self, uri: str, headers: dict, payload: bytes) -> None:
        import httpx

        try:
            response = self._http.post(uri, content=payload, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryError(f"POST {uri}: {type(error).__name__}: {error}") from None
        if 200 <= response.status_code < 300:
            return
        code = response.status_code
        raise DeliveryError(f"POST {uri}: HTTP {code}",
                            retry=code >= 500 or code in _RETRYABLE_HTTP)

    def _send_mqtt(self, endpoint: dict, uri: str, headers: dict, body: dict) -> None:
        target = mqtt_endpoint(uri)
        qos = _info(endpoint.get("notifierInfo"), "MQTT-QoS") or \
            _info(endpoint.get("receiverInfo"), "MQTT-QoS") or "1"
        metadata = {k: v for k, v in headers.items() if k.lower() != "mqtt-qos"}
        # NGSI-LD MQTT binding: the HTTP headers travel as "metadata" next to the "body"
        payload = orjson.dumps({"metadata": metadata, "body": body})
        self._mqtt.publish(target, payload, int(qos), self.timeout_s)

    def _record_failed_attempt(self, delivery: _Delivery, now_text: str) -> None:
        """Show a failed attempt at once (``status: failed``, ``lastFailure``), while
        the delivery may still be retried; the counters move when it is settled."""
        key = (delivery.tenant, delivery.subscription_id)
        with self._status_lock:
            delta = self._status.setdefault(key, {"timesSent": 0, "timesFailed": 0})
            delta.update(status="failed", lastFailure=now_text,
                         lastFailureReason=delivery.last_error,
                         lastNotification=delivery.first_attempt_text)
        self._write_status()

    def _record(self, delivery: _Delivery, *, ok: bool, now_text: str) -> None:
        key = (delivery.tenant, delivery.subscription_id)
        with self._status_lock:
            delta = self._status.setdefault(key, {"timesSent": 0, "timesFailed": 0})
            delta["lastNotification"] = delivery.first_attempt_text
            if delivery.last_failure_text:
                delta["lastFailure"] = delivery.last_failure_text
                delta["lastFailureReason"] = delivery.last_error
            if ok:
                delta["timesSent"] += 1
                delta["lastSuccess"] = now_text
                delta["status"] = "ok"
            else:
                delta["timesFailed"] += 1
                delta["status"] = "failed"
        # written at once, so a client that got a notification reads it in timesSent
        self._write_status()

    def _write_status(self) -> None:
        """Add the delivery counters gathered since the last write to the store."""
        with self._status_write_lock:
            with self._status_lock:
                deltas, self._status = self._status, {}
            self._add_status(deltas)

    def _add_status(self, deltas: dict) -> None:
        for (tenant, sub_id), delta in deltas.items():
            try:
                if self.store.get_document(tenant, SUBSCRIPTION_KIND, sub_id) is None:
                    continue  # deleted meanwhile
                status = self.store.get_document(tenant, STATUS_KIND, sub_id) or {}
                status["timesSent"] = status.get("timesSent", 0) + delta.pop("timesSent")
                status["timesFailed"] = status.get("timesFailed", 0) + delta.pop("timesFailed")
                status.update(delta)
                self.store.put_document(tenant, STATUS_KIND, sub_id, status)
            except Exception:  # the store may be closing; counters are best effort
                log.exception("subscriptions: writing the status of %s failed", sub_id)
